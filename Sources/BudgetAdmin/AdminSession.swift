package import BudgetConfig
package import BudgetWire
package import NIOCore

/// budgetctl's side of admin.sock: the calls each verb makes, on a connection that lives as long as one
/// `withSession` scope.
package struct AdminSession: Sendable {
    let client: WireClient
    let endpoint: AdminEndpoint
    /// `endpoint.timeoutSeconds` as NIO counts time.
    private var timeout: TimeAmount? { endpoint.timeoutSeconds.map { TimeAmount.seconds(Int64($0)) } }

    private init(client: WireClient, endpoint: AdminEndpoint) {
        self.client = client
        self.endpoint = endpoint
    }

    /// Connects, runs `body`, and closes the connection (awaited) whether `body` returns or throws.
    /// - Throws: `WireClientError` when the control plane cannot be reached, else what `body` throws.
    package static func withSession<Result>(
        _ endpoint: AdminEndpoint, isolation: isolated (any Actor)? = #isolation,
        _ body: (AdminSession) async throws -> Result
    ) async throws -> Result {
        let session = try await connect(endpoint)
        return try await session.executeThenClose(body)
    }

    /// Connects and fetches the stored config while `prepare` runs (both are slow with a large config),
    /// then runs `body` with all three and closes the connection (awaited) whether `body` returns or throws.
    ///
    /// An error of `prepare` comes first: the connection's fate is reported only when `prepare` succeeded.
    /// - Throws: what `prepare` throws, else `WireClientError`, else what `body` throws.
    package static func withStoredConfig<Prepared, Result>(
        _ endpoint: AdminEndpoint, isolation: isolated (any Actor)? = #isolation,
        whilePreparing prepare: () throws -> Prepared,
        _ body: (AdminSession, StoredConfig, Prepared) async throws -> Result
    ) async throws -> Result {
        async let opened = openAndFetch(endpoint)
        let prepared: Prepared
        do {
            prepared = try prepare()
        } catch {
            if case .success(let (session, _)) = await opened { await session.client.close() }
            throw error
        }
        let (session, stored) = try await opened.get()
        return try await session.executeThenClose { session in try await body(session, stored, prepared) }
    }

    /// The stored config and its version.
    package func current() async throws(WireClientError) -> StoredConfig {
        let response = try await client.admin(AdminRequest(op: .dump))
        return StoredConfig(version: response.configVersion ?? 0, state: response.state ?? ConfigState())
    }

    /// How long an apply may take: a first sync of a large config is slow, and a slow disk or machine must not
    /// turn a sync that will succeed into an error.
    package static let applyTimeout = TimeAmount.minutes(10)

    /// Applies a plan made against `baseVersion`; returns the new version. The control plane refuses it
    /// (and changes nothing) if the config moved since.
    /// - Throws: `AdminError` that says whether the control plane may have applied the plan anyway.
    @discardableResult
    package func apply(_ plan: Plan, baseVersion: UInt64) async throws(AdminError) -> UInt64 {
        let changes = plan.changes.map { AppliedChange(action: $0.action, entity: $0.entity) }
        do {
            let response = try await client.admin(
                AdminRequest(op: .apply, baseVersion: baseVersion, changes: changes),
                timeout: timeout ?? Self.applyTimeout)
            return response.configVersion ?? baseVersion
        } catch {
            throw AdminError.applyFailed(error)
        }
    }

    /// The control plane's version string and its config version.
    package func ping() async throws(WireClientError) -> (server: String, configVersion: UInt64) {
        let response = try await client.admin(AdminRequest(op: .ping))
        return (response.server ?? client.welcome.server, response.configVersion ?? 0)
    }

    /// The control plane's state, or nil when it sent none.
    package func status() async throws(WireClientError) -> ServerStatus? {
        try await client.admin(AdminRequest(op: .status)).status
    }

    /// Usage against each budget, of one consumer or one group's members when given.
    package func usage(consumer: String?, group: String?) async throws(WireClientError) -> [UsageRow] {
        try await client.admin(AdminRequest(op: .usage, consumer: consumer, group: group)).usage ?? []
    }

    /// Forgets a consumer's usage; returns how many counters were removed.
    package func resetUsage(consumer: String) async throws(WireClientError) -> Int {
        try await client.admin(AdminRequest(op: .usageReset, consumer: consumer)).removed ?? 0
    }

    private static func connect(_ endpoint: AdminEndpoint) async throws(WireClientError) -> AdminSession {
        let timeout = endpoint.timeoutSeconds.map { TimeAmount.seconds(Int64($0)) } ?? .seconds(30)
        let client = try await WireClient.connect(
            path: endpoint.socket, role: .admin, client: endpoint.client, timeout: timeout)
        return AdminSession(client: client, endpoint: endpoint)
    }

    /// Connects and fetches the stored config; on failure nothing stays open.
    private static func openAndFetch(_ endpoint: AdminEndpoint) async -> Swift.Result<
        (AdminSession, StoredConfig), WireClientError
    > {
        do throws(WireClientError) {
            let session = try await connect(endpoint)
            do throws(WireClientError) {
                return .success((session, try await session.current()))
            } catch {
                await session.client.close()
                return .failure(error)
            }
        } catch {
            return .failure(error)
        }
    }

    /// Runs `body` with this session, then closes it (awaited) whether `body` returned or threw, as NIO's
    /// `executeThenClose` does for a channel.
    private func executeThenClose<Result>(
        isolation: isolated (any Actor)? = #isolation, _ body: (AdminSession) async throws -> Result
    ) async throws -> Result {
        let result: Result
        do {
            result = try await body(self)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        return result
    }
}

/// The control plane's config as stored, and the version a plan against it must name.
package struct StoredConfig: Sendable {
    package var version: UInt64
    package var state: ConfigState
}

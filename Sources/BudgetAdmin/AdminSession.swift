public import BudgetConfig
public import BudgetWire
public import NIOCore

/// budgetctl's side of admin.sock: the calls each verb makes.
public struct AdminSession: Sendable {
    public let client: WireClient
    public let socket: String
    /// How long any call, the apply included, may take; nil: 30 seconds, and `applyTimeout` for an apply.
    public let timeout: TimeAmount?

    /// The socket budgetctl uses: `--socket`, else `BUDGETCTL_SOCKET`, else `/run/budget/admin.sock`.
    public static func socketPath(flag: String?, environment: [String: String]) -> String {
        flag ?? environment["BUDGETCTL_SOCKET"] ?? "/run/budget/admin.sock"
    }

    /// Connects; `timeoutSeconds` bounds every call, the apply included.
    public static func connect(socket: String, client: String, timeoutSeconds: Int? = nil)
        async throws(WireClientError) -> AdminSession
    {
        let timeout = timeoutSeconds.map { TimeAmount.seconds(Int64($0)) }
        return AdminSession(
            client: try await WireClient.connect(
                path: socket, role: .admin, client: client, timeout: timeout ?? .seconds(30)),
            socket: socket, timeout: timeout)
    }

    public func close() async { await client.close() }

    /// The stored config and its version.
    public func current() async throws(WireClientError) -> (version: UInt64, state: ConfigState) {
        let response = try await client.admin(AdminRequest(op: .dump))
        return (response.configVersion ?? 0, response.state ?? ConfigState())
    }

    /// How long an apply may take: a first sync of 100,000 consumers takes seconds here, and a slow disk or
    /// machine must not turn a sync that will succeed into an error.
    public static let applyTimeout = TimeAmount.minutes(10)

    /// Applies a plan made against `version`; returns the new version. The control plane refuses it
    /// (and changes nothing) if the config moved since.
    public func apply(_ plan: Plan, baseVersion: UInt64) async throws(WireClientError) -> UInt64 {
        let changes = plan.changes.map { AppliedChange(action: $0.action, entity: $0.entity) }
        let response = try await client.admin(
            AdminRequest(op: .apply, baseVersion: baseVersion, changes: changes), timeout: timeout ?? Self.applyTimeout)
        return response.configVersion ?? baseVersion
    }

    public func admin(_ request: AdminRequest) async throws(WireClientError) -> AdminResponse {
        try await client.admin(request)
    }
}

/// Turns loaded files into the state a sync or diff wants, with decK's select-tag rules and the
/// checks this gateway adds before anything reaches the control plane.
public enum SyncInput {
    public struct Desired: Sendable {
        public var state: ConfigState
        public var selectTags: [String]
    }

    /// The desired state, or the problems that stop a sync (as printable lines).
    ///
    /// `flagTags` (from `--select-tag`) must equal the files' `_info.select_tags` when both are given;
    /// when only the flag is given, its tags are added to every entity, as decK does.
    public static func desired(from loaded: LoadedConfig, flagTags: [String]) -> Result<Desired, SyncProblems> {
        var problems: [String] = loaded.diagnostics.rendered.filter { !$0.contains(": warning: ") }
        if !loaded.isValid { return .failure(SyncProblems(lines: problems)) }
        let flags = normalizeTags(flagTags)
        var tags = loaded.selectTags
        var state = loaded.state
        if !flags.isEmpty {
            if !tags.isEmpty && tags != flags {
                problems.append("--select-tag \(flags) does not match the files' _info.select_tags \(tags)")
            } else if tags.isEmpty {
                tags = flags
                state = ConfigState(state.sortedEntities.map { $0.withTags($0.tags + flags) })
            }
        }
        for plugin in state.plugins {
            guard case .aiRateLimitingAdvanced(let config) = plugin.config, config.strategy == .redis else { continue }
            let origin = loaded.sourceMap.origin(of: plugin.id)
            problems.append(
                "\(origin.map { "\($0.location): \($0.path).config.strategy: " } ?? "")strategy \"redis\" "
                    + "(counters shared by several nodes) is not supported yet; budgets would silently be counted per "
                    + "node, so sync refuses it. Use strategy: local (this node's durable store)")
        }
        return problems.isEmpty
            ? .success(Desired(state: state, selectTags: tags)) : .failure(SyncProblems(lines: problems))
    }
}

public struct SyncProblems: Error, Sendable {
    public var lines: [String]
}

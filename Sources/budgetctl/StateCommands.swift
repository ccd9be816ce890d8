import ArgumentParser
import BudgetAdmin
import BudgetConfig
import BudgetWire
import Foundation

/// `budgetctl ping`.
struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that budget-controld answers, and print its version.")

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let pong = try await connection.withSession { session in try await session.ping() }
        Console.out("Successfully connected to budget-controld!")
        Console.out("budget-controld version: \(pong.server)")
        Console.out("Config version: \(pong.configVersion)")
    }
}

/// `budgetctl status`.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the control plane's state: version, data planes, store, counts.")

    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        guard let status = try await connection.withSession({ session in try await session.status() }) else { return }
        if json {
            Console.out(String(decoding: WireJSON.encode(status), as: UTF8.self))
            return
        }
        Console.out("server:         \(status.server)")
        Console.out("config version: \(status.configVersion)")
        Console.out("data planes:    \(status.dataPlanes) connected")
        Console.out("store:          \(status.storePath)")
        Console.out("entities:       \(status.entities)")
        Console.out("counters:       \(status.counters)")
        Console.out("reservations:   \(status.reservations) in flight")
        Console.out("uptime:         \(status.uptimeSeconds) s")
        guard let fleet = status.fleet else { return }
        let health =
            fleet.redisConnected
            ? "connected\(fleet.redisAddress.map { " (\($0))" } ?? "")"
            : "unreachable\(fleet.redisError.map { ": \($0)" } ?? "")"
        Console.out("node:           \(fleet.node)")
        Console.out("redis:          \(fleet.redis), \(health)")
        Console.out("on redis loss:  \(fleet.lossPolicy)")
        Console.out("fleet config:   version \(fleet.fleetVersion)")
        Console.out(
            "without redis:  \(String(format: "%.1f", fleet.awaySeconds)) s, "
                + "\(String(format: "%g", fleet.fallbackUnits)) units counted locally")
        Console.out("fleet nodes:    \(fleet.nodes.count)")
        for node in fleet.nodes {
            let state = node.silentSeconds <= 10 ? "up" : "silent \(node.silentSeconds) s"
            Console.out(
                "  \(node.name): config version \(node.configVersion), fleet config \(node.fleetVersion), \(state)"
                    + (node.awaySeconds > 0 ? ", \(String(format: "%.1f", node.awaySeconds)) s without redis" : ""))
        }
    }
}

/// `budgetctl dump`: the stored config as a decK file, keys as hashes, secrets as DECK_ placeholders.
struct Dump: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the stored config as a decK file that sync accepts back.",
        discussion: """
            Keys are written as key_hash (sha256:…), never in plaintext. AWS secrets are written as \
            ${{ env "DECK_AWS_ACCESS_KEY_ID" }} and ${{ env "DECK_AWS_SECRET_ACCESS_KEY" }}, so the file holds no \
            secret and syncs back with those variables set.
            """)

    @OptionGroup var tags: SelectTagOptions
    @OptionGroup var connection: ConnectionOptions

    @Option(
        name: [.short, .customLong("output-file")],
        help: ArgumentHelp("Write to this file instead of standard output (mode 0600).", valueName: "file"))
    var output: String?

    func run() async throws {
        let stored = try await connection.withSession { session in try await session.current() }
        let header =
            "# budgetctl dump, config version \(stored.version). Keys are hashes; secrets come from DECK_ variables.\n"
        let text =
            header
            + DeckRenderer(secrets: .environmentPlaceholders).render(
                stored.state.scoped(to: tags.selectTags), selectTags: normalizeTags(tags.selectTags))
        if let output {
            guard
                FileManager.default.createFile(
                    atPath: output, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
            else {
                Console.error("Error: cannot write \(output)")
                throw ExitCode.failure
            }
        } else {
            Console.write(text)
        }
    }
}

/// `budgetctl get KIND`.
struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List entities of one kind.")

    /// The kinds `get` lists, spelled as decK's plural nouns.
    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case consumers, services, routes, plugins
        case consumerGroups = "consumer-groups"
    }

    @Argument(help: ArgumentHelp("consumers, consumer-groups, services, routes or plugins.", valueName: "kind"))
    var kind: Kind

    @OptionGroup var tags: SelectTagOptions
    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Print JSON (secrets masked).")
    var json = false

    func run() async throws {
        let state = try await connection.withSession { session in try await session.current() }.state
        let wanted: EntityKind =
            switch kind {
            case .consumers: .consumer
            case .consumerGroups: .consumerGroup
            case .services: .service
            case .routes: .route
            case .plugins: .plugin
            }
        let entities = state.scoped(to: tags.selectTags).sortedEntities.filter { $0.id.kind == wanted }
        if json {
            Console.out(JSONWriter(secrets: .masked).text(.list(entities.map(\.fields))))
            return
        }
        for entity in entities {
            Console.out(entity.displayName + (entity.tags.isEmpty ? "" : "  tags: " + entity.tags.joined(separator: ",")))
        }
    }
}

/// `budgetctl tag add|remove KIND NAME TAG...`.
struct Tag: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add or remove tags on one entity.",
        discussion: "KIND is consumer, consumer-group, service, route or key-auth; NAME as get prints it.")

    @Argument(help: "add or remove.") var action: TagRun.Action
    @Argument(help: ArgumentHelp("The entity's kind.", valueName: "kind")) var kind: String
    @Argument(help: ArgumentHelp("The entity's name.", valueName: "name")) var name: String
    @Argument(help: ArgumentHelp("Tags.", valueName: "tag")) var tags: [String]
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        guard let entityKind = EntityKind(rawValue: kind) else {
            Console.error(
                "Error: unknown kind \"\(kind)\"; expected \(EntityKind.allCases.map(\.rawValue).joined(separator: ", "))"
            )
            throw ExitCode.failure
        }
        let run = TagRun(action: action, kind: entityKind, name: name, tags: tags)
        try await reportingFailure { try await run.run(connection.endpoint, output: Console.output) }
    }
}

extension TagRun.Action: ExpressibleByArgument {}

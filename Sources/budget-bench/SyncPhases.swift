import ArgumentParser
import BudgetConfig
import BudgetWire
import Foundation

/// Where the time of a large sync goes, phase by phase, in this process: reading the files, validating,
/// planning, and the encodings a sync and a snapshot push go through.
struct SyncPhases: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync-phases",
        abstract: "Time each phase of a sync of a decK file, without daemons.")

    @Argument(help: ArgumentHelp("A decK file.", valueName: "file"))
    var file: String

    func run() throws {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        func measure<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
            let start = ContinuousClock.now
            let result = try body()
            let elapsed = ContinuousClock.now - start
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            let label = name.padding(toLength: 44, withPad: " ", startingAt: 0)
            print(label + String(format: "%9.1f ms", ms))
            return result
        }
        let loaded = measure("read, decode and validate the file") {
            ConfigLoader.load([ConfigSource(name: file, bytes: bytes)], environment: [:])
        }
        guard loaded.isValid else { throw ValidationError(loaded.diagnostics.rendered.joined(separator: "\n")) }
        print(
            "entities: \(loaded.state.count), \(MemoryLayout<Entity>.size) bytes per Entity value, \(MemoryLayout<Plugin>.size) per Plugin, \(MemoryLayout<Consumer>.size) per Consumer"
        )
        _ = measure("validate the state again") { StateValidator.issues(in: loaded.state) }
        let plan = try measure("plan against an empty control plane") {
            try Planner.plan(current: ConfigState(), desired: loaded.state, selectTags: loaded.selectTags)
        }
        _ = measure("render the plan as text") { PlanRenderer.text(plan) }
        let request = AdminRequest(
            op: .apply, baseVersion: 0,
            changes: plan.changes.map { AppliedChange(action: $0.action, entity: $0.entity) })
        let requestBytes = measure("encode the apply request") { WireJSON.encode(request) }
        print("apply request: \(requestBytes.count) bytes")
        _ = try measure("decode the apply request") { try WireJSON.decode(AdminRequest.self, from: requestBytes) }
        let snapshot = ConfigSnapshot(version: 1, state: plan.result)
        let snapshotBytes = measure("encode the snapshot") { WireJSON.encode(snapshot) }
        _ = try measure("decode the snapshot") { try WireJSON.decode(ConfigSnapshot.self, from: snapshotBytes) }
    }
}

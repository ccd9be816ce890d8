/// Prints a plan as decK does (`creating consumer x`, field diffs, the `Summary:` block) or as JSON
/// in the shape of decK's `--json-output`. Secrets are always masked: keys appear only as their last
/// five characters or a hash label, AWS and Redis secrets as `[masked]`.
public enum PlanRenderer {
    /// The lines of the text form, the `Summary:` block last.
    public static func text(_ plan: Plan) -> [String] {
        var lines: [String] = []
        let emitter = YAMLEmitter(secrets: .masked)
        for change in plan.changes {
            lines.append("\(change.action.rawValue) \(change.entity.kindAndName)")
            for field in change.fieldChanges {
                if let old = field.old { lines.append("  - \(field.path): \(emitter.scalar(old))") }
                if let new = field.new { lines.append("  + \(field.path): \(emitter.scalar(new))") }
            }
        }
        lines += summary(created: plan.created, updated: plan.updated, deleted: plan.deleted)
        return lines
    }

    /// decK's closing block.
    public static func summary(created: Int, updated: Int, deleted: Int) -> [String] {
        ["Summary:", "  Created: \(created)", "  Updated: \(updated)", "  Deleted: \(deleted)"]
    }

    /// The JSON form: `{changes: {creating, updating, deleting}, summary, warnings, errors}`.
    public static func json(_ plan: Plan, warnings: [String] = [], errors: [String] = []) -> String {
        func entry(_ change: Plan.Change) -> FieldValue {
            var fields: [FieldValue.Field] = [
                .init("kind", .string(change.id.kind.rawValue)),
                .init("name", .string(change.entity.displayName)),
            ]
            switch change.action {
            case .create, .delete:
                fields.append(.init("body", change.entity.fields))
            case .update:
                fields.append(
                    .init(
                        "diff",
                        .list(
                            change.fieldChanges.map { field in
                                .map([
                                    .init("path", .string(field.path)),
                                    .init("old", field.old ?? .null),
                                    .init("new", field.new ?? .null),
                                ])
                            })))
            }
            return .map(fields)
        }
        let document = FieldValue.map([
            .init(
                "changes",
                .map([
                    .init("creating", .list(plan.changes.filter { $0.action == .create }.map(entry))),
                    .init("updating", .list(plan.changes.filter { $0.action == .update }.map(entry))),
                    .init("deleting", .list(plan.changes.filter { $0.action == .delete }.map(entry))),
                ])),
            .init(
                "summary",
                .map([
                    .init("creating", .int(plan.created)),
                    .init("updating", .int(plan.updated)),
                    .init("deleting", .int(plan.deleted)),
                    .init("total", .int(plan.changes.count)),
                ])),
            .init("warnings", .strings(warnings)),
            .init("errors", .strings(errors)),
        ])
        return JSONWriter(secrets: .masked).text(document)
    }
}

package import BudgetConfig

/// Turns loaded files into the state a sync or diff wants, with decK's select-tag rules and the
/// checks this gateway adds before anything reaches the control plane.
package enum SyncInput {
    /// The state the files ask for, and the select tags that scope it.
    package struct Desired: Sendable {
        package var state: ConfigState
        package var selectTags: [String]
    }

    /// The desired state, or the problems that stop a sync.
    ///
    /// `flagTags` (from `--select-tag`) must equal the files' `_info.select_tags` when both are given;
    /// when only the flag is given, its tags are added to every entity, as decK does.
    /// - Throws: `AdminError.invalidConfig`, one line per problem.
    package static func desired(from loaded: LoadedConfig, flagTags: [String]) throws(AdminError) -> Desired {
        var problems: [String] = loaded.diagnostics.rendered.filter { !$0.contains(": warning: ") }
        if !loaded.isValid { throw .invalidConfig(problems) }
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
        if !problems.isEmpty { throw .invalidConfig(problems) }
        return Desired(state: state, selectTags: tags)
    }
}

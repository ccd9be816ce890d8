package import BudgetConfig
package import BudgetWire

/// Why a budgetctl verb stopped, as the lines it prints on standard error, already worded for the operator.
package struct AdminError: Error, Sendable, CustomStringConvertible {
    private enum Code: Sendable {
        /// A file could not be read.
        case unreadableInput
        /// The files hold errors, or ask for something sync refuses.
        case invalidConfig
        /// The planner refused the change.
        case unplannable
        /// The entity named on the command line does not exist.
        case undefinedEntity
        /// The control plane refused the apply and changed nothing.
        case applyRefused
        /// The apply's answer never came; the control plane may have applied it.
        case applyUnconfirmed
    }

    private let code: Code
    /// The lines to print on standard error, in order.
    package let lines: [String]

    private init(_ code: Code, _ lines: [String]) {
        self.code = code
        self.lines = lines
    }

    package var description: String { lines.joined(separator: "\n") }

    /// Files that could not be read, one line each.
    package static func unreadableInput(_ problems: [String]) -> AdminError { AdminError(.unreadableInput, problems) }

    /// Problems in the files (one line each); nothing reached the control plane.
    package static func invalidConfig(_ problems: [String]) -> AdminError {
        AdminError(.invalidConfig, problems + ["Error: nothing was changed"])
    }

    /// The planner's refusal; `nothingChanged` adds the line that says so (sync and diff do).
    package static func unplannable(_ error: PlanError, nothingChanged: Bool = false) -> AdminError {
        AdminError(.unplannable, ["Error: \(error)"] + (nothingChanged ? ["Error: nothing was changed"] : []))
    }

    /// `kind` "`name`" is not in the stored config.
    package static func undefinedEntity(kind: EntityKind, name: String) -> AdminError {
        AdminError(.undefinedEntity, ["Error: \(kind.rawValue) \"\(name)\" is not defined"])
    }

    /// An apply that failed: a refusal changed nothing, but when the answer never came (time-out, lost
    /// connection) the control plane may have applied the plan, and saying "nothing was changed" could be false.
    package static func applyFailed(_ error: WireClientError) -> AdminError {
        if case .server = error {
            return AdminError(.applyRefused, ["Error: \(error)", "Error: nothing was changed"])
        }
        return AdminError(
            .applyUnconfirmed,
            [
                "Error: \(error)",
                "Error: the control plane may or may not have applied the changes; run budgetctl diff with the same "
                    + "files to see where the config stands",
            ])
    }
}

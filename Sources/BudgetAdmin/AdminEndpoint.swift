/// Where and as whom budgetctl reaches budget-controld: the admin socket, the client name, the time limit.
package struct AdminEndpoint: Sendable {
    /// The admin socket's path.
    package var socket: String
    /// The name the control plane logs for this client, e.g. `budgetctl/0.1.0`.
    package var client: String
    /// How long any call, the apply included, may take; nil: 30 seconds, and `AdminSession.applyTimeout` for
    /// an apply.
    package var timeoutSeconds: Int?

    package init(socket: String, client: String, timeoutSeconds: Int? = nil) {
        self.socket = socket
        self.client = client
        self.timeoutSeconds = timeoutSeconds
    }

    /// The socket budgetctl uses: `--socket`, else `BUDGETCTL_SOCKET`, else `/run/budget/admin.sock`.
    package static func socketPath(flag: String?, environment: [String: String]) -> String {
        flag ?? environment["BUDGETCTL_SOCKET"] ?? "/run/budget/admin.sock"
    }
}

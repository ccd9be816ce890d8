/// The release of every program of the gateway: the daemons' `--version`, the hello handshake and
/// `budgetctl ping` all print this one value.
public enum GatewayVersion {
    /// The version string, `MAJOR.MINOR.PATCH`.
    public static let current = "0.1.0"
}

/// The version budget-controld reports (`--version`, `budgetctl ping`, the welcome).
public enum ControlPlaneVersion {
    public static let current = "0.1.0"
}

import CBudgetSystem

/// The CPUs this process may run on.
public enum CPUs {
    /// The CPUs in the process's affinity mask (taskset, systemd's CPUAffinity=), at least 1.
    ///
    /// SwiftNIO's `System.coreCount` counts every online CPU, so a proxy pinned to one core still started
    /// an event loop per core, and its threads took turns on that core: more context switches, longer tails.
    public static var available: Int { max(1, Int(cbudget_affinity_cpu_count())) }
}

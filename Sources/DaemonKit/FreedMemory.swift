import CBudgetSystem

/// Gives memory that was freed back to the kernel (glibc's `malloc_trim`).
///
/// Decoding a large snapshot builds and frees hundreds of megabytes of small objects; glibc keeps
/// the freed pages in its arenas, so without this a daemon's RSS stays at its peak after every config
/// change.
public enum FreedMemory {
    /// Returns free heap pages to the kernel; call after dropping a large structure.
    public static func release() {
        _ = cbudget_malloc_trim()
    }

    /// For a short-lived process that builds and drops large structures (budgetctl reading a large config):
    /// glibc otherwise shrinks and regrows its heap over and over (bench/README.md has the measurement). The
    /// heap may keep 256 MiB free instead.
    public static func keepForBatchWork() {
        _ = cbudget_malloc_keep(64 << 20, 256 << 20)
    }
}

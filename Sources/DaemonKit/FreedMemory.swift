import CBudgetSystem

/// Gives memory that was freed back to the kernel (glibc's `malloc_trim`).
///
/// Decoding a large snapshot builds and frees hundreds of megabytes of small objects; glibc keeps
/// the freed pages in its arenas, so without this a daemon's RSS stays at its peak after every config
/// change.
public enum FreedMemory {
    public static func release() {
        _ = cbudget_malloc_trim()
    }

    /// For a short-lived process that builds and drops large structures (budgetctl reading 100,000
    /// consumers): glibc otherwise shrinks and regrows its heap tens of thousands of times (68,000 mprotect
    /// calls in one sync), which took a sixth of the sync's time. The heap may keep 256 MiB free instead.
    public static func keepForBatchWork() {
        _ = cbudget_malloc_keep(64 << 20, 256 << 20)
    }
}

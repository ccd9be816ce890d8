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
}

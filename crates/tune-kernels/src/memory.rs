//! The allocator setting the kernels' many large, short-lived buffers want.

/// Makes glibc's allocator reuse freed memory instead of returning it to the kernel.
///
/// Why: a training step allocates and frees activations and gradients of 1–30 MB each, dozens of
/// times. By default glibc serves such blocks with fresh `mmap`s and unmaps them on free, so
/// every step page-faults and the kernel zeroes every page again. Keeping them in the heap
/// measured 10–20% more training images/s for the seed model on flex, and a lower peak RSS
/// (345 vs 414 MiB), because the heap reuses the same blocks. Returns whether glibc accepted
/// the settings (elsewhere it is a no-op).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; called before any threads start.
        unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

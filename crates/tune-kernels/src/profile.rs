//! Wall time spent inside each of our kernels, so `tune bench` can say where a training step's
//! time goes. Off unless [`enable`]d: then one clock read before and after each kernel call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The kernels timed, forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Conv,
    BatchNorm,
    MaxPool,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::Conv, Kernel::BatchNorm, Kernel::MaxPool];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Conv => "conv",
            // Where the pool runs inside batch norm, its time is counted here.
            Kernel::BatchNorm => "batch norm",
            Kernel::MaxPool => "max-pool",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Nanoseconds per kernel: forward at `2k`, backward at `2k + 1`.
static NANOS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Runs `f`, adding its wall time to `kernel`'s forward or backward total when enabled.
pub fn timed<T>(kernel: Kernel, backward: bool, f: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let slot = 2 * Kernel::ALL.iter().position(|k| *k == kernel).expect("listed") + backward as usize;
    NANOS[slot].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Seconds per kernel since the last call, as `(kernel, forward, backward)`; resets the totals.
pub fn take() -> Vec<(Kernel, f64, f64)> {
    let secs = |slot: usize| NANOS[slot].swap(0, Ordering::Relaxed) as f64 * 1e-9;
    Kernel::ALL.iter().enumerate().map(|(i, k)| (*k, secs(2 * i), secs(2 * i + 1))).collect()
}

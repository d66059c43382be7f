//! The compute device, chosen at build time: flex (pure-Rust CPU) by default, libtorch with
//! `--features tch`, CUDA with `--features cuda`. The model code is the same for all.

use burn::tensor::Device;

#[cfg(feature = "cuda")]
pub const NAME: &str = "cuda";
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub const NAME: &str = "tch";
#[cfg(not(any(feature = "tch", feature = "cuda")))]
pub const NAME: &str = "flex";

/// Whether the model runs tune-kernels' flex kernels: on the default (flex) build.
pub fn uses_kernels() -> bool {
    NAME == "flex"
}

const NOT_THIS_BUILD: &str = "bf16 runs in the default CPU build only";

/// Why bf16 convolutions cannot run here, if they cannot: only the flex kernels have them,
/// and only on CPUs with AVX512-BF16.
pub fn bf16_unavailable() -> Option<&'static str> {
    if !uses_kernels() { Some(NOT_THIS_BUILD) } else { crate::kernels::bf16::unavailable() }
}

/// Turns bf16 convolutions on or off; `Err` with the reason when they cannot run.
pub fn enable_bf16(on: bool) -> Result<(), &'static str> {
    if on && !uses_kernels() {
        return Err(NOT_THIS_BUILD);
    }
    crate::kernels::bf16::enable(on) // refuses a CPU without AVX512-BF16 itself
}

/// The device every command trains and evaluates on. With libtorch: its first CUDA GPU when
/// libtorch sees one, else its CPU.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    return Device::cuda(0);
    #[cfg(all(feature = "tch", not(feature = "cuda")))]
    #[allow(deprecated)]
    return if tch::Cuda::is_available() { Device::libtorch_cuda(0) } else { Device::libtorch() };
    #[cfg(not(any(feature = "tch", feature = "cuda")))]
    Device::flex()
}

/// The backend and, where it can be either, the processor it runs on: "flex", "tch (cuda:0)",
/// "tch (cpu)", "cuda".
pub fn description() -> String {
    #[cfg(all(feature = "tch", not(feature = "cuda")))]
    return format!("{NAME} ({})", if tch::Cuda::is_available() { "cuda:0" } else { "cpu" });
    #[cfg(not(all(feature = "tch", not(feature = "cuda"))))]
    NAME.to_string()
}

/// Seeds every generator a training step draws from: the device's (initialisation, burn's
/// random ops) and our dropout masks, so one call makes a run (or a resumed epoch) repeat.
pub fn seed(device: &Device, seed: u64) {
    device.seed(seed);
    crate::kernels::dropout::seed(seed);
}

/// Sets the size of the compute thread pool (once per process; later calls change nothing).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|n| *n > 0) {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}

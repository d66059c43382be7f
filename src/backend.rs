//! The compute device, chosen at build time: flex (pure-Rust CPU) by default, libtorch with
//! `--features tch`, CUDA with `--features cuda`. The model code is the same for all.

use burn::tensor::Device;

#[cfg(feature = "cuda")]
pub const NAME: &str = "cuda";
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub const NAME: &str = "tch";
#[cfg(not(any(feature = "tch", feature = "cuda")))]
pub const NAME: &str = "flex";

/// The device every command trains and evaluates on.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    return Device::cuda(0);
    #[cfg(all(feature = "tch", not(feature = "cuda")))]
    #[allow(deprecated)]
    return Device::libtorch();
    #[cfg(not(any(feature = "tch", feature = "cuda")))]
    Device::flex()
}

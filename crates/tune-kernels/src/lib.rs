//! Our own CPU kernels, plugged into burn through its backend-extension API.
//!
//! Convolution, batch norm (+ activation + max-pool), max-pool and the Adam update for flex, each with its
//! backward pass for autodiff. The model calls them only on the flex build
//! (tune's `backend::uses_kernels`); libtorch and CUDA builds run burn's own ops, so GPU users keep their
//! vendor kernels. The trait's default bodies state each operation in burn's ops.

pub mod activation;
pub use activation::Activation;
pub mod adam;
pub mod batch_norm;
pub mod bf16;
#[cfg(target_arch = "x86_64")]
mod blocked;
pub mod conv;
pub mod dropout;
mod extension;
pub mod fma;
pub mod geometry;
pub mod memory;
mod on_autodiff;
mod on_flex;
mod peak;
pub mod pool;
pub mod profile;
mod reference;
pub mod settings;
pub mod shifted;
pub mod simd;
mod tensor_ops;
mod window2;
pub mod winograd;

pub use extension::{Kernels, OptimizerKernels};
pub use peak::gemm_peak;
pub use settings::KernelSettings;
pub use tensor_ops::{adam_step, batch_norm_eval, batch_norm_train, conv2d, dropout, max_pool2d};

/// Whether the model pools inside the batch-norm kernel after `act`: where the pool commutes
/// with it ([`activation::commutes_with_max_pool`]) and the 2×2 windows run vectorised
/// (AVX-512 or AVX2, [`window2`]). On baseline x86-64 the fused windows are scalar code,
/// slower than batch norm and the separate pool kernel (batch norm's backward 28 ms a step
/// against 17 ms).
pub fn fuses_pool(act: Activation) -> bool {
    simd::level() != simd::Level::Baseline && activation::commutes_with_max_pool(act)
}

#[cfg(test)]
mod tests;

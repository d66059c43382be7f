//! The kernels on high-level tensors, dispatched to whichever backend the tensor lives on:
//! what the model and the optimizer call.

use burn::backend::Dispatch;
use burn::tensor::{Tensor, TensorData};

use crate::activation::Activation;
use crate::extension::{Kernels, OptimizerKernels};
use crate::{adam, dropout as masks};

/// [`OptimizerKernels::adam_step_block`] on high-level tensors.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: adam::AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m1, m2) = <Dispatch as OptimizerKernels>::adam_step_block(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (Tensor::from_dispatch(p), Tensor::from_dispatch(m1), Tensor::from_dispatch(m2))
}

/// [`Kernels::batch_norm_train_block`] on high-level tensors: `(output, mean, variance)`.
/// The output is `act(batch_norm(x))`; with `pool` > 1 (4-d input only) it is then
/// max-pooled `pool`×`pool`.
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    act: Activation,
    pool: usize,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let (y, mean, var) = <Dispatch as Kernels>::batch_norm_train_block(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        act,
        pool,
    );
    (Tensor::from_dispatch(y), Tensor::from_dispatch(mean), Tensor::from_dispatch(var))
}

/// [`Kernels::batch_norm_eval_block`] on high-level tensors.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    variance: Tensor<1>,
    epsilon: f64,
    act: Activation,
    pool: usize,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Kernels>::batch_norm_eval_block(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        mean.into_dispatch(),
        variance.into_dispatch(),
        epsilon,
        act,
        pool,
    ))
}

/// [`Kernels::max_pool2d_block`] on high-level tensors.
pub fn max_pool2d(x: Tensor<4>, k: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as Kernels>::max_pool2d_block(x.into_dispatch(), k))
}

/// [`Kernels::conv2d_block`] on high-level tensors.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: [usize; 2], padding: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as Kernels>::conv2d_block(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

/// Dropout during training (on an autodiff device), identity otherwise: `x · mask`, the mask
/// a constant from [`dropout::mask`], so the gradient is `grad · mask`.
pub fn dropout<const D: usize>(x: Tensor<D>, prob: f64) -> Tensor<D> {
    if prob == 0.0 || !x.device().is_autodiff() {
        return x;
    }
    let mask = masks::mask(x.shape().num_elements(), prob);
    let mask = Tensor::<D>::from_data(TensorData::new(mask, x.shape()), &x.device());
    x * mask
}

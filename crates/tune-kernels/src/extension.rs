//! The kernels as a burn backend extension: the traits, whose default bodies state each
//! operation in burn's ops (what every non-flex backend runs).

use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata, backend_extension};
use burn::tensor::IntDType;

use crate::activation::Activation;
use crate::{adam, reference};

pub(crate) fn options(stride: [usize; 2], padding: [usize; 2]) -> ConvOptions<2> {
    ConvOptions::new(stride, padding, [1, 1], 1)
}

#[backend_extension(Flex, Autodiff)]
pub trait Kernels: Backend {
    /// `conv2d(x, weight) + bias`, NCHW.
    fn conv2d_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options(stride, padding))
    }

    /// Gradients of [`Kernels::conv2d_block`] for input, weight and bias; the input's is
    /// skipped (returned as zeros of its shape) when `need_x` is false.
    fn conv2d_block_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
        need_x: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let opts = options(stride, padding);
        let bias = Self::float_zeros([weight.shape()[0]].into(), &weight.device(), weight.dtype().into());
        let dw = Self::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), opts.clone());
        let db = Self::conv2d_bias_backward(x.clone(), bias, grad.clone());
        let dx = match need_x {
            true => Self::conv2d_x_backward(x, weight, grad, opts),
            false => Self::float_zeros(x.shape(), &x.device(), x.dtype().into()),
        };
        (dx, dw, db)
    }

    /// Batch normalisation with the batch's statistics, then `act`, then `pool`×`pool`
    /// max-pooling (1: none; only on `[batch, channels, h, w]`, and where the pool commutes
    /// with `act`):
    /// `(output, mean, biased variance)`; mean and variance are per channel and carry no
    /// gradient.
    fn batch_norm_train_block(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        pool: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let r = Self::batch_norm_train(x, gamma, beta, epsilon);
        let output = reference::activate::<Self>(act, r.output);
        let output = if pool > 1 { Self::max_pool2d_block(output, pool) } else { output };
        (output, r.mean, r.variance)
    }

    /// Gradients `(x, gamma, beta)` of [`Kernels::batch_norm_train_block`].
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train_block_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        pool: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let normed = Self::batch_norm(x.clone(), gamma.clone(), beta, mean.clone(), variance.clone(), epsilon);
        let activated = reference::activate::<Self>(act, normed.clone());
        let grad = if pool > 1 { Self::max_pool2d_block_backward(activated, grad, pool) } else { grad };
        let grad = reference::activate_backward::<Self>(act, normed, grad);
        let r = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
        (r.x_grad, r.gamma_grad, r.beta_grad)
    }

    /// Batch normalisation with given statistics (evaluation), then the activation and pooling as in
    /// [`Kernels::batch_norm_train_block`].
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_eval_block(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        pool: usize,
    ) -> FloatTensor<Self> {
        let output = Self::batch_norm(x, gamma, beta, mean, variance, epsilon);
        let output = reference::activate::<Self>(act, output);
        if pool > 1 { Self::max_pool2d_block(output, pool) } else { output }
    }

    /// k×k max-pooling with stride k, no padding, floor (Keras' `MaxPooling2D(k)`).
    fn max_pool2d_block(x: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        Self::max_pool2d(x, [k, k], [k, k], [0, 0], [1, 1], false)
    }

    /// Input gradient of [`Kernels::max_pool2d_block`].
    fn max_pool2d_block_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        let (kernel, padding, dilation) = ([k, k], [0, 0], [1, 1]);
        let indices =
            Self::max_pool2d_with_indices(x.clone(), kernel, kernel, padding, dilation, false, IntDType::I64).indices;
        Self::max_pool2d_with_indices_backward(x, kernel, kernel, padding, dilation, false, grad, indices).x_grad
    }
}

/// Kernels of the optimizer, which runs on plain (not autodiff) tensors; flex only — other
/// backends use burn's optimizers (tune's `training::adam`).
#[backend_extension(Flex)]
pub trait OptimizerKernels: Backend {
    /// One Adam step: `(parameter, first moment, second moment)` after it.
    fn adam_step_block(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: adam::AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

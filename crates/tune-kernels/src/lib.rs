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
pub mod fma;
pub mod geometry;
pub mod memory;
pub mod pool;
pub mod profile;
mod reference;
pub mod shifted;
pub mod simd;
mod window2;
pub mod winograd;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{IntDType, Shape, Tensor, TensorData};

use batch_norm::NormShape;
use geometry::{ConvGeometry, PoolGeometry};
use profile::{Kernel, timed};

/// Whether the model pools inside the batch-norm kernel after `act`: where the pool commutes
/// with it ([`activation::commutes_with_max_pool`]) and the 2×2 windows run vectorised
/// (AVX-512 or AVX2, [`window2`]). On baseline x86-64 the fused windows are scalar code,
/// slower than batch norm and the separate pool kernel (batch norm's backward 28 ms a step
/// against 17 ms).
pub fn fuses_pool(act: Activation) -> bool {
    simd::level() != simd::Level::Baseline && activation::commutes_with_max_pool(act)
}

/// Best fp32 GEMM rate (FLOP/s) of the `gemm` crate our kernels use: 1024×1024×1024, all
/// `threads`, best of 5 after a warm-up.
pub fn gemm_peak(threads: usize) -> f64 {
    const N: usize = 1024;
    let a: Vec<f32> = (0..N * N).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..N * N).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; N * N];
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let t = std::time::Instant::now();
        // SAFETY: a, b and c are N×N row-major, matching the strides given.
        unsafe {
            gemm::gemm(
                N,
                N,
                N,
                c.as_mut_ptr(),
                1,
                N as isize,
                false,
                a.as_ptr(),
                1,
                N as isize,
                b.as_ptr(),
                1,
                N as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (N * N * N) as f64 / best
}

fn options(stride: [usize; 2], padding: [usize; 2]) -> ConvOptions<2> {
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

/// `t` as a contiguous, unshared flex tensor whose storage is exactly its values, so they can
/// be updated in place (copies only when that is not already so).
fn flex_owned(t: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let n = t.shape().num_elements();
    let exact = t.layout().contiguous_offsets() == Some((0, n)) && t.storage::<f32>().len() == n;
    if exact { t } else { flex_tensor(flex_values(&t).into_owned(), t.shape()) }
}

impl OptimizerKernels for Flex {
    fn adam_step_block(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: adam::AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (mut p, mut m1, mut m2) = (flex_owned(param), flex_owned(moment_1), flex_owned(moment_2));
        let g = flex_values(&grad);
        // storage_mut copies a buffer still shared with another tensor (copy-on-write).
        adam::step(&step, p.storage_mut::<f32>(), &g, m1.storage_mut::<f32>(), m2.storage_mut::<f32>());
        (p, m1, m2)
    }
}

/// [`OptimizerKernels::adam_step_block`] on high-level tensors.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: adam::AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    use burn::backend::Dispatch;
    let (p, m1, m2) = <Dispatch as OptimizerKernels>::adam_step_block(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (Tensor::from_dispatch(p), Tensor::from_dispatch(m1), Tensor::from_dispatch(m2))
}

/// Contiguous f32 copy of a flex tensor's values (no copy when it already is one).
fn flex_values(t: &FloatTensor<Flex>) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => values.into(),
        // into_data makes the one contiguous copy.
        None => t.clone().into_data().try_into_vec::<f32>().expect("f32 tensor").into(),
    }
}

fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FloatTensor<Flex> {
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape.into()))
}

fn geometry(x: &Shape, w: &Shape, stride: [usize; 2], padding: [usize; 2]) -> ConvGeometry {
    assert_eq!(x[1], w[1], "conv: input channels {} but weight expects {}", x[1], w[1]);
    ConvGeometry { batch: x[0], c_in: x[1], h: x[2], w: x[3], c_out: w[0], kh: w[2], kw: w[3], stride, pad: padding }
}

impl Kernels for Flex {
    fn conv2d_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let g = geometry(&x.shape(), &weight.shape(), stride, padding);
        let y = timed(Kernel::Conv, false, || {
            conv::forward(&g, &flex_values(&x), &flex_values(&weight), &flex_values(&bias))
        });
        flex_tensor(y, [g.batch, g.c_out, g.out_h(), g.out_w()])
    }

    fn conv2d_block_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
        need_x: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x_shape, w_shape) = (x.shape(), weight.shape());
        let g = geometry(&x_shape, &w_shape, stride, padding);
        let grads = timed(Kernel::Conv, true, || {
            conv::backward(&g, &flex_values(&x), &flex_values(&weight), &flex_values(&grad), need_x)
        });
        let dx = grads.x.unwrap_or_else(|| vec![0.0; x_shape.num_elements()]);
        (flex_tensor(dx, x_shape), flex_tensor(grads.weight, w_shape), flex_tensor(grads.bias, [g.c_out]))
    }

    fn batch_norm_train_block(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        pool: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = x.shape();
        let s = NormShape::of(&shape);
        let (y, mean, var) = timed(Kernel::BatchNorm, false, || {
            batch_norm::train_forward(
                &s,
                &flex_values(&x),
                &flex_values(&gamma),
                &flex_values(&beta),
                epsilon,
                act,
                pool,
            )
        });
        (flex_tensor(y, normed_shape(shape, &s, pool)), flex_tensor(mean, [s.channels]), flex_tensor(var, [s.channels]))
    }

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
        let shape = x.shape();
        let s = NormShape::of(&shape);
        let (dx, d_gamma, d_beta) = timed(Kernel::BatchNorm, true, || {
            batch_norm::train_backward(
                &s,
                &flex_values(&x),
                &flex_values(&gamma),
                &flex_values(&beta),
                &flex_values(&mean),
                &flex_values(&variance),
                epsilon,
                act,
                pool,
                &flex_values(&grad),
            )
        });
        (flex_tensor(dx, shape), flex_tensor(d_gamma, [s.channels]), flex_tensor(d_beta, [s.channels]))
    }

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
        let shape = x.shape();
        let s = NormShape::of(&shape);
        let y = timed(Kernel::BatchNorm, false, || {
            batch_norm::inference(
                &s,
                &flex_values(&x),
                &flex_values(&gamma),
                &flex_values(&beta),
                &flex_values(&mean),
                &flex_values(&variance),
                epsilon,
                act,
                pool,
            )
        });
        flex_tensor(y, normed_shape(shape, &s, pool))
    }

    fn max_pool2d_block(x: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        let g = pool_geometry(&x.shape(), k);
        let [n, c] = [x.shape()[0], x.shape()[1]];
        flex_tensor(timed(Kernel::MaxPool, false, || pool::forward(&g, &flex_values(&x))), [n, c, g.out_h(), g.out_w()])
    }

    fn max_pool2d_block_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        let shape = x.shape();
        let g = pool_geometry(&shape, k);
        flex_tensor(timed(Kernel::MaxPool, true, || pool::backward(&g, &flex_values(&x), &flex_values(&grad))), shape)
    }
}

/// The output shape of a batch norm block: the input's, pooled by `pool` when it is > 1.
fn normed_shape(shape: Shape, s: &NormShape, pool: usize) -> Shape {
    match pool {
        1 => shape,
        _ => {
            let [h, w] = s.pooled(pool);
            [s.batch, s.channels, h, w].into()
        }
    }
}

fn pool_geometry(x: &Shape, k: usize) -> PoolGeometry {
    PoolGeometry { planes: x[0] * x[1], h: x[2], w: x[3], k }
}

/// The autodiff node of [`Kernels::conv2d_block`]: keeps input and weight, and asks the
/// inner backend for all three gradients at once.
#[derive(Debug)]
struct ConvBlockBackward;

impl<B: Kernels> Backward<B, 3> for ConvBlockBackward {
    type State = (NodeId, NodeId, [usize; 2], [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, stride, padding) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let (dx, dw, db) = B::conv2d_block_backward(x, weight, grad, stride, padding, node_x.is_some());
        for (node, g) in [(node_x, dx), (node_weight, dw), (node_bias, db)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// The autodiff node of [`Kernels::batch_norm_train_block`]: keeps input, gamma and beta
/// (as checkpoints) and the batch statistics.
#[derive(Debug)]
struct BatchNormBackward;

/// Checkpointed inputs and batch statistics of one batch-norm node.
#[derive(Debug, Clone)]
struct BatchNormState<T> {
    x: NodeId,
    gamma: NodeId,
    beta: NodeId,
    mean: T,
    variance: T,
    epsilon: f64,
    act: Activation,
    pool: usize,
}

impl<B: Kernels> Backward<B, 3> for BatchNormBackward {
    type State = BatchNormState<B::FloatTensorPrimitive>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let st = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(st.x);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(st.gamma);
        let beta = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(st.beta);
        let (dx, d_gamma, d_beta) =
            B::batch_norm_train_block_backward(x, gamma, beta, st.mean, st.variance, grad, st.epsilon, st.act, st.pool);
        for (node, g) in [(node_x, dx), (node_gamma, d_gamma), (node_beta, d_beta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// The autodiff node of [`Kernels::max_pool2d_block`]: keeps the input, from which the
/// backward pass finds each window's maximum again.
#[derive(Debug)]
struct MaxPoolBackward;

impl<B: Kernels> Backward<B, 1> for MaxPoolBackward {
    type State = (NodeId, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, k) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::max_pool2d_block_backward(x, grad, k));
        }
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn max_pool2d_block(x: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        match MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish((x_state, k), B::max_pool2d_block(x.into_primitive(), k))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool2d_block(x.into_primitive(), k)),
        }
    }

    fn batch_norm_train_block(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        pool: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful();
        let forward = |x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>| {
            B::batch_norm_train_block(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
                act,
                pool,
            )
        };
        let (output, mean, variance) = match prep {
            OpsKind::Tracked(mut prep) => {
                let (x_id, gamma_id, beta_id) = (prep.checkpoint(&x), prep.checkpoint(&gamma), prep.checkpoint(&beta));
                let (y, mean, variance) = forward(x, gamma, beta);
                let state = BatchNormState {
                    x: x_id,
                    gamma: gamma_id,
                    beta: beta_id,
                    mean: mean.clone(),
                    variance: variance.clone(),
                    epsilon,
                    act,
                    pool,
                };
                (prep.finish(state, y), mean, variance)
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, variance) = forward(x, gamma, beta);
                (prep.finish(y), mean, variance)
            }
        };
        (output, FloatTensor::<Self>::new(mean), FloatTensor::<Self>::new(variance))
    }

    fn conv2d_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        match ConvBlockBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = B::conv2d_block(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    stride,
                    padding,
                );
                prep.finish((x_state, weight_state, stride, padding), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_block(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
                padding,
            )),
        }
    }
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
    use burn::backend::Dispatch;
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
    use burn::backend::Dispatch;
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
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as Kernels>::max_pool2d_block(x.into_dispatch(), k))
}

/// [`Kernels::conv2d_block`] on high-level tensors.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: [usize; 2], padding: [usize; 2]) -> Tensor<4> {
    use burn::backend::Dispatch;
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
    let mask = dropout::mask(x.shape().num_elements(), prob);
    let mask = Tensor::<D>::from_data(TensorData::new(mask, x.shape()), &x.device());
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, module};

    /// Largest absolute difference relative to the largest reference value.
    fn rel(a: TensorData, b: TensorData) -> f32 {
        let (a, b) = (a.try_to_vec::<f32>().unwrap(), b.try_to_vec::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max) / scale
    }

    /// Prints the relative errors (`--nocapture` shows them) and fails on any above 1e-5.
    fn check(label: &str, errors: &[(&str, f32)]) {
        println!("{label}: {errors:?}");
        for (what, err) in errors {
            assert!(*err < 1e-5, "{label} {what}: relative error {err}");
        }
    }

    /// Max-pooling, batch norm + activation and batch norm + activation + pool against burn's
    /// ops, forward and input/parameter gradients. GELU's gradients are left out: burn's
    /// backward is the tanh approximation's derivative (ours is exact, checked against the
    /// default bodies below).
    #[test]
    fn pool_and_batch_norm_match_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(5);
        use Activation as A;
        let cases = [
            ([3, 4, 8, 8], 2, A::Linear),
            ([2, 3, 7, 9], 3, A::Relu),
            ([5, 2, 5, 4], 2, A::Relu),
            ([6, 5, 1, 1], 1, A::Relu),
            ([3, 4, 8, 8], 2, A::Elu),
            ([2, 3, 7, 9], 3, A::Selu),
            ([5, 2, 5, 4], 2, A::LeakyRelu),
            ([4, 3, 6, 6], 2, A::Tanh),
            ([4, 3, 6, 7], 2, A::Sigmoid),
            ([6, 5, 1, 1], 1, A::Elu),
            ([4, 3, 6, 6], 1, A::Gelu),
        ];
        for (dims, k, act) in cases {
            let x = Tensor::<4>::random(dims, Distribution::Normal(1.0, 2.0), &device).require_grad();
            let gamma = Tensor::<1>::random([dims[1]], Distribution::Uniform(0.5, 1.5), &device).require_grad();
            let beta = Tensor::<1>::random([dims[1]], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
            let pooled_ours = max_pool2d(x.clone(), k);
            let pooled_theirs = burn::nn::pool::MaxPool2dConfig::new([k, k]).init().forward(x.clone());
            let (normed_ours, mean_ours, var_ours) =
                batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-3, act, 1);
            let (fused_ours, ..) = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-3, act, k);
            let mut theirs = module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-3);
            theirs.output = crate::activation::burn_activation(act, theirs.output);
            let fused_theirs = burn::nn::pool::MaxPool2dConfig::new([k, k]).init().forward(theirs.output.clone());
            let probe_p = Tensor::<4>::random(pooled_ours.dims(), Distribution::Default, &device);
            let probe_n = Tensor::<4>::random(dims, Distribution::Default, &device);
            let probe_f = Tensor::<4>::random(fused_ours.dims(), Distribution::Default, &device);
            let objective = |pooled: Tensor<4>, normed: Tensor<4>, fused: Tensor<4>| {
                (pooled * probe_p.clone()).sum() + (normed * probe_n.clone()).sum() + (fused * probe_f.clone()).sum()
            };
            let grads_ours = objective(pooled_ours.clone(), normed_ours.clone(), fused_ours.clone()).backward();
            let grads_theirs = objective(pooled_theirs.clone(), theirs.output.clone(), fused_theirs.clone()).backward();
            let g = |t: &Tensor<4>, grads| t.grad(grads).unwrap().into_data();
            let g1 = |t: &Tensor<1>, grads| t.grad(grads).unwrap().into_data();
            let mut errors = vec![
                ("pool output", rel(pooled_ours.into_data(), pooled_theirs.into_data())),
                ("norm output", rel(normed_ours.into_data(), theirs.output.into_data())),
                ("norm mean", rel(mean_ours.into_data(), theirs.mean.into_data())),
                ("norm variance", rel(var_ours.into_data(), theirs.variance.into_data())),
                ("fused output", rel(fused_ours.into_data(), fused_theirs.into_data())),
            ];
            if act != A::Gelu {
                errors.extend([
                    ("d_input (pool + norm + fused)", rel(g(&x, &grads_ours), g(&x, &grads_theirs))),
                    ("d_gamma", rel(g1(&gamma, &grads_ours), g1(&gamma, &grads_theirs))),
                    ("d_beta", rel(g1(&beta, &grads_ours), g1(&beta, &grads_theirs))),
                ]);
            }
            check(&format!("x {dims:?} pool {k} {act:?}"), &errors);
        }
    }

    /// The activations in burn's ops ([`reference`], the trait's default bodies) compute what
    /// our flex kernels do, for every activation: evaluation through Autodiff's default body
    /// against our training output at the same statistics, pooled and not, and the gradient
    /// passed back by [`reference::activate_backward`] into the plain batch-norm backward
    /// against ours. (Burn's autodiff cannot run the pool's or batch norm's backward outside a
    /// graph, so the default backward body itself cannot be called here.)
    #[test]
    fn default_bodies_in_burns_ops_state_what_our_kernels_compute() {
        type Ad = Autodiff<Flex>;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let mut random = |n: usize, lo: f32, hi: f32| (0..n).map(|_| rng.random_range(lo..hi)).collect::<Vec<f32>>();
        let values = |t: FloatTensor<Flex>| {
            let v = flex_values(&t).into_owned();
            let n = v.len();
            TensorData::new(v, [n])
        };
        let flex = |v: &[f32], shape: &[usize]| flex_tensor(v.to_vec(), shape.to_vec());
        let ad = |t: FloatTensor<Flex>| FloatTensor::<Ad>::new(t);
        for act in Activation::ALL {
            for (dims, pool) in [([3, 4, 8, 8], 2), ([4, 3, 7, 9], 3), ([5, 6, 1, 1], 1), ([2, 3, 6, 5], 1)] {
                if pool > 1 && !activation::commutes_with_max_pool(act) {
                    continue;
                }
                let n: usize = dims.iter().product();
                let (x, gamma, beta) = (random(n, -3.0, 3.0), random(dims[1], 0.5, 1.5), random(dims[1], -1.0, 1.0));
                let c = [dims[1]];
                let (y, mean, var) =
                    Flex::batch_norm_train_block(flex(&x, &dims), flex(&gamma, &c), flex(&beta, &c), 1e-3, act, pool);
                let dy = random(y.shape().num_elements(), -1.0, 1.0);
                let reference = Ad::batch_norm_eval_block(
                    ad(flex(&x, &dims)),
                    ad(flex(&gamma, &c)),
                    ad(flex(&beta, &c)),
                    ad(mean.clone()),
                    ad(var.clone()),
                    1e-3,
                    act,
                    pool,
                );
                let mut errors = vec![("output", rel(values(y), values(reference.into_primitive())))];
                if pool == 1 {
                    let backward = |act: Activation, dy: FloatTensor<Flex>| {
                        Flex::batch_norm_train_block_backward(
                            flex(&x, &dims),
                            flex(&gamma, &c),
                            flex(&beta, &c),
                            mean.clone(),
                            var.clone(),
                            dy,
                            1e-3,
                            act,
                            1,
                        )
                    };
                    let z = Flex::batch_norm_eval_block(
                        flex(&x, &dims),
                        flex(&gamma, &c),
                        flex(&beta, &c),
                        mean.clone(),
                        var.clone(),
                        1e-3,
                        Activation::Linear,
                        1,
                    );
                    let ours = backward(act, flex(&dy, &dims));
                    let theirs =
                        backward(Activation::Linear, reference::activate_backward::<Flex>(act, z, flex(&dy, &dims)));
                    errors.extend([
                        ("d_input", rel(values(ours.0), values(theirs.0))),
                        ("d_gamma", rel(values(ours.1), values(theirs.1))),
                        ("d_beta", rel(values(ours.2), values(theirs.2))),
                    ]);
                }
                check(&format!("{act:?} x {dims:?} pool {pool}"), &errors);
            }
        }
    }

    /// Our flex kernels against burn's own conv2d, forward and all three gradients, through
    /// autodiff, on random shapes; the relative errors are printed (`--nocapture`).
    #[test]
    fn conv2d_block_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(7);
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for case in 0..8 {
            let (batch, c_in, c_out) = (rng.random_range(1..6), rng.random_range(1..5), rng.random_range(1..7));
            let (kh, kw) = (rng.random_range(1..4), rng.random_range(1..4));
            let (h, w) = (rng.random_range(kh..12), rng.random_range(kw..12));
            let stride = [rng.random_range(1..3), rng.random_range(1..3)];
            let padding = [rng.random_range(0..kh), rng.random_range(0..kw)];
            let random = |shape: Vec<usize>| Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
            let x = random(vec![batch, c_in, h, w]).require_grad();
            let weight = random(vec![c_out, c_in, kh, kw]).require_grad();
            let bias = Tensor::<1>::random([c_out], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
            // A random linear functional of the output, so every output element has its own gradient.
            let [_, _, oh, ow] =
                module::conv2d(x.clone(), weight.clone(), Some(bias.clone()), options(stride, padding)).dims();
            let probe = random(vec![batch, c_out, oh, ow]);

            let ours = conv2d(x.clone(), weight.clone(), bias.clone(), stride, padding);
            let theirs = module::conv2d(x.clone(), weight.clone(), Some(bias.clone()), options(stride, padding));
            let grads_ours = (ours.clone() * probe.clone()).sum().backward();
            let grads_theirs = (theirs.clone() * probe).sum().backward();
            let errors = [
                ("output", rel(ours.into_data(), theirs.into_data())),
                ("d_input", rel(x.grad(&grads_ours).unwrap().into_data(), x.grad(&grads_theirs).unwrap().into_data())),
                (
                    "d_weight",
                    rel(weight.grad(&grads_ours).unwrap().into_data(), weight.grad(&grads_theirs).unwrap().into_data()),
                ),
                (
                    "d_bias",
                    rel(bias.grad(&grads_ours).unwrap().into_data(), bias.grad(&grads_theirs).unwrap().into_data()),
                ),
            ];
            let norm = x.grad(&grads_ours).unwrap().abs().sum().into_scalar::<f32>();
            assert!(norm > 0.0, "the input gradient is not all zero");
            check(
                &format!(
                    "case {case}: x [{batch},{c_in},{h},{w}] w [{c_out},{c_in},{kh},{kw}] stride {stride:?} pad {padding:?}"
                ),
                &errors,
            );
        }
    }

    /// burn-flex's matmul (the dense layers, forward and both gradients) at the seed's sizes,
    /// plain and with transposed operands, against an f64 reference: the GEMM's widest
    /// kernels (AVX-512 where the CPU has it) only engage at sizes like these.
    #[test]
    fn dense_matmuls_at_the_seeds_sizes_match_an_f64_reference() {
        let device = Device::flex();
        device.seed(3);
        for (m, k, n) in [(100, 6272, 512), (6272, 100, 512), (100, 512, 6272), (37, 300, 65)] {
            let a = Tensor::<2>::random([m, k], Distribution::Uniform(-1.0, 1.0), &device);
            let b = Tensor::<2>::random([k, n], Distribution::Uniform(-1.0, 1.0), &device);
            // The same products through transposed views, as autodiff's gradients take them.
            let at = Tensor::<2>::from_data(a.clone().transpose().into_data(), &device).transpose();
            let bt = Tensor::<2>::from_data(b.clone().transpose().into_data(), &device).transpose();
            let (av, bv) = (
                a.clone().into_data().try_to_vec::<f32>().unwrap(),
                b.clone().into_data().try_to_vec::<f32>().unwrap(),
            );
            let mut reference = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    reference[i * n + j] =
                        (0..k).map(|l| av[i * k + l] as f64 * bv[l * n + j] as f64).sum::<f64>() as f32;
                }
            }
            let reference = TensorData::new(reference, [m, n]);
            let errors = [
                ("a·b", rel(a.clone().matmul(b.clone()).into_data(), reference.clone())),
                ("aᵀᵀ·b", rel(at.matmul(b.clone()).into_data(), reference.clone())),
                ("a·bᵀᵀ", rel(a.matmul(bt).into_data(), reference)),
            ];
            check(&format!("matmul {m}×{k}·{k}×{n}"), &errors);
        }
    }

    #[test]
    fn input_gradient_is_skipped_only_where_nothing_needs_it() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::ones([2, 1, 5, 5], &device);
        let weight = Tensor::<4>::ones([3, 1, 3, 3], &device).require_grad();
        let bias = Tensor::<1>::zeros([3], &device).require_grad();
        let grads = conv2d(x.clone(), weight.clone(), bias, [1, 1], [1, 1]).sum().backward();
        assert!(x.grad(&grads).is_none());
        // Each 3×3 weight sees the interior of a 5×5 ones image at 9 of 25 positions fully...
        let dw = weight.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        // ...the centre tap sees every pixel of both images.
        assert_eq!(dw[4], 50.0);
    }
}

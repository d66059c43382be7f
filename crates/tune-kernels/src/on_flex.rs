//! The kernels on flex: each operation reads its tensors' values, runs our kernel and wraps
//! the result as a flex tensor again.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{Shape, TensorData};

use crate::activation::Activation;
use crate::batch_norm::{self, NormShape};
use crate::extension::{Kernels, OptimizerKernels};
use crate::geometry::{ConvGeometry, PoolGeometry};
use crate::profile::{Kernel, timed};
use crate::{adam, conv, pool};

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

/// Contiguous f32 copy of a flex tensor's values (no copy when it already is one).
pub(crate) fn flex_values(t: &FloatTensor<Flex>) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => values.into(),
        // into_data makes the one contiguous copy.
        None => t.clone().into_data().try_into_vec::<f32>().expect("f32 tensor").into(),
    }
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FloatTensor<Flex> {
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

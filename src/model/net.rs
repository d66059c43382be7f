//! The CNN as a burn module, built from a checked [`Architecture`].

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};

use super::params::{Activation, Architecture, Init};
use super::shape::{ShapeError, infer};
use crate::data::CLASSES;

/// Weight of each batch in the running statistics (PyTorch's default; burn weights the new
/// batch, so Keras' 0.99 would be 0.01 here). With 0.01 the running statistics lagged so far
/// behind the weights that the first epoch evaluated at val_acc 0.10 (10k images) and 0.75
/// (50k); with 0.1, 0.86 and above.
const BN_MOMENTUM: f64 = 0.1;
const BN_EPSILON: f64 = 1e-3;

fn batch_norm(features: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(features).with_momentum(BN_MOMENTUM).with_epsilon(BN_EPSILON).init(device)
}

/// Weight initialisers (burn draws the biases from the same distribution; every conv and
/// hidden dense layer feeds a batch norm, which cancels a bias).
fn initializer(init: Init) -> Initializer {
    match init {
        Init::Glorot => Initializer::XavierUniform { gain: 1.0 },
        // ±√(3 · gain² / fan_in) with gain² = 1/3: PyTorch's kaiming_uniform(a = √5).
        Init::Torch => Initializer::KaimingUniform { gain: 1.0 / 3f64.sqrt(), fan_out_only: false },
    }
}

/// `act(bn.forward(x))`, then max-pooled over `pool`×`pool` windows unless `pool` is 1,
/// through our batch-norm kernels ([`crate::kernels`]), with burn's semantics: batch
/// statistics and a running-statistics update when training on an autodiff device, the
/// running statistics otherwise. Only our kernels pool: other backends pass `pool` 1.
fn normalize<const D: usize>(bn: &BatchNorm, x: Tensor<D>, act: Activation, pool: usize) -> Tensor<D> {
    if !crate::backend::uses_kernels() {
        assert_eq!(pool, 1, "burn's batch norm does not pool");
        return apply(act, bn.forward(x));
    }
    let device = x.device();
    if !(device.is_autodiff() && bn.training.is_enabled()) {
        let mean = bn.running_mean.value().to_device(&device);
        let var = bn.running_var.value().to_device(&device);
        return crate::kernels::batch_norm_eval(x, bn.gamma.val(), bn.beta.val(), mean, var, bn.epsilon, act, pool);
    }
    let (y, mean, var) = crate::kernels::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, act, pool);
    let m = bn.momentum;
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running.to_device(&device).mul_scalar(1.0 - m).add(batch.detach().mul_scalar(m)).detach()
    };
    bn.running_mean.update(blend(bn.running_mean.value_sync(), mean));
    bn.running_var.update(blend(bn.running_var.value_sync(), var));
    y
}

/// `act` in burn's ops (where our kernels do not run, and after the dense layers).
pub(crate) fn apply<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    tune_kernels::activation::burn_activation(act, x)
}

#[derive(Module, Debug)]
pub struct ConvLayer {
    conv: Conv2d,
    bn: BatchNorm,
    pool: Option<MaxPool2d>,
    /// A residual block's skip where the shape changes: 1×1 convolution and batch norm.
    projection: Option<Projection>,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    residual: bool,
}

/// The 1×1 convolution (at the block's stride) and batch norm of a shape-changing skip.
#[derive(Module, Debug)]
pub struct Projection {
    conv: Conv2d,
    bn: BatchNorm,
}

/// `conv.forward(x)`, through our kernels ([`crate::kernels`]) where they apply.
fn convolve(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match (kernel_padding(conv), &conv.bias) {
        (Some(padding), Some(bias)) => crate::kernels::conv2d(x, conv.weight.val(), bias.val(), conv.stride, padding),
        _ => conv.forward(x),
    }
}

/// The (rows, columns) padding our convolution kernel takes, when it applies: on flex, with
/// symmetric explicit padding, no dilation and no groups — every layer `Cnn::new` builds.
fn kernel_padding(conv: &Conv2d) -> Option<[usize; 2]> {
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if crate::backend::uses_kernels()
                && top == bottom
                && left == right
                && conv.dilation == [1, 1]
                && conv.groups == 1 =>
        {
            Some([top, left])
        }
        _ => None,
    }
}

impl ConvLayer {
    /// A residual block: `act(bn(conv(x)) + skip(x))`, then the pool. The batch norms run in
    /// our kernels; the add and the activation are burn's element-wise ops, since the
    /// activation cannot be fused into a batch norm that comes before the add.
    fn residual_forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.projection {
            Some(p) => normalize(&p.bn, convolve(&p.conv, x.clone()), Activation::Linear, 1),
            None => x.clone(),
        };
        let y = apply(self.activation, normalize(&self.bn, convolve(&self.conv, x), Activation::Linear, 1) + skip);
        match &self.pool {
            Some(pool) if crate::backend::uses_kernels() => crate::kernels::max_pool2d(y, pool.kernel_size[0]),
            Some(pool) => pool.forward(y),
            None => y,
        }
    }
}

#[derive(Module, Debug)]
pub struct DenseLayer {
    bn: BatchNorm,
    dropout: Dropout,
    dense: Linear,
    /// `None` on the output layer, whose softmax lives in the loss.
    #[module(skip)]
    activation: Option<Activation>,
}

/// The seed's CNN: conv blocks, flatten, fc blocks, 10-way output (logits).
#[derive(Module, Debug)]
pub struct Cnn {
    conv: Vec<ConvLayer>,
    dense: Vec<DenseLayer>,
}

impl Cnn {
    /// Builds the network; fails (without allocating) when the shapes collapse.
    pub fn new(arch: &Architecture, device: &Device) -> Result<Cnn, ShapeError> {
        let summary = infer(arch)?;
        let mut channels = 1;
        let conv = arch
            .conv
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let conv = |c_in, filter, stride, pad| {
                    Conv2dConfig::new([c_in, b.channels], [filter, filter])
                        .with_stride([stride, stride])
                        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                        .with_initializer(initializer(arch.init))
                        .init(device)
                };
                let projected = summary.has_layer(&format!("conv{i}_skip"));
                let layer = ConvLayer {
                    conv: conv(channels, b.filter, b.stride, b.pad),
                    bn: batch_norm(b.channels, device),
                    pool: (b.pool > 1).then(|| MaxPool2dConfig::new([b.pool, b.pool]).init()),
                    projection: projected.then(|| Projection {
                        conv: conv(channels, 1, b.stride, 0),
                        bn: batch_norm(b.channels, device),
                    }),
                    activation: b.activation,
                    residual: b.residual,
                };
                channels = b.channels;
                layer
            })
            .collect();
        let mut features = summary.flat_features();
        let heads = arch.fc.iter().map(|b| (b.neurons, Some(b.activation))).chain([(CLASSES, None)]);
        let dense = heads
            .map(|(neurons, activation)| {
                let layer = DenseLayer {
                    bn: batch_norm(features, device),
                    dropout: DropoutConfig::new(arch.drop_rate).init(),
                    dense: LinearConfig::new(features, neurons).with_initializer(initializer(arch.init)).init(device),
                    activation,
                };
                features = neurons;
                layer
            })
            .collect();
        Ok(Cnn { conv, dense })
    }

    /// Images `[batch, 1, 28, 28]` in [0, 1] → logits `[batch, 10]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for layer in &self.conv {
            if layer.residual {
                x = layer.residual_forward(x);
                continue;
            }
            // The activation runs inside the batch-norm kernel, and so does the pool after it
            // where that is faster: the full-size activation is then never stored.
            let fused_pool = match &layer.pool {
                Some(pool) if crate::backend::uses_kernels() && crate::kernels::fuses_pool(layer.activation) => {
                    pool.kernel_size[0]
                }
                _ => 1,
            };
            x = normalize(&layer.bn, convolve(&layer.conv, x), layer.activation, fused_pool);
            if let Some(pool) = layer.pool.as_ref().filter(|_| fused_pool == 1) {
                x = match crate::backend::uses_kernels() {
                    true => crate::kernels::max_pool2d(x, pool.kernel_size[0]),
                    false => pool.forward(x),
                };
            }
        }
        let mut x: Tensor<2> = x.flatten(1, 3);
        for layer in &self.dense {
            let x_norm = normalize(&layer.bn, x, Activation::Linear, 1);
            let dropped = match crate::backend::uses_kernels() {
                true => crate::kernels::dropout(x_norm, layer.dropout.prob),
                false => layer.dropout.forward(x_norm),
            };
            x = layer.dense.forward(dropped);
            if let Some(act) = layer.activation {
                x = apply(act, x);
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_counts_the_same_parameters_as_shape_inference() {
        let device = Device::flex();
        let arch = Architecture::default();
        let model = Cnn::new(&arch, &device).unwrap();
        assert_eq!(model.num_params(), 3_467_402);
        let small = Architecture { fc: vec![], ..Architecture::default() };
        let model = Cnn::new(&small, &device).unwrap();
        assert_eq!(model.num_params(), infer(&small).unwrap().total());
    }

    #[test]
    fn initialisers_draw_within_their_bounds() {
        let device = Device::flex();
        // The first dense layer of the seed's model: fan_in 6,272, fan_out 512.
        let largest = |init: Init| {
            let model = Cnn::new(&Architecture { init, ..Architecture::default() }, &device).unwrap();
            let w: Vec<f32> = model.dense[0].dense.weight.val().into_data().try_to_vec::<f32>().unwrap();
            w.iter().fold(0f32, |m, v| m.max(v.abs())) as f64
        };
        let torch_bound = (1.0 / 6272f64).sqrt();
        let glorot_bound = (6.0 / (6272.0 + 512.0f64)).sqrt();
        let t = largest(Init::Torch);
        assert!(t <= torch_bound * (1.0 + 1e-6) && t > 0.99 * torch_bound, "torch: {t} vs ±{torch_bound}");
        let g = largest(Init::Glorot);
        assert!(g <= glorot_bound * (1.0 + 1e-6) && g > 0.99 * glorot_bound, "glorot: {g} vs ±{glorot_bound}");
    }

    #[test]
    fn forward_gives_logits_per_class() {
        let device = Device::flex();
        let mut arch = Architecture::default();
        arch.conv.iter_mut().for_each(|b| b.channels = 4);
        arch.fc = vec![];
        let model = Cnn::new(&arch, &device).unwrap();
        let out = model.valid().forward(Tensor::zeros([3, 1, 28, 28], &device));
        assert_eq!(out.dims(), [3, CLASSES]);
    }

    /// Dropout acts in training only: two training passes differ, evaluation passes repeat,
    /// and a reseeded mask stream repeats a training pass exactly.
    #[test]
    fn dropout_acts_in_training_only_and_repeats_after_a_reseed() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let mut arch = Architecture::default();
        arch.conv.iter_mut().for_each(|b| b.channels = 4);
        arch.drop_rate = 0.5;
        let model = Cnn::new(&arch, &device).unwrap();
        let x = Tensor::<4>::random([4, 1, 28, 28], burn::tensor::Distribution::Default, &device);
        let diff = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>();
        crate::kernels::dropout::seed(9);
        let first = model.forward(x.clone());
        assert!(diff(first.clone(), model.forward(x.clone())) > 1e-4, "training passes draw new masks");
        if crate::backend::uses_kernels() {
            // Our masks (libtorch and CUDA builds use burn's dropout and its generator).
            crate::kernels::dropout::seed(9);
            assert_eq!(diff(first, model.forward(x.clone())), 0.0);
        }
        let valid = model.valid();
        let xv = x.inner();
        assert_eq!((valid.forward(xv.clone()) - valid.forward(xv)).abs().max().into_scalar::<f32>(), 0.0);
    }

    /// Our batch norm against burn's module, in training (output and the running statistics it
    /// leaves) and in evaluation, with each activation fused (our values and burn's agree
    /// within rounding).
    #[test]
    fn our_batch_norm_computes_what_burns_does() {
        let device = Device::flex().autodiff();
        for dims in [[6, 3, 5, 5], [10, 7, 1, 1]] {
            let ours = batch_norm(dims[1], &device);
            let theirs = batch_norm(dims[1], &device);
            let x = Tensor::<4>::random(dims, burn::tensor::Distribution::Normal(2.0, 3.0), &device);
            let max_diff = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
            for act in Activation::ALL {
                // Each call moves the running statistics once more, ours and burn's alike.
                let diff = max_diff(normalize(&ours, x.clone(), act, 1), apply(act, theirs.forward(x.clone())));
                assert!(diff < 1e-5, "{act:?} differs by {diff}");
            }
            for (a, b) in [(&ours.running_mean, &theirs.running_mean), (&ours.running_var, &theirs.running_var)] {
                let d = (a.value() - b.value()).abs().max().into_scalar::<f32>();
                assert!(d < 1e-5, "running statistics differ by {d}");
            }
            let (ours, theirs) = (ours.valid(), theirs.valid());
            let x = x.inner();
            for act in Activation::ALL {
                let diff = (normalize(&ours, x.clone(), act, 1) - apply(act, theirs.forward(x.clone())))
                    .abs()
                    .max()
                    .into_scalar::<f32>();
                assert!(diff < 1e-5, "evaluation with {act:?} differs by {diff}");
            }
        }
    }

    /// The network in burn's own modules and ops only (no kernel of ours), for comparison.
    fn reference_forward(model: &Cnn, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for l in &model.conv {
            let mut y = l.bn.forward(l.conv.forward(x.clone()));
            if l.residual {
                y = y + match &l.projection {
                    Some(p) => p.bn.forward(p.conv.forward(x)),
                    None => x,
                };
            }
            x = apply(l.activation, y);
            if let Some(pool) = &l.pool {
                x = pool.forward(x);
            }
        }
        let mut x: Tensor<2> = x.flatten(1, 3);
        for l in &model.dense {
            x = l.dense.forward(l.dropout.forward(l.bn.forward(x)));
            if let Some(act) = l.activation {
                x = apply(act, x);
            }
        }
        x
    }

    /// Residual blocks (identity skips and projections, strided and pooled, three
    /// activations) through our kernels against the same network in burn's ops: the logits,
    /// and the gradients of the input and of every convolution's weights, skips included.
    #[test]
    fn residual_blocks_compute_what_burns_ops_do_forward_and_backward() {
        use super::super::params::{ConvBlock, FcBlock};
        let device = Device::flex().autodiff();
        device.seed(2);
        let block = |channels, stride, pool, activation| ConvBlock {
            pad: 1,
            channels,
            filter: 3,
            stride,
            pool,
            activation,
            residual: true,
        };
        let arch = Architecture {
            conv: vec![
                block(6, 1, 1, Activation::Relu),
                block(6, 1, 2, Activation::Elu),
                block(8, 2, 1, Activation::Gelu),
            ],
            fc: vec![FcBlock { neurons: 12, activation: Activation::Relu }],
            drop_rate: 0.0,
            init: Init::Torch,
        };
        let model = Cnn::new(&arch, &device).unwrap();
        let projected: Vec<bool> = model.conv.iter().map(|l| l.projection.is_some()).collect();
        assert_eq!(projected, [true, false, true], "1→6 and stride 2 project; 6→6 is the identity");
        assert_eq!(model.num_params(), infer(&arch).unwrap().total());
        let x =
            Tensor::<4>::random([5, 1, 28, 28], burn::tensor::Distribution::Normal(0.5, 0.3), &device).require_grad();
        let (ours, theirs) = (model.forward(x.clone()), reference_forward(&model, x.clone()));
        let diff = (ours.clone() - theirs.clone()).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "logits differ by {diff}");
        let (g_ours, g_theirs) = (ours.powi_scalar(2).sum().backward(), theirs.powi_scalar(2).sum().backward());
        let compare = |what: &str, a: Tensor<4>, b: Tensor<4>| {
            let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-6);
            let d = (a - b).abs().max().into_scalar::<f32>() / scale;
            println!("{what}: relative difference {d:e}");
            assert!(d < 1e-3, "{what}: gradients differ by {d} of their largest");
        };
        compare("input", x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
        for (i, l) in model.conv.iter().enumerate() {
            let w = &l.conv.weight;
            compare(&format!("conv{i}"), w.grad(&g_ours).unwrap(), w.grad(&g_theirs).unwrap());
            if let Some(p) = &l.projection {
                let w = &p.conv.weight;
                compare(&format!("conv{i}_skip"), w.grad(&g_ours).unwrap(), w.grad(&g_theirs).unwrap());
            }
        }
    }

    #[test]
    fn our_convolution_computes_what_burns_conv2d_does() {
        let device = Device::flex();
        let model = Cnn::new(&Architecture::default(), &device).unwrap();
        let x = Tensor::<4>::random([2, 1, 28, 28], burn::tensor::Distribution::Default, &device);
        // The default build takes our kernel for every layer the model builds (libtorch and
        // CUDA builds keep burn's).
        let ours = model.conv.iter().all(|l| kernel_padding(&l.conv) == Some([1, 1]) && l.conv.bias.is_some());
        assert_eq!(ours, crate::backend::uses_kernels());
        let layer = &model.conv[0];
        let diff = (convolve(&layer.conv, x.clone()) - layer.conv.forward(x)).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "max difference {diff}");
    }
}

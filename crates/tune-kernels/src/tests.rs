//! The backend extension against burn's ops, forward and backward.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::{Device, Distribution, Tensor, TensorData, module};

use super::*;
use crate::extension::options;
use crate::on_flex::{flex_tensor, flex_values};

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
        let (normed_ours, mean_ours, var_ours) = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-3, act, 1);
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
            ("d_bias", rel(bias.grad(&grads_ours).unwrap().into_data(), bias.grad(&grads_theirs).unwrap().into_data())),
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
        let (av, bv) =
            (a.clone().into_data().try_to_vec::<f32>().unwrap(), b.clone().into_data().try_to_vec::<f32>().unwrap());
        let mut reference = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                reference[i * n + j] = (0..k).map(|l| av[i * k + l] as f64 * bv[l * n + j] as f64).sum::<f64>() as f32;
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

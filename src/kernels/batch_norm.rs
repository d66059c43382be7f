//! Batch normalisation over `[batch, channels, spatial…]` f32 values, training forward and
//! backward, in a few fused passes.
//!
//! Why our own: burn's generic batch-norm builds each channel statistic by swapping the batch
//! and channel axes (a full transposed copy of the activation) and then runs about ten
//! separate element-wise passes forward and fifteen backward; on flex those copies were the
//! second-largest cost of a training step after the convolutions. Here: two reading passes
//! and one writing pass forward, one of each backward.

use rayon::prelude::*;

/// `[batch, channels, spatial]` view of an activation (`spatial` = product of trailing axes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl NormShape {
    pub fn of(dims: &[usize]) -> NormShape {
        assert!(dims.len() >= 2, "batch norm needs [batch, channels, ...], got {dims:?}");
        NormShape { batch: dims[0], channels: dims[1], spatial: dims[2..].iter().product() }
    }

    fn image(&self) -> usize {
        self.channels * self.spatial
    }

    /// Values per channel.
    fn count(&self) -> f64 {
        (self.batch * self.spatial) as f64
    }
}

/// Images per rayon task.
const MIN_IMAGES_PER_TASK: usize = 8;

/// Sum of `f(a, b)` over one contiguous block, in eight independent f32 lanes (so it
/// vectorises) added up in f64.
fn block_sum<const K: usize>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> [f32; K]) -> [f64; K] {
    let mut lanes = [[0.0f32; 8]; K];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a8.remainder(), b8.remainder());
    for (ca, cb) in a8.zip(b8) {
        for i in 0..8 {
            let v = f(ca[i], cb[i]);
            for k in 0..K {
                lanes[k][i] += v[k];
            }
        }
    }
    let mut out = [0.0f64; K];
    for k in 0..K {
        out[k] = lanes[k].iter().map(|&v| v as f64).sum();
    }
    for (&va, &vb) in a_rest.iter().zip(b_rest) {
        let v = f(va, vb);
        for k in 0..K {
            out[k] += v[k] as f64;
        }
    }
    out
}

/// Per-channel sums over batch and spatial positions of `per_channel(c)(a, b)`; the factory
/// hands each channel's constants to a small element function the compiler can vectorise.
fn channel_sums<const K: usize, G: Fn(f32, f32) -> [f32; K]>(
    s: &NormShape,
    a: &[f32],
    b: &[f32],
    per_channel: impl Fn(usize) -> G + Sync,
) -> Vec<[f64; K]> {
    let add = |acc: &mut [f64; K], part: [f64; K]| acc.iter_mut().zip(part).for_each(|(p, q)| *p += q);
    a.par_chunks(s.image())
        .zip(b.par_chunks(s.image()))
        .with_min_len(MIN_IMAGES_PER_TASK)
        .fold(
            || vec![[0.0f64; K]; s.channels],
            |mut acc, (ia, ib)| {
                for (c, (ca, cb)) in ia.chunks(s.spatial).zip(ib.chunks(s.spatial)).enumerate() {
                    let f = per_channel(c);
                    if s.spatial < 8 {
                        // Dense layers (one value per channel): lanes would cost more than they save.
                        for (&va, &vb) in ca.iter().zip(cb) {
                            add(&mut acc[c], f(va, vb).map(f64::from));
                        }
                    } else {
                        add(&mut acc[c], block_sum(ca, cb, f));
                    }
                }
                acc
            },
        )
        .reduce_with(|mut x, y| {
            x.iter_mut().zip(y).for_each(|(p, q)| add(p, q));
            x
        })
        .unwrap_or_else(|| vec![[0.0; K]; s.channels])
}

/// `out[n, c, i] = per_channel(c)(a[n, c, i], b[n, c, i])`, one pass, the output written once
/// (never zeroed first).
fn channel_map<G: Fn(f32, f32) -> f32>(s: &NormShape, a: &[f32], b: &[f32], per_channel: impl Fn(usize) -> G + Sync) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(a.len());
    out.spare_capacity_mut()
        .par_chunks_mut(s.image().max(1))
        .zip(a.par_chunks(s.image().max(1)))
        .zip(b.par_chunks(s.image().max(1)))
        .with_min_len(MIN_IMAGES_PER_TASK)
        .for_each(|((on, an), bn)| {
            for (c, ((o, x), y)) in on.chunks_mut(s.spatial).zip(an.chunks(s.spatial)).zip(bn.chunks(s.spatial)).enumerate() {
                let f = per_channel(c);
                o.iter_mut().zip(x).zip(y).for_each(|((o, &x), &y)| {
                    o.write(f(x, y));
                });
            }
        });
    // SAFETY: the chunks above cover all `a.len()` slots (s.image() divides a.len(), checked
    // by the callers' size assertions) and every slot was written.
    unsafe { out.set_len(a.len()) };
    out
}

/// ReLU as burn computes it: values `<= 0` become 0, NaN passes.
fn relu(z: f32) -> f32 {
    if z <= 0.0 { 0.0 } else { z }
}

/// The per-channel map forward applies: `z = scale·x + shift`, then ReLU when fused.
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl Affine {
    fn new(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], epsilon: f64, relu: bool) -> Affine {
        let scale: Vec<f32> = gamma.iter().zip(var).map(|(g, v)| g / (*v as f64 + epsilon).sqrt() as f32).collect();
        let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), k)| b - m * k).collect();
        Affine { scale, shift, relu }
    }

    fn apply(&self, s: &NormShape, x: &[f32]) -> Vec<f32> {
        channel_map(s, x, x, |c| {
            let (k, d, fused) = (self.scale[c], self.shift[c], self.relu);
            move |x, _| if fused { relu(k * x + d) } else { k * x + d }
        })
    }
}

/// Normalised with the batch's own statistics, then ReLU when `fuse_relu`:
/// `(output, mean, biased variance)`.
pub fn train_forward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    fuse_relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.batch * s.image(), "batch-norm input size");
    let m = s.count();
    // One pass for both moments, shifted by a value of each channel so that the variance does
    // not cancel when the mean is large against the spread.
    let shift: Vec<f32> = (0..s.channels).map(|c| x.get(c * s.spatial).copied().unwrap_or(0.0)).collect();
    let sums = channel_sums(s, x, x, |c| {
        let k = shift[c];
        move |v, _| [v - k, (v - k) * (v - k)]
    });
    let (mut mean, mut var) = (Vec::with_capacity(s.channels), Vec::with_capacity(s.channels));
    for (c, [s1, s2]) in sums.iter().enumerate() {
        let d = s1 / m;
        mean.push((shift[c] as f64 + d) as f32);
        var.push((s2 / m - d * d).max(0.0) as f32);
    }
    let y = Affine::new(gamma, beta, &mean, &var, epsilon, fuse_relu).apply(s, x);
    (y, mean, var)
}

/// Normalised with given statistics (evaluation: the running mean and variance), then ReLU
/// when `fuse_relu`.
#[allow(clippy::too_many_arguments)]
pub fn inference(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    fuse_relu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), s.batch * s.image(), "batch-norm input size");
    Affine::new(gamma, beta, mean, var, epsilon, fuse_relu).apply(s, x)
}

/// Gradients `(x, gamma, beta)` of [`train_forward`] given the output gradient `dy`. With a
/// fused ReLU the mask is recomputed from `x` (the same arithmetic as forward), so nothing
/// but the input is kept between the passes.
#[allow(clippy::too_many_arguments)]
pub fn train_backward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    fuse_relu: bool,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.batch * s.image(), "batch-norm input size");
    assert_eq!(dy.len(), x.len(), "batch-norm gradient size");
    let affine = Affine::new(gamma, beta, mean, var, epsilon, fuse_relu);
    let inv_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect();
    // The gradient reaching the normalisation: dy, or dy where the ReLU passed.
    let masked = |c: usize| {
        let (k, d) = (affine.scale[c], affine.shift[c]);
        move |g: f32, x: f32| if fuse_relu && k * x + d <= 0.0 { 0.0 } else { g }
    };
    let sums = channel_sums(s, dy, x, |c| {
        let (gate, m, r) = (masked(c), mean[c], inv_std[c]);
        move |g, v| {
            let g = gate(g, v);
            [g, g * (v - m) * r]
        }
    });
    let d_beta: Vec<f32> = sums.iter().map(|[b, _]| *b as f32).collect();
    let d_gamma: Vec<f32> = sums.iter().map(|[_, g]| *g as f32).collect();
    // dx = γ·σ⁻¹·(g − mean(g) − x̂·mean(g·x̂)) with g the masked gradient, expanded to
    // k_g·g + k_x·x + k_0.
    let m = s.count() as f32;
    let dx = channel_map(s, dy, x, |c| {
        let k_g = gamma[c] * inv_std[c];
        let k_x = -k_g * inv_std[c] * d_gamma[c] / m;
        let k_0 = -k_g * d_beta[c] / m - k_x * mean[c];
        let gate = masked(c);
        move |g, v| k_g * gate(g, v) + k_x * v + k_0
    });
    (dx, d_gamma, d_beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64, offset: f32) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| offset + rng.random_range(-1.0..1.0)).collect()
    }

    /// The definition in f64: per-channel statistics, then the affine map.
    fn reference(s: &NormShape, x: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
        let at = |n: usize, c: usize, i: usize| x[(n * s.channels + c) * s.spatial + i] as f64;
        let mut y = vec![0.0; x.len()];
        for c in 0..s.channels {
            let all: Vec<f64> = (0..s.batch).flat_map(|n| (0..s.spatial).map(move |i| (n, i))).map(|(n, i)| at(n, c, i)).collect();
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
            for n in 0..s.batch {
                for i in 0..s.spatial {
                    y[(n * s.channels + c) * s.spatial + i] = (at(n, c, i) - mean) / (var + eps).sqrt() * gamma[c] as f64 + beta[c] as f64;
                }
            }
        }
        y
    }

    fn shapes() -> Vec<NormShape> {
        [(4, 3, 13), (100, 5, 1), (2, 2, 64), (7, 1, 9)]
            .into_iter()
            .map(|(batch, channels, spatial)| NormShape { batch, channels, spatial })
            .collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        for (k, s) in shapes().into_iter().enumerate() {
            // An offset far from zero checks the variance does not cancel catastrophically.
            let x = values(s.batch * s.image(), k as u64, 50.0);
            let (gamma, beta) = (values(s.channels, 10 + k as u64, 1.0), values(s.channels, 20 + k as u64, 0.0));
            let (y, _, var) = train_forward(&s, &x, &gamma, &beta, 1e-3, false);
            assert!(var.iter().all(|&v| v > 0.2 && v < 0.5), "uniform(-1, 1) has variance 1/3: {var:?}");
            let want = reference(&s, &x, &gamma, &beta, 1e-3);
            let err = y.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-4, "{s:?}: {err}");
        }
    }

    /// Central differences of ⟨dy, forward(x)⟩ in f64 agree with the analytic gradients.
    #[test]
    fn backward_matches_finite_differences() {
        for (k, s) in shapes().into_iter().enumerate() {
            let x = values(s.batch * s.image(), 30 + k as u64, 0.5);
            let (gamma, beta) = (values(s.channels, 40 + k as u64, 1.0), values(s.channels, 50 + k as u64, 0.0));
            let dy = values(x.len(), 60 + k as u64, 0.0);
            let eps = 1e-3;
            let (_, mean, var) = train_forward(&s, &x, &gamma, &beta, eps, false);
            let (dx, d_gamma, d_beta) = train_backward(&s, &x, &gamma, &beta, &mean, &var, eps, false, &dy);
            let objective = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
                reference(&s, x, gamma, beta, eps).iter().zip(&dy).map(|(y, g)| y * *g as f64).sum()
            };
            let h = 1e-2f32;
            let probe = |i: usize, which: usize| -> (f64, f64) {
                let (mut xp, mut gp, mut bp) = (x.clone(), gamma.clone(), beta.clone());
                let (mut xm, mut gm, mut bm) = (x.clone(), gamma.clone(), beta.clone());
                match which {
                    0 => (xp[i] += h, xm[i] -= h),
                    1 => (gp[i] += h, gm[i] -= h),
                    _ => (bp[i] += h, bm[i] -= h),
                };
                let numeric = (objective(&xp, &gp, &bp) - objective(&xm, &gm, &bm)) / (2.0 * h as f64);
                let analytic = [&dx, &d_gamma, &d_beta][which][i] as f64;
                (numeric, analytic)
            };
            for (which, len) in [(0, x.len()), (1, s.channels), (2, s.channels)] {
                for i in (0..len).step_by((len / 7).max(1)) {
                    let (numeric, analytic) = probe(i, which);
                    assert!((numeric - analytic).abs() < 2e-3 * numeric.abs().max(1.0), "{s:?} param {which} index {i}: {numeric} vs {analytic}");
                }
            }
        }
    }

    /// The fused ReLU is exactly ReLU after the normalisation, forward and backward: the fused
    /// gradient equals the plain one of the gradient masked where the ReLU blocked.
    #[test]
    fn fused_relu_is_relu_after_the_normalisation() {
        for (k, s) in shapes().into_iter().enumerate() {
            let x = values(s.batch * s.image(), 70 + k as u64, 0.0);
            let (gamma, beta) = (values(s.channels, 80 + k as u64, 1.0), values(s.channels, 90 + k as u64, 0.0));
            let dy = values(x.len(), 100 + k as u64, 0.0);
            let (plain, mean, var) = train_forward(&s, &x, &gamma, &beta, 1e-3, false);
            let (fused, mean_f, var_f) = train_forward(&s, &x, &gamma, &beta, 1e-3, true);
            assert_eq!((&mean, &var), (&mean_f, &var_f));
            assert_eq!(fused, plain.iter().map(|&v| relu(v)).collect::<Vec<_>>());
            assert!(fused.contains(&0.0) && fused.iter().any(|&v| v > 0.0), "the test needs both sides of the ReLU");
            let masked: Vec<f32> = dy.iter().zip(&plain).map(|(&g, &y)| if y <= 0.0 { 0.0 } else { g }).collect();
            let want = train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, false, &masked);
            let got = train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, true, &dy);
            for (a, b) in [(&got.0, &want.0), (&got.1, &want.1), (&got.2, &want.2)] {
                let err = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
                assert!(err < 1e-5, "{s:?}: {err}");
            }
            let eval = inference(&s, &x, &gamma, &beta, &mean, &var, 1e-3, true);
            assert_eq!(eval, fused);
        }
    }
}

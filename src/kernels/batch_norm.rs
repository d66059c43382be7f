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

/// Per-channel sums of `f(channel, a, b)` over batch and spatial positions.
fn channel_sums<const K: usize>(
    s: &NormShape,
    a: &[f32],
    b: &[f32],
    f: impl Fn(usize, f32, f32) -> [f32; K] + Sync,
) -> Vec<[f64; K]> {
    a.par_chunks(s.image())
        .zip(b.par_chunks(s.image()))
        .with_min_len(MIN_IMAGES_PER_TASK)
        .fold(
            || vec![[0.0f64; K]; s.channels],
            |mut acc, (ia, ib)| {
                for (c, (ca, cb)) in ia.chunks(s.spatial).zip(ib.chunks(s.spatial)).enumerate() {
                    let part = block_sum(ca, cb, |x, y| f(c, x, y));
                    for k in 0..K {
                        acc[c][k] += part[k];
                    }
                }
                acc
            },
        )
        .reduce_with(|mut x, y| {
            for (p, q) in x.iter_mut().zip(y) {
                for k in 0..K {
                    p[k] += q[k];
                }
            }
            x
        })
        .unwrap_or_else(|| vec![[0.0; K]; s.channels])
}

/// `out[n, c, s] = scale[c]·a + shift[c] (+ b_scale[c]·b when given)`, one pass.
fn per_channel_affine(s: &NormShape, a: &[f32], scale: &[f32], shift: &[f32], b: Option<(&[f32], &[f32])>) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    out.par_chunks_mut(s.image()).zip(a.par_chunks(s.image())).enumerate().with_min_len(MIN_IMAGES_PER_TASK).for_each(
        |(n, (on, an))| {
            for c in 0..s.channels {
                let range = c * s.spatial..(c + 1) * s.spatial;
                let (k, d) = (scale[c], shift[c]);
                let (o, x) = (&mut on[range.clone()], &an[range.clone()]);
                match b {
                    None => o.iter_mut().zip(x).for_each(|(o, &x)| *o = k * x + d),
                    Some((b, b_scale)) => {
                        let (y, kb) = (&b[n * s.image()..][range], b_scale[c]);
                        o.iter_mut().zip(x).zip(y).for_each(|((o, &x), &y)| *o = k * x + kb * y + d);
                    }
                }
            }
        },
    );
    out
}

/// Normalised with the batch's own statistics: `(output, mean, biased variance)`.
pub fn train_forward(s: &NormShape, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.batch * s.image(), "batch-norm input size");
    let m = s.count();
    let mean: Vec<f32> = channel_sums(s, x, x, |_, v, _| [v]).iter().map(|[t]| (t / m) as f32).collect();
    let var: Vec<f32> = channel_sums(s, x, x, |c, v, _| {
        let d = v - mean[c];
        [d * d]
    })
    .iter()
    .map(|[t]| (t / m) as f32)
    .collect();
    let y = inference(s, x, gamma, beta, &mean, &var, epsilon);
    (y, mean, var)
}

/// Normalised with given statistics (evaluation: the running mean and variance).
pub fn inference(s: &NormShape, x: &[f32], gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], epsilon: f64) -> Vec<f32> {
    let scale: Vec<f32> = (0..s.channels).map(|c| gamma[c] / (var[c] as f64 + epsilon).sqrt() as f32).collect();
    let shift: Vec<f32> = (0..s.channels).map(|c| beta[c] - mean[c] * scale[c]).collect();
    per_channel_affine(s, x, &scale, &shift, None)
}

/// Gradients `(x, gamma, beta)` of [`train_forward`] given the output gradient `dy`.
pub fn train_backward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(dy.len(), x.len(), "batch-norm gradient size");
    let inv_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect();
    let sums = channel_sums(s, dy, x, |c, g, v| [g, g * (v - mean[c]) * inv_std[c]]);
    let d_beta: Vec<f32> = sums.iter().map(|[b, _]| *b as f32).collect();
    let d_gamma: Vec<f32> = sums.iter().map(|[_, g]| *g as f32).collect();
    // dx = γ·σ⁻¹·(dy − mean(dy) − x̂·mean(dy·x̂)), expanded to k_dy·dy + k_x·x + k_0.
    let m = s.count() as f32;
    let (mut k_dy, mut k_x, mut k_0) = (vec![0.0; s.channels], vec![0.0; s.channels], vec![0.0; s.channels]);
    for c in 0..s.channels {
        let g = gamma[c] * inv_std[c];
        k_dy[c] = g;
        k_x[c] = -g * inv_std[c] * d_gamma[c] / m;
        k_0[c] = -g * d_beta[c] / m - k_x[c] * mean[c];
    }
    let dx = per_channel_affine(s, dy, &k_dy, &k_0, Some((x, &k_x)));
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
            let (y, _, var) = train_forward(&s, &x, &gamma, &beta, 1e-3);
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
            let (_, mean, var) = train_forward(&s, &x, &gamma, &beta, eps);
            let (dx, d_gamma, d_beta) = train_backward(&s, &x, &gamma, &mean, &var, eps, &dy);
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
}

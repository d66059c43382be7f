//! Batch normalisation over `[batch, channels, spatial…]` f32 values, followed by an
//! activation ([`super::activation`]) and optionally by k×k max-pooling, training forward and
//! backward, in a few fused passes.
//!
//! Why our own: burn's generic batch-norm builds each channel statistic by swapping the batch
//! and channel axes (a full transposed copy of the activation) and then runs about ten
//! separate element-wise passes forward and fifteen backward; on flex those copies were the
//! second-largest cost of a training step after the convolutions. Here: one reading pass for
//! the statistics and one pass that writes the (pooled) output forward; backward, one
//! reading pass for the two sums and one that writes the input gradient.
//!
//! Why pooling is fused: a conv block is conv → batch norm → activation → pool. Pooling the
//! normalised values as they are made means the full-size normalised activation is never
//! written, kept for backward, or read again; backward finds each window's maximum again from
//! the input (the same arithmetic as forward) and folds the pool's gradient into batch norm's.
//! Every activation but GELU never decreases, so max-pooling commutes with it: the pool runs
//! on the normalised values and the activation after it, on a quarter of them (ReLU inside
//! the windows). After GELU the pool runs as a kernel of its own.
//! Every pass runs per image, at the widest vector level the CPU has ([`super::simd`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::activation::{Function, commutes_with_max_pool, with_function};
use super::geometry::PoolGeometry;
use super::simd::multiversion;
use super::window2::{self, ChannelMap};
use crate::activation::Activation;

/// `[batch, channels, h, w]` view of an activation (`w` = product of the axes after `h`;
/// `h = w = 1` for dense layers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormShape {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
}

impl NormShape {
    pub fn of(dims: &[usize]) -> NormShape {
        assert!(dims.len() >= 2, "batch norm needs [batch, channels, ...], got {dims:?}");
        let h = dims.get(2).copied().unwrap_or(1);
        NormShape { batch: dims[0], channels: dims[1], h, w: dims.iter().skip(3).product() }
    }

    fn spatial(&self) -> usize {
        self.h * self.w
    }

    fn image(&self) -> usize {
        self.channels * self.spatial()
    }

    /// Values per channel.
    fn count(&self) -> f64 {
        (self.batch * self.spatial()) as f64
    }

    /// The `[h, w]` after k×k pooling (floor); k = 1 is no pooling.
    pub fn pooled(&self, k: usize) -> [usize; 2] {
        [self.h / k, self.w / k]
    }

    fn pooled_image(&self, k: usize) -> usize {
        let [ph, pw] = self.pooled(k);
        self.channels * ph * pw
    }
}

/// Images per rayon task.
const MIN_IMAGES_PER_TASK: usize = 4;

/// Sum of `f(a, b)` over one contiguous block, in eight independent f32 lanes (so it
/// vectorises) added up in f64.
#[inline(always)]
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

/// Per-channel `[f64; 2]` sums over the batch: `per_image(image index, accumulators)` adds
/// one image's share, images spread over rayon's threads.
fn channel_sums(s: &NormShape, per_image: impl Fn(usize, &mut [[f64; 2]]) + Sync) -> Vec<[f64; 2]> {
    sums_over(s, (0..s.batch).into_par_iter(), per_image)
}

/// [`channel_sums`] over any indexed parallel iteration of the images (one that also hands
/// each image its own output slice).
fn sums_over<I: IndexedParallelIterator>(
    s: &NormShape,
    images: I,
    per_image: impl Fn(I::Item, &mut [[f64; 2]]) + Sync,
) -> Vec<[f64; 2]> {
    images
        .with_min_len(MIN_IMAGES_PER_TASK)
        .fold(
            || vec![[0.0f64; 2]; s.channels],
            |mut acc, item| {
                per_image(item, &mut acc);
                acc
            },
        )
        .reduce_with(|mut x, y| {
            for (p, q) in x.iter_mut().zip(y) {
                p[0] += q[0];
                p[1] += q[1];
            }
            x
        })
        .unwrap_or_else(|| vec![[0.0; 2]; s.channels])
}

/// A new `batch × image_len` buffer, `fill(image index, its slots)` writing every slot.
fn per_image_output(batch: usize, image_len: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let len = batch * image_len;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if image_len > 0 {
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(image_len)
            .enumerate()
            .with_min_len(MIN_IMAGES_PER_TASK)
            .for_each(|(n, slots)| fill(n, slots));
    }
    // SAFETY: the chunks cover all `len` slots and `fill` writes every slot of its chunk
    // (each caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// The per-channel map forward applies: `z = scale·x + shift`, then the activation, then
/// k×k max-pooling (k = 1: none).
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: Activation,
    pool: usize,
}

impl Affine {
    fn new(
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        epsilon: f64,
        act: Activation,
        pool: usize,
    ) -> Affine {
        let scale: Vec<f32> = gamma.iter().zip(var).map(|(g, v)| g / (*v as f64 + epsilon).sqrt() as f32).collect();
        let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), k)| b - m * k).collect();
        Affine { scale, shift, act, pool }
    }

    /// Channel `c`'s map as the window kernels take it: with the ReLU, or else the plain
    /// normalisation (the activation then follows the windows).
    #[inline(always)]
    fn channel(&self, c: usize) -> ChannelMap {
        ChannelMap { scale: self.scale[c], shift: self.shift[c], relu: self.act == Activation::Relu }
    }

    /// Channel `c`'s normalised value of `x`, before the activation.
    #[inline(always)]
    fn z(&self, c: usize, x: f32) -> f32 {
        self.scale[c] * x + self.shift[c]
    }

    fn apply(&self, s: &NormShape, x: &[f32]) -> Vec<f32> {
        per_image_output(s.batch, s.pooled_image(self.pool), |n, out| {
            apply_image(self, s, &x[n * s.image()..][..s.image()], out)
        })
    }
}

/// Panics unless k×k pooling leaves at least one value per plane (the model's shape checks
/// refuse such networks before any kernel runs) and commutes with the activation.
fn check_pool(s: &NormShape, act: Activation, pool: usize) {
    assert!(pool >= 1 && s.h >= pool && s.w >= pool, "a {pool}×{pool} pool does not fit {}×{} planes", s.h, s.w);
    assert!(
        pool == 1 || commutes_with_max_pool(act),
        "{act:?} does not commute with the pool, which must run after it"
    );
}

/// `f` of every value written in `out` (window outputs, before the activation).
#[inline(always)]
fn activate_written<F: Function>(out: &mut [MaybeUninit<f32>]) {
    for o in out {
        // SAFETY: the caller wrote every slot of `out` first.
        let z = unsafe { o.assume_init() };
        o.write(F::value(z));
    }
}

multiversion! {
    /// Forward output of one image: the activation of `z` of every value, pooled.
    fn apply_image(a: &Affine, s: &NormShape, x: &[f32], out: &mut [MaybeUninit<f32>]) {
        with_function!(a.act, F => apply_planes::<F>(a, s, x, out))
    }
}

#[inline(always)]
fn apply_planes<F: Function>(a: &Affine, s: &NormShape, x: &[f32], out: &mut [MaybeUninit<f32>]) {
    if s.spatial() == 1 {
        // Dense layers: one value per channel, so the loop runs across channels.
        for (c, (o, &v)) in out.iter_mut().zip(x).enumerate() {
            o.write(F::value(a.z(c, v)));
        }
        return;
    }
    let [ph, pw] = s.pooled(a.pool);
    let planes = x.chunks_exact(s.spatial()).zip(out.chunks_exact_mut(ph * pw)).enumerate();
    for (c, (xp, op)) in planes {
        let f = a.channel(c);
        match a.pool {
            1 => op.iter_mut().zip(xp).for_each(|(o, &v)| {
                o.write(F::value(f.linear(v)));
            }),
            2 => {
                for (oy, orow) in op.chunks_exact_mut(pw).enumerate() {
                    window2::forward(f, &xp[2 * oy * s.w..][..2 * pw], &xp[(2 * oy + 1) * s.w..][..2 * pw], orow);
                }
                if !F::DONE_IN_WINDOWS {
                    activate_written::<F>(op);
                }
            }
            k => {
                let z: Vec<f32> = xp.iter().map(|&v| f.z(v)).collect();
                let g = PoolGeometry { planes: 1, h: s.h, w: s.w, k };
                for (i, o) in op.iter_mut().enumerate() {
                    let z_max = z[g.argmax(&z, i / pw, i % pw)];
                    o.write(if F::DONE_IN_WINDOWS { z_max } else { F::value(z_max) });
                }
            }
        }
    }
}

multiversion! {
    /// One image's share of the per-channel sums of `x − shift` and `(x − shift)²`.
    fn moments_image(s: &NormShape, x: &[f32], shift: &[f32], acc: &mut [[f64; 2]]) {
        if s.spatial() == 1 {
            // Dense layers: across channels (per channel, setting up a loop cost more than
            // its one value).
            for ((acc, &v), &k) in acc.iter_mut().zip(x).zip(shift) {
                acc[0] += (v - k) as f64;
                acc[1] += ((v - k) * (v - k)) as f64;
            }
            return;
        }
        for (c, (xp, acc)) in x.chunks_exact(s.spatial()).zip(acc.iter_mut()).enumerate() {
            let k = shift[c];
            let [s1, s2] = if s.spatial() < 8 {
                // Planes under 8 values: lanes would cost more than they save.
                xp.iter().fold([0.0f64; 2], |[p, q], &v| [p + (v - k) as f64, q + ((v - k) * (v - k)) as f64])
            } else {
                block_sum(xp, xp, |v, _| [v - k, (v - k) * (v - k)])
            };
            acc[0] += s1;
            acc[1] += s2;
        }
    }
}

/// Normalised with the batch's own statistics, then `act`, then pooled by `pool` (1: not
/// pooled; more only where the pool commutes with `act`): `(output, mean, biased variance)`.
pub fn train_forward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    act: Activation,
    pool: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.batch * s.image(), "batch-norm input size");
    check_pool(s, act, pool);
    let m = s.count();
    // One pass for both moments, shifted by a value of each channel so that the variance does
    // not cancel when the mean is large against the spread.
    let shift: Vec<f32> = (0..s.channels).map(|c| x.get(c * s.spatial()).copied().unwrap_or(0.0)).collect();
    let sums = channel_sums(s, |n, acc| moments_image(s, &x[n * s.image()..][..s.image()], &shift, acc));
    let (mut mean, mut var) = (Vec::with_capacity(s.channels), Vec::with_capacity(s.channels));
    for (c, [s1, s2]) in sums.iter().enumerate() {
        let d = s1 / m;
        mean.push((shift[c] as f64 + d) as f32);
        var.push((s2 / m - d * d).max(0.0) as f32);
    }
    let y = Affine::new(gamma, beta, &mean, &var, epsilon, act, pool).apply(s, x);
    (y, mean, var)
}

/// Normalised with given statistics (evaluation: the running mean and variance), then `act`,
/// then pooled by `pool`.
#[allow(clippy::too_many_arguments)]
pub fn inference(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    act: Activation,
    pool: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), s.batch * s.image(), "batch-norm input size");
    check_pool(s, act, pool);
    Affine::new(gamma, beta, mean, var, epsilon, act, pool).apply(s, x)
}

/// Per-channel constants of the backward pass. The gradient reaching the normalisation at a
/// value is `g`: the output gradient of its window if it is the window's (first) maximum,
/// passed back through the activation, else 0. Then `d_beta = Σ g`, `d_gamma = Σ g·x̂`, and
/// `dx = γ·σ⁻¹·(g − mean(g) − x̂·mean(g·x̂))`, expanded to `k_g·g + k_x·x + k_0`.
struct Backward {
    affine: Affine,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    k_g: Vec<f32>,
    k_x: Vec<f32>,
    k_0: Vec<f32>,
}

multiversion! {
    /// One image's share of `[Σ g, Σ g·x̂]` per channel; pooled, each window's `g` is also
    /// written to `gated` unless it is empty.
    fn grad_sums_image(b: &Backward, s: &NormShape, x: &[f32], dy: &[f32], acc: &mut [[f64; 2]], gated: &mut [f32]) {
        with_function!(b.affine.act, F => grad_sums_planes::<F>(b, s, x, dy, acc, gated))
    }
}

#[inline(always)]
fn grad_sums_planes<F: Function>(
    b: &Backward,
    s: &NormShape,
    x: &[f32],
    dy: &[f32],
    acc: &mut [[f64; 2]],
    gated: &mut [f32],
) {
    let a = &b.affine;
    if s.spatial() == 1 {
        // Dense layers: across channels.
        for (c, ((acc, &d), &v)) in acc.iter_mut().zip(dy).zip(x).enumerate() {
            let g = F::gate(d, a.z(c, v));
            acc[0] += g as f64;
            acc[1] += (g * (v - b.mean[c]) * b.inv_std[c]) as f64;
        }
        return;
    }
    let [ph, pw] = s.pooled(a.pool);
    let planes = x.chunks_exact(s.spatial()).zip(dy.chunks_exact(ph * pw)).zip(acc.iter_mut()).enumerate();
    // The gradient and input value at each window's maximum, gathered so they sum in lanes.
    let windows = if a.pool == 1 { 0 } else { ph * pw };
    let (mut g_max, mut x_max) = (vec![0.0f32; windows], vec![0.0f32; windows]);
    for (c, ((xp, dyp), acc)) in planes {
        let (f, m, r) = (a.channel(c), b.mean[c], b.inv_std[c]);
        let [sg, sgx] = match a.pool {
            1 => block_sum(dyp, xp, |d, v| {
                // ReLU and the identity through the channel map's own gate: with the ReLU
                // stated as a constant select the compiler left these lanes scalar (perf: a
                // third of the sums' time on one load), with the map's run-time flag it
                // vectorises them.
                let g = if F::DONE_IN_WINDOWS { f.gate(d, f.z(v)) } else { F::gate(d, f.linear(v)) };
                [g, g * (v - m) * r]
            }),
            2 => {
                for oy in 0..ph {
                    let (r0, r1) = (&xp[2 * oy * s.w..][..2 * pw], &xp[(2 * oy + 1) * s.w..][..2 * pw]);
                    let row = oy * pw..(oy + 1) * pw;
                    window2::gather(f, r0, r1, &dyp[row.clone()], &mut g_max[row.clone()], &mut x_max[row]);
                }
                if !F::DONE_IN_WINDOWS {
                    g_max.iter_mut().zip(&x_max).for_each(|(g, &v)| *g = F::gate(*g, f.linear(v)));
                }
                block_sum(&g_max, &x_max, |g, v| [g, g * (v - m) * r])
            }
            k => {
                let z: Vec<f32> = xp.iter().map(|&v| f.z(v)).collect();
                let geometry = PoolGeometry { planes: 1, h: s.h, w: s.w, k };
                for (i, (g, xm)) in g_max.iter_mut().zip(x_max.iter_mut()).enumerate() {
                    let at = geometry.argmax(&z, i / pw, i % pw);
                    *g = F::gate(dyp[i], f.linear(xp[at]));
                    *xm = xp[at];
                }
                block_sum(&g_max, &x_max, |g, v| [g, g * (v - m) * r])
            }
        };
        if !gated.is_empty() && a.pool > 1 {
            gated[c * ph * pw..][..ph * pw].copy_from_slice(&g_max);
        }
        acc[0] += sg;
        acc[1] += sgx;
    }
}

multiversion! {
    /// One unpooled image's output gradient passed back through the activation.
    fn gates_image(a: &Affine, s: &NormShape, x: &[f32], dy: &[f32], g: &mut [MaybeUninit<f32>]) {
        with_function!(a.act, F => {
            for (c, ((gp, xp), dyp)) in g.chunks_exact_mut(s.spatial()).zip(x.chunks_exact(s.spatial())).zip(dy.chunks_exact(s.spatial())).enumerate() {
                let f = a.channel(c);
                for ((o, &v), &d) in gp.iter_mut().zip(xp).zip(dyp) {
                    o.write(F::gate(d, f.linear(v)));
                }
            }
        })
    }
}

/// Whether `act`'s gate is more than a select: then, unpooled, backward passes the gradient
/// back through it once, in a pass of its own, and both later passes read the result. (Inside
/// the sums' lanes the compiler left such a gate scalar, and the second pass would evaluate
/// it again: GELU's batch-norm backward took 120 ms a step that way, 36 ms with a vectorised
/// gate evaluated twice.)
fn gates_first(act: Activation, pool: usize) -> bool {
    pool == 1 && !done_in_windows(act)
}

/// Whether the window kernels and the channel map's gate apply `act` themselves (ReLU and the
/// identity); backward passes the gradient through every other activation before the
/// input-gradient pass.
fn done_in_windows(act: Activation) -> bool {
    with_function!(act, F => F::DONE_IN_WINDOWS)
}

multiversion! {
    /// One image's input gradient `k_g·g + k_x·x + k_0`. Only ReLU (the channel map's gate)
    /// and the identity reach it: [`train_backward`] passes the gradient back through every
    /// other activation first ([`gates_image`], or the pooled sums pass).
    fn grad_image(b: &Backward, s: &NormShape, x: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
        assert!(done_in_windows(b.affine.act), "the gradient reaches the input pass already passed back through the activation");
        let a = &b.affine;
        if s.spatial() == 1 {
            // Dense layers: across channels.
            for (c, ((o, &d), &v)) in dx.iter_mut().zip(dy).zip(x).enumerate() {
                let f = a.channel(c);
                o.write(b.k_g[c] * f.gate(d, f.z(v)) + b.k_x[c] * v + b.k_0[c]);
            }
            return;
        }
        let [ph, pw] = s.pooled(a.pool);
        let planes = x.chunks_exact(s.spatial()).zip(dy.chunks_exact(ph * pw)).zip(dx.chunks_exact_mut(s.spatial())).enumerate();
        for (c, ((xp, dyp), dxp)) in planes {
            let (f, k_g, k_x, k_0) = (a.channel(c), b.k_g[c], b.k_x[c], b.k_0[c]);
            match a.pool {
                1 => {
                    for ((o, &v), &d) in dxp.iter_mut().zip(xp).zip(dyp) {
                        o.write(k_g * f.gate(d, f.z(v)) + k_x * v + k_0);
                    }
                }
                2 => {
                    // Row pairs of windows; values outside every window (an odd last row or
                    // column) get no gradient from the pool.
                    for (oy, (rows, dx_rows)) in xp.chunks_exact(2 * s.w).zip(dxp.chunks_exact_mut(2 * s.w)).enumerate() {
                        let (r0, r1) = rows.split_at(s.w);
                        let (d0, d1) = dx_rows.split_at_mut(s.w);
                        let dy_row = &dyp[oy * pw..][..pw];
                        window2::grad(f, [k_g, k_x, k_0], &r0[..2 * pw], &r1[..2 * pw], dy_row, &mut d0[..2 * pw], &mut d1[..2 * pw]);
                        if s.w % 2 == 1 {
                            d0[s.w - 1].write(k_x * rows[s.w - 1] + k_0);
                            d1[s.w - 1].write(k_x * rows[2 * s.w - 1] + k_0);
                        }
                    }
                    if s.h % 2 == 1 {
                        let last = (s.h - 1) * s.w;
                        dxp[last..].iter_mut().zip(&xp[last..]).for_each(|(o, &v)| {
                            o.write(k_x * v + k_0);
                        });
                    }
                }
                k => {
                    let z: Vec<f32> = xp.iter().map(|&v| f.z(v)).collect();
                    let mut plane: Vec<f32> = xp.iter().map(|&v| k_x * v + k_0).collect();
                    let geometry = PoolGeometry { planes: 1, h: s.h, w: s.w, k };
                    for (i, &d) in dyp.iter().enumerate() {
                        let at = geometry.argmax(&z, i / pw, i % pw);
                        plane[at] += k_g * f.gate(d, z[at]);
                    }
                    dxp.iter_mut().zip(plane).for_each(|(o, v)| {
                        o.write(v);
                    });
                }
            }
        }
    }
}

/// Gradients `(x, gamma, beta)` of [`train_forward`] given the output gradient `dy` (of the
/// pooled shape). The activation's slope and the windows' maxima are recomputed from `x`
/// (the same arithmetic as forward), so nothing but the input is kept between the passes.
#[allow(clippy::too_many_arguments)]
pub fn train_backward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    act: Activation,
    pool: usize,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.batch * s.image(), "batch-norm input size");
    check_pool(s, act, pool);
    assert_eq!(dy.len(), s.batch * s.pooled_image(pool), "batch-norm gradient size");
    let inv_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect();
    let affine = Affine::new(gamma, beta, mean, var, epsilon, act, pool);
    let gated = gates_first(act, pool).then(|| {
        per_image_output(s.batch, s.image(), |n, out| {
            gates_image(&affine, s, &x[n * s.image()..][..s.image()], &dy[n * s.image()..][..s.image()], out)
        })
    });
    // With the gradient gated, the rest is the plain normalisation's backward.
    let (affine, dy) = match &gated {
        Some(g) => (Affine { act: Activation::Linear, ..affine }, g.as_slice()),
        None => (affine, dy),
    };
    let mut b = Backward { affine, mean: mean.to_vec(), inv_std, k_g: Vec::new(), k_x: Vec::new(), k_0: Vec::new() };
    let dyn_len = s.pooled_image(pool);
    let image = |n: usize| (&x[n * s.image()..][..s.image()], &dy[n * dyn_len..][..dyn_len]);
    // Pooled, an activation the windows do not apply is passed back at each window's maximum
    // in the sums pass, which keeps the result: the input-gradient pass then runs as the plain
    // normalisation's, without finding the windows' maxima a third time.
    let keep_gated = pool > 1 && !done_in_windows(act);
    let mut pooled_gated = vec![0.0f32; if keep_gated { dy.len() } else { 0 }];
    let sums = match keep_gated {
        true => sums_over(s, pooled_gated.par_chunks_mut(dyn_len).enumerate(), |(n, out), acc| {
            let (xn, dyn_) = image(n);
            grad_sums_image(&b, s, xn, dyn_, acc, out)
        }),
        false => channel_sums(s, |n, acc| {
            let (xn, dyn_) = image(n);
            grad_sums_image(&b, s, xn, dyn_, acc, &mut [])
        }),
    };
    let dy = if keep_gated {
        b.affine.act = Activation::Linear;
        pooled_gated.as_slice()
    } else {
        dy
    };
    let image = |n: usize| (&x[n * s.image()..][..s.image()], &dy[n * dyn_len..][..dyn_len]);
    let d_beta: Vec<f32> = sums.iter().map(|[b, _]| *b as f32).collect();
    let d_gamma: Vec<f32> = sums.iter().map(|[_, g]| *g as f32).collect();
    let m = s.count() as f32;
    for c in 0..s.channels {
        let k_g = gamma[c] * b.inv_std[c];
        let k_x = -k_g * b.inv_std[c] * d_gamma[c] / m;
        b.k_0.push(-k_g * d_beta[c] / m - k_x * mean[c]);
        b.k_g.push(k_g);
        b.k_x.push(k_x);
    }
    let dx = per_image_output(s.batch, s.image(), |n, out| {
        let (xn, dyn_) = image(n);
        grad_image(&b, s, xn, dyn_, out)
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
        let at = |n: usize, c: usize, i: usize| x[(n * s.channels + c) * s.spatial() + i] as f64;
        let mut y = vec![0.0; x.len()];
        for c in 0..s.channels {
            let all: Vec<f64> =
                (0..s.batch).flat_map(|n| (0..s.spatial()).map(move |i| (n, i))).map(|(n, i)| at(n, c, i)).collect();
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
            for n in 0..s.batch {
                for i in 0..s.spatial() {
                    y[(n * s.channels + c) * s.spatial() + i] =
                        (at(n, c, i) - mean) / (var + eps).sqrt() * gamma[c] as f64 + beta[c] as f64;
                }
            }
        }
        y
    }

    fn shapes() -> Vec<NormShape> {
        [(4, 3, 13), (100, 5, 1), (2, 2, 64), (7, 1, 9)]
            .into_iter()
            .map(|(batch, channels, h)| NormShape { batch, channels, h, w: 1 })
            .collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        for (k, s) in shapes().into_iter().enumerate() {
            // An offset far from zero checks the variance does not cancel catastrophically.
            let x = values(s.batch * s.image(), k as u64, 50.0);
            let (gamma, beta) = (values(s.channels, 10 + k as u64, 1.0), values(s.channels, 20 + k as u64, 0.0));
            let (y, _, var) = train_forward(&s, &x, &gamma, &beta, 1e-3, Activation::Linear, 1);
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
            let (_, mean, var) = train_forward(&s, &x, &gamma, &beta, eps, Activation::Linear, 1);
            let (dx, d_gamma, d_beta) =
                train_backward(&s, &x, &gamma, &beta, &mean, &var, eps, Activation::Linear, 1, &dy);
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
                    assert!(
                        (numeric - analytic).abs() < 2e-3 * numeric.abs().max(1.0),
                        "{s:?} param {which} index {i}: {numeric} vs {analytic}"
                    );
                }
            }
        }
    }

    /// Every activation inside the kernel is the activation after the plain normalisation:
    /// forward exactly, backward equal to the plain backward of the gradient passed back
    /// through the activation.
    #[test]
    fn each_activation_is_the_activation_after_the_normalisation() {
        for act in Activation::ALL {
            for (k, s) in shapes().into_iter().enumerate() {
                let x = values(s.batch * s.image(), 70 + k as u64, 0.0);
                let (gamma, beta) = (values(s.channels, 80 + k as u64, 1.0), values(s.channels, 90 + k as u64, 0.0));
                let dy = values(x.len(), 100 + k as u64, 0.0);
                let (plain, mean, var) = train_forward(&s, &x, &gamma, &beta, 1e-3, Activation::Linear, 1);
                let (fused, mean_f, var_f) = train_forward(&s, &x, &gamma, &beta, 1e-3, act, 1);
                assert_eq!((&mean, &var), (&mean_f, &var_f));
                assert_eq!(
                    fused,
                    plain.iter().map(|&z| with_function!(act, F => F::value(z))).collect::<Vec<_>>(),
                    "{act:?}"
                );
                assert!(plain.iter().any(|&v| v < 0.0) && plain.iter().any(|&v| v > 0.0), "the test needs both signs");
                let passed: Vec<f32> =
                    dy.iter().zip(&plain).map(|(&g, &z)| with_function!(act, F => F::gate(g, z))).collect();
                let want = train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, Activation::Linear, 1, &passed);
                let got = train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, act, 1, &dy);
                for (a, b) in [(&got.0, &want.0), (&got.1, &want.1), (&got.2, &want.2)] {
                    let err = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
                    assert!(err < 1e-5, "{act:?} {s:?}: {err}");
                }
                assert_eq!(inference(&s, &x, &gamma, &beta, &mean, &var, 1e-3, act, 1), fused);
            }
        }
    }

    /// Pooling inside the kernel is batch norm + activation and then the pool kernel, forward
    /// and backward within rounding, for k = 2 (with odd planes), k = 3 and ties, for every
    /// activation the pool commutes with (exactly so for ReLU and none).
    #[test]
    fn fused_pool_is_the_pool_after_the_activation() {
        use super::super::pool;
        let cases = [([3, 4, 8, 8], 2), ([2, 3, 9, 7], 2), ([4, 2, 8, 6], 2), ([2, 3, 7, 9], 3)];
        for act in Activation::ALL.into_iter().filter(|&a| commutes_with_max_pool(a)) {
            let exact = matches!(act, Activation::Relu | Activation::Linear);
            for (k, (dims, window)) in cases.into_iter().enumerate() {
                let s = NormShape::of(&dims);
                let mut x = values(s.batch * s.image(), 110 + k as u64, 0.0);
                // Repeated values make ties inside windows.
                x.iter_mut().step_by(3).for_each(|v| *v = (*v * 2.0).round() / 2.0);
                let (gamma, beta) = (values(s.channels, 120 + k as u64, 1.0), values(s.channels, 130 + k as u64, 0.0));
                let g = pool::PoolGeometry { planes: s.batch * s.channels, h: s.h, w: s.w, k: window };
                let (plain, mean, var) = train_forward(&s, &x, &gamma, &beta, 1e-3, act, 1);
                let (fused, mean_f, var_f) = train_forward(&s, &x, &gamma, &beta, 1e-3, act, window);
                assert_eq!((&mean, &var), (&mean_f, &var_f));
                let pooled = pool::forward(&g, &plain);
                let err = fused.iter().zip(&pooled).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
                assert!(if exact { fused == pooled } else { err < 1e-6 }, "{act:?} {dims:?}: {err}");
                assert_eq!(inference(&s, &x, &gamma, &beta, &mean, &var, 1e-3, act, window), fused);
                let dy = values(fused.len(), 140 + k as u64, 0.0);
                let want =
                    train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, act, 1, &pool::backward(&g, &plain, &dy));
                let got = train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, act, window, &dy);
                for (a, b) in [(&got.0, &want.0), (&got.1, &want.1), (&got.2, &want.2)] {
                    let err = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
                    assert!(err < 1e-5, "{act:?} {dims:?} pool {window}: {err}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not commute with the pool")]
    fn gelu_is_never_pooled_inside_the_kernel() {
        let s = NormShape::of(&[1, 1, 4, 4]);
        train_forward(&s, &[0.0; 16], &[1.0], &[0.0], 1e-3, Activation::Gelu, 2);
    }

    /// Every instruction-set level gives the same bits (NaN as NaN), pooled or not, for every activation,
    /// on rows of 5, 19 (more than one 16-window block) and 17 windows (an odd column left),
    /// with ties and NaNs in the windows, and for a dense layer (one value per channel).
    #[test]
    fn every_simd_level_computes_the_same_bits() {
        let _kernels = crate::settings::exclusive();
        use super::super::simd;
        for (k, dims) in [[5, 3, 10, 10], [3, 2, 6, 38], [2, 3, 7, 35], [7, 40, 1, 1]].into_iter().enumerate() {
            let s = NormShape::of(&dims);
            let mut x = values(s.batch * s.image(), 150 + k as u64, 0.3);
            x.iter_mut().step_by(5).for_each(|v| *v = (*v * 2.0).round() / 2.0);
            x[7] = f32::NAN;
            let (gamma, beta) = (values(s.channels, 151, 1.0), values(s.channels, 152, 0.0));
            let run = |pool: usize, act: Activation| {
                let (y, mean, var) = train_forward(&s, &x, &gamma, &beta, 1e-3, act, pool);
                let dy = values(y.len(), 153, 0.0);
                let (dx, dg, db) = train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, act, pool, &dy);
                // Any NaN as one: its sign bit follows the operand order the compiler picks.
                [y, mean, var, dx, dg, db]
                    .concat()
                    .iter()
                    .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
                    .collect::<Vec<u32>>()
            };
            let levels = simd::available();
            let pools = [1, 2].into_iter().filter(|&pool| pool <= dims[2]);
            let cases = pools
                .flat_map(|pool| Activation::ALL.map(|act| (pool, act)))
                .filter(|&(pool, act)| pool == 1 || commutes_with_max_pool(act));
            for (pool, act) in cases {
                let results: Vec<Vec<u32>> = levels
                    .iter()
                    .map(|&l| {
                        simd::force(l);
                        run(pool, act)
                    })
                    .collect();
                simd::force(levels[0]);
                assert!(
                    results.windows(2).all(|w| w[0] == w[1]),
                    "{dims:?} pool {pool} {act:?}: levels {levels:?} differ"
                );
            }
        }
    }
}

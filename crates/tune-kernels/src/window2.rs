//! The 2×2 max-pool windows of one row pair, after batch norm's per-channel map: forward
//! (each window's maximum), the gradient and input value at each window's maximum (for the
//! sums), and the input gradient.
//!
//! Why three versions: a window's four values sit at stride 2 in two rows, and rows are
//! only 14 or 28 values long. The compiler does not vectorise such loops (profiled: scalar
//! code, the fused pool's backward at a third of the speed of the unpooled pass), so on
//! AVX-512 16 windows go through one register each (masked loads of 32 columns,
//! de-interleaved into the windows' four corners with one permute each), and on AVX2 8
//! windows (two shuffles and a lane permute per corner pair; the last partial block from a
//! zero-padded copy). Other CPUs run the plain version. All use the same operations in the
//! same order (no FMA), so they give the same bits (tested).

use std::mem::MaybeUninit;

use super::activation::Function;

/// One channel's `z = scale·x + shift`, then ReLU when `relu`.
#[derive(Clone, Copy)]
pub(super) struct ChannelMap {
    pub(super) scale: f32,
    pub(super) shift: f32,
    pub(super) relu: bool,
}

impl ChannelMap {
    /// The normalised value, before any activation.
    #[inline(always)]
    pub(super) fn linear(self, x: f32) -> f32 {
        self.scale * x + self.shift
    }

    #[inline(always)]
    pub(super) fn z(self, x: f32) -> f32 {
        let z = self.linear(x);
        if self.relu { super::activation::Relu::value(z) } else { z }
    }

    /// A window's output gradient `dy` as it reaches the normalisation at its maximum
    /// `z_max` (after the ReLU): blocked where the ReLU was.
    #[inline(always)]
    pub(super) fn gate(self, dy: f32, z_max: f32) -> f32 {
        if self.relu & (z_max <= 0.0) { 0.0 } else { dy }
    }
}

/// The larger value; NaN if either is NaN. (Bitwise `|`, not `||`, here and in
/// [`window_winner`]: a short circuit is a branch, and a branch stops a loop vectorising.)
#[inline(always)]
pub(super) fn max_nan(a: f32, b: f32) -> f32 {
    if (a > b) | a.is_nan() { a } else { b }
}

/// Which of a 2×2 window's values (row-major) receives its gradient: the first maximum, NaN
/// winning, as [`crate::geometry::PoolGeometry::argmax`] finds it, but without branches so that the loop over
/// windows vectorises.
#[inline(always)]
pub(super) fn window_winner(a: f32, b: f32, c: f32, d: f32) -> [bool; 4] {
    let beats = |v: f32, best: f32| (v > best) | (v.is_nan() & !best.is_nan());
    let take_b = beats(b, a);
    let m = if take_b { b } else { a };
    let take_c = beats(c, m);
    let m = if take_c { c } else { m };
    let take_d = beats(d, m);
    [!take_b & !take_c & !take_d, take_b & !take_c & !take_d, take_c & !take_d, take_d]
}

/// Per-window maxima `out[i]` of `z` over the windows of rows `r0`, `r1` (`2·out.len()`
/// values each).
#[inline(always)]
pub fn forward(f: ChannelMap, r0: &[f32], r1: &[f32], out: &mut [MaybeUninit<f32>]) {
    check(r0, r1, out.len());
    prefetch_ahead(r0, r1);
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        // SAFETY: the CPU has the level's features, and check() bounds every access.
        super::simd::Level::Avx512 => return unsafe { avx512::forward(f, r0, r1, out) },
        super::simd::Level::Avx2 => return unsafe { avx2::forward(f, r0, r1, out) },
        super::simd::Level::Baseline => {}
    }
    for ((o, t), b) in out.iter_mut().zip(r0.as_chunks::<2>().0).zip(r1.as_chunks::<2>().0) {
        let top = max_nan(f.z(t[0]), f.z(t[1]));
        o.write(max_nan(top, max_nan(f.z(b[0]), f.z(b[1]))));
    }
}

/// For each window: the output gradient `dy` as it reaches the normalisation
/// ([`ChannelMap::gate`]) into `g`, and the input value at the window's first maximum
/// into `x_max`.
#[inline(always)]
pub fn gather(f: ChannelMap, r0: &[f32], r1: &[f32], dy: &[f32], g: &mut [f32], x_max: &mut [f32]) {
    check(r0, r1, dy.len());
    assert!(g.len() == dy.len() && x_max.len() == dy.len());
    prefetch_ahead(r0, r1);
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        // SAFETY: as in forward.
        super::simd::Level::Avx512 => return unsafe { avx512::gather(f, r0, r1, dy, g, x_max) },
        super::simd::Level::Avx2 => return unsafe { avx2::gather(f, r0, r1, dy, g, x_max) },
        super::simd::Level::Baseline => {}
    }
    let windows = r0.as_chunks::<2>().0.iter().zip(r1.as_chunks::<2>().0).zip(dy);
    for (((t, b), &d), (g, xm)) in windows.zip(g.iter_mut().zip(x_max)) {
        let z = [f.z(t[0]), f.z(t[1]), f.z(b[0]), f.z(b[1])];
        let win = window_winner(z[0], z[1], z[2], z[3]);
        *g = f.gate(d, max_nan(max_nan(z[0], z[1]), max_nan(z[2], z[3])));
        *xm = if win[0] {
            t[0]
        } else if win[1] {
            t[1]
        } else if win[2] {
            b[0]
        } else {
            b[1]
        };
    }
}

/// The input gradient `k_x·x + k_0`, plus `k_g·g` at each window's first maximum, of rows
/// `r0`, `r1` into `d0`, `d1`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn grad(
    f: ChannelMap,
    k: [f32; 3],
    r0: &[f32],
    r1: &[f32],
    dy: &[f32],
    d0: &mut [MaybeUninit<f32>],
    d1: &mut [MaybeUninit<f32>],
) {
    check(r0, r1, dy.len());
    assert!(d0.len() == r0.len() && d1.len() == r1.len());
    prefetch_ahead(r0, r1);
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        // SAFETY: as in forward.
        super::simd::Level::Avx512 => return unsafe { avx512::grad(f, k, r0, r1, dy, d0, d1) },
        super::simd::Level::Avx2 => return unsafe { avx2::grad(f, k, r0, r1, dy, d0, d1) },
        super::simd::Level::Baseline => {}
    }
    let [k_g, k_x, k_0] = k;
    let windows = r0.as_chunks::<2>().0.iter().zip(r1.as_chunks::<2>().0).zip(dy);
    let out = d0.as_chunks_mut::<2>().0.iter_mut().zip(d1.as_chunks_mut::<2>().0);
    for (((t, b), &d), (o0, o1)) in windows.zip(out) {
        let v = [t[0], t[1], b[0], b[1]];
        let z = [f.z(v[0]), f.z(v[1]), f.z(v[2]), f.z(v[3])];
        let win = window_winner(z[0], z[1], z[2], z[3]);
        let g = k_g * f.gate(d, max_nan(max_nan(z[0], z[1]), max_nan(z[2], z[3])));
        let out = |i: usize| MaybeUninit::new(k_x * v[i] + k_0 + if win[i] { g } else { 0.0 });
        *o0 = [out(0), out(1)];
        *o1 = [out(2), out(3)];
    }
}

/// Asks for the row pair two pairs ahead (rows are `r1 − r0` apart): the passes over row
/// pairs waited on memory without it (masked AVX-512 loads, it seems, do not bring the
/// hardware prefetcher along, and short scalar rows keep too few loads in flight).
#[inline(always)]
fn prefetch_ahead(r0: &[f32], r1: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let Some(w) = (r1.as_ptr() as usize).checked_sub(r0.as_ptr() as usize).map(|bytes| bytes / 4) else { return };
        let ahead = r0.as_ptr().wrapping_add(4 * w).cast::<i8>();
        // Two rows of w values, but never more than 64 lines (4 KiB) a call.
        for line in 0..(8 * w).div_ceil(64).min(64) {
            // SAFETY: a prefetch never faults, whatever the address (SSE, in every x86-64).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line)) };
        }
    }
}

/// The plain pool (no normalisation before it): each window's maximum of rows `r0`, `r1`
/// (`2·out.len()` values each), NaN winning.
#[inline(always)]
pub fn maxima(r0: &[f32], r1: &[f32], out: &mut [f32]) {
    check(r0, r1, out.len());
    prefetch_ahead(r0, r1);
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        // SAFETY: the CPU has the level's features, and check() bounds every access.
        super::simd::Level::Avx512 => return unsafe { avx512::maxima(r0, r1, out) },
        super::simd::Level::Avx2 => return unsafe { avx2::maxima(r0, r1, out) },
        super::simd::Level::Baseline => {}
    }
    for ((o, t), b) in out.iter_mut().zip(r0.as_chunks::<2>().0).zip(r1.as_chunks::<2>().0) {
        *o = max_nan(max_nan(t[0], t[1]), max_nan(b[0], b[1]));
    }
}

/// The plain pool's input gradient: each window's `dy` at its first maximum, 0 elsewhere.
#[inline(always)]
pub fn route(r0: &[f32], r1: &[f32], dy: &[f32], d0: &mut [MaybeUninit<f32>], d1: &mut [MaybeUninit<f32>]) {
    check(r0, r1, dy.len());
    assert!(d0.len() == r0.len() && d1.len() == r1.len());
    prefetch_ahead(r0, r1);
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        // SAFETY: as in forward.
        super::simd::Level::Avx512 => return unsafe { avx512::route(r0, r1, dy, d0, d1) },
        super::simd::Level::Avx2 => return unsafe { avx2::route(r0, r1, dy, d0, d1) },
        super::simd::Level::Baseline => {}
    }
    let windows = r0.as_chunks::<2>().0.iter().zip(r1.as_chunks::<2>().0).zip(dy);
    let out = d0.as_chunks_mut::<2>().0.iter_mut().zip(d1.as_chunks_mut::<2>().0);
    for (((t, b), &d), (o0, o1)) in windows.zip(out) {
        let win = window_winner(t[0], t[1], b[0], b[1]);
        let out = |i: usize| MaybeUninit::new(if win[i] { d } else { 0.0 });
        *o0 = [out(0), out(1)];
        *o1 = [out(2), out(3)];
    }
}

/// Rows of two values per window.
#[inline(always)]
fn check(r0: &[f32], r1: &[f32], windows: usize) {
    assert!(
        r0.len() == 2 * windows && r1.len() == 2 * windows,
        "2×2 windows: rows of {} and {} values for {windows} windows",
        r0.len(),
        r1.len()
    );
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::ChannelMap;

    /// Lanes of a 32-column block (lo: 0..16, hi: 16..32) that take window corners apart and
    /// put them back together.
    const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
    const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
    const INTERLEAVE_LO: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    const INTERLEAVE_HI: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

    /// Mask of the first `n` lanes (n ≤ 16).
    #[inline(always)]
    fn first(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// One block of up to 16 windows: the masks of its columns and windows.
    #[derive(Clone, Copy)]
    struct Block {
        /// Columns 0..16 and 16..32 of the block that exist.
        lo: __mmask16,
        hi: __mmask16,
        windows: __mmask16,
    }

    impl Block {
        /// The block of windows `w0..` of a row pair with `n` windows.
        #[inline(always)]
        fn at(w0: usize, n: usize) -> Block {
            let count = (n - w0).min(16);
            Block { lo: first((2 * count).min(16)), hi: first((2 * count).saturating_sub(16)), windows: first(count) }
        }
    }

    /// The four corners (top-left, top-right, bottom-left, bottom-right) of the block's
    /// windows.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn corners(r0: &[f32], r1: &[f32], w0: usize, b: Block) -> [__m512; 4] {
        // SAFETY: masked lanes are neither read nor fault; the unmasked ones are columns
        // 2·w0 .. 2·(w0 + count) < r.len() (Block::at), and wrapping_add keeps the pointer
        // arithmetic defined.
        let load = |r: &[f32]| unsafe {
            let p = r.as_ptr().wrapping_add(2 * w0);
            (_mm512_maskz_loadu_ps(b.lo, p), _mm512_maskz_loadu_ps(b.hi, p.wrapping_add(16)))
        };
        let (even, odd) = (idx(&EVEN), idx(&ODD));
        let (t_lo, t_hi) = load(r0);
        let (b_lo, b_hi) = load(r1);
        [
            _mm512_permutex2var_ps(t_lo, even, t_hi),
            _mm512_permutex2var_ps(t_lo, odd, t_hi),
            _mm512_permutex2var_ps(b_lo, even, b_hi),
            _mm512_permutex2var_ps(b_lo, odd, b_hi),
        ]
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn idx(lanes: &[i32; 16]) -> __m512i {
        // SAFETY: 16 i32 are one 512-bit load.
        unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
    }

    /// `ChannelMap::z`: `scale·x + shift` (a multiply, then an add), then ReLU when fused.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn z(f: ChannelMap, x: __m512) -> __m512 {
        let z = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(f.scale), x), _mm512_set1_ps(f.shift));
        match f.relu {
            true => {
                _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(z, _mm512_setzero_ps()), z, _mm512_setzero_ps())
            }
            false => z,
        }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn is_nan(v: __m512) -> __mmask16 {
        _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
    }

    /// `max_nan`: `a` where `a > b` or `a` is NaN, else `b`.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn max_nan(a: __m512, b: __m512) -> __m512 {
        let take_a = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) | is_nan(a);
        _mm512_mask_blend_ps(take_a, b, a)
    }

    /// `window_winner` lane by lane, and the windows' maxima.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn winners(z: [__m512; 4]) -> ([__mmask16; 4], __m512) {
        let beats = |v: __m512, best: __m512| _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best) | (is_nan(v) & !is_nan(best));
        let take_b = beats(z[1], z[0]);
        let m = _mm512_mask_blend_ps(take_b, z[0], z[1]);
        let take_c = beats(z[2], m);
        let m = _mm512_mask_blend_ps(take_c, m, z[2]);
        let take_d = beats(z[3], m);
        let win = [!take_b & !take_c & !take_d, take_b & !take_c & !take_d, take_c & !take_d, take_d];
        (win, max_nan(max_nan(z[0], z[1]), max_nan(z[2], z[3])))
    }

    /// `ChannelMap::gate`: `dy`, or 0 where the ReLU blocked the window's maximum.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn gate(f: ChannelMap, dy: __m512, z_max: __m512) -> __m512 {
        match f.relu {
            true => _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LE_OQ>(z_max, _mm512_setzero_ps()), dy),
            false => dy,
        }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn z_corners(f: ChannelMap, x: [__m512; 4]) -> [__m512; 4] {
        [z(f, x[0]), z(f, x[1]), z(f, x[2]), z(f, x[3])]
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    pub(super) fn forward(f: ChannelMap, r0: &[f32], r1: &[f32], out: &mut [MaybeUninit<f32>]) {
        for w0 in (0..out.len()).step_by(16) {
            let b = Block::at(w0, out.len());
            let (_, z_max) = winners(z_corners(f, corners(r0, r1, w0, b)));
            // SAFETY: the mask covers windows w0..w0 + count, inside out.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(w0).cast(), b.windows, z_max) };
        }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    pub(super) fn maxima(r0: &[f32], r1: &[f32], out: &mut [f32]) {
        for w0 in (0..out.len()).step_by(16) {
            let b = Block::at(w0, out.len());
            let (_, max) = winners(corners(r0, r1, w0, b));
            // SAFETY: the mask covers windows w0..w0 + count, inside out.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(w0), b.windows, max) };
        }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    pub(super) fn route(r0: &[f32], r1: &[f32], dy: &[f32], d0: &mut [MaybeUninit<f32>], d1: &mut [MaybeUninit<f32>]) {
        for w0 in (0..dy.len()).step_by(16) {
            let b = Block::at(w0, dy.len());
            let (win, _) = winners(corners(r0, r1, w0, b));
            // SAFETY: the mask covers windows w0..w0 + count, inside dy.
            let d = unsafe { _mm512_maskz_loadu_ps(b.windows, dy.as_ptr().wrapping_add(w0)) };
            let routed = |i: usize| _mm512_maskz_mov_ps(win[i], d);
            store_rows(d0, d1, w0, b, [routed(0), routed(1), routed(2), routed(3)]);
        }
    }

    /// Writes the block's four corners (top-left, top-right, bottom-left, bottom-right) back
    /// as its windows' columns of rows `d0`, `d1`.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn store_rows(d0: &mut [MaybeUninit<f32>], d1: &mut [MaybeUninit<f32>], w0: usize, b: Block, corners: [__m512; 4]) {
        let (lo, hi) = (idx(&INTERLEAVE_LO), idx(&INTERLEAVE_HI));
        for (row, (left, right)) in
            [(d0.as_mut_ptr(), (corners[0], corners[1])), (d1.as_mut_ptr(), (corners[2], corners[3]))]
        {
            let p = row.wrapping_add(2 * w0).cast::<f32>();
            // SAFETY: the masks cover the columns of the block's windows, inside d0 and d1
            // (check() in the public functions).
            unsafe {
                _mm512_mask_storeu_ps(p, b.lo, _mm512_permutex2var_ps(left, lo, right));
                _mm512_mask_storeu_ps(p.wrapping_add(16), b.hi, _mm512_permutex2var_ps(left, hi, right));
            }
        }
    }

    /// One block of windows for the backward passes: its columns, corners, winners and the
    /// output gradient as it reaches the normalisation.
    struct Backward {
        b: Block,
        x: [__m512; 4],
        win: [__mmask16; 4],
        g: __m512,
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    fn backward_block(f: ChannelMap, r0: &[f32], r1: &[f32], dy: &[f32], w0: usize) -> Backward {
        let b = Block::at(w0, dy.len());
        let x = corners(r0, r1, w0, b);
        let (win, z_max) = winners(z_corners(f, x));
        // SAFETY: the mask covers windows w0..w0 + count, inside dy.
        let d = unsafe { _mm512_maskz_loadu_ps(b.windows, dy.as_ptr().wrapping_add(w0)) };
        Backward { b, x, win, g: gate(f, d, z_max) }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    pub(super) fn gather(f: ChannelMap, r0: &[f32], r1: &[f32], dy: &[f32], g: &mut [f32], x_max: &mut [f32]) {
        for w0 in (0..dy.len()).step_by(16) {
            let Backward { b, x, win, g: gated } = backward_block(f, r0, r1, dy, w0);
            let mut xm = x[3];
            for i in [2, 1, 0] {
                xm = _mm512_mask_blend_ps(win[i], xm, x[i]);
            }
            // SAFETY: the mask covers windows w0..w0 + count, inside g and x_max.
            unsafe {
                _mm512_mask_storeu_ps(g.as_mut_ptr().wrapping_add(w0), b.windows, gated);
                _mm512_mask_storeu_ps(x_max.as_mut_ptr().wrapping_add(w0), b.windows, xm);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
    pub(super) fn grad(
        f: ChannelMap,
        k: [f32; 3],
        r0: &[f32],
        r1: &[f32],
        dy: &[f32],
        d0: &mut [MaybeUninit<f32>],
        d1: &mut [MaybeUninit<f32>],
    ) {
        let [k_g, k_x, k_0] = [_mm512_set1_ps(k[0]), _mm512_set1_ps(k[1]), _mm512_set1_ps(k[2])];
        for w0 in (0..dy.len()).step_by(16) {
            let Backward { b, x, win, g } = backward_block(f, r0, r1, dy, w0);
            let g = _mm512_mul_ps(k_g, g);
            let out =
                |i: usize| _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(k_x, x[i]), k_0), _mm512_maskz_mov_ps(win[i], g));
            store_rows(d0, d1, w0, b, [out(0), out(1), out(2), out(3)]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::ChannelMap;

    /// The row pair's windows in blocks of 8: `block(w0, count, top, bottom)` with 16 columns
    /// of each row, read in place for full blocks and from zero-padded copies for the last
    /// partial one (AVX2 has no masked loads worth using on these CPUs).
    #[inline(always)]
    fn for_blocks(r0: &[f32], r1: &[f32], mut block: impl FnMut(usize, usize, &[f32], &[f32])) {
        let n = r0.len() / 2;
        let full = n / 8 * 8;
        for w0 in (0..full).step_by(8) {
            block(w0, 8, &r0[2 * w0..2 * w0 + 16], &r1[2 * w0..2 * w0 + 16]);
        }
        if full < n {
            let (mut t, mut b) = ([0.0f32; 16], [0.0f32; 16]);
            t[..2 * (n - full)].copy_from_slice(&r0[2 * full..]);
            b[..2 * (n - full)].copy_from_slice(&r1[2 * full..]);
            block(full, n - full, &t, &b);
        }
    }

    /// 8 values of `v` from `w0` (zero-padded past its end).
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn load(v: &[f32], w0: usize, count: usize) -> __m256 {
        let mut padded = [0.0f32; 8];
        let src = match count {
            8 => &v[w0..w0 + 8],
            _ => {
                padded[..count].copy_from_slice(&v[w0..w0 + count]);
                &padded[..]
            }
        };
        // SAFETY: src holds 8 values.
        unsafe { _mm256_loadu_ps(src.as_ptr()) }
    }

    /// Stores the first `count` lanes of `v` at `out[at..]`.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn store<T>(out: &mut [T], at: usize, count: usize, v: __m256) {
        const { assert!(size_of::<T>() == 4) };
        let mut lanes = [0.0f32; 8];
        // SAFETY: lanes holds 8 values.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        let dst = &mut out[at..at + count];
        // SAFETY: T is f32 or MaybeUninit<f32> (4 bytes, checked above), and dst has count slots.
        unsafe { std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst.as_mut_ptr().cast::<f32>(), count) };
    }

    /// Columns 0, 2, …, 14 and 1, 3, …, 15 of a 16-column block.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn split(cols: &[f32]) -> (__m256, __m256) {
        // SAFETY: the callers pass 16 columns.
        let (lo, hi) = unsafe { (_mm256_loadu_ps(cols.as_ptr()), _mm256_loadu_ps(cols[8..16].as_ptr())) };
        let order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
        (order(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)), order(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)))
    }

    /// The inverse of [`split`]: 16 columns from the even and the odd ones.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn join(even: __m256, odd: __m256) -> (__m256, __m256) {
        let (a, b) = (_mm256_unpacklo_ps(even, odd), _mm256_unpackhi_ps(even, odd));
        (_mm256_permute2f128_ps::<0x20>(a, b), _mm256_permute2f128_ps::<0x31>(a, b))
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn corners(top: &[f32], bottom: &[f32]) -> [__m256; 4] {
        let ((tl, tr), (bl, br)) = (split(top), split(bottom));
        [tl, tr, bl, br]
    }

    /// `ChannelMap::z`: `scale·x + shift` (a multiply, then an add), then ReLU when fused.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn z(f: ChannelMap, x: __m256) -> __m256 {
        let z = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(f.scale), x), _mm256_set1_ps(f.shift));
        match f.relu {
            true => _mm256_blendv_ps(z, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LE_OQ>(z, _mm256_setzero_ps())),
            false => z,
        }
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn is_nan(v: __m256) -> __m256 {
        _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)
    }

    /// `max_nan`: `a` where `a > b` or `a` is NaN, else `b`.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn max_nan(a: __m256, b: __m256) -> __m256 {
        _mm256_blendv_ps(b, a, _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(a, b), is_nan(a)))
    }

    /// `window_winner` lane by lane (all-ones lanes where a corner wins), and the maxima.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn winners(z: [__m256; 4]) -> ([__m256; 4], __m256) {
        let beats = |v: __m256, best: __m256| {
            _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, best), _mm256_andnot_ps(is_nan(best), is_nan(v)))
        };
        let take_b = beats(z[1], z[0]);
        let m = _mm256_blendv_ps(z[0], z[1], take_b);
        let take_c = beats(z[2], m);
        let m = _mm256_blendv_ps(m, z[2], take_c);
        let take_d = beats(z[3], m);
        let not = |v: __m256| _mm256_andnot_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(-1)));
        let none_after_b = _mm256_andnot_ps(take_c, not(take_d));
        let win = [
            _mm256_andnot_ps(take_b, none_after_b),
            _mm256_and_ps(take_b, none_after_b),
            _mm256_andnot_ps(take_d, take_c),
            take_d,
        ];
        (win, max_nan(max_nan(z[0], z[1]), max_nan(z[2], z[3])))
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn z_corners(f: ChannelMap, x: [__m256; 4]) -> [__m256; 4] {
        [z(f, x[0]), z(f, x[1]), z(f, x[2]), z(f, x[3])]
    }

    /// Writes the block's four corners (top-left, top-right, bottom-left, bottom-right) back
    /// as the first `count` windows' columns of rows `d0`, `d1` from window `w0`.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn store_rows(
        d0: &mut [MaybeUninit<f32>],
        d1: &mut [MaybeUninit<f32>],
        w0: usize,
        count: usize,
        corners: [__m256; 4],
    ) {
        for (row, (left, right)) in [(d0, (corners[0], corners[1])), (d1, (corners[2], corners[3]))] {
            let (lo, hi) = join(left, right);
            store(row, 2 * w0, (2 * count).min(8), lo);
            if count > 4 {
                store(row, 2 * w0 + 8, 2 * count - 8, hi);
            }
        }
    }

    /// `ChannelMap::gate`: `dy`, or 0 where the ReLU blocked the window's maximum.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    fn gate(f: ChannelMap, dy: __m256, z_max: __m256) -> __m256 {
        match f.relu {
            true => _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(z_max, _mm256_setzero_ps()), dy),
            false => dy,
        }
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    pub(super) fn forward(f: ChannelMap, r0: &[f32], r1: &[f32], out: &mut [MaybeUninit<f32>]) {
        for_blocks(r0, r1, |w0, count, top, bottom| {
            let (_, z_max) = winners(z_corners(f, corners(top, bottom)));
            store(out, w0, count, z_max);
        });
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    pub(super) fn maxima(r0: &[f32], r1: &[f32], out: &mut [f32]) {
        for_blocks(r0, r1, |w0, count, top, bottom| {
            let (_, max) = winners(corners(top, bottom));
            store(out, w0, count, max);
        });
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    pub(super) fn route(r0: &[f32], r1: &[f32], dy: &[f32], d0: &mut [MaybeUninit<f32>], d1: &mut [MaybeUninit<f32>]) {
        for_blocks(r0, r1, |w0, count, top, bottom| {
            let (win, _) = winners(corners(top, bottom));
            let d = load(dy, w0, count);
            let routed = |i: usize| _mm256_and_ps(win[i], d);
            store_rows(d0, d1, w0, count, [routed(0), routed(1), routed(2), routed(3)]);
        });
    }

    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    pub(super) fn gather(f: ChannelMap, r0: &[f32], r1: &[f32], dy: &[f32], g: &mut [f32], x_max: &mut [f32]) {
        for_blocks(r0, r1, |w0, count, top, bottom| {
            let x = corners(top, bottom);
            let (win, z_max) = winners(z_corners(f, x));
            store(g, w0, count, gate(f, load(dy, w0, count), z_max));
            let mut xm = x[3];
            for i in [2, 1, 0] {
                xm = _mm256_blendv_ps(xm, x[i], win[i]);
            }
            store(x_max, w0, count, xm);
        });
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    pub(super) fn grad(
        f: ChannelMap,
        k: [f32; 3],
        r0: &[f32],
        r1: &[f32],
        dy: &[f32],
        d0: &mut [MaybeUninit<f32>],
        d1: &mut [MaybeUninit<f32>],
    ) {
        let [k_g, k_x, k_0] = [_mm256_set1_ps(k[0]), _mm256_set1_ps(k[1]), _mm256_set1_ps(k[2])];
        for_blocks(r0, r1, |w0, count, top, bottom| {
            let x = corners(top, bottom);
            let (win, z_max) = winners(z_corners(f, x));
            let g = _mm256_mul_ps(k_g, gate(f, load(dy, w0, count), z_max));
            let out = |i: usize| _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(k_x, x[i]), k_0), _mm256_and_ps(win[i], g));
            store_rows(d0, d1, w0, count, [out(0), out(1), out(2), out(3)]);
        });
    }
}

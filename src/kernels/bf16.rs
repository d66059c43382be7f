//! Matrix products with bf16 inputs and f32 accumulation (AVX512-BF16's `vdpbf16ps`), for the
//! convolutions when training runs at `precision = "bf16"`.
//!
//! Why: `vdpbf16ps` does two multiply-adds per f32 lane where an FMA does one, and the
//! convolutions are 70% of a training step (measured: their time 50 → 38 ms a step). Both operands are rounded to bf16 (8 significant
//! bits, round to nearest even) as they are packed; every product and sum stays f32, and so do
//! the weights, batch norm, the dense layers and the optimizer (mixed precision, as PyTorch's
//! CPU autocast does it).
//!
//! The product is blocked for the convolutions' shapes (tens to hundreds of rows and columns,
//! a few hundred deep): the left operand as row-major pairs along the depth ([`PackedLhs`],
//! the weights packed once per batch), the right one packed strip by strip of [`NR`] columns
//! (a strip of 288 pairs is 36 KiB, within L1), and an [`MR`] × [`NR`] micro-kernel whose 16
//! accumulators stay in registers, broadcasting each left pair across the lanes.

use std::sync::atomic::{AtomicBool, Ordering};

/// Rows of the micro-kernel.
const MR: usize = 8;
/// Columns of the micro-kernel (two registers of 16).
const NR: usize = 32;

/// Whether this CPU has the instructions.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Why the convolutions cannot run their products in bf16 here, if they cannot: only our
/// flex kernels do, and only with the instructions.
pub fn unavailable() -> Option<&'static str> {
    if !super::use_kernels() {
        Some("bf16 runs in the default CPU build only")
    } else if !available() {
        Some("this CPU has no AVX512-BF16")
    } else {
        None
    }
}

/// Runs the convolutions' products in bf16 from now on (or in f32 again); `Err` with the
/// reason ([`unavailable`]) when they cannot.
pub fn enable(on: bool) -> Result<(), &'static str> {
    if let Some(why) = unavailable().filter(|_| on) {
        return Err(why);
    }
    ENABLED.store(on, Ordering::Relaxed);
    Ok(())
}

/// Whether the convolutions run their products in bf16.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `x` rounded to bf16 (nearest, ties to even), as its bits; NaN stays NaN.
#[inline(always)]
pub fn round(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
pub fn value(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Two bf16 values as one 32-bit lane, `lo` in the low half (what `vdpbf16ps` pairs).
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    round(lo) as u32 | (round(hi) as u32) << 16
}

/// A left operand rounded to bf16 once, for many products (the convolution's weights, shared
/// by every image of a batch): row-major pairs along the depth, `pairs[i·kp + p]` holding
/// (A[i, 2p], A[i, 2p + 1]), the depth past k zero.
pub struct PackedLhs {
    m: usize,
    k: usize,
    pairs: Vec<u32>,
}

impl PackedLhs {
    /// Element (i, l) of `lhs` (m × k) is `lhs[i·s0 + l·s1]` for `strides = [s0, s1]`.
    pub fn new(m: usize, k: usize, lhs: &[f32], [s0, s1]: [usize; 2]) -> PackedLhs {
        let kp = k.div_ceil(2);
        if s1 == 1 && available() {
            assert!(m == 0 || k == 0 || lhs.len() >= (m - 1) * s0 + k, "bf16 pack: operand too short");
            let mut pairs = vec![0u32; m * kp];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: available() checked the features; the assertion bounds every row.
            unsafe {
                avx512::pack_rows(m, k, lhs, s0, &mut pairs)
            };
            return PackedLhs { m, k, pairs };
        }
        let at = |i: usize, l: usize| if l < k { lhs[i * s0 + l * s1] } else { 0.0 };
        let pairs = (0..m).flat_map(|i| (0..kp).map(move |p| (i, p))).map(|(i, p)| pair(at(i, 2 * p), at(i, 2 * p + 1))).collect();
        PackedLhs { m, k, pairs }
    }
}

/// `dst (m × n, row-major) (+)= lhs · rhs` for the packed `lhs` (m × k) and `rhs` (k × n,
/// row-major with rows `rhs_row` apart). Panics unless [`available`].
pub fn matmul(lhs: &PackedLhs, n: usize, dst: &mut [f32], accumulate: bool, rhs: &[f32], rhs_row: usize) {
    assert!(available(), "bf16 products need AVX512-BF16");
    let k = lhs.k;
    assert!(k == 0 || n == 0 || rhs.len() >= (k - 1) * rhs_row + n, "bf16 matmul right operand too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() checked the features; the assertion above bounds the right operand.
    unsafe {
        avx512::matmul(lhs, n, dst, accumulate, |j0, strip| avx512::pack_rhs_strip(n, k, rhs, rhs_row, j0, strip))
    }
}

/// `dst (m × n, row-major) (+)= lhs · rhs_tᵀ` for two packed operands of the same depth (the
/// weight gradient `col · dYᵀ`, both with the depth contiguous). Panics unless [`available`].
pub fn matmul_t(lhs: &PackedLhs, rhs_t: &PackedLhs, dst: &mut [f32], accumulate: bool) {
    assert!(available(), "bf16 products need AVX512-BF16");
    assert_eq!(lhs.k, rhs_t.k, "bf16 matmul_t: depths differ");
    let (n, kp) = (rhs_t.m, lhs.k.div_ceil(2));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() checked the features.
    unsafe {
        avx512::matmul(lhs, n, dst, accumulate, |j0, strip| {
            // The transpose of rows j0.. of rhs_t: lane j of pair p is rhs_t's pair p of row j0 + j.
            let cols = NR.min(n - j0);
            for p in 0..kp {
                let lanes = &mut strip[p * NR..][..NR];
                for (j, lane) in lanes[..cols].iter_mut().enumerate() {
                    *lane = rhs_t.pairs[(j0 + j) * kp + p];
                }
                lanes[cols..].fill(0);
            }
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR, PackedLhs};

    /// The same 512 bits as 32 bf16 values.
    #[inline(always)]
    fn bh(v: __m512i) -> __m512bh {
        // SAFETY: both are 512-bit vectors, and every bit pattern is a valid value of each.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    #[inline(always)]
    fn words(v: __m512bh) -> __m512i {
        // SAFETY: as in bh.
        unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
    }

    /// Word order that interleaves the two rows `_mm512_cvtne2ps_pbh` puts in the low and high
    /// halves: (r0[j], r1[j]) for j in 0..16.
    const INTERLEAVE: [i16; 32] = {
        let mut idx = [0i16; 32];
        let mut j = 0;
        while j < 16 {
            idx[2 * j] = j as i16;
            idx[2 * j + 1] = 16 + j as i16;
            j += 1;
        }
        idx
    };

    /// Columns `j0..j0 + NR` of `rhs` (k × n, rows `row` apart): per pair of depths p, NR
    /// lanes of (B[2p, j], B[2p + 1, j]), rounded by the CPU (nearest even); columns past n
    /// and the depth past k are zeros.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) fn pack_rhs_strip(n: usize, k: usize, rhs: &[f32], row: usize, j0: usize, out: &mut [u32]) {
        let cols = NR.min(n - j0);
        let idx = unsafe { _mm512_loadu_si512(INTERLEAVE.as_ptr().cast()) };
        for p in 0..k.div_ceil(2) {
            for half in 0..2 {
                let c0 = 16 * half;
                let count = cols.saturating_sub(c0).min(16);
                let mask: __mmask16 = if count == 16 { 0xFFFF } else { (1u16 << count) - 1 };
                let load = |l: usize| {
                    if l >= k || count == 0 {
                        return _mm512_setzero_ps();
                    }
                    let at = l * row + j0 + c0;
                    assert!(at + count <= rhs.len());
                    // SAFETY: the mask limits the load to rhs[at..at + count] (asserted).
                    unsafe { _mm512_maskz_loadu_ps(mask, rhs.as_ptr().add(at)) }
                };
                let (r0, r1) = (load(2 * p), load(2 * p + 1));
                let words = _mm512_permutexvar_epi16(idx, words(_mm512_cvtne2ps_pbh(r1, r0)));
                let dst = &mut out[p * NR + c0..][..16];
                // SAFETY: dst holds 16 lanes.
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), words) };
            }
        }
    }

    /// MR × NR products of rows `rows` of the packed lhs and one rhs strip, `kp` pairs deep.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn micro(kp: usize, rows: [&[u32]; MR], b: &[u32]) -> [[__m512; 2]; MR] {
        assert!(b.len() >= kp * NR && rows.iter().all(|r| r.len() >= kp));
        let mut c = [[_mm512_setzero_ps(); 2]; MR];
        for p in 0..kp {
            // SAFETY: p < kp, within the strip and every row (asserted).
            let (b0, b1) = unsafe {
                let at = b.as_ptr().add(p * NR);
                (bh(_mm512_loadu_si512(at.cast())), bh(_mm512_loadu_si512(at.add(16).cast())))
            };
            for (acc, row) in c.iter_mut().zip(&rows) {
                // SAFETY: as above.
                let lanes = unsafe { *row.get_unchecked(p) } as i32;
                let av = bh(_mm512_set1_epi32(lanes));
                acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            }
        }
        c
    }

    /// Rows of `lhs` (m × k, depth contiguous, rows `row` apart) as pairs along the depth,
    /// rounded by the CPU (nearest even), into `out` (m × kp).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) fn pack_rows(m: usize, k: usize, lhs: &[f32], row: usize, out: &mut [u32]) {
        let kp = k.div_ceil(2);
        for i in 0..m {
            for l0 in (0..k).step_by(32) {
                let load = |from: usize| {
                    let count = k.saturating_sub(from).min(16);
                    if count == 0 {
                        return _mm512_setzero_ps();
                    }
                    let mask: __mmask16 = if count == 16 { 0xFFFF } else { (1u16 << count) - 1 };
                    let at = i * row + from;
                    assert!(at + count <= lhs.len());
                    // SAFETY: the mask limits the load to lhs[at..at + count] (asserted).
                    unsafe { _mm512_maskz_loadu_ps(mask, lhs.as_ptr().add(at)) }
                };
                let words = words(_mm512_cvtne2ps_pbh(load(l0 + 16), load(l0)));
                let lanes = (kp - l0 / 2).min(16);
                let mask: __mmask16 = if lanes == 16 { 0xFFFF } else { (1u16 << lanes) - 1 };
                let at = i * kp + l0 / 2;
                assert!(at + lanes <= out.len());
                // SAFETY: the mask limits the store to out[at..at + lanes] (asserted).
                unsafe { _mm512_mask_storeu_epi32(out.as_mut_ptr().add(at).cast(), mask, words) };
            }
        }
    }

    /// The product of the packed `lhs` and a right operand of `n` columns whose strips
    /// `pack(j0, strip)` writes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) fn matmul(lhs: &PackedLhs, n: usize, dst: &mut [f32], accumulate: bool, mut pack: impl FnMut(usize, &mut [u32])) {
        let (m, k) = (lhs.m, lhs.k);
        assert!(dst.len() >= m * n, "bf16 matmul destination too short");
        if m == 0 {
            return;
        }
        let kp = k.div_ceil(2);
        let mut b = vec![0u32; kp * NR];
        for j0 in (0..n).step_by(NR) {
            pack(j0, &mut b);
            for i0 in (0..m).step_by(MR) {
                // Rows past m repeat the last one; their results are not stored.
                let rows: [&[u32]; MR] = std::array::from_fn(|r| &lhs.pairs[(i0 + r).min(m - 1) * kp..][..kp]);
                let c = micro(kp, rows, &b);
                for (r, acc) in c.iter().enumerate().take(m - i0) {
                    for (h, &v) in acc.iter().enumerate() {
                        let col = j0 + 16 * h;
                        if col >= n {
                            break;
                        }
                        let count = (n - col).min(16);
                        let mask: __mmask16 = if count == 16 { 0xFFFF } else { (1u16 << count) - 1 };
                        let at = (i0 + r) * n + col;
                        assert!(at + count <= dst.len());
                        // SAFETY: the mask limits the access to dst[at..at + count] (asserted).
                        unsafe {
                            let ptr = dst.as_mut_ptr().add(at);
                            let v = if accumulate { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, ptr), v) } else { v };
                            _mm512_mask_storeu_ps(ptr, mask, v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round(1.0), 0x3F80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even 1.
        assert_eq!(value(round(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(value(round(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(value(round(-2.5)), -2.5);
        assert!(value(round(f32::NAN)).is_nan() && value(round(f32::INFINITY)) == f32::INFINITY);
        for x in values(1000, 1) {
            assert!((value(round(x)) - x).abs() <= x.abs() / 256.0, "{x}");
        }
    }

    /// The vectorised packing of depth-contiguous rows equals the scalar one, and the
    /// transposed product is the product with the transpose, bit for bit.
    #[test]
    fn packings_and_the_transposed_product_agree() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        for (m, n, k) in [(3, 5, 1), (9, 40, 33), (576, 128, 196)] {
            let (a, b) = (values(m * k, 40), values(n * k, 41));
            let fast = PackedLhs::new(m, k, &a, [k, 1]);
            let a_t: Vec<f32> = (0..m * k).map(|t| a[(t % m) * k + t / m]).collect();
            let slow = PackedLhs::new(m, k, &a_t, [1, m]);
            assert_eq!(fast.pairs, slow.pairs, "{m}×{k}");
            let b_t: Vec<f32> = (0..n * k).map(|t| b[(t % n) * k + t / n]).collect();
            let (mut via_t, mut plain) = (vec![0.0; m * n], vec![0.0; m * n]);
            matmul_t(&fast, &PackedLhs::new(n, k, &b, [k, 1]), &mut via_t, false);
            matmul(&fast, n, &mut plain, false, &b_t, n);
            assert_eq!(via_t, plain, "{m}×{k}·{k}×{n}");
        }
    }

    /// The product equals the f64 product of the bf16-rounded operands (up to f32 summation),
    /// for shapes off the blocking (m, n and k not multiples of 8, 32 and 2), a transposed
    /// left operand and a right one with longer rows, with and without accumulation.
    #[test]
    fn products_are_those_of_the_rounded_operands() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        for (case, (m, n, k)) in [(1, 1, 1), (8, 32, 2), (13, 37, 9), (32, 784, 9), (130, 70, 577), (9, 33, 196)].into_iter().enumerate() {
            let (a, b) = (values(m * k, 10 + case as u64), values(k * (n + 3), 20 + case as u64));
            let start = values(m * n, 30 + case as u64);
            for (transposed, accumulate) in [(false, false), (true, true)] {
                let packed = if transposed {
                    let a_t: Vec<f32> = (0..m * k).map(|t| a[(t % m) * k + t / m]).collect();
                    PackedLhs::new(m, k, &a_t, [1, m])
                } else {
                    PackedLhs::new(m, k, &a, [k, 1])
                };
                let mut dst = start.clone();
                matmul(&packed, n, &mut dst, accumulate, &b, n + 3);
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k).map(|l| value(round(a[i * k + l])) as f64 * value(round(b[l * (n + 3) + j])) as f64).sum();
                        let want = exact + if accumulate { start[i * n + j] as f64 } else { 0.0 };
                        let got = dst[i * n + j] as f64;
                        assert!((got - want).abs() < 1e-5 * (k as f64).sqrt().max(1.0), "{m}×{k}·{k}×{n} transposed {transposed} at ({i}, {j}): {got} vs {want}");
                    }
                }
            }
        }
    }
}

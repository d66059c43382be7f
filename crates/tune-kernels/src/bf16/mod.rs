//! Matrix products with bf16 inputs and f32 accumulation (AVX512-BF16's `vdpbf16ps`), for the
//! convolutions when training runs at `precision = "bf16"`.
//!
//! Why: `vdpbf16ps` does two multiply-adds per f32 lane where an FMA does one, and the
//! convolutions are 70% of a training step (measured: their time 50 → 38 ms a step, then 29 ms
//! with the products reading im2col's matrix from the image, [`shifted`]). Both operands are
//! rounded to bf16 (8 significant bits, round to nearest even) as they are packed; every
//! product and sum stays f32, and so do
//! the weights, batch norm, the dense layers and the optimizer (mixed precision, as PyTorch's
//! CPU autocast does it).
//!
//! The product is blocked for the convolutions' shapes (tens to hundreds of rows and columns,
//! a few hundred deep): the left operand as row-major pairs along the depth ([`PackedLhs`],
//! the weights packed once per batch), the right one packed strip by strip of [`NR`] columns
//! (a strip of 288 pairs is 36 KiB, within L1), and an 8 × [`NR`] micro-kernel whose 16
//! accumulators stay in registers, broadcasting each left pair across the lanes.

use std::sync::atomic::{AtomicBool, Ordering};

/// Columns of the micro-kernel (two registers of 16): a strip of the shifted matrices' masks.
const NR: usize = super::shifted::STRIP;

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

/// Why the convolutions cannot run their products in bf16 here, if they cannot: they need the
/// instructions. (Builds whose model does not run these kernels are refused by tune itself.)
pub fn unavailable() -> Option<&'static str> {
    (!available()).then_some("this CPU has no AVX512-BF16")
}

/// Runs the convolutions' products in bf16 from now on (or in f32 again); the settings'
/// install ([`crate::settings::install`]) checked that the CPU can.
pub(crate) fn set(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
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
        let pairs = (0..m)
            .flat_map(|i| (0..kp).map(move |p| (i, p)))
            .map(|(i, p)| pair(at(i, 2 * p), at(i, 2 * p + 1)))
            .collect();
        PackedLhs { m, k, pairs }
    }

    /// Its memory, for the next packing.
    pub fn into_buffer(self) -> Vec<u32> {
        self.pairs
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
mod avx512;
pub mod shifted;

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
        for (case, (m, n, k)) in
            [(1, 1, 1), (8, 32, 2), (13, 37, 9), (32, 784, 9), (130, 70, 577), (9, 33, 196)].into_iter().enumerate()
        {
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
                        let exact: f64 = (0..k)
                            .map(|l| value(round(a[i * k + l])) as f64 * value(round(b[l * (n + 3) + j])) as f64)
                            .sum();
                        let want = exact + if accumulate { start[i * n + j] as f64 } else { 0.0 };
                        let got = dst[i * n + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-5 * (k as f64).sqrt().max(1.0),
                            "{m}×{k}·{k}×{n} transposed {transposed} at ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

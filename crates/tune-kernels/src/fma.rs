//! f32 convolution products on [`Shifted`] matrices, for AVX-512 (`vfmadd231ps`).
//!
//! Why our own and not the GEMM crate's: the crate takes its operands as strided matrices, so
//! im2col's matrix had to be written (about 900 KB an image for the seed's second convolution),
//! and the input gradient's `Wᵀ · dY` written in full before col2im added it onto the image.
//! Here the forward product packs its strips straight from the image and writes bias +
//! product once; the input gradient's product adds each result onto the image as it leaves
//! the registers. The weight gradient keeps the crate's product on an explicit im2col matrix:
//! both of its operands have the depth contiguous, which the crate handles at 230–245 GFLOP/s
//! a core here.
//!
//! The product is blocked as [`super::bf16`]'s: [`STRIP`]-column strips of the right operand
//! (288 depths × 32 columns is 36 KiB, within L1), an [`MR`] × [`STRIP`] micro-kernel with 16
//! accumulators in registers, the left operand read in place (row-major, as the weights are).
//! The sums run in a fixed order (depth by depth), so results do not depend on threads.

use crate::blocked::{MR, STRIP};
use crate::shifted::Shifted;

/// Whether these products run: where our kernels run at the AVX-512 level (the installed
/// [`crate::settings`] can lower it, and the GEMM crate's products then run instead).
pub fn available() -> bool {
    crate::simd::level() == crate::simd::Level::Avx512
}

/// A row-major left operand: `m × k`, rows `row` apart.
#[derive(Clone, Copy)]
pub struct Lhs<'a> {
    pub m: usize,
    pub k: usize,
    pub row: usize,
    pub data: &'a [f32],
}

impl Lhs<'_> {
    fn check(&self) {
        assert!(
            self.m == 0 || self.k == 0 || self.data.len() >= (self.m - 1) * self.row + self.k,
            "fma product: left operand too short"
        );
    }
}

/// `dst (m × positions) = bias + lhs · col(image)`, each row starting from its bias: a
/// convolution's forward product. Every value of `dst` is written.
pub fn matmul_bias(lhs: Lhs<'_>, col: &Shifted, image: &[f32], bias: &[f32], dst: &mut [std::mem::MaybeUninit<f32>]) {
    assert!(available(), "fma products need AVX-512");
    lhs.check();
    col.check(image);
    assert_eq!(lhs.k, col.rows(), "fma matmul: depths differ");
    assert!(dst.len() >= lhs.m * col.positions() && bias.len() >= lhs.m, "fma matmul: destination or bias too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() saw the features; the checks above bound every access.
    unsafe {
        avx512::matmul_bias(lhs, col, image, bias, dst)
    }
}

/// Adds `col2im(lhs · rhs)` onto `image_grad`, where `rhs` is `lhs.k` × positions, rows
/// `rhs_row` apart: a convolution's input gradient `col2im(Wᵀ · dY)`, each value added as it
/// leaves the registers (in a fixed order: strips of positions, then rows). `col`'s rows
/// should be offset-major ([`Shifted::offset_major`]), so that the eight rows stored together
/// go to different planes.
pub fn matmul_col2im(lhs: Lhs<'_>, rhs: &[f32], rhs_row: usize, col: &Shifted, image_grad: &mut [f32]) {
    assert!(available(), "fma products need AVX-512");
    lhs.check();
    col.check(image_grad);
    assert_eq!(lhs.m, col.rows(), "fma col2im: rows differ");
    let (k, n) = (lhs.k, col.positions());
    assert!(k == 0 || n == 0 || rhs.len() >= (k - 1) * rhs_row + n, "fma col2im: right operand too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in matmul_bias.
    unsafe {
        avx512::matmul_col2im(lhs, rhs, rhs_row, col, image_grad)
    }
}

/// MR × STRIP products of `rows` of a left operand and one packed strip (`k` rows of STRIP
/// values), `k` deep, summed depth by depth.
///
/// # Safety
/// Only from code running with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn micro(k: usize, rows: [&[f32]; MR], b: &[f32]) -> [[std::arch::x86_64::__m512; 2]; MR] {
    // SAFETY: the caller's.
    unsafe { avx512::micro(k, rows, b) }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Lhs, MR, STRIP, Shifted};
    use crate::blocked::lanes;

    /// MR × STRIP products of rows `rows` of the left operand and one strip, `k` deep.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn micro(k: usize, rows: [&[f32]; MR], b: &[f32]) -> [[__m512; 2]; MR] {
        assert!(b.len() >= k * STRIP && rows.iter().all(|r| r.len() >= k));
        let mut c = [[_mm512_setzero_ps(); 2]; MR];
        for l in 0..k {
            // SAFETY: l < k, within the strip and every row (asserted).
            let (b0, b1) = unsafe {
                let at = b.as_ptr().add(l * STRIP);
                (_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16)))
            };
            for (acc, row) in c.iter_mut().zip(&rows) {
                // SAFETY: as above.
                let a = _mm512_set1_ps(unsafe { *row.get_unchecked(l) });
                acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
            }
        }
        c
    }

    /// [`crate::blocked::blocked`] on the row-major `lhs` with the FMA micro-kernel.
    #[inline(always)]
    fn blocked(
        lhs: Lhs<'_>,
        n: usize,
        pack: impl FnMut(usize, &mut [f32]),
        store: impl FnMut(usize, usize, __m512, __mmask16),
    ) {
        let k = lhs.k;
        // SAFETY (micro): every caller is a target_feature function of this module.
        crate::blocked::blocked(
            lhs.m,
            n,
            k * STRIP,
            |i| &lhs.data[i * lhs.row..][..k],
            pack,
            |rows, b| unsafe { micro(k, rows, b) },
            store,
        )
    }

    /// Positions `j0..j0 + STRIP` of the shifted matrix, loaded from the image under the rows'
    /// masks (zeros elsewhere), prefetching the next strip's lines.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn pack_shifted_strip(col: &Shifted, image: &[f32], j0: usize, out: &mut [f32]) {
        assert!(out.len() >= col.rows() * STRIP);
        let strip = j0 / STRIP;
        for r in 0..col.rows() {
            let (start, masks) = col.row(r);
            let at = image.as_ptr().wrapping_offset(start + j0 as isize);
            // Masked loads do not bring the hardware prefetcher along.
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(STRIP).cast());
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(STRIP + 16).cast());
            for half in 0..2 {
                // SAFETY: the masks admit only positions whose source lies in the image
                // (Shifted::new), whose size the caller checked; the store stays in out.
                unsafe {
                    let v = _mm512_maskz_loadu_ps((masks[strip] >> (16 * half)) as u16, at.wrapping_add(16 * half));
                    _mm512_storeu_ps(out.as_mut_ptr().add(r * STRIP + 16 * half), v);
                }
            }
        }
    }

    /// Columns `j0..j0 + STRIP` of a row-major `k × n` operand (rows `row` apart), zeros past n.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn pack_strip(n: usize, k: usize, rhs: &[f32], row: usize, j0: usize, out: &mut [f32]) {
        assert!(out.len() >= k * STRIP && (k == 0 || rhs.len() >= (k - 1) * row + n));
        for l in 0..k {
            let at = rhs.as_ptr().wrapping_add(l * row + j0);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(4 * row).cast());
            for half in 0..2 {
                let from = j0 + 16 * half;
                // SAFETY: the mask keeps the load inside row l's n columns (asserted above).
                unsafe {
                    let v = _mm512_maskz_loadu_ps(lanes(n.saturating_sub(from)), at.wrapping_add(16 * half));
                    _mm512_storeu_ps(out.as_mut_ptr().add(l * STRIP + 16 * half), v);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn matmul_bias(
        lhs: Lhs<'_>,
        col: &Shifted,
        image: &[f32],
        bias: &[f32],
        dst: &mut [std::mem::MaybeUninit<f32>],
    ) {
        let n = col.positions();
        blocked(
            lhs,
            n,
            |j0, strip| pack_shifted_strip(col, image, j0, strip),
            // SAFETY: this function runs with AVX-512F; the caller checked dst's and bias's
            // sizes, and blocked() passes i < m and masks inside the n columns.
            |i, at, v, mask| unsafe { crate::blocked::store_bias(dst, n, bias, i, at, v, mask) },
        );
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn matmul_col2im(lhs: Lhs<'_>, rhs: &[f32], rhs_row: usize, col: &Shifted, image_grad: &mut [f32]) {
        let (n, k) = (col.positions(), lhs.k);
        blocked(
            lhs,
            n,
            |j0, strip| pack_strip(n, k, rhs, rhs_row, j0, strip),
            |i, at, v, mask| {
                // SAFETY: this function runs with AVX-512F; the caller checked the image's size.
                unsafe { col.add_onto(image_grad, i, at, v, mask) }
            },
        );
    }
}

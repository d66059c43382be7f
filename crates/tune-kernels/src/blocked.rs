//! The blocked matrix product both of our product kernels run ([`super::bf16`] and
//! [`super::fma`]): the right operand strip by strip of [`STRIP`] columns, [`MR`] rows of the
//! left one at a time through a micro-kernel whose 16 accumulators stay in registers, and each
//! result register handed to the caller's store (plain, with a bias, or added onto an image).
//! Only the element type and the micro-kernel differ between the two.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::{__m512, __mmask16, _mm512_add_ps, _mm512_mask_storeu_ps, _mm512_set1_ps};
use std::mem::MaybeUninit;

pub use super::shifted::STRIP;

/// Rows of the micro-kernels.
pub const MR: usize = 8;

/// `m` rows (`row(i)`) by `n` columns: for each strip (written by `pack(j0, strip)` into
/// `strip_len` elements) and each [`MR`] rows, `micro(rows, strip)` gives MR × STRIP results,
/// which go to `store(row, first column, 16 values, mask of the columns inside n)` in a fixed
/// order: strips, then rows. Rows past m repeat the last one; their results are not stored.
#[inline(always)]
pub fn blocked<'a, E: Copy + Default + 'a>(
    m: usize,
    n: usize,
    strip_len: usize,
    row: impl Fn(usize) -> &'a [E],
    mut pack: impl FnMut(usize, &mut [E]),
    micro: impl Fn([&'a [E]; MR], &[E]) -> [[__m512; 2]; MR],
    mut store: impl FnMut(usize, usize, __m512, __mmask16),
) {
    if m == 0 {
        return;
    }
    let mut b = vec![E::default(); strip_len];
    for j0 in (0..n).step_by(STRIP) {
        pack(j0, &mut b);
        for i0 in (0..m).step_by(MR) {
            let c = micro(std::array::from_fn(|r| row((i0 + r).min(m - 1))), &b);
            for (r, acc) in c.iter().enumerate().take(m - i0) {
                for (h, &v) in acc.iter().enumerate() {
                    let col = j0 + 16 * h;
                    if col >= n {
                        break;
                    }
                    store(i0 + r, col, v, lanes(n - col));
                }
            }
        }
    }
}

/// The mask of the first `count` of 16 lanes (all of them from 16 on).
#[inline(always)]
pub fn lanes(count: usize) -> __mmask16 {
    if count >= 16 { 0xFFFF } else { (1u16 << count) - 1 }
}

/// The forward products' store: `bias[i] + v` into row i (`n` values) of uninitialised `dst`,
/// at columns `col..` under `mask`.
///
/// # Safety
/// Only from code running with AVX-512F, with i < the rows `dst` and `bias` hold and `mask`
/// inside row i's n values (as [`blocked`] passes them).
#[inline(always)]
pub unsafe fn store_bias(
    dst: &mut [MaybeUninit<f32>],
    n: usize,
    bias: &[f32],
    i: usize,
    col: usize,
    v: __m512,
    mask: __mmask16,
) {
    // SAFETY: the caller's contract; only stores, so dst need not be initialised.
    unsafe {
        _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i * n + col).cast(), mask, _mm512_add_ps(v, _mm512_set1_ps(bias[i])))
    }
}

//! The AVX512-BF16 code: packing and the blocked product.

use std::arch::x86_64::*;

use super::{NR, PackedLhs};
use crate::blocked::{MR, lanes};
use crate::shifted::Shifted;

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
            let mask = lanes(count);
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
            let pair = unsafe { *row.get_unchecked(p) } as i32;
            let av = bh(_mm512_set1_epi32(pair));
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
            // Four blocks ahead in the row (the operand comes from memory; masked loads do not
            // bring the hardware prefetcher along). Past the row's end this is the next row's start.
            let ahead = lhs.as_ptr().wrapping_add(i * row + l0 + 128);
            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16).cast());
            let load = |from: usize| {
                let count = k.saturating_sub(from).min(16);
                if count == 0 {
                    return _mm512_setzero_ps();
                }
                let mask = lanes(count);
                let at = i * row + from;
                assert!(at + count <= lhs.len());
                // SAFETY: the mask limits the load to lhs[at..at + count] (asserted).
                unsafe { _mm512_maskz_loadu_ps(mask, lhs.as_ptr().add(at)) }
            };
            let words = words(_mm512_cvtne2ps_pbh(load(l0 + 16), load(l0)));
            let count = (kp - l0 / 2).min(16);
            let mask = lanes(count);
            let at = i * kp + l0 / 2;
            assert!(at + count <= out.len());
            // SAFETY: the mask limits the store to out[at..at + count] (asserted).
            unsafe { _mm512_mask_storeu_epi32(out.as_mut_ptr().add(at).cast(), mask, words) };
        }
    }
}

/// The product of the packed `lhs` and a right operand of `n` columns whose strips
/// `pack(j0, strip)` writes, into `dst` (m × n, row-major), added to it when `accumulate`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn matmul(
    lhs: &PackedLhs,
    n: usize,
    dst: &mut [f32],
    accumulate: bool,
    pack: impl FnMut(usize, &mut [u32]),
) {
    assert!(dst.len() >= lhs.m * n, "bf16 matmul destination too short");
    blocked(lhs, n, pack, |i, col, v, mask| {
        let at = i * n + col;
        // SAFETY: blocked() passes i < m and a mask within the n columns from col, so the
        // access stays inside dst (asserted m·n above).
        unsafe {
            let ptr = dst.as_mut_ptr().add(at);
            let v = if accumulate { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, ptr), v) } else { v };
            _mm512_mask_storeu_ps(ptr, mask, v);
        }
    });
}

/// [`matmul`] into uninitialised `dst`, each row starting from its `bias` (written once, not
/// filled first and read back).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn matmul_bias(
    lhs: &PackedLhs,
    n: usize,
    bias: &[f32],
    dst: &mut [std::mem::MaybeUninit<f32>],
    pack: impl FnMut(usize, &mut [u32]),
) {
    assert!(dst.len() >= lhs.m * n && bias.len() >= lhs.m, "bf16 matmul destination or bias too short");
    // SAFETY: this function runs with AVX-512F; blocked() passes i < m (asserted above) and
    // masks inside the n columns.
    blocked(lhs, n, pack, |i, col, v, mask| unsafe { crate::blocked::store_bias(dst, n, bias, i, col, v, mask) });
}

/// [`crate::blocked::blocked`] on the packed `lhs` (rows of pairs) with the bf16
/// micro-kernel.
#[inline(always)]
fn blocked(
    lhs: &PackedLhs,
    n: usize,
    pack: impl FnMut(usize, &mut [u32]),
    store: impl FnMut(usize, usize, __m512, __mmask16),
) {
    let kp = lhs.k.div_ceil(2);
    // SAFETY (micro): callers run with the features it needs (every caller is a
    // target_feature function of this module).
    crate::blocked::blocked(
        lhs.m,
        n,
        kp * NR,
        |i| &lhs.pairs[i * kp..][..kp],
        pack,
        |rows, b| unsafe { micro(kp, rows, b) },
        store,
    )
}

/// Positions `j0..j0 + NR` of the shifted im2col matrix as a right-operand strip (as
/// [`pack_rhs_strip`] writes it), loaded from the image under the rows' masks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn pack_shifted_strip(col: &Shifted, image: &[f32], j0: usize, out: &mut [u32]) {
    assert!(out.len() >= col.rows().div_ceil(2) * NR);
    let idx = unsafe { _mm512_loadu_si512(INTERLEAVE.as_ptr().cast()) };
    let strip = j0 / NR;
    let row = |r: usize| {
        if r < col.rows() {
            let (start, masks) = col.row(r);
            (start + j0 as isize, masks[strip])
        } else {
            (0, 0)
        }
    };
    for p in 0..col.rows().div_ceil(2) {
        let (rows, masks) = {
            let ((a, ma), (b, mb)) = (row(2 * p), row(2 * p + 1));
            ([a, b], [ma, mb])
        };
        // The next strip's lines of both rows: masked loads do not bring the hardware
        // prefetcher along, and the image comes from memory (from the layer before).
        for start in rows {
            // SAFETY: a prefetch never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(image.as_ptr().wrapping_offset(start + NR as isize).cast());
            _mm_prefetch::<_MM_HINT_T0>(image.as_ptr().wrapping_offset(start + NR as isize + 16).cast());
        }
        for half in 0..2 {
            // SAFETY: the masks admit only positions whose source lies in the image
            // (Shifted::new), whose size the caller checked; masked lanes are not accessed.
            let load = |i: usize| unsafe {
                _mm512_maskz_loadu_ps(
                    (masks[i] >> (16 * half)) as u16,
                    image.as_ptr().wrapping_offset(rows[i] + 16 * half as isize),
                )
            };
            let words = _mm512_permutexvar_epi16(idx, words(_mm512_cvtne2ps_pbh(load(1), load(0))));
            // SAFETY: out holds the strip's p·NR + 32 lanes (asserted).
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(p * NR + 16 * half).cast(), words) };
        }
    }
}

/// The shifted im2col matrix as a left operand: each row's positions as pairs, into `out`
/// (rows × positions / 2 rounded up).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn pack_shifted_rows(col: &Shifted, image: &[f32], out: &mut [u32]) {
    let kp = col.positions().div_ceil(2);
    assert!(out.len() >= col.rows() * kp);
    for r in 0..col.rows() {
        let (start, masks) = col.row(r);
        for (s, &mask) in masks.iter().enumerate() {
            let j0 = s * NR;
            // Two strips ahead, for the reason pack_shifted_strip gives.
            // SAFETY: a prefetch never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(image.as_ptr().wrapping_offset(start + (j0 + 2 * NR) as isize).cast());
            _mm_prefetch::<_MM_HINT_T0>(image.as_ptr().wrapping_offset(start + (j0 + 2 * NR + 16) as isize).cast());
            // SAFETY: as in pack_shifted_strip.
            let load = |half: usize| unsafe {
                _mm512_maskz_loadu_ps(
                    (mask >> (16 * half)) as u16,
                    image.as_ptr().wrapping_offset(start + (j0 + 16 * half) as isize),
                )
            };
            // Low 16 values first: lane i holds positions (j0 + 2i, j0 + 2i + 1).
            let pairs = words(_mm512_cvtne2ps_pbh(load(1), load(0)));
            let count = (kp - j0 / 2).min(16);
            let keep = lanes(count);
            // SAFETY: the mask limits the store to out[r·kp + j0/2..][..count], inside (asserted).
            unsafe { _mm512_mask_storeu_epi32(out.as_mut_ptr().add(r * kp + j0 / 2).cast(), keep, pairs) };
        }
    }
}

/// `image_grad += col2im(lhs · rhs)`, each result added where its row's mask says the
/// position's source is inside the image.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn matmul_col2im(lhs: &PackedLhs, rhs: &[f32], rhs_row: usize, col: &Shifted, image_grad: &mut [f32]) {
    let (n, k) = (col.positions(), lhs.k);
    blocked(
        lhs,
        n,
        |j0, strip| pack_rhs_strip(n, k, rhs, rhs_row, j0, strip),
        |i, at, v, mask| {
            // SAFETY: this function runs with AVX-512F; the caller checked the image's size.
            unsafe { col.add_onto(image_grad, i, at, v, mask) }
        },
    );
}

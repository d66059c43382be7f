//! bf16 convolution products on [`Shifted`] matrices (see [`crate::shifted`]).

use super::{PackedLhs, available};
use crate::shifted::Shifted;

/// `dst (m × positions) = bias + lhs · col(image)`, each row starting from its bias: a
/// convolution's forward product. Every value of `dst` is written.
pub fn matmul_bias(
    lhs: &PackedLhs,
    col: &Shifted,
    image: &[f32],
    bias: &[f32],
    dst: &mut [std::mem::MaybeUninit<f32>],
) {
    assert!(available(), "bf16 products need AVX512-BF16");
    col.check(image);
    assert_eq!(lhs.k, col.rows(), "shifted matmul: depths differ");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: check() asserted the features and the image's size, which with Shifted::new's
    // check bounds every unmasked load.
    unsafe {
        super::avx512::matmul_bias(lhs, col.positions(), bias, dst, |j0, strip| {
            super::avx512::pack_shifted_strip(col, image, j0, strip)
        })
    }
}

/// `col(image)` as a left operand (rows × positions, pairs along the positions), in `buffer`'s
/// memory: the weight gradient's `col · dYᵀ`.
pub fn pack(col: &Shifted, image: &[f32], mut buffer: Vec<u32>) -> PackedLhs {
    assert!(available(), "bf16 products need AVX512-BF16");
    col.check(image);
    buffer.clear();
    buffer.resize(col.rows() * col.positions().div_ceil(2), 0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in matmul.
    unsafe {
        super::avx512::pack_shifted_rows(col, image, &mut buffer)
    };
    PackedLhs { m: col.rows(), k: col.positions(), pairs: buffer }
}

/// Adds `col2im(lhs · rhs)` onto `image_grad`, where `rhs` is `lhs.k` × positions, rows
/// `rhs_row` apart: a convolution's input gradient `col2im(Wᵀ · dY)`, each value added as it
/// leaves the registers (in a fixed order: strips of positions, then rows).
pub fn matmul_col2im(lhs: &PackedLhs, rhs: &[f32], rhs_row: usize, col: &Shifted, image_grad: &mut [f32]) {
    assert!(available(), "bf16 products need AVX512-BF16");
    col.check(image_grad);
    assert_eq!(lhs.m, col.rows(), "shifted col2im: rows differ");
    let (k, n) = (lhs.k, col.positions());
    assert!(k == 0 || n == 0 || rhs.len() >= (k - 1) * rhs_row + n, "shifted col2im: right operand too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in matmul; the assertion above bounds the right operand.
    unsafe {
        super::avx512::matmul_col2im(lhs, rhs, rhs_row, col, image_grad)
    }
}

//! 2-D convolution (NCHW, f32, groups 1, dilation 1) as im2col + one GEMM per image, forward
//! and backward, on plain slices.
//!
//! Why our own: burn-flex computes a convolution's gradients through generic fallbacks — the
//! input gradient as a transposed convolution, the weight gradient as a second convolution
//! whose "kernel" is the whole 28×28 output gradient — plus layout swaps around each. Profiling
//! the seed model's training step put well over half the time there. Here both gradients are
//! two GEMMs per image on the same im2col buffer the forward pass builds, with no layout
//! changes, and images are spread over rayon's threads.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

pub use crate::geometry::ConvGeometry;

/// Gradients of one convolution; `x` is `None` when the input needs none (the first layer).
#[derive(Debug)]
pub struct ConvGrads {
    pub x: Option<Vec<f32>>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Walks every (patch row, output row) pair of one image: `f(row of col, input row or None,
/// valid output columns, first input column of the first valid output column)`.
#[inline(always)]
fn for_each_patch_row(g: &ConvGeometry, mut f: impl FnMut(usize, Option<usize>, std::ops::Range<usize>, usize)) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for c in 0..g.c_in {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let cols = ConvGeometry::valid(g.w, ow, g.stride[1], g.pad[1], j);
                let first_ix = (cols.start * g.stride[1] + j).saturating_sub(g.pad[1]);
                for y in 0..oh {
                    let iy = (y * g.stride[0] + i).checked_sub(g.pad[0]).filter(|&iy| iy < g.h);
                    let at = row * oh * ow + y * ow;
                    f(at, iy.map(|iy| (c * g.h + iy) * g.w), cols.clone(), first_ix);
                }
            }
        }
    }
}

/// Where stride is 1 and the output is as wide as the input (`same` padding, as in every
/// layer of the seed), col row (c, i, j) is input plane c shifted by `i − pad` rows and
/// `j − pad` columns: one long copy (or add) per col row instead of one per output row.
/// Rows are 14–28 values, so those were mostly call overhead (im2col's copies were 9% of a
/// training step).
struct Shift {
    /// The col row's positions whose source lies inside the plane (empty when none does).
    valid: std::ops::Range<usize>,
    /// Source index of col position `t` in the plane: `t + offset`.
    offset: isize,
    /// Output rows whose source row exists.
    rows: std::ops::Range<usize>,
    /// The columns of each of those rows whose source is padding.
    edge: std::ops::Range<usize>,
}

impl Shift {
    fn applies(g: &ConvGeometry) -> bool {
        g.stride == [1, 1] && g.out_w() == g.w
    }

    /// Col row `row`'s input plane (its first index in the image) and shift.
    #[inline(always)]
    fn of_row(g: &ConvGeometry, row: usize) -> (usize, Shift) {
        let (c, i, j) = (row / (g.kh * g.kw), row / g.kw % g.kh, row % g.kw);
        (c * g.h * g.w, Shift::of(g, i, j))
    }

    #[inline(always)]
    fn of(g: &ConvGeometry, i: usize, j: usize) -> Shift {
        let (oh, w, h) = (g.out_h(), g.w as isize, g.h as isize);
        let (dy, dx) = (i as isize - g.pad[0] as isize, j as isize - g.pad[1] as isize);
        let rows = ((-dy).max(0) as usize).min(oh)..((h - dy).max(0) as usize).min(oh);
        let offset = dy * w + dx;
        let plane = (g.h * g.w) as isize;
        let end = rows.end * g.w;
        let lo = (((rows.start * g.w) as isize).max(-offset).max(0) as usize).min(end);
        let hi = ((end as isize).min(plane - offset).max(lo as isize)) as usize;
        let edge = if dx < 0 { 0..((-dx) as usize).min(g.w) } else { g.w.saturating_sub(dx as usize)..g.w };
        Shift { valid: lo..hi, offset, rows, edge }
    }

    /// Zeros the padding columns of the valid rows of a col row.
    #[inline(always)]
    fn zero_edges(&self, row: &mut [f32], w: usize) {
        if !self.edge.is_empty() {
            for y in self.rows.clone() {
                row[y * w + self.edge.start..y * w + self.edge.end].fill(0.0);
            }
        }
    }
}

/// Where [`Shift::applies`], im2col's matrix as our products read it straight from the
/// image: row (c, i, j) is plane c shifted by `(i − pad)·w + j − pad`, inside where the source
/// row and column exist.
fn shifted(g: &ConvGeometry) -> Option<super::shifted::Shifted> {
    if !Shift::applies(g) {
        return None;
    }
    let (ow, kw) = (g.out_w(), g.kw);
    let (pad_y, pad_x) = (g.pad[0] as isize, g.pad[1] as isize);
    let offsets =
        (0..g.kh * kw).map(|q| ((q / kw) as isize - pad_y) * g.w as isize + (q % kw) as isize - pad_x).collect();
    let inside = |q: usize, t: usize| {
        let iy = (t / ow + q / kw) as isize - pad_y;
        let ix = (t % ow + q % kw) as isize - pad_x;
        (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix)
    };
    Some(super::shifted::Shifted::new(g.c_in, g.h * g.w, g.plane(), offsets, inside))
}

/// Wᵀ (`patch × c_out`, row-major) with its rows in the offset-major order of
/// [`super::shifted::Shifted::offset_major`]: row q·c_in + c is patch row (c, q).
fn weight_t_offset_major(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (patch, kk) = (g.patch(), g.kh * g.kw);
    (0..patch)
        .flat_map(|r| (0..g.c_out).map(move |o| (r, o)))
        .map(|(r, o)| weight[o * patch + (r % g.c_in) * kk + r / g.c_in])
        .collect()
}

super::simd::multiversion! {
/// Fills `col` (`patch × plane`) from one image `x` (`c_in × h × w`), zeros where padded.
fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32]) {
    if Shift::applies(g) {
        for (row, dst) in col.chunks_exact_mut(g.plane()).enumerate() {
            let (start, shift) = Shift::of_row(g, row);
            let (lo, hi) = (shift.valid.start, shift.valid.end);
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if lo < hi {
                let from = start as isize + lo as isize + shift.offset;
                dst[lo..hi].copy_from_slice(&x[from as usize..][..hi - lo]);
            }
            shift.zero_edges(dst, g.w);
        }
        return;
    }
    let (ow, s) = (g.out_w(), g.stride[1]);
    for_each_patch_row(g, #[inline(always)] |at, src, cols, first_ix| {
        let dst = &mut col[at..at + ow];
        let Some(src) = src else {
            dst.fill(0.0);
            return;
        };
        dst[..cols.start].fill(0.0);
        dst[cols.end..].fill(0.0);
        let n = cols.len();
        if s == 1 {
            dst[cols].copy_from_slice(&x[src + first_ix..src + first_ix + n]);
        } else {
            for (k, d) in dst[cols].iter_mut().enumerate() {
                *d = x[src + first_ix + k * s];
            }
        }
    });
}
}

super::simd::multiversion! {
/// Adds `col` (`patch × plane`) back onto the image gradient `dx`: the transpose of
/// [`im2col`]. `col` is scratch: its padding positions may be zeroed on the way.
fn col2im(g: &ConvGeometry, col: &mut [f32], dx: &mut [f32]) {
    if Shift::applies(g) {
        for (row, src) in col.chunks_exact_mut(g.plane()).enumerate() {
            let (start, shift) = Shift::of_row(g, row);
            shift.zero_edges(src, g.w);
            let (lo, hi) = (shift.valid.start, shift.valid.end);
            if lo < hi {
                let to = start as isize + lo as isize + shift.offset;
                add_into(&mut dx[to as usize..][..hi - lo], &src[lo..hi]);
            }
        }
        return;
    }
    let s = g.stride[1];
    for_each_patch_row(g, #[inline(always)] |at, dst, cols, first_ix| {
        let Some(dst) = dst else { return };
        let src = &col[at + cols.start..at + cols.end];
        if s == 1 {
            add_into(&mut dx[dst + first_ix..dst + first_ix + src.len()], src);
        } else {
            for (k, v) in src.iter().enumerate() {
                dx[dst + first_ix + k * s] += v;
            }
        }
    });
}
}

/// `dst (m × n, row-major) = [dst +] lhs · rhs`, with explicit (row, column) strides for the
/// operands so transposes cost nothing.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: [usize; 2],
    rhs: &[f32],
    rhs_strides: [usize; 2],
) {
    debug_assert!(dst.len() >= m * n);
    debug_assert!(lhs.len() > (m - 1) * lhs_strides[0] + (k - 1) * lhs_strides[1]);
    debug_assert!(rhs.len() > (k - 1) * rhs_strides[0] + (n - 1) * rhs_strides[1]);
    // SAFETY: the debug assertions above state the bounds every caller keeps: dst holds m×n
    // row-major values, lhs and rhs cover their strided m×k and k×n extents.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs.as_ptr(),
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Images per rayon task: enough work per task that splitting never costs more than it gains.
const MIN_IMAGES_PER_TASK: usize = 4;

/// Whose products a convolution runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Products {
    /// The GEMM crate's, on explicit im2col matrices.
    Gemm,
    /// Our f32 AVX-512 products ([`super::fma`]) where im2col's matrix is shifted planes
    /// (forward and input gradient), the GEMM crate's elsewhere.
    Fma,
    /// [`Products::Fma`], with Winograd F(2×2, 3×3) products ([`super::winograd`]) for the
    /// forward product and both gradients of 3 × 3 convolutions with stride 1 and padding 1.
    Winograd,
    /// Our bf16 products ([`super::bf16`]).
    Bf16,
}

impl Products {
    /// The best this run may use: bf16 where enabled, else ours where the CPU runs AVX-512.
    fn chosen() -> Products {
        if super::bf16::enabled() {
            Products::Bf16
        } else if super::winograd::enabled() {
            Products::Winograd
        } else if super::fma::available() {
            Products::Fma
        } else {
            Products::Gemm
        }
    }
}

/// `y = conv(x, weight) + bias` for `x: batch × c_in × h × w`, `weight: c_out × c_in × kh × kw`,
/// its products in bf16 where [`super::bf16::enabled`].
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    forward_in(g, x, weight, bias, Products::chosen())
}

/// [`forward`] with the given products.
fn forward_in(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: &[f32], products: Products) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.in_image(), "conv input size");
    assert_eq!(weight.len(), g.c_out * g.patch(), "conv weight size");
    assert_eq!(bias.len(), g.c_out, "conv bias size");
    let (plane, patch) = (g.plane(), g.patch());
    let len = g.batch * g.out_image();
    let mut y: Vec<f32> = Vec::with_capacity(len);
    // In bf16 the weights are rounded and packed once for the whole batch.
    let weight_bf16 =
        (products == Products::Bf16).then(|| super::bf16::PackedLhs::new(g.c_out, patch, weight, [patch, 1]));
    if products == Products::Winograd && super::winograd::runs_forward(g) {
        let filters = super::winograd::Filters::forward(weight, g.c_out, g.c_in);
        let group = super::winograd::Tiles::group(g.h, g.w);
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(group * g.out_image())
            .zip(x.par_chunks(group * g.in_image()))
            .with_min_len(MIN_IMAGES_PER_TASK.div_ceil(group))
            .for_each_init(super::winograd::Scratch::default, |scratch, (yg, xg)| {
                let tiles = super::winograd::Tiles::new(g.h, g.w, xg.len() / g.in_image());
                super::winograd::conv(&filters, &tiles, xg, Some(bias), yg, scratch)
            });
        // SAFETY: the groups cover all `len` values and winograd::conv writes every one.
        unsafe { y.set_len(len) };
        return y;
    }
    let from_image = shifted(g).filter(|_| products != Products::Gemm);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(g.out_image())
        .zip(x.par_chunks(g.in_image()))
        .with_min_len(MIN_IMAGES_PER_TASK)
        .for_each_init(
            || if from_image.is_some() { Vec::new() } else { vec![0.0f32; patch * plane] },
            |col, (yn, xn)| {
                if let Some(from_image) = &from_image {
                    return match &weight_bf16 {
                        Some(w) => super::bf16::shifted::matmul_bias(w, from_image, xn, bias, yn),
                        None => super::fma::matmul_bias(
                            super::fma::Lhs { m: g.c_out, k: patch, row: patch, data: weight },
                            from_image,
                            xn,
                            bias,
                            yn,
                        ),
                    };
                }
                // Every output starts as its channel's bias (written, not zeroed first).
                for (row, b) in yn.chunks_mut(plane).zip(bias) {
                    row.fill(std::mem::MaybeUninit::new(*b));
                }
                // SAFETY: the loop above initialised all c_out·plane values of this image.
                let yn = unsafe { std::slice::from_raw_parts_mut(yn.as_mut_ptr().cast::<f32>(), yn.len()) };
                im2col(g, xn, col);
                match &weight_bf16 {
                    Some(w) => super::bf16::matmul(w, plane, yn, true, col, plane),
                    None => matmul(g.c_out, plane, patch, yn, true, weight, [patch, 1], col, [plane, 1]),
                }
            },
        );
    // SAFETY: the image chunks cover all `len` values and each was initialised above.
    unsafe { y.set_len(len) };
    y
}

/// A group of images of the backward pass (one, or Winograd's [`super::winograd::Tiles::group`]):
/// (output gradient, input) and the input gradient to fill, if wanted. The input gradient's
/// memory arrives uninitialised: each image's is zeroed (or written by Winograd's products)
/// just before its products add onto it, so it is in cache then (zeroing the whole batch
/// first cost a pass over memory, and the adds then waited on it).
type Images<'a> = ((&'a [f32], &'a [f32]), Option<&'a mut [std::mem::MaybeUninit<f32>]>);

/// Per-task accumulators of the backward pass.
struct Scratch {
    /// The weight gradient transposed (`patch × c_out`): `col · dYᵀ` runs 1.1–1.35× faster
    /// in the GEMM than `dY · colᵀ` at the seed's shapes (one thread: 170 → 231 GFLOP/s for
    /// the second conv, 218 → 243 for the third). With Winograd's weight gradient, its sums
    /// instead (`16 × c_in × c_out`, [`weight_sums`]).
    weight_t: Vec<f32>,
    bias: Vec<f32>,
    col: Vec<f32>,
    dcol: Vec<f32>,
    /// im2col's matrix packed in bf16, for the shifted bf16 weight gradient.
    pairs: Vec<u32>,
    winograd: super::winograd::Scratch,
}

/// Which explicit matrices a backward pass writes: im2col's (`col`, for the weight gradient
/// where it is not read from the image) and `Wᵀ · dY` (`dcol`, where the input gradient is
/// not added straight onto the image).
#[derive(Clone, Copy)]
struct Need {
    col: bool,
    dcol: bool,
    /// The weight gradient as Winograd's sums (16 × c_in × c_out) instead of Wᵀ.
    winograd_weight: bool,
}

impl Scratch {
    fn new(g: &ConvGeometry, need: Need) -> Scratch {
        let cols = g.patch() * g.plane();
        Scratch {
            weight_t: vec![0.0; weight_sums(g, need)],
            bias: vec![0.0; g.c_out],
            col: if need.col { vec![0.0; cols] } else { Vec::new() },
            dcol: if need.dcol { vec![0.0; cols] } else { Vec::new() },
            pairs: Vec::new(),
            winograd: super::winograd::Scratch::default(),
        }
    }
}

/// Values of a task's weight-gradient accumulator.
fn weight_sums(g: &ConvGeometry, need: Need) -> usize {
    if need.winograd_weight { 16 * g.c_in * g.c_out } else { g.patch() * g.c_out }
}

#[inline(always)]
fn add_into(acc: &mut [f32], other: &[f32]) {
    acc.iter_mut().zip(other).for_each(|(a, b)| *a += b);
}

/// Gradients of [`forward`] given the output gradient `dy` (`batch × c_out × oh × ow`), the
/// products in bf16 where [`super::bf16::enabled`].
pub fn backward(g: &ConvGeometry, x: &[f32], weight: &[f32], dy: &[f32], need_x: bool) -> ConvGrads {
    backward_in(g, x, weight, dy, need_x, Products::chosen())
}

/// [`backward`] with the given products.
fn backward_in(g: &ConvGeometry, x: &[f32], weight: &[f32], dy: &[f32], need_x: bool, products: Products) -> ConvGrads {
    assert_eq!(x.len(), g.batch * g.in_image(), "conv input size");
    assert_eq!(weight.len(), g.c_out * g.patch(), "conv weight size");
    assert_eq!(dy.len(), g.batch * g.out_image(), "conv output-gradient size");
    let (plane, patch) = (g.plane(), g.patch());
    let bf16 = products == Products::Bf16;
    let dx_len = if need_x { g.batch * g.in_image() } else { 0 };
    let mut dx: Vec<f32> = Vec::with_capacity(dx_len);
    let shifted = shifted(g).filter(|_| products != Products::Gemm);
    // The input gradient added straight onto the image, with Wᵀ's rows in the shifted
    // matrix's offset-major order.
    let winograd = (need_x && products == Products::Winograd && super::winograd::runs_input_gradient(g))
        .then(|| super::winograd::Filters::input_gradient(weight, g.c_out, g.c_in));
    let onto_image = shifted.clone().filter(|_| need_x && winograd.is_none()).map(|s| s.offset_major());
    let winograd_weight = products == Products::Winograd && super::winograd::runs_weight_gradient(g);
    // Winograd's products take images in groups that fill their strips; the others one by one.
    let group = if winograd.is_some() || winograd_weight { super::winograd::Tiles::group(g.h, g.w) } else { 1 };
    // The weight gradient's im2col matrix read from the image: bf16 only (the f32 one runs in
    // the GEMM crate, on the explicit matrix).
    let from_image = shifted.filter(|_| bf16);
    let weight_t_om = onto_image.as_ref().map(|_| weight_t_offset_major(g, weight));
    let weight_t_bf16 = (need_x && bf16).then(|| match &weight_t_om {
        Some(w_t) => super::bf16::PackedLhs::new(patch, g.c_out, w_t, [g.c_out, 1]),
        None => super::bf16::PackedLhs::new(patch, g.c_out, weight, [1, patch]),
    });
    // dWᵀ += col · dYᵀ, for one image.
    let weight_gradient_of_image = |s: &mut Scratch, dyn_: &[f32], xn: &[f32]| {
        let dy_bf16 = || super::bf16::PackedLhs::new(g.c_out, plane, dyn_, [plane, 1]);
        match (bf16, &from_image) {
            (true, Some(from_image)) => {
                let col = super::bf16::shifted::pack(from_image, xn, std::mem::take(&mut s.pairs));
                super::bf16::matmul_t(&col, &dy_bf16(), &mut s.weight_t, true);
                s.pairs = col.into_buffer();
            }
            (true, None) => {
                im2col(g, xn, &mut s.col);
                super::bf16::matmul_t(
                    &super::bf16::PackedLhs::new(patch, plane, &s.col, [plane, 1]),
                    &dy_bf16(),
                    &mut s.weight_t,
                    true,
                )
            }
            (false, _) => {
                im2col(g, xn, &mut s.col);
                matmul(patch, g.c_out, plane, &mut s.weight_t, true, &s.col, [plane, 1], dyn_, [1, plane])
            }
        }
    };
    // One image's input gradient: zeroed, then `col2im(Wᵀ · dY)` added onto it.
    let input_gradient_of_image = |s: &mut Scratch, dyn_: &[f32], dxn: &mut [std::mem::MaybeUninit<f32>]| {
        dxn.fill(std::mem::MaybeUninit::new(0.0));
        // SAFETY: just initialised, all of it.
        let dxn = unsafe { std::slice::from_raw_parts_mut(dxn.as_mut_ptr().cast::<f32>(), dxn.len()) };
        match (&weight_t_bf16, &onto_image, &weight_t_om) {
            (Some(w_t), Some(onto_image), _) => super::bf16::shifted::matmul_col2im(w_t, dyn_, plane, onto_image, dxn),
            (None, Some(onto_image), Some(w_t)) => {
                let w_t = super::fma::Lhs { m: patch, k: g.c_out, row: g.c_out, data: w_t };
                super::fma::matmul_col2im(w_t, dyn_, plane, onto_image, dxn)
            }
            (Some(w_t), _, _) => {
                super::bf16::matmul(w_t, plane, &mut s.dcol, false, dyn_, plane);
                col2im(g, &mut s.dcol, dxn);
            }
            (None, _, _) => {
                matmul(patch, plane, g.c_out, &mut s.dcol, false, weight, [1, patch], dyn_, [plane, 1]);
                col2im(g, &mut s.dcol, dxn);
            }
        }
    };
    let per_group = |mut s: Scratch, ((dyg, xg), mut dxg): Images<'_>| {
        let tiles = super::winograd::Tiles::new(g.h, g.w, xg.len() / g.in_image());
        if winograd_weight {
            super::winograd::accumulate_weight_gradient(
                &tiles,
                xg,
                g.c_in,
                dyg,
                g.c_out,
                &mut s.weight_t,
                &mut s.winograd,
            );
        } else {
            for (dyn_, xn) in dyg.chunks(g.out_image()).zip(xg.chunks(g.in_image())) {
                weight_gradient_of_image(&mut s, dyn_, xn);
            }
        }
        for (k, row) in dyg.chunks(plane).enumerate() {
            s.bias[k % g.c_out] += super::simd::sum(row);
        }
        match (dxg.as_deref_mut(), &winograd) {
            (Some(dxg), Some(filters)) => super::winograd::conv(filters, &tiles, dyg, None, dxg, &mut s.winograd),
            (Some(dxg), None) => {
                for (dyn_, dxn) in dyg.chunks(g.out_image()).zip(dxg.chunks_mut(g.in_image())) {
                    input_gradient_of_image(&mut s, dyn_, dxn);
                }
            }
            (None, _) => {}
        }
        s
    };
    let groups = dy.par_chunks(group * g.out_image()).zip(x.par_chunks(group * g.in_image()));
    let need = Need {
        col: from_image.is_none() && !winograd_weight,
        dcol: need_x && onto_image.is_none() && winograd.is_none(),
        winograd_weight,
    };
    let sums = if need_x {
        accumulate(
            g,
            need,
            group,
            groups.zip(dx.spare_capacity_mut()[..dx_len].par_chunks_mut(group * g.in_image()).map(Some)),
            per_group,
        )
    } else {
        accumulate(g, need, group, groups.zip((0..g.batch.div_ceil(group)).into_par_iter().map(|_| None)), per_group)
    };
    // SAFETY: with need_x every image's chunk was initialised above (and dx_len is 0 without).
    unsafe { dx.set_len(dx_len) };
    let (weight_sums, bias_grad) = sums.unwrap_or_else(|| (vec![0.0; weight_sums(g, need)], vec![0.0; g.c_out]));
    let weight_grad = if need.winograd_weight {
        super::winograd::weight_gradient(&weight_sums, g.c_out, g.c_in)
    } else {
        (0..g.c_out * patch).map(|i| weight_sums[(i % patch) * g.c_out + i / patch]).collect()
    };
    ConvGrads { x: need_x.then_some(dx), weight: weight_grad, bias: bias_grad }
}

/// Runs `per_group` over groups of `group` images in rayon tasks and sums the tasks' weight
/// and bias gradients. The tasks are fixed runs of groups (one, or about four a thread) and their
/// sums are added in order, so that a run's gradients do not depend on which thread stole
/// what: a fold over rayon's adaptive splits summed different pieces from run to run.
fn accumulate<'a, I>(
    g: &ConvGeometry,
    need: Need,
    group: usize,
    groups: I,
    per_group: impl Fn(Scratch, I::Item) -> Scratch + Sync + Send,
) -> Option<(Vec<f32>, Vec<f32>)>
where
    I: IndexedParallelIterator<Item = Images<'a>>,
{
    // One task on one thread (each task's scratch is allocated and zeroed, several MB for
    // im2col's matrices of wide 5 × 5 layers); about four a thread otherwise, for balance.
    let tasks = match rayon::current_num_threads() {
        1 => 1,
        threads => 4 * threads,
    };
    let per_task = g.batch.div_ceil(group).div_ceil(tasks).max(MIN_IMAGES_PER_TASK.div_ceil(group));
    let sums: Vec<_> =
        groups.fold_chunks(per_task, || Scratch::new(g, need), per_group).map(|s| (s.weight_t, s.bias)).collect();
    sums.into_iter().reduce(sum_pairs)
}

fn sum_pairs(mut a: (Vec<f32>, Vec<f32>), b: (Vec<f32>, Vec<f32>)) -> (Vec<f32>, Vec<f32>) {
    add_into(&mut a.0, &b.0);
    add_into(&mut a.1, &b.1);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct seven-loop convolution: the definition, slow and obviously right.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut y = vec![0.0; g.batch * g.c_out * oh * ow];
        for n in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[co] as f64;
                        for c in 0..g.c_in {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (oy * g.stride[0] + i) as isize - g.pad[0] as isize;
                                    let ix = (ox * g.stride[1] + j) as isize - g.pad[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xv = x[((n * g.c_in + c) * g.h + iy as usize) * g.w + ix as usize];
                                    acc += (xv * w[((co * g.c_in + c) * g.kh + i) * g.kw + j]) as f64;
                                }
                            }
                        }
                        y[((n * g.c_out + co) * oh + oy) * ow + ox] = acc as f32;
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |batch, c_in, h, w, c_out, kh, kw, stride, pad| ConvGeometry {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            pad,
        };
        vec![
            g(3, 1, 28, 28, 4, 3, 3, [1, 1], [1, 1]),
            g(2, 3, 7, 9, 5, 3, 2, [2, 1], [0, 1]),
            g(5, 2, 6, 6, 3, 5, 5, [1, 1], [2, 2]),
            g(1, 4, 5, 5, 2, 1, 1, [1, 1], [0, 0]),
            g(9, 3, 11, 8, 6, 4, 3, [3, 2], [1, 0]),
            g(2, 2, 3, 3, 2, 3, 3, [1, 1], [2, 2]),
            // `same` width with a kernel wider than the image: every shifted column is padding.
            g(2, 2, 3, 1, 3, 5, 5, [1, 1], [2, 2]),
            g(3, 2, 4, 5, 2, 3, 5, [1, 1], [0, 2]),
            // The seed network's second and third blocks: large enough for the GEMM's widest
            // (AVX-512) kernels and its cache blocking.
            g(2, 32, 28, 28, 64, 3, 3, [1, 1], [1, 1]),
            g(3, 64, 14, 14, 128, 3, 3, [1, 1], [1, 1]),
            // Winograd's 2 × 2 tiles on odd planes (the last tile half outside): rows of up to
            // 8 tiles (two in a half register), a row of 16 one input row high, and a plane
            // one column wide; channels deep enough for its products.
            g(2, 8, 7, 9, 9, 3, 3, [1, 1], [1, 1]),
            g(1, 9, 1, 31, 12, 3, 3, [1, 1], [1, 1]),
            g(2, 10, 4, 16, 9, 3, 3, [1, 1], [1, 1]),
            // Groups of four images (3 rows of tiles each) and a last group of two.
            g(6, 8, 5, 6, 8, 3, 3, [1, 1], [1, 1]),
            g(1, 16, 5, 1, 8, 3, 3, [1, 1], [1, 1]),
        ]
    }

    #[test]
    fn forward_matches_the_definition() {
        for (k, g) in geometries().into_iter().enumerate() {
            let x = values(g.batch * g.in_image(), k as u64);
            let w = values(g.c_out * g.patch(), 100 + k as u64);
            let b = values(g.c_out, 200 + k as u64);
            let err = max_rel_err(&forward(&g, &x, &w, &b), &reference(&g, &x, &w, &b));
            assert!(err < 1e-5, "{g:?}: relative error {err}");
        }
    }

    /// The gradients are the adjoints of the forward map: ⟨dy, conv(x, w)⟩ is bilinear, so
    /// ⟨dy, conv(dx_probe, w)⟩ = ⟨grad_x, dx_probe⟩ and the same for w and b.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for (k, g) in geometries().into_iter().enumerate() {
            let seed = 10 * k as u64;
            let x = values(g.batch * g.in_image(), seed);
            let w = values(g.c_out * g.patch(), seed + 1);
            let dy = values(g.batch * g.out_image(), seed + 2);
            let grads = backward(&g, &x, &w, &dy, true);
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum::<f64>();
            let zero_b = vec![0.0; g.c_out];
            let probe_x = values(x.len(), seed + 3);
            let lhs = dot(&dy, &reference(&g, &probe_x, &w, &zero_b));
            let rhs = dot(grads.x.as_ref().unwrap(), &probe_x);
            assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{g:?} x: {lhs} vs {rhs}");
            let probe_w = values(w.len(), seed + 4);
            let lhs = dot(&dy, &reference(&g, &x, &probe_w, &zero_b));
            let rhs = dot(&grads.weight, &probe_w);
            assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{g:?} w: {lhs} vs {rhs}");
            let probe_b = values(g.c_out, seed + 5);
            let lhs = dot(&dy, &reference(&g, &vec![0.0; x.len()], &w, &probe_b));
            let rhs = dot(&grads.bias, &probe_b);
            assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{g:?} b: {lhs} vs {rhs}");
            // Skipping the input gradient leaves the others unchanged.
            let without = backward(&g, &x, &w, &dy, false);
            assert!(without.x.is_none());
            assert!(max_rel_err(&without.weight, &grads.weight) < 1e-6);
        }
    }

    /// Our f32 products (read from the image, added onto it; Winograd's) compute what the
    /// GEMM crate's do on the explicit matrices, up to rounding, forward and all three
    /// gradients.
    #[test]
    fn our_f32_products_are_the_gemm_ones() {
        let _kernels = crate::settings::exclusive();
        if !super::super::fma::available() {
            eprintln!("skipped: our kernels do not run at the AVX-512 level here");
            return;
        }
        let mut winograd_geometries = 0;
        for products in [Products::Fma, Products::Winograd] {
            for (k, g) in geometries().into_iter().enumerate() {
                winograd_geometries +=
                    usize::from(products == Products::Winograd && super::super::winograd::runs_forward(&g));
                let seed = 500 + 10 * k as u64;
                let (x, w) = (values(g.batch * g.in_image(), seed), values(g.c_out * g.patch(), seed + 1));
                let (b, dy) = (values(g.c_out, seed + 2), values(g.batch * g.out_image(), seed + 3));
                let err =
                    max_rel_err(&forward_in(&g, &x, &w, &b, products), &forward_in(&g, &x, &w, &b, Products::Gemm));
                assert!(err < 1e-5, "{products:?} {g:?} forward: {err}");
                let (ours, gemm) =
                    (backward_in(&g, &x, &w, &dy, true, products), backward_in(&g, &x, &w, &dy, true, Products::Gemm));
                for (what, a, b) in [
                    ("x", ours.x.unwrap(), gemm.x.unwrap()),
                    ("weight", ours.weight, gemm.weight),
                    ("bias", ours.bias, gemm.bias),
                ] {
                    let err = max_rel_err(&a, &b);
                    assert!(err < 1e-5, "{products:?} {g:?} d{what}: {err}");
                }
            }
        }
        assert!(winograd_geometries >= 5, "the geometries should exercise Winograd's products");
    }

    /// In bf16 the convolution computes what the f32 one does on the operands rounded to bf16
    /// (forward, and all three gradients), up to f32 summation order: the rounding of the
    /// inputs is the only approximation.
    #[test]
    fn bf16_products_are_the_f32_ones_of_rounded_operands() {
        use super::super::bf16;
        if !bf16::available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let rounded = |v: Vec<f32>| v.into_iter().map(|x| bf16::value(bf16::round(x))).collect::<Vec<f32>>();
        for (k, g) in geometries().into_iter().enumerate() {
            let seed = 70 + 10 * k as u64;
            let (x, w) =
                (rounded(values(g.batch * g.in_image(), seed)), rounded(values(g.c_out * g.patch(), seed + 1)));
            let (b, dy) = (values(g.c_out, seed + 2), rounded(values(g.batch * g.out_image(), seed + 3)));
            let bound = 1e-5 * (g.patch().max(g.plane()) as f32).sqrt();
            let err =
                max_rel_err(&forward_in(&g, &x, &w, &b, Products::Bf16), &forward_in(&g, &x, &w, &b, Products::Gemm));
            assert!(err < bound, "{g:?} forward: {err}");
            let (ours, f32s) = (
                backward_in(&g, &x, &w, &dy, true, Products::Bf16),
                backward_in(&g, &x, &w, &dy, true, Products::Gemm),
            );
            for (what, a, b) in [
                ("x", ours.x.unwrap(), f32s.x.unwrap()),
                ("weight", ours.weight, f32s.weight),
                ("bias", ours.bias, f32s.bias),
            ] {
                let err = max_rel_err(&a, &b);
                assert!(err < bound, "{g:?} d{what}: {err}");
            }
            // Unrounded inputs: within bf16's precision of the f32 result.
            let x = values(g.batch * g.in_image(), seed + 4);
            let err =
                max_rel_err(&forward_in(&g, &x, &w, &b, Products::Bf16), &forward_in(&g, &x, &w, &b, Products::Gemm));
            assert!(err > 0.0 && err < 2e-2, "{g:?} forward of unrounded input: {err}");
        }
    }

    /// Reading im2col's matrix straight from the image gives the bf16 products exactly what
    /// the explicit matrix gives: the same packed bits, the same forward bits, and the same
    /// input gradient up to f32 summation order (the adds onto the image run in another order).
    #[test]
    fn shifted_bf16_products_equal_those_of_the_explicit_matrix() {
        use super::super::bf16::{self, PackedLhs, shifted as sh};
        if !bf16::available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut shifted_geometries = 0;
        for (k, g) in geometries().into_iter().enumerate() {
            let Some(from_image) = shifted(&g) else { continue };
            shifted_geometries += 1;
            let (patch, plane, seed) = (g.patch(), g.plane(), 300 + 10 * k as u64);
            let (x, w, dy) =
                (values(g.in_image(), seed), values(g.c_out * patch, seed + 1), values(g.c_out * plane, seed + 2));
            let mut col = vec![0.0; patch * plane];
            im2col(&g, &x, &mut col);
            let packed_w = PackedLhs::new(g.c_out, patch, &w, [patch, 1]);
            let bias = values(g.c_out, seed + 3);
            let mut explicit: Vec<f32> = bias.iter().flat_map(|&b| std::iter::repeat_n(b, plane)).collect();
            bf16::matmul(&packed_w, plane, &mut explicit, true, &col, plane);
            let mut direct = vec![std::mem::MaybeUninit::new(f32::NAN); g.out_image()];
            sh::matmul_bias(&packed_w, &from_image, &x, &bias, &mut direct);
            // SAFETY: all of it initialised above (NaN where the product would leave a gap).
            let direct: Vec<f32> = direct.into_iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(explicit, direct, "{g:?} forward");
            let (mut via_col, mut via_image) = (vec![0.0; patch * g.c_out], vec![0.0; patch * g.c_out]);
            let packed_dy = PackedLhs::new(g.c_out, plane, &dy, [plane, 1]);
            bf16::matmul_t(&PackedLhs::new(patch, plane, &col, [plane, 1]), &packed_dy, &mut via_col, false);
            bf16::matmul_t(&sh::pack(&from_image, &x, Vec::new()), &packed_dy, &mut via_image, false);
            assert_eq!(via_col, via_image, "{g:?} weight gradient");
            let (mut dcol, mut explicit_dx, mut direct_dx) =
                (vec![0.0; patch * plane], vec![0.0; g.in_image()], vec![0.0; g.in_image()]);
            bf16::matmul(&PackedLhs::new(patch, g.c_out, &w, [1, patch]), plane, &mut dcol, false, &dy, plane);
            col2im(&g, &mut dcol, &mut explicit_dx);
            let w_t = weight_t_offset_major(&g, &w);
            sh::matmul_col2im(
                &PackedLhs::new(patch, g.c_out, &w_t, [g.c_out, 1]),
                &dy,
                plane,
                &from_image.offset_major(),
                &mut direct_dx,
            );
            let err = max_rel_err(&direct_dx, &explicit_dx);
            assert!(err < 1e-6, "{g:?} input gradient: {err}");
        }
        assert!(shifted_geometries >= 5, "the geometries should exercise the shifted path");
    }

    /// The gradients do not depend on how rayon splits the batch among threads: the same
    /// bits every time, whichever products run.
    #[test]
    fn backward_gives_the_same_bits_every_time() {
        let _kernels = crate::settings::exclusive();
        let g =
            ConvGeometry { batch: 30, c_in: 16, h: 14, w: 14, c_out: 16, kh: 3, kw: 3, stride: [1, 1], pad: [1, 1] };
        let (x, w, dy) =
            (values(g.batch * g.in_image(), 1), values(g.c_out * g.patch(), 2), values(g.batch * g.out_image(), 3));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let first = pool.install(|| backward(&g, &x, &w, &dy, true));
        for _ in 0..100 {
            let again = pool.install(|| backward(&g, &x, &w, &dy, true));
            assert!(
                again.weight == first.weight && again.bias == first.bias && again.x == first.x,
                "gradients differ between runs"
            );
        }
    }

    #[test]
    fn valid_ranges_cover_exactly_the_inside_columns() {
        for (len, stride, pad, k) in [(28, 1, 1, 3), (7, 2, 0, 2), (5, 3, 2, 5), (3, 1, 2, 3)] {
            let out = (len + 2 * pad - k) / stride + 1;
            for j in 0..k {
                let r = ConvGeometry::valid(len, out, stride, pad, j);
                for o in 0..out {
                    let inside = (o * stride + j) >= pad && (o * stride + j - pad) < len;
                    assert_eq!(r.contains(&o), inside, "len {len} stride {stride} pad {pad} j {j} o {o}");
                }
            }
        }
    }
}

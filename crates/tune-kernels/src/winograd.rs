//! Winograd F(2×2, 3×3) convolutions in f32, for AVX-512: the forward product and both
//! gradients of every 3 × 3 convolution with stride 1 and padding 1 (each of the seed's).
//!
//! Why: a direct 3 × 3 convolution makes 9 multiply-adds per output value and input channel;
//! F(2×2, 3×3) makes 16 per 2 × 2 outputs, 4, so 2.25× fewer. After our own products
//! ([`super::fma`]) the convolutions ran at about 75% of the machine's GEMM peak and were two
//! thirds of a training step: fewer multiplications was the way left to make them faster.
//! The transforms' constants are 0, ±1 and ±½, so F(2×2, 3×3) loses almost nothing to
//! rounding (the tests hold it to the same bound as the direct products).
//!
//! How: the output is cut into 2 × 2 tiles, each reading a 4 × 4 input patch. For a strip of
//! [`STRIP`] tiles at a time, (1) every input channel's patches are read and transformed
//! (`Bᵀ d B`: 16 values a patch), one AVX-512 lane per tile; (2) for each of the 16 points p,
//! `M_p = U_p · V_p` is a c_out × c_in by c_in × STRIP product through the FMA micro-kernel,
//! where `U_p` are the transformed filters (`G g Gᵀ`, built once a call); (3) each output
//! channel's 16 products per tile are transformed back (`Aᵀ m A`), the bias added, and the
//! 2 × 2 outputs written into the plane's rows. The strip's buffers (16 × channels × STRIP
//! values) stay in the L2 cache.
//!
//! The input gradient of such a convolution is a convolution of the same kind: of the output
//! gradient, with the kernels rotated by 180° and input and output channels swapped
//! ([`Filters::input_gradient`]). The weight gradient is the forward product's transpose
//! ([`accumulate_weight_gradient`]).

use std::mem::MaybeUninit;

use super::blocked::{MR, STRIP};
use super::geometry::ConvGeometry;

/// Points of the transform: the 4 × 4 input patch of a 2 × 2 output tile.
const POINTS: usize = 16;

/// Below this many input channels the products are too shallow to gain (the seed's first
/// layer has one channel).
const MIN_DEPTH: usize = 8;

/// Whether the forward product of `g` runs here: 3 × 3, stride 1, padding 1, planes up to
/// [`Tiles::MAX_WIDTH`] wide, at least
/// [`MIN_DEPTH`] input channels, where our kernels run at the AVX-512 level.
pub fn runs_forward(g: &ConvGeometry) -> bool {
    shape_fits(g) && g.c_in >= MIN_DEPTH
}

/// Whether its input gradient runs here (a convolution over `c_out` channels).
pub fn runs_input_gradient(g: &ConvGeometry) -> bool {
    shape_fits(g) && g.c_out >= MIN_DEPTH
}

/// Whether its weight gradient runs here (the products' rows are input channels).
pub fn runs_weight_gradient(g: &ConvGeometry) -> bool {
    shape_fits(g) && g.c_in >= MIN_DEPTH
}

/// Whether Winograd's products may run at all: where our kernels run at the AVX-512 level,
/// unless the installed settings keep the direct products ([`crate::settings`]).
pub fn enabled() -> bool {
    super::fma::available() && crate::settings::winograd_allowed()
}

fn shape_fits(g: &ConvGeometry) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == [1, 1]
        && g.pad == [1, 1]
        && g.w <= Tiles::MAX_WIDTH
        && super::fma::available()
}

/// The filters transformed, `U_p = (G g Gᵀ)_p`: one `c_out × c_in` row-major matrix per point.
pub struct Filters {
    c_out: usize,
    c_in: usize,
    u: Vec<f32>,
}

impl Filters {
    /// For the forward product, from `weight` (`c_out × c_in × 3 × 3`).
    pub fn forward(weight: &[f32], c_out: usize, c_in: usize) -> Filters {
        assert_eq!(weight.len(), c_out * c_in * 9, "winograd: weight size");
        Filters::build(c_out, c_in, |k, c, i, j| weight[((k * c_in + c) * 3 + i) * 3 + j])
    }

    /// For the input gradient: the convolution of the output gradient (`c_out` channels) into
    /// `c_in` channels with the kernels rotated by 180°.
    pub fn input_gradient(weight: &[f32], c_out: usize, c_in: usize) -> Filters {
        assert_eq!(weight.len(), c_out * c_in * 9, "winograd: weight size");
        Filters::build(c_in, c_out, |c, k, i, j| weight[((k * c_in + c) * 3 + 2 - i) * 3 + 2 - j])
    }

    /// `kernel(out, in, i, j)` is the 3 × 3 kernel from input channel `in` to output `out`.
    fn build(c_out: usize, c_in: usize, kernel: impl Fn(usize, usize, usize, usize) -> f32) -> Filters {
        // G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], applied to a 3-vector.
        let g = |v: [f32; 3]| [v[0], 0.5 * (v[0] + v[1] + v[2]), 0.5 * (v[0] - v[1] + v[2]), v[2]];
        let mut u = vec![0.0; POINTS * c_out * c_in];
        for k in 0..c_out {
            for c in 0..c_in {
                let columns: [[f32; 4]; 3] = std::array::from_fn(|j| g(std::array::from_fn(|i| kernel(k, c, i, j))));
                for a in 0..4 {
                    let row = g(std::array::from_fn(|j| columns[j][a]));
                    for (b, value) in row.into_iter().enumerate() {
                        u[((a * 4 + b) * c_out + k) * c_in + c] = value;
                    }
                }
            }
        }
        Filters { c_out, c_in, u }
    }
}

/// The 2 × 2 output tiles of a group of images' `h × w` planes (`w` ≤ 32), laid out so that
/// each half of a strip (16 lanes) holds whole rows of tiles: one row of up to 16 tiles, or
/// two rows of up to 8 (each padded to 8 lanes). A row of tiles then reads its patches from
/// whole input rows (two contiguous loads, split into even and odd columns) and writes its
/// outputs as whole output rows: no gathers, no scattered stores. The images' rows of tiles
/// follow one another, so that a group of [`Tiles::group`] images fills its strips (a 14 × 14
/// plane alone has 7 rows of tiles for 8 places).
pub struct Tiles {
    h: usize,
    w: usize,
    /// Lanes a row of tiles takes: 16 or 8.
    span: usize,
    images: usize,
    strips: usize,
}

/// Where one of a half's two 16-lane input registers is loaded from, and its output
/// registers stored to: an image, a row of tiles and a first column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    image: usize,
    tile_row: usize,
    column: usize,
}

impl Tiles {
    /// The widest plane: 16 tiles in a half.
    pub const MAX_WIDTH: usize = 32;

    pub fn new(h: usize, w: usize, images: usize) -> Tiles {
        assert!(w <= Tiles::MAX_WIDTH, "winograd: planes up to {} wide", Tiles::MAX_WIDTH);
        let span = Tiles::span(w);
        Tiles { h, w, span, images, strips: (images * h.div_ceil(2)).div_ceil(2 * 16 / span) }
    }

    fn span(w: usize) -> usize {
        if w.div_ceil(2) > 8 { 16 } else { 8 }
    }

    /// Images a group should hold so that its rows of tiles fill whole strips: 1, 2 or 4.
    pub fn group(h: usize, w: usize) -> usize {
        let rows_per_strip = 2 * 16 / Tiles::span(w);
        [1, 2].into_iter().find(|images| (images * h.div_ceil(2)).is_multiple_of(rows_per_strip)).unwrap_or(4)
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Row `q` of the group's rows of tiles (image after image) from column `column`, None
    /// past the last.
    fn slot(&self, q: usize, column: usize) -> Option<Slot> {
        let tile_rows = self.h.div_ceil(2);
        (q < self.images * tile_rows).then_some(Slot { image: q / tile_rows, tile_row: q % tile_rows, column })
    }

    /// The two slots of half `half` of strip `strip`: one row of tiles, columns 0 and 16
    /// (span 16), or two rows of tiles, column 0 (span 8).
    fn slots(&self, strip: usize, half: usize) -> [Option<Slot>; 2] {
        if self.span == 16 {
            let q = 2 * strip + half;
            [self.slot(q, 0), self.slot(q, 16)]
        } else {
            let q = 4 * strip + 2 * half;
            [self.slot(q, 0), self.slot(q + 1, 0)]
        }
    }
}

/// Values from one point's block of a strip buffer to the next, for blocks of `per_point`
/// values: a cache line more, so that the 16 blocks a transform reads or writes together do
/// not all fall in one L1 set (blocks 4 or 8 KiB apart did: 16 lines, 12 ways).
fn point_stride(per_point: usize) -> usize {
    per_point + 16
}

/// Per-thread buffers of one strip: transformed inputs (16 × c_in × STRIP) and products
/// (16 × c_out × STRIP).
#[derive(Default)]
pub struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
}

/// `out (c_out planes an image) = conv3×3(input (c_in planes an image), filters) [+ bias]`
/// for the images `tiles` covers, every value of `out` written.
pub fn conv(
    filters: &Filters,
    tiles: &Tiles,
    input: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
    scratch: &mut Scratch,
) {
    assert!(super::fma::available(), "winograd products need AVX-512");
    let plane = tiles.plane();
    assert!(
        input.len() >= tiles.images * filters.c_in * plane && out.len() >= tiles.images * filters.c_out * plane,
        "winograd: input or output too short"
    );
    assert!(bias.is_none_or(|b| b.len() >= filters.c_out), "winograd: bias too short");
    if filters.c_out == 0 || plane == 0 {
        return;
    }
    scratch.v.resize(POINTS * point_stride(filters.c_in * STRIP), 0.0);
    scratch.m.resize(POINTS * point_stride(filters.c_out * STRIP), 0.0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() saw the features; the sizes are checked above.
    unsafe {
        avx512::conv(filters, tiles, input, bias, out, scratch)
    }
}

/// Adds the weight-gradient products of the images `tiles` covers onto `sums`
/// (`16 × c_in × c_out`, point-major):
/// `Σ_tiles (A dY Aᵀ)_p · (Bᵀ d B)_p` for every (input, output) channel pair, where `d` are
/// the input's 4 × 4 patches and `dY` the output gradient's 2 × 2 tiles. This is the
/// transpose of the forward product: `dW = Gᵀ (Σ …) G` ([`weight_gradient`]), the Winograd
/// F(3×3, 2×2) of the correlation of the input with the output gradient. Here the products'
/// right operand is the output gradient with one lane per output channel (sixteen channels'
/// rows transposed in registers), and the left the input's transform as the forward makes it.
pub fn accumulate_weight_gradient(
    tiles: &Tiles,
    input: &[f32],
    c_in: usize,
    dy: &[f32],
    c_out: usize,
    sums: &mut [f32],
    scratch: &mut Scratch,
) {
    assert!(super::fma::available(), "winograd products need AVX-512");
    let plane = tiles.plane();
    assert!(
        input.len() >= tiles.images * c_in * plane && dy.len() >= tiles.images * c_out * plane,
        "winograd: input or output gradient too short"
    );
    assert!(sums.len() >= POINTS * c_in * c_out, "winograd: sums too short");
    if c_in == 0 || c_out == 0 || plane == 0 {
        return;
    }
    scratch.v.resize(POINTS * point_stride(c_in * STRIP), 0.0);
    scratch.m.resize(POINTS * point_stride(c_out.div_ceil(STRIP) * STRIP * STRIP), 0.0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() saw the features; the sizes are checked above.
    unsafe {
        avx512::accumulate_weight_gradient(tiles, input, c_in, dy, c_out, sums, scratch)
    }
}

/// The weight gradient (`c_out × c_in × 3 × 3`) from the sums of
/// [`accumulate_weight_gradient`]: `Gᵀ m G` per channel pair.
pub fn weight_gradient(sums: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    assert_eq!(sums.len(), POINTS * c_in * c_out, "winograd: sums size");
    // Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1], applied to a 4-vector.
    let g_t = |v: [f32; 4]| [v[0] + 0.5 * (v[1] + v[2]), 0.5 * (v[1] - v[2]), 0.5 * (v[1] + v[2]) + v[3]];
    let mut grad = vec![0.0; c_out * c_in * 9];
    for k in 0..c_out {
        for c in 0..c_in {
            let rows: [[f32; 3]; 4] =
                std::array::from_fn(|a| g_t(std::array::from_fn(|b| sums[((a * 4 + b) * c_in + c) * c_out + k])));
            for j in 0..3 {
                for (i, value) in g_t(std::array::from_fn(|a| rows[a][j])).into_iter().enumerate() {
                    grad[((k * c_in + c) * 3 + i) * 3 + j] = value;
                }
            }
        }
    }
    grad
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{Filters, MR, POINTS, STRIP, Scratch, Tiles, point_stride};
    use crate::blocked::lanes;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn conv(
        f: &Filters,
        tiles: &Tiles,
        input: &[f32],
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
        s: &mut Scratch,
    ) {
        let (c_in, c_out) = (f.c_in, f.c_out);
        for strip in 0..tiles.strips {
            // SAFETY: the caller's checks (input holds c_in planes; v 16 point blocks of c_in strips).
            unsafe { transform_input(tiles, strip, input, c_in, &mut s.v) };
            for p in 0..POINTS {
                let u = &f.u[p * c_out * c_in..][..c_out * c_in];
                let v = &s.v[p * point_stride(c_in * STRIP)..][..c_in * STRIP];
                point_product(u, v, &mut s.m[p * point_stride(c_out * STRIP)..][..c_out * STRIP], c_out, c_in);
            }
            // SAFETY: out holds c_out planes (the caller's check), m 16 point blocks of c_out strips.
            unsafe { transform_output(tiles, strip, &s.m, c_out, bias, out) };
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate_weight_gradient(
        tiles: &Tiles,
        input: &[f32],
        c_in: usize,
        dy: &[f32],
        c_out: usize,
        sums: &mut [f32],
        s: &mut Scratch,
    ) {
        let k_strips = c_out.div_ceil(STRIP);
        for strip in 0..tiles.strips {
            // SAFETY: the caller's checks (input holds c_in planes, dy c_out; v and m sized).
            unsafe {
                transform_input(tiles, strip, input, c_in, &mut s.v);
                transform_output_gradient(tiles, strip, dy, c_out, &mut s.m);
            }
            for p in 0..POINTS {
                let v = &s.v[p * point_stride(c_in * STRIP)..][..c_in * STRIP];
                let b = &s.m[p * point_stride(k_strips * STRIP * STRIP)..][..k_strips * STRIP * STRIP];
                point_weight_sums(v, b, &mut sums[p * c_in * c_out..][..c_in * c_out], c_in, c_out);
            }
        }
    }

    /// One point's product `m (c_out × STRIP) = u (c_out × c_in) · v (c_in × STRIP)`, MR rows
    /// at a time. Not inlined, so that its loop's code layout does not depend on its caller's:
    /// inlined, the same loop ran 88 or 101 µs an image after changes elsewhere in `conv`.
    #[inline(never)]
    #[target_feature(enable = "avx512f")]
    fn point_product(u: &[f32], v: &[f32], m: &mut [f32], c_out: usize, c_in: usize) {
        assert!(u.len() >= c_out * c_in && m.len() >= c_out * STRIP);
        for k0 in (0..c_out).step_by(MR) {
            // SAFETY: this function runs with AVX-512F.
            let acc = unsafe { crate::fma::micro(c_in, rows(u, k0, c_out - 1, c_in), v) };
            for (r, halves) in acc.iter().enumerate().take(c_out - k0) {
                // SAFETY: row k0 + r < c_out of m holds STRIP values (asserted).
                unsafe {
                    let at = m.as_mut_ptr().add((k0 + r) * STRIP);
                    _mm512_storeu_ps(at, halves[0]);
                    _mm512_storeu_ps(at.add(16), halves[1]);
                }
            }
        }
    }

    /// One point's weight-gradient products added onto `sums` (`c_in × c_out`):
    /// `v (c_in × STRIP lanes) · b`, where `b` holds the output gradient's transform in strips
    /// of STRIP channels (STRIP lanes × STRIP channels each). Not inlined, as [`point_product`].
    #[inline(never)]
    #[target_feature(enable = "avx512f")]
    fn point_weight_sums(v: &[f32], b: &[f32], sums: &mut [f32], c_in: usize, c_out: usize) {
        assert!(sums.len() >= c_in * c_out && b.len() >= c_out.div_ceil(STRIP) * STRIP * STRIP);
        for ks in 0..c_out.div_ceil(STRIP) {
            let b = &b[ks * STRIP * STRIP..][..STRIP * STRIP];
            for c0 in (0..c_in).step_by(MR) {
                // SAFETY: this function runs with AVX-512F.
                let acc = unsafe { crate::fma::micro(STRIP, rows(v, c0, c_in - 1, STRIP), b) };
                for (r, halves) in acc.iter().enumerate().take(c_in - c0) {
                    for (half, &value) in halves.iter().enumerate() {
                        let k = ks * STRIP + 16 * half;
                        if k >= c_out {
                            break;
                        }
                        let mask = lanes(c_out - k);
                        // SAFETY: row c0 + r < c_in of sums, columns k.. under the mask of those
                        // below c_out (asserted).
                        unsafe {
                            let at = sums.as_mut_ptr().add((c0 + r) * c_out + k);
                            _mm512_mask_storeu_ps(at, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), value));
                        }
                    }
                }
            }
        }
    }

    /// `m[p][k strip][lane]` (STRIP output channels) = point p of `A dY Aᵀ` for each lane's
    /// 2 × 2 tile of the output gradient, with `A = [1 0; 1 1; 1 −1; 0 −1]`: zero for padding
    /// tiles and positions past the plane. Sixteen channels' rows of a slot are loaded whole
    /// and transposed in registers into one register per column with a lane per channel
    /// (gathering each value across the channel planes cost three times as much).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn transform_output_gradient(tiles: &Tiles, strip: usize, dy: &[f32], c_out: usize, m: &mut [f32]) {
        let (h, w, plane) = (tiles.h, tiles.w, tiles.plane());
        let k_strips = c_out.div_ceil(STRIP);
        let stride = point_stride(k_strips * STRIP * STRIP);
        let zero = _mm512_setzero_ps();
        for half in 0..2 {
            // Per output row dy of the tiles and slot: where the row starts in its image's
            // first channel, and the mask of its columns (none past the plane).
            let mut sources = [[(0usize, 0u16); 2]; 2];
            for (dy, row) in sources.iter_mut().enumerate() {
                for (source, slot) in row.iter_mut().zip(tiles.slots(strip, half)) {
                    if let Some(slot) = slot.filter(|slot| 2 * slot.tile_row + dy < h) {
                        *source = (
                            slot.image * c_out * plane + (2 * slot.tile_row + dy) * w + slot.column,
                            lanes(w.saturating_sub(slot.column)),
                        );
                    }
                }
            }
            for k0 in (0..c_out).step_by(16) {
                // columns[dy][x]: output row dy's column x of the half (slot x / 16), a lane
                // per channel k0 + lane.
                let mut columns = [[zero; 32]; 2];
                for (output_row, row) in sources.iter().enumerate() {
                    for (slot, &(at, mask)) in row.iter().enumerate() {
                        let mut rows = [zero; 16];
                        for (i, row) in rows.iter_mut().enumerate() {
                            let mask = if k0 + i < c_out { mask } else { 0 };
                            // SAFETY: the mask keeps the load inside row y of channel k0 + i
                            // (below c_out) of its image, within dy (the caller's check).
                            *row =
                                unsafe { _mm512_maskz_loadu_ps(mask, dy.as_ptr().wrapping_add(at + (k0 + i) * plane)) };
                        }
                        columns[output_row][16 * slot..16 * slot + 16].copy_from_slice(&transpose(rows));
                    }
                }
                let (ks, k_half) = (k0 / STRIP, k0 % STRIP / 16);
                for lane in 0..16 {
                    // Lane l's tile covers the half's columns 2l and 2l + 1 (span 8: slot 1's
                    // columns follow slot 0's, as its lanes do).
                    let (a, b, c, d) = (
                        columns[0][2 * lane],
                        columns[0][2 * lane + 1],
                        columns[1][2 * lane],
                        columns[1][2 * lane + 1],
                    );
                    // A dY: rows (a, b), (a + c, b + d), (a − c, b − d), (−c, −d); then each
                    // row (u, v) times Aᵀ: (u, u + v, u − v, −v).
                    let rows = [
                        (a, b),
                        (_mm512_add_ps(a, c), _mm512_add_ps(b, d)),
                        (_mm512_sub_ps(a, c), _mm512_sub_ps(b, d)),
                        (_mm512_sub_ps(zero, c), _mm512_sub_ps(zero, d)),
                    ];
                    for (i, (u, v)) in rows.into_iter().enumerate() {
                        let values = [u, _mm512_add_ps(u, v), _mm512_sub_ps(u, v), _mm512_sub_ps(zero, v)];
                        for (j, value) in values.into_iter().enumerate() {
                            // SAFETY: m holds 16 point blocks of k_strips · STRIP · STRIP values.
                            unsafe {
                                _mm512_storeu_ps(
                                    m.as_mut_ptr().add(
                                        (i * 4 + j) * stride + (ks * STRIP + 16 * half + lane) * STRIP + 16 * k_half,
                                    ),
                                    value,
                                )
                            };
                        }
                    }
                }
            }
        }
    }

    /// A 16 × 16 transpose: `out[c]` lane r = `rows[r]` lane c. Interleaving 32-bit then
    /// 64-bit values leaves `u[4i + q]`'s 128-bit lane j holding rows 4i … 4i + 3 of column
    /// 4j + q; two rounds of 128-bit shuffles gather each column's four lanes.
    #[inline(always)]
    fn transpose(r: [__m512; 16]) -> [__m512; 16] {
        // SAFETY (all intrinsics): register-only; callers run with AVX-512F.
        unsafe {
            let mut t = [_mm512_setzero_ps(); 16];
            for i in (0..16).step_by(2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            let pd = _mm512_castps_pd;
            let mut u = [_mm512_setzero_ps(); 16];
            for i in (0..16).step_by(4) {
                u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[i]), pd(t[i + 2])));
                u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[i]), pd(t[i + 2])));
                u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[i + 1]), pd(t[i + 3])));
                u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[i + 1]), pd(t[i + 3])));
            }
            let mut out = [_mm512_setzero_ps(); 16];
            for q in 0..4 {
                let (s0, s1) =
                    (_mm512_shuffle_f32x4::<0x88>(u[q], u[4 + q]), _mm512_shuffle_f32x4::<0xdd>(u[q], u[4 + q]));
                let (s2, s3) = (
                    _mm512_shuffle_f32x4::<0x88>(u[8 + q], u[12 + q]),
                    _mm512_shuffle_f32x4::<0xdd>(u[8 + q], u[12 + q]),
                );
                out[q] = _mm512_shuffle_f32x4::<0x88>(s0, s2);
                out[8 + q] = _mm512_shuffle_f32x4::<0xdd>(s0, s2);
                out[4 + q] = _mm512_shuffle_f32x4::<0x88>(s1, s3);
                out[12 + q] = _mm512_shuffle_f32x4::<0xdd>(s1, s3);
            }
            out
        }
    }

    /// MR rows of `len` values, `len` apart, from row `first` on (past `last`, the last again):
    /// a plain loop, which inlines where `std::array::from_fn`'s closure was a call per row.
    #[inline(always)]
    fn rows(data: &[f32], first: usize, last: usize, len: usize) -> [&[f32]; MR] {
        let mut rows = [&data[..0]; MR];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = &data[(first + r).min(last) * len..][..len];
        }
        rows
    }

    /// Lane tables: even and odd lanes of two registers (a0 a2 … b0 b2 …), and a row of
    /// tiles' lanes moved up (lane l takes lane l − 1) or down (l + 1) within its span.
    const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
    const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
    const UP: [i32; 16] = [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
    const DOWN: [i32; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15];
    /// Interleaving two registers' lanes: a0 b0 a1 b1 … (the first eight of each, then the rest).
    const FIRST: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    const SECOND: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

    #[inline(always)]
    unsafe fn table(t: &[i32; 16]) -> __m512i {
        // SAFETY: 16 values; the caller runs with AVX-512F.
        unsafe { _mm512_loadu_si512(t.as_ptr().cast()) }
    }

    /// The lanes whose moved-up (moved-down) value exists within their row of tiles.
    fn shift_masks(span: usize) -> (u16, u16) {
        if span == 16 { (0xFFFE, 0x7FFF) } else { (0xFEFE, 0x7F7F) }
    }

    /// `v[p][c]` (STRIP lanes) = point p of `Bᵀ d B` for channel c's patch of each lane's tile,
    /// with `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]`. Patch row r of tile column tx is
    /// input columns 2tx − 1 … 2tx + 2: the odd columns moved up a lane, the even, the odd,
    /// and the even moved down; zero outside the plane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn transform_input(tiles: &Tiles, strip: usize, input: &[f32], c_in: usize, v: &mut [f32]) {
        let (h, w, plane) = (tiles.h, tiles.w, tiles.plane());
        // SAFETY: the tables hold 16 values.
        let (even, odd, up, down) = unsafe { (table(&EVEN), table(&ODD), table(&UP), table(&DOWN)) };
        let (up_mask, down_mask) = shift_masks(tiles.span);
        let zero = _mm512_setzero_ps();
        // The input rows the next strip reads and this one does not, prefetched channel by
        // channel: a strip reads a few rows of every channel's plane, more streams than the
        // hardware prefetcher follows.
        let image = c_in * plane;
        let mut ahead = [0usize; 8];
        let mut lines = 0;
        for slot in (0..2).flat_map(|half| tiles.slots(strip + 1, half)).flatten() {
            for y in [2 * slot.tile_row + 1, 2 * slot.tile_row + 2].into_iter().filter(|&y| y < h) {
                ahead[lines] = slot.image * image + y * w + slot.column;
                lines += 1;
            }
        }
        for half in 0..2 {
            let slots = tiles.slots(strip, half);
            // Per patch row r and slot: where the input row starts and the mask of the
            // columns it has from the slot's column on (none where the row is padding).
            let mut sources = [[(0usize, 0u16); 2]; 4];
            for (r, row) in sources.iter_mut().enumerate() {
                for (source, slot) in row.iter_mut().zip(slots.into_iter().flatten()) {
                    if let Some(y) = (2 * slot.tile_row + r).checked_sub(1).filter(|&y| y < h) {
                        *source = (slot.image * image + y * w + slot.column, lanes(w.saturating_sub(slot.column)));
                    }
                }
            }
            for c in 0..c_in {
                // Channel c of the group's first image; the sources add the image.
                let src = input.as_ptr().wrapping_add(c * plane);
                if half == 0 {
                    for &at in &ahead[..lines] {
                        // A prefetch does not fault, and the address is inside the input.
                        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(at).cast());
                    }
                }
                let mut t = [[zero; 4]; 4];
                for (t, [(a_at, a_mask), (b_at, b_mask)]) in t.iter_mut().zip(sources) {
                    // SAFETY: the masks keep each load inside its row of plane c of its image,
                    // within the input (the caller's check; a zero mask loads nothing).
                    let (a, b) = unsafe {
                        (
                            _mm512_maskz_loadu_ps(a_mask, src.wrapping_add(a_at)),
                            _mm512_maskz_loadu_ps(b_mask, src.wrapping_add(b_at)),
                        )
                    };
                    let (e, o) = (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
                    *t = b_t([
                        _mm512_maskz_permutexvar_ps(up_mask, up, o),
                        e,
                        o,
                        _mm512_maskz_permutexvar_ps(down_mask, down, e),
                    ]);
                }
                // j picks a column across the four rows of t: an index reads plainer than zips.
                #[allow(clippy::needless_range_loop)]
                for j in 0..4 {
                    let column = b_t([t[0][j], t[1][j], t[2][j], t[3][j]]);
                    for (i, value) in column.into_iter().enumerate() {
                        // SAFETY: v holds 16 point blocks of c_in strips.
                        unsafe {
                            _mm512_storeu_ps(
                                v.as_mut_ptr().add((i * 4 + j) * point_stride(c_in * STRIP) + c * STRIP + 16 * half),
                                value,
                            )
                        };
                    }
                }
            }
        }
    }

    /// `Bᵀ d` for a 4-vector.
    #[inline(always)]
    fn b_t(d: [__m512; 4]) -> [__m512; 4] {
        // SAFETY (all four): plain arithmetic; callers run with AVX-512F.
        unsafe {
            [_mm512_sub_ps(d[0], d[2]), _mm512_add_ps(d[1], d[2]), _mm512_sub_ps(d[2], d[1]), _mm512_sub_ps(d[1], d[3])]
        }
    }

    /// `Aᵀ m` for a 4-vector, with `Aᵀ = [1 1 1 0; 0 1 −1 −1]`.
    #[inline(always)]
    fn a_t(m: [__m512; 4]) -> [__m512; 2] {
        // SAFETY: plain arithmetic; callers run with AVX-512F.
        unsafe { [_mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]), _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3])] }
    }

    /// Each output channel's 2 × 2 tiles `Aᵀ m A (+ bias)` of the strip's products: the two
    /// columns of each output row interleaved, then stored as whole rows.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn transform_output(
        tiles: &Tiles,
        strip: usize,
        m: &[f32],
        c_out: usize,
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (h, w, plane) = (tiles.h, tiles.w, tiles.plane());
        // SAFETY: the tables hold 16 values.
        let (first, second) = unsafe { (table(&FIRST), table(&SECOND)) };
        for half in 0..2 {
            // Per output row dy of the tiles and slot: where the row starts and the mask of
            // its columns (none past the plane).
            let mut targets = [[(0usize, 0u16); 2]; 2];
            for (dy, row) in targets.iter_mut().enumerate() {
                for (target, slot) in row.iter_mut().zip(tiles.slots(strip, half).into_iter().flatten()) {
                    let y = 2 * slot.tile_row + dy;
                    if y < h {
                        *target =
                            (slot.image * c_out * plane + y * w + slot.column, lanes(w.saturating_sub(slot.column)));
                    }
                }
            }
            for k in 0..c_out {
                let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[k]));
                let at = m[k * STRIP + 16 * half..].as_ptr();
                let mut s = [[_mm512_setzero_ps(); 2]; 4];
                for (i, s) in s.iter_mut().enumerate() {
                    let mut row = [_mm512_setzero_ps(); 4];
                    for (j, value) in row.iter_mut().enumerate() {
                        // SAFETY: m holds 16 point blocks of c_out strips: point (i, j) of channel k is in it.
                        *value = unsafe { _mm512_loadu_ps(at.add((i * 4 + j) * point_stride(c_out * STRIP))) };
                    }
                    *s = a_t(row);
                }
                let (c0, c1) = (a_t([s[0][0], s[1][0], s[2][0], s[3][0]]), a_t([s[0][1], s[1][1], s[2][1], s[3][1]]));
                for (dy, row_targets) in targets.iter().enumerate() {
                    let (left, right) = (_mm512_add_ps(c0[dy], b), _mm512_add_ps(c1[dy], b));
                    let rows =
                        [_mm512_permutex2var_ps(left, first, right), _mm512_permutex2var_ps(left, second, right)];
                    for (row, &(at, mask)) in rows.into_iter().zip(row_targets) {
                        // SAFETY: the mask keeps the store inside output row y of plane k (a
                        // zero mask stores nothing), and out holds c_out planes.
                        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(k * plane + at).cast(), mask, row) };
                    }
                }
            }
        }
    }
}

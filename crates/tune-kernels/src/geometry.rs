//! The shapes the kernels work on: a convolution's and a pooling's geometry, shared by the
//! direct, im2col and Winograd convolutions and by the pooling and fused batch-norm kernels.

/// Shapes and hyper-parameters of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub pad: [usize; 2],
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad[0] - self.kh) / self.stride[0] + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad[1] - self.kw) / self.stride[1] + 1
    }

    /// Output positions per channel.
    pub(crate) fn plane(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Length of one im2col column: every input value one output position sees.
    pub(crate) fn patch(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    pub(crate) fn in_image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    pub(crate) fn out_image(&self) -> usize {
        self.c_out * self.plane()
    }

    /// The output columns `o` whose input column `o·stride + j − pad` lies inside `0..len`.
    pub(crate) fn valid(len: usize, out: usize, stride: usize, pad: usize, j: usize) -> std::ops::Range<usize> {
        let lo = pad.saturating_sub(j).div_ceil(stride);
        let hi = if len + pad > j { ((len + pad - j - 1) / stride + 1).min(out) } else { 0 };
        lo..hi.max(lo)
    }
}

/// `planes` (= batch × channels) planes of `h × w`, pooled by `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl PoolGeometry {
    pub fn out_h(&self) -> usize {
        self.h / self.k
    }

    pub fn out_w(&self) -> usize {
        self.w / self.k
    }

    pub(crate) fn out_plane(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Offset (within the plane) of the first maximum of the window at (`oy`, `ox`); NaN wins,
    /// as in burn and PyTorch, so it propagates.
    pub(crate) fn argmax(&self, plane: &[f32], oy: usize, ox: usize) -> usize {
        let mut best = (oy * self.k) * self.w + ox * self.k;
        for i in 0..self.k {
            let row = (oy * self.k + i) * self.w + ox * self.k;
            for at in row..row + self.k {
                let (v, b) = (plane[at], plane[best]);
                if v > b || (v.is_nan() && !b.is_nan()) {
                    best = at;
                }
            }
        }
        best
    }
}

//! im2col's matrix described, not written: where the stride is 1 and the output is as wide as
//! the input (every layer of the seed network), each of its rows is an input plane shifted by a
//! fixed offset, with the positions whose source is padding set to zero. The products in
//! [`super::bf16::shifted`] and [`super::fma`] read it straight from the image through masked
//! loads, and add the input gradient onto the image as it leaves the registers, so neither
//! im2col's matrix nor col2im's is ever written. Writing them and packing them again had cost
//! about 15% of a bf16 training step (in perf).

/// Positions per mask word: the products' strips are this wide.
pub const STRIP: usize = 32;

/// An im2col matrix (`rows` × `positions`) whose row r = (channel c, kernel offset q) holds
/// `image[c·plane_in + t + offsets[q]]` at each position t whose source lies inside the image,
/// and zero at the others.
#[derive(Clone, Debug)]
pub struct Shifted {
    positions: usize,
    channels: usize,
    /// Values per input channel (`h · w`).
    plane_in: usize,
    /// Per row: its first value's index in the image (before masking; may be negative) and
    /// its kernel offset (computed once: the products ask for every row of every strip).
    starts: Vec<(isize, usize)>,
    /// Per kernel offset, per [`STRIP`] positions: bit b says whether position 32·s + b is inside.
    masks: Vec<u32>,
}

impl Shifted {
    /// The matrix of `channels` input planes of `plane_in` values, with the kernel offsets'
    /// `offsets` and `inside(q, t)` telling whether position t's source under offset q lies in
    /// the image. Panics where a source said to be inside lies outside its plane, so every
    /// load the products make stays within the image.
    pub fn new(
        channels: usize,
        plane_in: usize,
        positions: usize,
        offsets: Vec<isize>,
        inside: impl Fn(usize, usize) -> bool,
    ) -> Shifted {
        let strips = positions.div_ceil(STRIP);
        let mut masks = vec![0u32; offsets.len() * strips];
        for (q, &offset) in offsets.iter().enumerate() {
            for t in (0..positions).filter(|&t| inside(q, t)) {
                let source = t as isize + offset;
                assert!(
                    (0..plane_in as isize).contains(&source),
                    "shifted im2col: position {t} of offset {q} reads {source}, outside its plane"
                );
                masks[q * strips + t / STRIP] |= 1 << (t % STRIP);
            }
        }
        let starts = (0..channels)
            .flat_map(|c| offsets.iter().enumerate().map(move |(q, &offset)| ((c * plane_in) as isize + offset, q)))
            .collect();
        Shifted { positions, channels, plane_in, starts, masks }
    }

    /// The same matrix with its rows in (kernel offset, channel) order: row q·channels + c is
    /// row (c, q) of the original. The input gradient's product stores each eight rows
    /// at once; in this order they go to different planes, where in (c, q) order they overlap
    /// (offsets one apart), and every load that overlaps a store still in flight waits for it
    /// (measured: 89 against 79 µs an image for the seed's second convolution).
    pub fn offset_major(mut self) -> Shifted {
        let per_channel = self.starts.len() / self.channels.max(1);
        self.starts = (0..per_channel)
            .flat_map(|q| (0..self.channels).map(move |c| (c, q)))
            .map(|(c, q)| self.starts[c * per_channel + q])
            .collect();
        self
    }

    fn strips(&self) -> usize {
        self.positions.div_ceil(STRIP)
    }

    /// Row r's first value's index in the image (before masking; may be negative) and its
    /// masks, one per [`STRIP`] positions.
    #[inline(always)]
    pub fn row(&self, r: usize) -> (isize, &[u32]) {
        let (start, q) = self.starts[r];
        let strips = self.strips();
        (start, &self.masks[q * strips..][..strips])
    }

    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Panics unless `image` is the size this matrix reads from (the products' masked loads
    /// rely on it).
    pub fn check(&self, image: &[f32]) {
        assert_eq!(image.len(), self.channels * self.plane_in, "shifted im2col: image size");
    }
}

#[cfg(target_arch = "x86_64")]
impl Shifted {
    /// Adds 16 results of row `r` (positions `at..at + 16`, those in `mask`) onto
    /// `image_grad` wherever the row's mask says the position's source is inside the image:
    /// col2im of one register, as the input gradient's products store their results.
    ///
    /// # Safety
    /// Only from code running with AVX-512F, `at` a multiple of 16 below the positions, and
    /// `image_grad` of the size [`Shifted::check`] accepts.
    #[inline(always)]
    pub unsafe fn add_onto(
        &self,
        image_grad: &mut [f32],
        r: usize,
        at: usize,
        v: std::arch::x86_64::__m512,
        mask: u16,
    ) {
        use std::arch::x86_64::*;
        let (start, masks) = self.row(r);
        let inside = (masks[at / STRIP] >> (at % STRIP)) as u16 & mask;
        if inside == 0 {
            return;
        }
        // SAFETY: the caller runs with AVX-512F and checked the image's size; the masks admit
        // only positions whose source lies inside it (Shifted::new).
        unsafe {
            let ptr = image_grad.as_mut_ptr().wrapping_offset(start + at as isize);
            _mm512_mask_storeu_ps(ptr, inside, _mm512_add_ps(_mm512_maskz_loadu_ps(inside, ptr), v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check every masked load's soundness rests on: a source called inside must be.
    #[test]
    #[should_panic(expected = "outside its plane")]
    fn a_source_outside_its_plane_is_refused() {
        // Offset +1 on a 4-value plane: position 3 reads index 4.
        Shifted::new(2, 4, 4, vec![1], |_, _| true);
    }

    #[test]
    fn rows_follow_the_order_asked_for() {
        let col = Shifted::new(2, 9, 9, vec![-1, 0, 1], |q, t| {
            (t as isize + [-1, 0, 1][q]).clamp(0, 8) == t as isize + [-1, 0, 1][q]
        });
        let starts: Vec<isize> = (0..6).map(|r| col.row(r).0).collect();
        assert_eq!(starts, [-1, 0, 1, 8, 9, 10]);
        assert_eq!(col.row(0).1, [0b1_1111_1110]);
        let col = col.offset_major();
        let starts: Vec<isize> = (0..6).map(|r| col.row(r).0).collect();
        assert_eq!(starts, [-1, 8, 0, 9, 1, 10]);
        assert_eq!(col.row(1).1, [0b1_1111_1110]);
    }
}

//! Training-time augmentation, standard for Fashion-MNIST: a random shift of up to `shift`
//! pixels in each direction (the uncovered border is black, the background), a random
//! horizontal flip, and random erasing (Zhong et al. 2017, the WRN recipe's). Applied to a batch's scaled pixels as it is assembled, from a seeded
//! generator, so a run is reproducible and evaluation never sees it.

use rand::Rng;
use rand::rngs::StdRng;

use super::PIXELS;

const SIDE: usize = 28;

/// What to do to each training image.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Augment {
    /// Largest shift in pixels, along each axis independently (0: none).
    pub shift: usize,
    /// Flip half of the images left-right.
    pub flip: bool,
    /// Chance that an image gets one erased rectangle (0: none).
    pub erase: f64,
    /// Largest fraction of the image a rectangle covers.
    pub erase_area: f64,
}

/// Zhong et al.'s bounds: the smallest erased area, and aspect ratios in [0.3, 1/0.3].
const ERASE_MIN_AREA: f64 = 0.02;
const ERASE_MIN_ASPECT: f64 = 0.3;
/// Tries at a rectangle that fits before the image is left as it is (their rule too).
const ERASE_TRIES: usize = 10;

impl Augment {
    pub fn is_identity(self) -> bool {
        self.shift == 0 && !self.flip && self.erase == 0.0
    }

    /// With probability `erase`, fills one random rectangle of `image` with uniform noise in
    /// [0, 1) (the pixels' range). Draws nothing when erasing is off, so the shift and flip
    /// streams of a recipe without it are unchanged.
    fn erase(self, image: &mut [f32], rng: &mut StdRng) {
        if self.erase == 0.0 || !rng.random_bool(self.erase) {
            return;
        }
        let high = self.erase_area.max(ERASE_MIN_AREA);
        for _ in 0..ERASE_TRIES {
            let area = rng.random_range(ERASE_MIN_AREA..=high) * PIXELS as f64;
            let aspect = rng.random_range(ERASE_MIN_ASPECT.ln()..=-ERASE_MIN_ASPECT.ln()).exp();
            let h = (area * aspect).sqrt().round() as usize;
            let w = (area / aspect).sqrt().round() as usize;
            if h == 0 || w == 0 || h >= SIDE || w >= SIDE {
                continue;
            }
            let (top, left) = (rng.random_range(0..=SIDE - h), rng.random_range(0..=SIDE - w));
            for row in image[top * SIDE..(top + h) * SIDE].chunks_exact_mut(SIDE) {
                for p in &mut row[left..left + w] {
                    *p = rng.random::<f32>();
                }
            }
            return;
        }
    }

    /// Augments every 28×28 image of `batch` in place.
    pub fn apply(self, batch: &mut [f32], rng: &mut StdRng) {
        if self.is_identity() {
            return;
        }
        let mut scratch = [0f32; PIXELS];
        let k = self.shift.min(SIDE - 1) as i32;
        let moves = self.shift > 0 || self.flip;
        for image in batch.chunks_exact_mut(PIXELS) {
            if !moves {
                self.erase(image, rng);
                continue;
            }
            let (dy, dx) =
                if k > 0 { (rng.random_range(-k..=k) as isize, rng.random_range(-k..=k) as isize) } else { (0, 0) };
            let flip = self.flip && rng.random_bool(0.5);
            scratch.copy_from_slice(image);
            for y in 0..SIDE {
                let sy = y as isize - dy;
                for x in 0..SIDE {
                    let sx = x as isize - dx;
                    let sx = if flip { SIDE as isize - 1 - sx } else { sx };
                    image[y * SIDE + x] = if (0..SIDE as isize).contains(&sy) && (0..SIDE as isize).contains(&sx) {
                        scratch[sy as usize * SIDE + sx as usize]
                    } else {
                        0.0
                    };
                }
            }
            self.erase(image, rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn image_with_dot(y: usize, x: usize) -> Vec<f32> {
        let mut v = vec![0f32; PIXELS];
        v[y * SIDE + x] = 1.0;
        v
    }

    fn dot(image: &[f32]) -> Option<(usize, usize)> {
        image.iter().position(|&p| p == 1.0).map(|i| (i / SIDE, i % SIDE))
    }

    #[test]
    fn shifts_stay_within_k_and_flips_mirror() {
        let mut rng = StdRng::seed_from_u64(3);
        let aug = Augment { shift: 2, ..Augment::default() };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut img = image_with_dot(10, 12);
            aug.apply(&mut img, &mut rng);
            let (y, x) = dot(&img).expect("a dot 2 pixels from the centre is never shifted out");
            assert!(y.abs_diff(10) <= 2 && x.abs_diff(12) <= 2, "({y}, {x})");
            assert_eq!(img.iter().filter(|&&p| p != 0.0).count(), 1, "pixels move, none are invented");
            seen.insert((y, x));
        }
        assert_eq!(seen.len(), 25, "every shift in [-2, 2]² occurs");
        let flip = Augment { flip: true, ..Augment::default() };
        let (mut flipped, mut kept) = (0, 0);
        for _ in 0..200 {
            let mut img = image_with_dot(5, 3);
            flip.apply(&mut img, &mut rng);
            match dot(&img) {
                Some((5, 24)) => flipped += 1,
                Some((5, 3)) => kept += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(flipped > 60 && kept > 60, "about half flipped: {flipped} / {kept}");
    }

    #[test]
    fn erasing_fills_one_rectangle_within_the_area_bounds_at_its_rate() {
        let mut rng = StdRng::seed_from_u64(7);
        let aug = Augment { erase: 0.5, erase_area: 0.3, ..Augment::default() };
        let (mut erased, mut areas) = (0, Vec::new());
        for _ in 0..400 {
            // A constant image the noise can never equal exactly.
            let mut img = vec![2.0f32; PIXELS];
            aug.apply(&mut img, &mut rng);
            let changed: Vec<usize> = (0..PIXELS).filter(|&i| img[i] != 2.0).collect();
            if changed.is_empty() {
                continue;
            }
            erased += 1;
            assert!(changed.iter().all(|&i| (0.0..1.0).contains(&img[i])), "noise in the pixels' range");
            let (rows, cols): (Vec<usize>, Vec<usize>) = changed.iter().map(|&i| (i / SIDE, i % SIDE)).unzip();
            let (h, w) = (
                rows.iter().max().unwrap() - rows.iter().min().unwrap() + 1,
                cols.iter().max().unwrap() - cols.iter().min().unwrap() + 1,
            );
            assert_eq!(h * w, changed.len(), "one solid rectangle");
            areas.push(changed.len() as f64 / PIXELS as f64);
        }
        assert!((160..=240).contains(&erased), "about half of 400 erased: {erased}");
        let (low, high) = areas.iter().fold((1.0f64, 0.0f64), |(l, h), &a| (l.min(a), h.max(a)));
        // Rounding the sides moves the area a little past the bounds of the draw.
        assert!(low >= 0.01 && high <= 0.36 && high > 0.2, "areas in [{low}, {high}]");
        let mut a = vec![0.5f32; 3 * PIXELS];
        let mut b = a.clone();
        aug.apply(&mut a, &mut StdRng::seed_from_u64(9));
        aug.apply(&mut b, &mut StdRng::seed_from_u64(9));
        assert_eq!(a, b, "seeded: the same stream erases the same pixels");
    }

    #[test]
    fn a_pixel_shifted_out_leaves_black_and_the_identity_changes_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut img = image_with_dot(0, 0);
        let before = img.clone();
        Augment::default().apply(&mut img, &mut rng);
        assert_eq!(img, before);
        let mut moved_out = 0;
        for _ in 0..100 {
            let mut img = image_with_dot(0, 0);
            Augment { shift: 1, ..Augment::default() }.apply(&mut img, &mut rng);
            moved_out += usize::from(dot(&img).is_none());
        }
        assert!(moved_out > 30, "a corner pixel leaves the image when shifted up or left: {moved_out}");
    }
}

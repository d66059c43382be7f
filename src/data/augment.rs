//! Training-time augmentation, standard for Fashion-MNIST: a random shift of up to `shift`
//! pixels in each direction (the uncovered border is black, the background) and a random
//! horizontal flip. Applied to a batch's scaled pixels as it is assembled, from a seeded
//! generator, so a run is reproducible and evaluation never sees it.

use rand::Rng;
use rand::rngs::StdRng;

use super::PIXELS;

const SIDE: usize = 28;

/// What to do to each training image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    /// Largest shift in pixels, along each axis independently (0: none).
    pub shift: usize,
    /// Flip half of the images left-right.
    pub flip: bool,
}

impl Augment {
    pub fn is_identity(self) -> bool {
        self.shift == 0 && !self.flip
    }

    /// Augments every 28×28 image of `batch` in place.
    pub fn apply(self, batch: &mut [f32], rng: &mut StdRng) {
        if self.is_identity() {
            return;
        }
        let mut scratch = [0f32; PIXELS];
        let k = self.shift.min(SIDE - 1) as i32;
        for image in batch.chunks_exact_mut(PIXELS) {
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
        let aug = Augment { shift: 2, flip: false };
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
        let flip = Augment { shift: 0, flip: true };
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
    fn a_pixel_shifted_out_leaves_black_and_the_identity_changes_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut img = image_with_dot(0, 0);
        let before = img.clone();
        Augment::default().apply(&mut img, &mut rng);
        assert_eq!(img, before);
        let mut moved_out = 0;
        for _ in 0..100 {
            let mut img = image_with_dot(0, 0);
            Augment { shift: 1, flip: false }.apply(&mut img, &mut rng);
            moved_out += usize::from(dot(&img).is_none());
        }
        assert!(moved_out > 30, "a corner pixel leaves the image when shifted up or left: {moved_out}");
    }
}

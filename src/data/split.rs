//! The seed's splits: a class-balanced test set carved from the training images with a fixed
//! seed, train = the rest, validation = the official test set. Same seed, same split, everywhere.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};

use super::{CLASSES, Images};

/// How the balanced test set is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitConfig {
    /// Seed of the draw (the seed study used 27).
    pub seed: u64,
    /// Images per class in the balanced test set; `None` = 1,000, or a sixth of the
    /// smallest class when the data set is smaller than Fashion-MNIST (tiny fixtures).
    pub test_per_class: Option<usize>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { seed: 27, test_per_class: None }
    }
}

/// Index lists into `FashionMnist::train` (train, test) and `official_test` (validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    pub validation: Vec<usize>,
}

impl Splits {
    /// Computes the splits; indices within each list are sorted ascending.
    pub fn new(train: &Images, official_test: &Images, config: SplitConfig) -> Splits {
        let by_class = indices_by_class(train, 0..train.len());
        let smallest = by_class.iter().map(Vec::len).min().unwrap_or(0);
        let per_class = config.test_per_class.unwrap_or((smallest / 6).min(1000)).min(smallest);
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut test = Vec::with_capacity(per_class * CLASSES);
        for mut class in by_class {
            class.shuffle(&mut rng);
            test.extend_from_slice(&class[..per_class]);
        }
        test.sort_unstable();
        let mut is_test = vec![false; train.len()];
        test.iter().for_each(|&i| is_test[i] = true);
        let train_idx = (0..train.len()).filter(|&i| !is_test[i]).collect();
        Splits { train: train_idx, test, validation: (0..official_test.len()).collect() }
    }

    /// SHA-256 of the three index lists: proof that two machines made the same split.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for list in [&self.train, &self.test, &self.validation] {
            h.update((list.len() as u64).to_le_bytes());
            list.iter().for_each(|&i| h.update((i as u32).to_le_bytes()));
        }
        super::source::hex(&h.finalize())
    }
}

fn indices_by_class(images: &Images, range: impl Iterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); CLASSES];
    for i in range {
        by_class[images.labels[i] as usize].push(i);
    }
    by_class
}

/// A stratified subset of `indices` of (about) `n` images: `n / 10` per class, the remainder
/// spread over the first classes, drawn with `seed`. Returns everything when `n` ≥ the set.
pub fn stratified_subset(images: &Images, indices: &[usize], n: usize, seed: u64) -> Vec<usize> {
    if n >= indices.len() {
        return indices.to_vec();
    }
    let mut by_class = indices_by_class(images, indices.iter().copied());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for (c, class) in by_class.iter_mut().enumerate() {
        let want = n / CLASSES + usize::from(c < n % CLASSES);
        class.shuffle(&mut rng);
        out.extend_from_slice(&class[..want.min(class.len())]);
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::synthetic_images;

    #[test]
    fn balanced_disjoint_and_complete() {
        let train = synthetic_images(600, 5);
        let official = synthetic_images(100, 6);
        let s = Splits::new(&train, &official, SplitConfig { seed: 27, test_per_class: Some(10) });
        assert_eq!(train.class_counts(s.test.iter().copied()), [10; CLASSES]);
        assert_eq!(s.train.len() + s.test.len(), 600);
        assert!(s.test.iter().all(|i| s.train.binary_search(i).is_err()));
        assert_eq!(s.validation.len(), 100);
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let train = synthetic_images(1200, 1);
        let official = synthetic_images(50, 2);
        let a = Splits::new(&train, &official, SplitConfig::default());
        let b = Splits::new(&train, &official, SplitConfig::default());
        let c = Splits::new(&train, &official, SplitConfig { seed: 28, test_per_class: None });
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        // A sixth of the smallest class by default, as 1,000 of 6,000 in the real data.
        let smallest = *train.class_counts(0..1200).iter().min().unwrap();
        assert_eq!(a.test.len(), (smallest / 6) * CLASSES);
    }

    #[test]
    fn pinned_fingerprint_guards_against_silent_changes() {
        // If this changes, every stored study's split changed: that must be a deliberate decision.
        let train = synthetic_images(300, 9);
        let official = synthetic_images(30, 9);
        let s = Splits::new(&train, &official, SplitConfig::default());
        assert_eq!(&s.fingerprint()[..16], PINNED);
    }
    const PINNED: &str = "9a44237125081776";

    #[test]
    fn stratified_subset_is_balanced_and_seeded() {
        let images = synthetic_images(1000, 3);
        let all: Vec<usize> = (0..1000).collect();
        let sub = stratified_subset(&images, &all, 55, 1);
        assert_eq!(sub.len(), 55);
        let counts = images.class_counts(sub.iter().copied());
        assert!(counts.iter().all(|&c| c == 5 || c == 6), "{counts:?}");
        assert_eq!(sub, stratified_subset(&images, &all, 55, 1));
        assert_ne!(sub, stratified_subset(&images, &all, 55, 2));
    }
}

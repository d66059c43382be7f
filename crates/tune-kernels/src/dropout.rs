//! Dropout masks from a counter-based hash instead of burn's per-element ChaCha draws.
//!
//! Why our own: burn's `Dropout` draws one Bernoulli value per element from a ChaCha
//! generator, then multiplies twice (by the mask, then by 1/keep). For the seed model that is
//! 704,000 draws a step and about 5% of its time on flex. Here element `i` of the `c`-th mask
//! since the last [`seed`] is kept when a SplitMix64 hash of (seed, c, i) falls below the
//! keep threshold: the same mask on any number of threads, one multiply by a mask that
//! already holds 1/keep.

use std::cell::Cell;

use rayon::prelude::*;

thread_local! {
    /// (seed, masks drawn since it was set), per thread: a training run lives on one thread.
    static STREAM: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Restarts this thread's mask stream (each epoch, with the run's other generators).
pub fn seed(seed: u64) {
    STREAM.with(|s| s.set((seed, 0)));
}

/// SplitMix64's output function: a bijective mix whose bits are all well distributed.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Values per rayon task.
const MIN_PER_TASK: usize = 16 * 1024;

/// The next mask of `len` values: `1/(1 − prob)` where kept (probability `1 − prob`), else 0.
pub fn mask(len: usize, prob: f64) -> Vec<f32> {
    assert!((0.0..1.0).contains(&prob), "dropout probability {prob} outside [0, 1)");
    let key = STREAM.with(|s| {
        let (seed, drawn) = s.get();
        s.set((seed, drawn + 1));
        mix(seed ^ mix(drawn))
    });
    let keep = 1.0 - prob;
    // Kept when the hash's top 32 bits are below keep·2³².
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mut out = vec![0.0f32; len];
    out.par_chunks_mut(MIN_PER_TASK)
        .enumerate()
        .for_each(|(chunk, values)| fill(values, key.wrapping_add((chunk * MIN_PER_TASK) as u64), threshold, scale));
    out
}

super::simd::multiversion! {
    /// Mask values for counters `first..`: the hash's 64-bit multiplies vectorise only with
    /// AVX-512 (DQ), so this runs at the CPU's best level.
    fn fill(values: &mut [f32], first: u64, threshold: u64, scale: f32) {
        for (i, v) in values.iter_mut().enumerate() {
            let kept = (mix(first.wrapping_add(i as u64)) >> 32) < threshold;
            *v = if kept { scale } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_right_share_scaled_and_repeat_after_a_reseed() {
        seed(11);
        let a = mask(200_000, 0.3);
        let b = mask(200_000, 0.3);
        assert_ne!(a, b, "each call draws a new mask");
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
        assert!((kept - 0.7).abs() < 0.005, "kept share {kept}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        // The mean of x·mask is x's mean: dropout leaves expectations unchanged.
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        seed(11);
        assert_eq!(mask(200_000, 0.3), a);
        seed(12);
        assert_ne!(mask(200_000, 0.3), a);
        assert!(mask(1000, 0.0).iter().all(|&v| v == 1.0));
    }

    #[test]
    fn neighbouring_elements_are_independent() {
        seed(5);
        let m = mask(100_000, 0.5);
        // Kept pairs among neighbours ≈ 1/4, as for independent fair coins.
        let both = m.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64 / (m.len() - 1) as f64;
        assert!((both - 0.25).abs() < 0.01, "adjacent kept pairs {both}");
    }
}

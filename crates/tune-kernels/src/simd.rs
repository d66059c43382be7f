//! Runtime choice of the instruction set our element-wise kernels are compiled for.
//!
//! Why: the release binary targets baseline x86-64 so that it runs on every host, which
//! leaves the compiler four-lane SSE2 vectors. Batch norm, pooling and Adam are a few
//! arithmetic operations per value, and at SSE2 width they ran at 8–26 GB/s on a machine
//! whose two cores stream 75 GB/s. [`multiversion!`] compiles one kernel body three times
//! (AVX-512, AVX2 + FMA, baseline) and runs the best the CPU has. The bodies use no
//! fast-math, so the compiler may not reassociate or contract: every version computes
//! bit-identical results, only wider.

use std::sync::atomic::{AtomicU8, Ordering};

/// Instruction-set levels, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// x86-64-v4: AVX-512 F/VL/BW/DQ with AVX2 and FMA.
    Avx512,
    /// x86-64-v3: AVX2 and FMA.
    Avx2,
    /// Whatever the build targets (SSE2 on x86-64).
    Baseline,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
            Level::Baseline => "baseline",
        }
    }

    fn code(self) -> u8 {
        match self {
            Level::Avx512 => 1,
            Level::Avx2 => 2,
            Level::Baseline => 3,
        }
    }
}

/// 0 until first asked; then the detected (or installed, [`crate::settings`]) level's code.
static LEVEL: AtomicU8 = AtomicU8::new(0);

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v3 = has!("avx2") && has!("fma") && has!("bmi1") && has!("bmi2");
        if v3 && has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
            return Level::Avx512;
        }
        if v3 {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// The level the kernels run at: the one installed ([`crate::settings::install`]), else the
/// best the CPU has.
#[inline]
pub fn level() -> Level {
    // Asked per image, plane or row pair: one relaxed load once known.
    match LEVEL.load(Ordering::Relaxed) {
        1 => Level::Avx512,
        2 => Level::Avx2,
        3 => Level::Baseline,
        _ => first_level(),
    }
}

#[cold]
fn first_level() -> Level {
    let level = detect();
    LEVEL.store(level.code(), Ordering::Relaxed);
    level
}

/// Every level this CPU can run, best first (tests compare them).
pub fn available() -> Vec<Level> {
    let best = detect();
    [Level::Avx512, Level::Avx2, Level::Baseline].into_iter().skip_while(|l| *l != best).collect()
}

/// Runs the kernels at `level` from now on (it must be one of [`available`]): the settings'
/// install, and tests that compare levels. Element-wise kernels compute the same bits at every
/// level, but which convolution products run depends on it, so tests that force a level hold
/// [`crate::settings`]' test lock.
pub(crate) fn force(level: Level) {
    assert!(available().contains(&level), "{level:?} is not available on this CPU");
    LEVEL.store(level.code(), Ordering::Relaxed);
}

/// Defines `fn name(args) -> ret { body }` whose body is compiled for each [`Level`] and run
/// at [`level()`]. Arguments are plain values and slices (no generics); everything the body
/// calls should be `#[inline(always)]` so it is compiled at the body's level too.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::simd::level() {
                    // SAFETY: level() reports a level only where the CPU has its features.
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

multiversion! {
    /// Sum of `values` in 16 independent lanes (a plain `iter().sum()` is one serial chain of
    /// additions, which the compiler may not reorder into vectors).
    pub fn sum(values: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 16];
        let chunks = values.chunks_exact(16);
        let rest: f32 = chunks.remainder().iter().sum();
        for chunk in chunks {
            for i in 0..16 {
                lanes[i] += chunk[i];
            }
        }
        lanes.iter().sum::<f32>() + rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            let mut lanes = [0.0f32; 16];
            for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
                for i in 0..16 {
                    lanes[i] += ca[i] * cb[i];
                }
            }
            lanes.iter().sum()
        }
    }

    #[test]
    fn lane_sum_adds_every_value() {
        for n in [0, 1, 15, 16, 17, 784, 1000] {
            let values: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 2.5).collect();
            let want: f64 = values.iter().map(|&v| v as f64).sum();
            assert_eq!(sum(&values) as f64, want, "{n} values");
        }
    }

    #[test]
    fn every_level_computes_the_same_bits() {
        let a: Vec<f32> = (0..4096).map(|i| ((i * 37) % 101) as f32 / 7.0 - 5.0).collect();
        let b: Vec<f32> = (0..4096).map(|i| ((i * 53) % 89) as f32 / 3.0 - 11.0).collect();
        let levels = available();
        assert_eq!(levels.last(), Some(&Level::Baseline));
        let results: Vec<u32> = levels
            .iter()
            .map(|&l| {
                force(l);
                assert_eq!(level(), l);
                dot(&a, &b).to_bits()
            })
            .collect();
        force(levels[0]);
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{levels:?}: {results:?}");
    }
}

//! How the kernels run: the vector level, Winograd's products, bf16 products.
//!
//! Why one installed value: burn calls our kernels through its backend traits, which carry no
//! context, so a choice cannot travel with each call. The program that uses the kernels builds a
//! [`KernelSettings`] once (tune: from `precision` and its `TUNE_SIMD` / `TUNE_WINOGRAD`
//! overrides, read at start) and [`install`]s it. The kernels read what was installed and
//! nothing else: no environment variable, no other switch (the crate's own tests force levels,
//! under one lock, [`exclusive`]). Until something is installed they run [`KernelSettings::best`].

use std::sync::atomic::{AtomicBool, Ordering};

use crate::simd::{self, Level};

/// The choices the kernels leave to their user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSettings {
    /// The level the element-wise kernels run at: one of [`simd::available`]. A lower one than
    /// the CPU's best measures on one machine what other hosts get.
    pub simd: Level,
    /// Whether 3 × 3 convolutions may use Winograd's products where they run (the AVX-512
    /// level); off keeps the direct products, to compare or to rule Winograd out.
    pub winograd: bool,
    /// Whether the convolutions' products run in bf16 (needs AVX512-BF16).
    pub bf16: bool,
}

impl KernelSettings {
    /// The best this CPU runs: its widest vector level, Winograd allowed, products in f32.
    pub fn best() -> Self {
        KernelSettings { simd: simd::available()[0], winograd: true, bf16: false }
    }

    /// Why this CPU cannot run these settings, if it cannot.
    pub fn unavailable(&self) -> Option<String> {
        if !simd::available().contains(&self.simd) {
            let best = simd::available()[0].name();
            return Some(format!("this CPU cannot run the {} level (its best is {best})", self.simd.name()));
        }
        match self.bf16 {
            true => crate::bf16::unavailable().map(String::from),
            false => None,
        }
    }
}

static WINOGRAD: AtomicBool = AtomicBool::new(true);

/// Makes the kernels run `settings` from now on, in every thread; `Err` with the reason, and
/// nothing changed, when this CPU cannot run them.
pub fn install(settings: KernelSettings) -> Result<(), String> {
    if let Some(why) = settings.unavailable() {
        return Err(why);
    }
    simd::force(settings.simd);
    WINOGRAD.store(settings.winograd, Ordering::Relaxed);
    crate::bf16::set(settings.bf16);
    Ok(())
}

/// What the kernels run now.
pub fn installed() -> KernelSettings {
    KernelSettings { simd: simd::level(), winograd: winograd_allowed(), bf16: crate::bf16::enabled() }
}

/// Whether the installed settings allow Winograd's products.
pub(crate) fn winograd_allowed() -> bool {
    WINOGRAD.load(Ordering::Relaxed)
}

/// Held by every test that switches the kernels (installs settings, forces a vector level) or
/// depends on which products run, so that none sees another's switch half-way.
#[cfg(test)]
pub(crate) fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_this_cpu_cannot_run_are_refused_and_change_nothing() {
        let _kernels = exclusive();
        let before = installed();
        let best = KernelSettings::best();
        assert_eq!(best.simd, simd::available()[0]);
        assert!(best.unavailable().is_none(), "the best settings run here");
        if !crate::bf16::available() {
            let why = install(KernelSettings { bf16: true, ..best }).unwrap_err();
            assert!(why.contains("AVX512-BF16"), "{why}");
        }
        assert_eq!(installed(), before);
    }

    #[test]
    fn installed_settings_are_what_the_kernels_read() {
        let _kernels = exclusive();
        let best = KernelSettings::best();
        let off = KernelSettings { winograd: false, ..best };
        install(off).unwrap();
        assert_eq!(installed(), off);
        assert!(!crate::winograd::enabled(), "Winograd off when the settings say so");
        install(best).unwrap();
        assert_eq!(installed(), best);
        assert_eq!(crate::winograd::enabled(), crate::fma::available());
    }
}

//! The compute device, chosen at build time: flex (pure-Rust CPU) by default, libtorch with
//! `--features tch`, CUDA with `--features cuda`. The model code is the same for all.

use std::sync::OnceLock;

use burn::tensor::Device;

use crate::kernels::KernelSettings;

#[cfg(feature = "cuda")]
pub const NAME: &str = "cuda";
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub const NAME: &str = "tch";
#[cfg(not(any(feature = "tch", feature = "cuda")))]
pub const NAME: &str = "flex";

/// Whether the model runs tune-kernels' flex kernels: on the default (flex) build.
pub fn uses_kernels() -> bool {
    NAME == "flex"
}

const NOT_THIS_BUILD: &str = "bf16 runs in the default CPU build only";

/// Why bf16 convolutions cannot run here, if they cannot: only the flex kernels have them,
/// and only on CPUs with AVX512-BF16.
pub fn bf16_unavailable() -> Option<&'static str> {
    if !uses_kernels() { Some(NOT_THIS_BUILD) } else { crate::kernels::bf16::unavailable() }
}

/// The kernels' settings for this process: the best this CPU runs, changed by the environment's
/// overrides, read here once: `TUNE_SIMD=avx2|baseline` runs our kernels at a lower vector level
/// (to measure on one machine what other hosts get) and `TUNE_WINOGRAD=off` keeps the direct
/// products. A level this CPU lacks, or an unknown name, is left out with a warning.
pub fn kernel_settings() -> KernelSettings {
    static FROM_ENV: OnceLock<KernelSettings> = OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        let (simd, winograd) = (std::env::var("TUNE_SIMD").ok(), std::env::var("TUNE_WINOGRAD").ok());
        let (settings, unknown) = settings_from(simd.as_deref(), winograd.as_deref());
        if let Some(name) = unknown {
            tracing::warn!("TUNE_SIMD={name} is not a level this CPU runs; running at {}", settings.simd.name());
        }
        settings
    })
}

/// The best settings with the overrides' values applied, and the `TUNE_SIMD` name left out
/// because this CPU has no such level.
fn settings_from<'a>(simd: Option<&'a str>, winograd: Option<&str>) -> (KernelSettings, Option<&'a str>) {
    let best = KernelSettings::best();
    let level = simd.map(|name| (name, crate::kernels::simd::available().into_iter().find(|l| l.name() == name)));
    let settings = KernelSettings {
        simd: level.and_then(|(_, l)| l).unwrap_or(best.simd),
        winograd: winograd != Some("off"),
        ..best
    };
    (settings, level.filter(|(_, l)| l.is_none()).map(|(name, _)| name))
}

/// Installs [`kernel_settings`], with the convolutions' products in bf16 when `bf16`; `Err` with
/// the reason, and nothing changed, when they cannot run here.
pub fn configure_kernels(bf16: bool) -> Result<(), String> {
    if bf16 && let Some(why) = bf16_unavailable() {
        return Err(why.into());
    }
    crate::kernels::settings::install(KernelSettings { bf16, ..kernel_settings() })
}

/// The device every command trains and evaluates on. With libtorch: its first CUDA GPU when
/// libtorch sees one, else its CPU.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    return Device::cuda(0);
    #[cfg(all(feature = "tch", not(feature = "cuda")))]
    #[allow(deprecated)]
    return if tch::Cuda::is_available() { Device::libtorch_cuda(0) } else { Device::libtorch() };
    #[cfg(not(any(feature = "tch", feature = "cuda")))]
    Device::flex()
}

/// The backend and, where it can be either, the processor it runs on: "flex", "tch (cuda:0)",
/// "tch (cpu)", "cuda (cuda:3)". A trial placed on a GPU sees it as device 0, so the name is
/// the one its study gave it (`TUNE_DEVICE`).
pub fn description() -> String {
    #[cfg(feature = "cuda")]
    return format!("{NAME} ({})", std::env::var("TUNE_DEVICE").unwrap_or_else(|_| "cuda:0".into()));
    #[cfg(all(feature = "tch", not(feature = "cuda")))]
    return format!("{NAME} ({})", if tch::Cuda::is_available() { "cuda:0" } else { "cpu" });
    #[cfg(not(any(feature = "tch", feature = "cuda")))]
    NAME.to_string()
}

/// Seeds every generator a training step draws from: the device's (initialisation, burn's
/// random ops) and our dropout masks, so one call makes a run (or a resumed epoch) repeat.
pub fn seed(device: &Device, seed: u64) {
    device.seed(seed);
    crate::kernels::dropout::seed(seed);
}

/// Sets the size of the compute thread pool (once per process; later calls change nothing).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|n| *n > 0) {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{Level, available};

    #[test]
    fn the_environment_lowers_the_vector_level_or_turns_winograd_off_and_nothing_else() {
        let best = KernelSettings::best();
        assert_eq!(settings_from(None, None), (best, None));
        assert_eq!(settings_from(Some("baseline"), None).0, KernelSettings { simd: Level::Baseline, ..best });
        assert_eq!(settings_from(None, Some("off")).0, KernelSettings { winograd: false, ..best });
        assert_eq!(settings_from(None, Some("on")).0, best);
        assert_eq!(settings_from(Some("sse9"), None), (best, Some("sse9")), "unknown names are left out, named");
        if !available().contains(&Level::Avx512) {
            assert_eq!(settings_from(Some("avx512"), None), (best, Some("avx512")), "a level this CPU lacks");
        }
        assert!(!settings_from(Some("avx2"), Some("off")).0.bf16, "bf16 is the command's to choose");
    }
}

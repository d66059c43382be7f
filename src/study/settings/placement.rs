//! Where the study's trial slots train: `devices` × `trials_per_device`, or the CPU.

use super::StudySettings;
use crate::study::devices::{DEVICES_FIX, Placement};

/// Trials at once on a CUDA build's one GPU when the space names no devices: a small CNN
/// leaves most of a GPU idle, so several share it.
pub const DEFAULT_TRIALS_PER_GPU: usize = 4;

/// A refused placement: the key, the problem and the fix.
type BadPlacement = (&'static str, String, String);

impl StudySettings {
    /// The devices and slots of this study on a build whose backend is `backend` (`flex`,
    /// `tch`, `cuda`); `None`: the CPU, `concurrency` slots. `Err` names the bad key
    /// (`check_study` reports it for this build, so a checked study's call cannot fail).
    pub fn placement(&self, backend: &str) -> Result<Option<Placement>, BadPlacement> {
        let per_device = self.trials_per_device;
        if self.devices.is_empty() {
            if backend == "cuda" {
                let k = per_device.or(self.concurrency).unwrap_or(DEFAULT_TRIALS_PER_GPU);
                return Ok(Some(
                    Placement::new(&["cuda:0".into()], k).map_err(|p| {
                        ("study.trials_per_device", p, "set a whole number of trials, 1 or more".into())
                    })?,
                ));
            }
            if per_device.is_some() {
                return Err((
                    "study.trials_per_device",
                    "trials per device need devices".into(),
                    "list them too, e.g. --devices cuda:0 (or study.devices = [\"cuda:0\"]), or use concurrency on the CPU".into(),
                ));
            }
            return Ok(None);
        }
        let placement = Placement::new(&self.devices, per_device.unwrap_or(1)).map_err(|problem| {
            let key = if per_device == Some(0) { "study.trials_per_device" } else { "study.devices" };
            (key, problem, DEVICES_FIX.to_string())
        })?;
        if placement.slots() > super::MAX_CONCURRENCY {
            return Err((
                "study.trials_per_device",
                format!("{} slots in all is more than {}", placement.slots(), super::MAX_CONCURRENCY),
                "place fewer trials on each device".into(),
            ));
        }
        if placement.has_gpu() && backend == "flex" {
            return Err((
                "study.devices",
                format!("this build trains on the CPU (flex backend) and cannot place trials on {placement}"),
                "build the GPU backend (`scripts/cuda-prereqs.sh`, then `cargo build --release --features cuda`), or list devices = [\"cpu\"]".into(),
            ));
        }
        Ok(Some(placement))
    }
}

#[cfg(test)]
mod tests {
    use crate::study::devices::Device;
    use crate::study::settings::StudySettings;

    fn study(extra: &str) -> StudySettings {
        toml::from_str(&format!("name = \"s\"\n{extra}")).unwrap()
    }

    #[test]
    fn devices_times_trials_per_device_are_the_slots() {
        let p = study("devices = [\"cuda:0\", \"cuda:1\"]\ntrials_per_device = 3\nconcurrency = 2")
            .placement("cuda")
            .unwrap()
            .unwrap();
        assert_eq!(p.devices(), [Device::Cuda(0), Device::Cuda(1)]);
        assert_eq!(p.slots(), 6, "devices win over concurrency");
        assert_eq!(study("devices = [\"cpu\"]").placement("flex").unwrap().unwrap().slots(), 1);
    }

    #[test]
    fn a_cuda_build_shares_gpu_0_by_default_and_a_cpu_build_uses_concurrency() {
        let p = study("").placement("cuda").unwrap().unwrap();
        assert_eq!((p.devices(), p.per_device()), (&[Device::Cuda(0)][..], super::DEFAULT_TRIALS_PER_GPU));
        assert_eq!(study("concurrency = 2").placement("cuda").unwrap().unwrap().slots(), 2);
        assert_eq!(study("concurrency = 2").placement("flex").unwrap(), None);
    }

    #[test]
    fn refusals_name_the_key() {
        let key = |extra: &str, backend: &str| study(extra).placement(backend).unwrap_err().0;
        assert_eq!(key("devices = [\"cuda:0\"]", "flex"), "study.devices", "no GPU in a flex build");
        assert_eq!(key("devices = [\"gpu\"]", "cuda"), "study.devices");
        assert_eq!(key("devices = [\"cuda:0\"]\ntrials_per_device = 0", "cuda"), "study.trials_per_device");
        assert_eq!(key("trials_per_device = 2", "flex"), "study.trials_per_device", "no devices to put them on");
        assert_eq!(key("devices = [\"cuda:0\"]\ntrials_per_device = 500", "tch"), "study.trials_per_device");
    }
}

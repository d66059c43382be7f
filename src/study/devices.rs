//! Trial slots placed on devices: `--devices cuda:0,cuda:1` with `--trials-per-device K`
//! gives K slots on each device. Each trial process sees only its own GPU
//! (`CUDA_VISIBLE_DEVICES`), so the backend's device 0 is the one it was given, and a
//! trial that cannot use its device fails with a reason naming it while the study goes on.

use std::fmt;
use std::sync::{Arc, Mutex};

/// One place a trial can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU, with every GPU hidden (a libtorch build then stays off the GPU).
    Cpu,
    /// The CUDA device of this index, as `nvidia-smi` numbers them.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Device {
    /// `cpu`, `cuda:N` or `cuda` (device 0).
    pub fn parse(text: &str) -> Result<Device, String> {
        let t = text.trim();
        match t {
            "cpu" => return Ok(Device::Cpu),
            "cuda" => return Ok(Device::Cuda(0)),
            _ => {}
        }
        t.strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| i < 1024)
            .map(Device::Cuda)
            .ok_or_else(|| format!("`{t}` is not a device"))
    }

    /// What the trial process gets: only its own GPU visible, and the device's name for logs.
    pub fn env(&self) -> [(&'static str, String); 2] {
        let visible = match self {
            Device::Cpu => String::new(),
            Device::Cuda(i) => i.to_string(),
        };
        [("CUDA_VISIBLE_DEVICES", visible), (DEVICE_ENV, self.to_string())]
    }
}

/// Set in each trial process to the device it was placed on (its logs and errors name it).
pub const DEVICE_ENV: &str = "TUNE_DEVICE";

/// The fix named when a device list or count is refused.
pub const DEVICES_FIX: &str =
    "list devices as `cpu` or `cuda:N` separated by commas, e.g. --devices cuda:0,cuda:1, each once";

/// The checked placement: distinct devices and how many trials each trains at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    devices: Vec<Device>,
    per_device: usize,
}

impl Placement {
    /// Checks a device list (`study.devices` or `--devices`) and the trials per device.
    pub fn new(devices: &[String], per_device: usize) -> Result<Placement, String> {
        if devices.is_empty() {
            return Err("no device is listed".into());
        }
        let mut parsed: Vec<Device> = Vec::with_capacity(devices.len());
        for d in devices.iter().flat_map(|d| d.split(',')) {
            let device = Device::parse(d)?;
            if parsed.contains(&device) {
                return Err(format!("{device} is listed twice"));
            }
            parsed.push(device);
        }
        if per_device == 0 {
            return Err("0 trials per device leaves no slot".into());
        }
        Ok(Placement { devices: parsed, per_device })
    }

    /// Trial slots in all: K on each device.
    pub fn slots(&self) -> usize {
        self.devices.len() * self.per_device
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn per_device(&self) -> usize {
        self.per_device
    }

    /// Whether any device is a GPU (only GPU builds can use one).
    pub fn has_gpu(&self) -> bool {
        self.devices.iter().any(|d| matches!(d, Device::Cuda(_)))
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.devices.iter().map(Device::to_string).collect();
        write!(f, "{} × {} trials", names.join(","), self.per_device)
    }
}

/// Hands each new trial the least-loaded device and takes it back when the trial ends, so
/// slots stay spread evenly however trials finish.
#[derive(Debug, Clone)]
pub struct DevicePool {
    devices: Vec<Device>,
    load: Arc<Mutex<Vec<usize>>>,
}

/// A device held by one running trial; dropping it frees the device's slot.
#[derive(Debug)]
pub struct Lease {
    pub device: Device,
    index: usize,
    load: Arc<Mutex<Vec<usize>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut load = self.load.lock().unwrap_or_else(|e| e.into_inner());
        load[self.index] = load[self.index].saturating_sub(1);
    }
}

impl DevicePool {
    pub fn new(placement: &Placement) -> DevicePool {
        let n = placement.devices.len();
        DevicePool { devices: placement.devices.clone(), load: Arc::new(Mutex::new(vec![0; n])) }
    }

    /// The device with the fewest running trials (the first such in the list).
    pub fn acquire(&self) -> Lease {
        let mut load = self.load.lock().unwrap_or_else(|e| e.into_inner());
        let index = (0..load.len()).min_by_key(|&i| (load[i], i)).expect("a placement has a device");
        load[index] += 1;
        Lease { device: self.devices[index], index, load: Arc::clone(&self.load) }
    }
}

/// A trial's failure told with its device: out of memory and a missing device get their own
/// reason and fix; anything else is prefixed with the device.
pub fn failure_on(device: Device, reason: &str) -> String {
    let lower = reason.to_ascii_lowercase();
    if lower.contains("out of memory") || lower.contains("out_of_memory") {
        format!("out of memory on {device}: fewer --trials-per-device or a smaller batch_size would fit\n{reason}")
    } else if ["no_device", "invalid_device", "no cuda-capable device", "invalid device ordinal"]
        .iter()
        .any(|m| lower.contains(m))
    {
        format!("{device} cannot be used here (no such device): list the machine's GPUs with `nvidia-smi -L`\n{reason}")
    } else {
        format!("on {device}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(list: &str, k: usize) -> Placement {
        Placement::new(&[list.to_string()], k).unwrap()
    }

    #[test]
    fn devices_parse_and_are_checked() {
        assert_eq!(Device::parse("cuda:3"), Ok(Device::Cuda(3)));
        assert_eq!(Device::parse(" cuda "), Ok(Device::Cuda(0)));
        assert_eq!(Device::parse("cpu"), Ok(Device::Cpu));
        for bad in ["gpu0", "cuda:", "cuda:-1", "cuda:x", "cuda:99999", ""] {
            assert!(Device::parse(bad).is_err(), "{bad}");
        }
        let p = placement("cuda:0,cuda:1", 3);
        assert_eq!(p.slots(), 6);
        assert!(p.has_gpu());
        assert_eq!(p.to_string(), "cuda:0,cuda:1 × 3 trials");
        assert!(!placement("cpu", 2).has_gpu());
        assert_eq!(Placement::new(&["cuda:1".into(), "cuda:1".into()], 1).unwrap_err(), "cuda:1 is listed twice");
        assert!(Placement::new(&[], 1).is_err());
        assert!(Placement::new(&["cuda:0".into()], 0).is_err());
    }

    #[test]
    fn each_child_sees_only_its_own_gpu() {
        let [visible, name] = Device::Cuda(2).env();
        assert_eq!(visible, ("CUDA_VISIBLE_DEVICES", "2".to_string()));
        assert_eq!(name, (DEVICE_ENV, "cuda:2".to_string()));
        assert_eq!(Device::Cpu.env()[0], ("CUDA_VISIBLE_DEVICES", String::new()), "the CPU hides every GPU");
    }

    #[test]
    fn slots_spread_over_devices_and_come_back_when_trials_end() {
        let pool = DevicePool::new(&placement("cuda:0,cuda:1", 2));
        let leases: Vec<Lease> = (0..4).map(|_| pool.acquire()).collect();
        let got: Vec<String> = leases.iter().map(|l| l.device.to_string()).collect();
        assert_eq!(got, ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]);
        let mut leases = leases;
        drop(leases.remove(1)); // a trial on cuda:1 ends
        assert_eq!(pool.acquire().device, Device::Cuda(1), "the freed device is the least loaded");
    }

    #[test]
    fn a_device_failure_names_the_device_and_the_fix() {
        let oom = failure_on(Device::Cuda(1), "exit status: 101\npanicked: CUDA_ERROR_OUT_OF_MEMORY");
        assert!(oom.starts_with("out of memory on cuda:1: fewer --trials-per-device"), "{oom}");
        let missing =
            failure_on(Device::Cuda(7), "DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")");
        assert!(missing.starts_with("cuda:7 cannot be used here (no such device)"), "{missing}");
        assert_eq!(failure_on(Device::Cpu, "diverged at epoch 3"), "on cpu: diverged at epoch 3");
    }
}

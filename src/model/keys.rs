//! The keys of the parameter dictionary and what each accepts: the one definition behind
//! params files, search spaces and enqueued dictionaries, with the caps that keep every size
//! computable before a tensor exists.

use super::value::{Init, Value};
use tune_kernels::Activation;

/// Keys that belong to training rather than to the architecture (the training config's
/// fields a dictionary — and so a search space — may set).
pub const TRAINING_KEYS: [&str; 12] = [
    "lr",
    "batch_size",
    "weight_decay",
    "aug_shift",
    "aug_flip",
    "aug_erase",
    "aug_erase_area",
    "label_smoothing",
    "lr_schedule",
    "warmup_epochs",
    "optimizer",
    "momentum",
];
/// Largest `batch_size`.
pub const MAX_BATCH_SIZE: usize = 60_000;
/// Largest augmentation shift (`aug_shift`) in pixels.
pub const MAX_AUG_SHIFT: usize = 8;
/// Largest warm-up of the cosine schedule (`warmup_epochs`), in epochs.
pub const MAX_WARMUP: usize = 1_000;
/// The names `lr_schedule` and `optimizer` take (the training config's enums, in serde's
/// spelling; a test there checks each one parses).
pub const LR_SCHEDULES: [&str; 3] = ["plateau", "cosine", "onecycle"];
pub const OPTIMIZERS: [&str; 3] = ["adam", "adamw", "sgd"];
/// Per-block key suffixes.
pub const CONV_KEYS: [&str; 7] = ["pad", "channels", "filter", "stride", "pool", "activation", "residual"];
pub const FC_KEYS: [&str; 2] = ["neurons", "activation"];

/// What one dictionary key accepts. The single definition behind params files, search spaces
/// and enqueued dictionaries; the integer caps keep every size computable (and allocatable)
/// before a tensor exists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Domain {
    /// Whole numbers in `low..=high`.
    Int(i64, i64),
    /// A dropout rate in [0, 1).
    Rate,
    /// A learning rate in (0, 1].
    LearningRate,
    /// A finite number ≥ 0.
    NonNegative,
    /// A number in `low..=high`.
    Float(f64, f64),
    /// One of these names.
    Name(&'static [&'static str]),
    Activation,
    Init,
}

/// The initialisation a dictionary without `init` gets. PyTorch's, not Keras': with Glorot, one
/// epoch on a 5,000-image subset ranked 20 networks of the quick space against their best of
/// 4 epochs at Spearman 0.45; with this, 0.78 (docs/training.md, "Initialisation").
pub const DEFAULT_INIT: Init = Init::Torch;

/// Most conv (or fc) blocks a network may have.
pub const MAX_BLOCKS: i64 = 16;
pub const MAX_CHANNELS: i64 = 2048;
pub const MAX_NEURONS: i64 = 16_384;
/// Largest padding, filter, stride or pool: beyond the 28-pixel image, nothing is gained.
pub const MAX_WINDOW: i64 = 32;

impl Domain {
    /// The domain of a known key (see [`is_known_key`]).
    pub fn of(key: &str) -> Domain {
        let suffix = key.rsplit('_').next().unwrap_or(key);
        match (key, suffix) {
            ("drop_rate", _) => Domain::Rate,
            ("init", _) => Domain::Init,
            ("lr", _) => Domain::LearningRate,
            ("weight_decay", _) => Domain::NonNegative,
            ("batch_size", _) => Domain::Int(1, MAX_BATCH_SIZE as i64),
            ("aug_shift", _) => Domain::Int(0, MAX_AUG_SHIFT as i64),
            ("aug_flip", _) => Domain::Int(0, 1),
            ("aug_erase", _) => Domain::Float(0.0, 1.0),
            ("aug_erase_area", _) => Domain::Float(0.02, 1.0),
            ("label_smoothing" | "momentum", _) => Domain::Rate,
            ("warmup_epochs", _) => Domain::Int(0, MAX_WARMUP as i64),
            ("lr_schedule", _) => Domain::Name(&LR_SCHEDULES),
            ("optimizer", _) => Domain::Name(&OPTIMIZERS),
            ("n_conv" | "n_fc", _) => Domain::Int(0, MAX_BLOCKS),
            (_, "activation") => Domain::Activation,
            (_, "pad") => Domain::Int(0, MAX_WINDOW),
            (_, "residual") => Domain::Int(0, 1),
            (_, "channels") => Domain::Int(1, MAX_CHANNELS),
            (_, "neurons") => Domain::Int(1, MAX_NEURONS),
            _ => Domain::Int(1, MAX_WINDOW),
        }
    }

    pub fn accepts(self, v: &Value) -> bool {
        let num = v.as_f64().filter(|x| x.is_finite());
        match self {
            Domain::Int(low, high) => matches!(v, Value::Int(x) if (low..=high).contains(x)),
            Domain::Rate => num.is_some_and(|x| (0.0..1.0).contains(&x)),
            Domain::LearningRate => num.is_some_and(|x| x > 0.0 && x <= 1.0),
            Domain::NonNegative => num.is_some_and(|x| x >= 0.0),
            Domain::Float(low, high) => num.is_some_and(|x| (low..=high).contains(&x)),
            Domain::Name(names) => matches!(v, Value::Str(s) if names.contains(&s.as_str())),
            Domain::Activation => matches!(v, Value::Str(s) if Activation::parse(s).is_some()),
            Domain::Init => matches!(v, Value::Str(s) if Init::parse(s).is_some()),
        }
    }

    /// What the key takes, for the fix line of an error.
    pub fn describe(self) -> String {
        match self {
            Domain::Int(low, high) => format!("a whole number in {low}..={high}"),
            Domain::Rate => "a rate in [0, 1)".into(),
            Domain::LearningRate => "a learning rate in (0, 1]".into(),
            Domain::NonNegative => "a finite number ≥ 0".into(),
            Domain::Float(low, high) => format!("a number in [{low}, {high}]"),
            Domain::Name(names) => format!("one of {}", names.join(", ")),
            Domain::Activation => format!("one of {}", Activation::NAMES.join(", ")),
            Domain::Init => format!("one of {}", Init::NAMES.join(", ")),
        }
    }
}

/// `conv3_pad` → Some(3) for kind "conv".
pub fn block_index(key: &str, kind: &str) -> Option<usize> {
    let rest = key.strip_prefix(kind)?;
    let (digits, suffix) = rest.split_once('_')?;
    let keys: &[&str] = if kind == "conv" { &CONV_KEYS } else { &FC_KEYS };
    keys.contains(&suffix).then(|| digits.parse().ok()).flatten()
}

/// Whether `key` is a key of the dictionary.
pub fn is_known_key(key: &str) -> bool {
    ["n_conv", "n_fc", "drop_rate", "init"].contains(&key)
        || TRAINING_KEYS.contains(&key)
        || block_index(key, "conv").is_some()
        || block_index(key, "fc").is_some()
}

pub fn known_keys_help() -> String {
    format!(
        "conv{{i}}_{{{}}}, fc{{i}}_{{{}}}, n_conv, n_fc, drop_rate, init, {}",
        CONV_KEYS.join(","),
        FC_KEYS.join(","),
        TRAINING_KEYS.join(", ")
    )
}

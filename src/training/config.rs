//! Training settings: one definition and one checked path for `tune train`, every trial of a
//! study (`[study.training]`) and `tune retrain`.
//!
//! Settings arrive in layers (the defaults, a file, a dictionary's training keys, flags),
//! merged and checked once by [`crate::training::layers::Layered::build`] through
//! [`TrainConfig::check`] here, so a bad value is reported with the key and the file (or flag)
//! that set it, whichever layer it arrived through.

use serde::{Deserialize, Serialize};

use crate::model::Value;

/// Caps named in errors, checked before anything is allocated.
pub const MAX_EPOCHS: usize = 100_000;
/// The dictionary's caps on training keys, defined beside the other keys' domains.
pub use crate::model::keys::{MAX_AUG_SHIFT, MAX_BATCH_SIZE, MAX_WARMUP};
/// A subset larger than the train split trains on all of it; beyond this it is a typo.
pub const MAX_SUBSET: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Most epochs to run (early stopping usually ends sooner). `max_epochs` in a space file.
    #[serde(alias = "max_epochs")]
    pub epochs: usize,
    /// Early-stopping patience on val_acc (the plateau schedule's; step-wise ones run to their end).
    pub patience: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Learning-rate reduction on plateau: factor and patience on val_acc.
    pub lr_factor: f64,
    pub lr_patience: usize,
    pub min_lr: f64,
    pub batch_size: usize,
    /// L2 weight decay added to the gradients (Adam).
    pub weight_decay: f64,
    /// Seed of weights, batch order and dropout.
    pub seed: u64,
    /// Train on a stratified subset of this many images (quick runs).
    pub subset: Option<usize>,
    /// Seed of the balanced test split (the seed study used 27).
    pub split_seed: u64,
    /// Augmentation: random shifts of up to this many pixels (0: none).
    pub aug_shift: usize,
    /// Augmentation: random horizontal flips.
    pub aug_flip: bool,
    /// Augmentation: probability of random erasing (Zhong et al. 2017): a rectangle of random
    /// size and aspect filled with noise (0: none).
    pub aug_erase: f64,
    /// Largest fraction of the image one erasing covers (the smallest is 0.02).
    pub aug_erase_area: f64,
    /// Label smoothing of the training loss (0: none); evaluation always scores the plain loss.
    pub label_smoothing: f64,
    /// How the learning rate moves over the run's epochs.
    pub lr_schedule: LrSchedule,
    /// Epochs of linear warm-up before the cosine decay (`lr_schedule = "cosine"` only).
    pub warmup_epochs: usize,
    /// Adam (L2 weight decay), AdamW (decoupled weight decay) or SGD with Nesterov momentum.
    pub optimizer: OptimizerKind,
    /// SGD's momentum (`optimizer = "sgd"` only).
    pub momentum: f64,
    /// The epochs a step-wise schedule spans when the run stops sooner on purpose (a replayed
    /// PBT stage ends at its fork, while its schedule was planned over the whole run); `None`:
    /// `epochs`. Never in a file.
    #[serde(skip)]
    pub plan_epochs: Option<usize>,
    /// Number format of the convolutions' products: f32, or bf16 inputs with f32 sums on
    /// CPUs with AVX512-BF16 ([`crate::kernels::bf16`]).
    pub precision: Precision,
}

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The seed's (Keras') rule: multiply by `lr_factor` after `lr_patience` flat epochs.
    #[default]
    Plateau,
    /// Linear warm-up over `warmup_epochs`, then a cosine decay to `min_lr` at the last epoch.
    Cosine,
    /// Smith's one-cycle, the learning rate as PyTorch's OneCycleLR by default: up from lr/25
    /// over the first 30% of the steps, then down to lr/250,000, both halves cosine-shaped
    /// (Adam's β₁ is not cycled, as PyTorch would).
    OneCycle,
}

impl LrSchedule {
    pub const NAMES: [&'static str; 3] = crate::model::keys::LR_SCHEDULES;

    /// Whether early stopping may end a run. Only the plateau rule's: a step-wise schedule
    /// (cosine, one-cycle) anneals towards its last step, where most of its gain comes, so it
    /// runs to its end and keeps its best epoch. Stopped at its patience, a 40-epoch one-cycle
    /// run ended at epoch 27 with its rate still at 45% of the peak.
    pub fn stops_early(self) -> bool {
        self == LrSchedule::Plateau
    }
}

/// The optimiser of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with `weight_decay` as an L2 penalty added to the gradients (Keras' and the seed's).
    #[default]
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter): weights shrink by lr·weight_decay
    /// each step, apart from the adaptive update.
    AdamW,
    /// SGD with Nesterov momentum (`momentum`), `weight_decay` as an L2 penalty.
    Sgd,
}

impl OptimizerKind {
    pub const NAMES: [&'static str; 3] = crate::model::keys::OPTIMIZERS;
}

/// What the convolutions multiply in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

impl Default for TrainConfig {
    /// The seed's recipe. Patience 10 on val_acc; the learning rate drops after 5 flat epochs,
    /// so a plateau is tried at a lower rate before early stopping gives up.
    fn default() -> Self {
        TrainConfig {
            epochs: 50,
            patience: 10,
            lr: 1e-3,
            lr_factor: 0.1,
            lr_patience: 5,
            min_lr: 1e-6,
            batch_size: 100,
            weight_decay: 0.0,
            seed: 1,
            subset: None,
            split_seed: 27,
            aug_shift: 0,
            aug_flip: false,
            aug_erase: 0.0,
            aug_erase_area: 0.4,
            label_smoothing: 0.0,
            lr_schedule: LrSchedule::Plateau,
            warmup_epochs: 0,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            plan_epochs: None,
            precision: Precision::Fp32,
        }
    }
}

/// Keys of the config that a parameter dictionary may also set (a dictionary entry wins).
pub use crate::model::params::TRAINING_KEYS as DICTIONARY_KEYS;

/// Why one key is out of range: (key, problem, fix).
type Invalid = (&'static str, String, String);

impl TrainConfig {
    /// The range check of every field; the first invalid one is returned.
    pub fn check(&self) -> std::result::Result<(), Invalid> {
        let whole = |key: &'static str, v: usize, max: usize| -> std::result::Result<(), Invalid> {
            if v == 0 || v > max {
                return Err((key, format!("{v} is outside 1..={max}"), format!("use a whole number in 1..={max}")));
            }
            Ok(())
        };
        whole("epochs", self.epochs, MAX_EPOCHS)?;
        whole("patience", self.patience, MAX_EPOCHS)?;
        whole("lr_patience", self.lr_patience, MAX_EPOCHS)?;
        whole("batch_size", self.batch_size, MAX_BATCH_SIZE)?;
        if self.aug_shift > MAX_AUG_SHIFT {
            return Err((
                "aug_shift",
                format!("{} pixels is more than {MAX_AUG_SHIFT}", self.aug_shift),
                format!("use 0..={MAX_AUG_SHIFT} (1–3 is usual for 28×28 images)"),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return Err((
                "lr",
                format!("{} is not a learning rate in (0, 1]", self.lr),
                "use a learning rate such as 1e-3".into(),
            ));
        }
        if !(self.lr_factor.is_finite() && self.lr_factor > 0.0 && self.lr_factor < 1.0) {
            return Err((
                "lr_factor",
                format!("{} is not in (0, 1)", self.lr_factor),
                "use a factor such as 0.1".into(),
            ));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0) {
            return Err((
                "min_lr",
                format!("{} is not a finite number ≥ 0", self.min_lr),
                "use a floor such as 1e-6".into(),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err((
                "weight_decay",
                format!("{} is not a finite number ≥ 0", self.weight_decay),
                "use 0 or a small number such as 1e-4".into(),
            ));
        }
        let unit = |key: &'static str, v: f64, low: f64, high: f64, open_high: bool, example: &str| {
            let inside = v.is_finite() && v >= low && if open_high { v < high } else { v <= high };
            if inside {
                return Ok(());
            }
            let close = if open_high { ")" } else { "]" };
            Err((key, format!("{v} is outside [{low}, {high}{close}"), format!("use a number such as {example}")))
        };
        unit("aug_erase", self.aug_erase, 0.0, 1.0, false, "0.5 (the chance an image is erased)")?;
        unit("aug_erase_area", self.aug_erase_area, 0.02, 1.0, false, "0.4 (Zhong et al.'s largest area)")?;
        unit("label_smoothing", self.label_smoothing, 0.0, 1.0, true, "0.1")?;
        unit("momentum", self.momentum, 0.0, 1.0, true, "0.9")?;
        let cosine = self.lr_schedule == LrSchedule::Cosine;
        if self.warmup_epochs > MAX_WARMUP || (cosine && self.warmup_epochs > 0 && self.warmup_epochs >= self.epochs) {
            return Err((
                "warmup_epochs",
                format!("{} warm-up epochs leave no decay in a run of {} epochs", self.warmup_epochs, self.epochs),
                format!("use fewer warm-up epochs than epochs ({}), e.g. 1–5", self.epochs),
            ));
        }
        if let Some(n) = self.subset
            && !(crate::data::CLASSES..=MAX_SUBSET).contains(&n)
        {
            return Err((
                "subset",
                format!("{n} images cannot hold every class"),
                format!(
                    "use at least {} images (one per class) and at most {}, or leave the subset out",
                    crate::data::CLASSES,
                    MAX_SUBSET
                ),
            ));
        }
        if let Some(why) = crate::backend::bf16_unavailable().filter(|_| self.precision == Precision::Bf16) {
            return Err((
                "precision",
                format!("bf16 is not available here: {why}"),
                "use precision = \"fp32\" (the default)".into(),
            ));
        }
        for (key, v) in [("seed", self.seed), ("split_seed", self.split_seed)] {
            if v > i64::MAX as u64 {
                return Err((
                    key,
                    format!("{v} does not fit a TOML integer"),
                    format!("use a seed of at most {}", i64::MAX),
                ));
            }
        }
        Ok(())
    }

    /// The value of dictionary key `key` in this config (the flip as 0 or 1, as a dictionary
    /// writes it); `None` for keys a dictionary cannot set.
    pub fn dictionary_value(&self, key: &str) -> Option<Value> {
        if !DICTIONARY_KEYS.contains(&key) {
            return None;
        }
        match toml::Table::try_from(self).expect("a config serialises").get(key)? {
            toml::Value::Boolean(b) => Some(Value::Int(i64::from(*b))),
            v => Value::from_toml(v),
        }
    }
}

/// The fields of [`TrainConfig`], as written in files: read off the config itself, so a new
/// setting needs no second list.
pub fn config_keys() -> Vec<String> {
    match serde_json::to_value(TrainConfig::default()).expect("a config serialises") {
        serde_json::Value::Object(fields) => fields.keys().cloned().collect(),
        _ => unreachable!("a struct serialises as an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schedule_and_optimizer_name_the_dictionary_accepts_parses() {
        let parse = |name: &str| serde_json::from_value::<LrSchedule>(serde_json::json!(name));
        let parsed: Vec<LrSchedule> = LrSchedule::NAMES.iter().map(|n| parse(n).unwrap()).collect();
        assert_eq!(parsed, [LrSchedule::Plateau, LrSchedule::Cosine, LrSchedule::OneCycle]);
        let parse = |name: &str| serde_json::from_value::<OptimizerKind>(serde_json::json!(name));
        let parsed: Vec<OptimizerKind> = OptimizerKind::NAMES.iter().map(|n| parse(n).unwrap()).collect();
        assert_eq!(parsed, [OptimizerKind::Adam, OptimizerKind::AdamW, OptimizerKind::Sgd]);
    }

    #[test]
    fn the_config_keys_are_every_field_and_the_dictionary_keys_are_among_them() {
        let keys = config_keys();
        assert_eq!(keys.len(), 21, "{keys:?}");
        assert!(keys.iter().any(|k| k == "subset"), "an unset option is a key too");
        for k in DICTIONARY_KEYS {
            assert!(keys.iter().any(|c| c == k), "{k} is a setting");
        }
    }

    #[test]
    fn the_defaults_pass_their_own_check() {
        assert_eq!(TrainConfig::default().check(), Ok(()));
    }
}

//! Training settings: one definition and one checked path for `tune train`, every trial of a
//! study (`[study.training]`) and `tune retrain`.
//!
//! Settings arrive in layers — the defaults, a file (`--config` or a space's
//! `[study.training]`), the training keys of a parameter dictionary, command-line flags — and
//! are merged into one raw table that remembers where each key came from. The merged table is
//! then checked once ([`Layered::build`]), so a bad value is reported with the key and the
//! file (or flag) that set it, whichever layer it arrived through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TuneError};
use crate::model::{Params, Value};

/// Caps named in errors, checked before anything is allocated.
pub const MAX_EPOCHS: usize = 100_000;
pub const MAX_BATCH_SIZE: usize = 60_000;
/// Largest augmentation shift in pixels.
pub const MAX_AUG_SHIFT: usize = 8;
/// Largest warm-up of the cosine schedule, in epochs.
pub const MAX_WARMUP: usize = 1_000;
/// A subset larger than the train split trains on all of it; beyond this it is a typo.
pub const MAX_SUBSET: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Most epochs to run (early stopping usually ends sooner). `max_epochs` in a space file.
    #[serde(alias = "max_epochs")]
    pub epochs: usize,
    /// Early-stopping patience on val_acc.
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
    pub const NAMES: [&'static str; 3] = ["plateau", "cosine", "onecycle"];
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
    pub const NAMES: [&'static str; 3] = ["adam", "adamw", "sgd"];
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

    /// This config as one layer whose keys all name `file` (a study's frozen settings).
    pub fn as_layer(&self, file: &Path, prefix: &str) -> Layered {
        let table = toml::Table::try_from(self).expect("a checked config serialises");
        let mut layered = Layered::default();
        for (k, v) in table {
            layered.set_value(&k, v, file, &format!("{prefix}{k}"));
        }
        layered
    }
}

/// Where a merged key came from: the file (or `<command line>`) and the key as written there.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    file: PathBuf,
    shown: String,
}

/// Layers of training settings merged into one raw table, each key remembering its origin.
#[derive(Debug, Clone, Default)]
pub struct Layered {
    table: toml::Table,
    origin: BTreeMap<String, Origin>,
}

/// The pseudo-file of flags in error messages.
pub const COMMAND_LINE: &str = "<command line>";

impl Layered {
    /// Adds a TOML table of config keys (a `--config` file, a space's `[study.training]`).
    /// `prefix` is how keys are named in that file (`study.training.`).
    pub fn table(mut self, table: &toml::Table, file: &Path, prefix: &str) -> Result<Self> {
        for (k, v) in table {
            // A space file says `max_epochs`; it is the same setting.
            let key = if k == "max_epochs" { "epochs" } else { k.as_str() };
            let known = config_keys();
            if !known.iter().any(|k| k == key) {
                return Err(TuneError::Config {
                    file: file.to_path_buf(),
                    key: format!("{prefix}{k}"),
                    problem: "unknown training setting".into(),
                    fix: format!("use one of {}", known.join(", ")),
                });
            }
            self.set_value(key, v.clone(), file, &format!("{prefix}{k}"));
        }
        Ok(self)
    }

    /// Reads a config file as a layer.
    pub fn file(self, path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path)?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| TuneError::ConfigSyntax { file: path.to_path_buf(), message: e.to_string() })?;
        self.table(&table, path, "")
    }

    /// Adds the training keys of a parameter dictionary (they win over files).
    pub fn dictionary(mut self, params: &Params, file: &Path) -> Self {
        for key in DICTIONARY_KEYS {
            if let Some(v) = params.get(key) {
                let value = match v {
                    // A dictionary writes the flip as 0 or 1 (its values are numbers and strings).
                    Value::Int(i) if key == "aug_flip" && (0..=1).contains(i) => toml::Value::Boolean(*i == 1),
                    Value::Int(i) => toml::Value::Integer(*i),
                    Value::Float(f) => toml::Value::Float(*f),
                    Value::Str(s) => toml::Value::String(s.clone()),
                };
                self.set_value(key, value, file, key);
            }
        }
        self
    }

    /// Adds a command-line flag (`--lr`) for config key `key`, when given.
    pub fn flag<T: Into<FlagValue>>(mut self, key: &str, flag: &str, value: Option<T>) -> Result<Self> {
        let Some(value) = value else { return Ok(self) };
        let value = match value.into() {
            FlagValue::Float(f) => toml::Value::Float(f),
            FlagValue::Bool(b) => toml::Value::Boolean(b),
            FlagValue::Text(t) => toml::Value::String(t),
            FlagValue::Whole(n) => toml::Value::Integer(i64::try_from(n).map_err(|_| TuneError::Config {
                file: COMMAND_LINE.into(),
                key: flag.into(),
                problem: format!("{n} is too large"),
                fix: format!("pass {flag} with at most {}", i64::MAX),
            })?),
        };
        self.set_value(key, value, Path::new(COMMAND_LINE), flag);
        Ok(self)
    }

    fn set_value(&mut self, key: &str, value: toml::Value, file: &Path, shown: &str) {
        self.table.insert(key.to_string(), value);
        self.origin.insert(key.to_string(), Origin { file: file.to_path_buf(), shown: shown.to_string() });
    }

    fn error(&self, key: &str, problem: String, fix: String) -> TuneError {
        let origin = self
            .origin
            .get(key)
            .cloned()
            .unwrap_or(Origin { file: PathBuf::from("<defaults>"), shown: key.to_string() });
        TuneError::Config { file: origin.file, key: origin.shown, problem, fix }
    }

    /// Merges the layers over the defaults and checks the result once.
    pub fn build(self) -> Result<TrainConfig> {
        // Key by key, so a wrong type is reported with the key's own origin.
        for (k, v) in &self.table {
            let mut one = toml::Table::new();
            one.insert(k.clone(), v.clone());
            if let Err(e) = TrainConfig::deserialize(toml::Value::Table(one)) {
                let message = e.message().trim();
                let problem = match message.contains("unknown variant") {
                    true => format!("`{v}` is not one of its values ({message})"),
                    false => format!("`{v}` has the wrong type ({message})"),
                };
                return Err(self.error(k, problem, format!("see README's \"Training\" section for `{k}`")));
            }
        }
        let cfg = TrainConfig::deserialize(toml::Value::Table(self.table.clone()))
            .map_err(|e| self.error("", e.to_string(), String::new()))?;
        cfg.check().map_err(|(key, problem, fix)| self.error(key, problem, fix))?;
        Ok(cfg)
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

/// A flag's value before it joins the table.
pub enum FlagValue {
    Float(f64),
    Whole(u64),
    Bool(bool),
    Text(String),
}

impl From<&str> for FlagValue {
    fn from(v: &str) -> Self {
        FlagValue::Text(v.to_string())
    }
}

impl From<bool> for FlagValue {
    fn from(v: bool) -> Self {
        FlagValue::Bool(v)
    }
}

impl From<f64> for FlagValue {
    fn from(v: f64) -> Self {
        FlagValue::Float(v)
    }
}
impl From<usize> for FlagValue {
    fn from(v: usize) -> Self {
        FlagValue::Whole(v as u64)
    }
}
impl From<u64> for FlagValue {
    fn from(v: u64) -> Self {
        FlagValue::Whole(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn layers_override_in_order_and_defaults_fill_the_rest() {
        let params: Params = [("lr".to_string(), Value::Float(0.01))].into();
        let cfg = Layered::default()
            .table(&table("epochs = 7\nlr = 0.5\npatience = 3"), Path::new("c.toml"), "")
            .unwrap()
            .dictionary(&params, Path::new("p.toml"))
            .flag("patience", "--patience", Some(4usize))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!((cfg.epochs, cfg.lr, cfg.patience, cfg.batch_size), (7, 0.01, 4, 100));
        let space = Layered::default()
            .table(&table("max_epochs = 9"), Path::new("s.toml"), "study.training.")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(space.epochs, 9, "a space's max_epochs is the config's epochs");
    }

    #[test]
    fn every_bad_value_names_its_key_and_origin() {
        // (layer text or flag, origin file, key named, why)
        let cases: Vec<(Layered, &str, &str, &str)> = vec![
            (
                Layered::default().table(&table("epochs = 0"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "epochs",
                "1..=",
            ),
            (
                Layered::default().table(&table("lr = inf"), Path::new("s.toml"), "study.training.").unwrap(),
                "s.toml",
                "study.training.lr",
                "(0, 1]",
            ),
            (Layered::default().flag("lr", "--lr", Some(f64::NAN)).unwrap(), COMMAND_LINE, "--lr", "NaN"),
            (Layered::default().flag("lr", "--lr", Some(-1.0)).unwrap(), COMMAND_LINE, "--lr", "(0, 1]"),
            (
                Layered::default().table(&table("weight_decay = -1.0"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "weight_decay",
                "≥ 0",
            ),
            (
                Layered::default().table(&table("weight_decay = inf"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "weight_decay",
                "finite",
            ),
            (
                Layered::default().table(&table("lr_factor = 1.0"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "lr_factor",
                "(0, 1)",
            ),
            (
                Layered::default().table(&table("batch_size = 1000000"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "batch_size",
                "60000",
            ),
            (
                Layered::default().table(&table("epochs = -3"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "epochs",
                "wrong type",
            ),
            (
                Layered::default().table(&table("lr = \"fast\""), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "lr",
                "wrong type",
            ),
            (
                Layered::default().flag("subset", "--subset", Some(3usize)).unwrap(),
                COMMAND_LINE,
                "--subset",
                "every class",
            ),
            (
                Layered::default().dictionary(&[("batch_size".to_string(), Value::Int(0))].into(), Path::new("p.toml")),
                "p.toml",
                "batch_size",
                "1..=",
            ),
            (
                Layered::default().flag("aug_erase", "--aug-erase", Some(1.5)).unwrap(),
                COMMAND_LINE,
                "--aug-erase",
                "[0, 1]",
            ),
            (
                Layered::default().table(&table("aug_erase_area = 0.01"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "aug_erase_area",
                "[0.02, 1]",
            ),
            (
                Layered::default().table(&table("label_smoothing = 1.0"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "label_smoothing",
                "[0, 1)",
            ),
            (
                Layered::default().table(&table("momentum = nan"), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "momentum",
                "NaN",
            ),
            (
                Layered::default()
                    .table(&table("epochs = 5\nwarmup_epochs = 5\nlr_schedule = \"cosine\""), Path::new("c.toml"), "")
                    .unwrap(),
                "c.toml",
                "warmup_epochs",
                "fewer warm-up epochs",
            ),
            (
                Layered::default().table(&table("lr_schedule = \"step\""), Path::new("c.toml"), "").unwrap(),
                "c.toml",
                "lr_schedule",
                "not one of its values",
            ),
            (
                Layered::default()
                    .dictionary(&[("optimizer".to_string(), Value::Str("lion".into()))].into(), Path::new("p.toml")),
                "p.toml",
                "optimizer",
                "not one of its values",
            ),
        ];
        for (layers, file, key, why) in cases {
            let msg = layers.build().unwrap_err().to_string();
            assert!(
                msg.contains(file) && msg.contains(&format!("`{key}`")) && msg.contains(why) && msg.contains("fix"),
                "{key}: {msg}"
            );
        }
        let msg = Layered::default().flag("split_seed", "--split-seed", Some(u64::MAX)).unwrap_err().to_string();
        assert!(msg.contains("--split-seed") && msg.contains("too large"), "{msg}");
        let msg = Layered::default().table(&table("epoch = 3"), Path::new("c.toml"), "").unwrap_err().to_string();
        assert!(msg.contains("`epoch`") && msg.contains("unknown"), "{msg}");
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

//! Layers of training settings — a file (`--config` or a space's `[study.training]`), the
//! training keys of a parameter dictionary, command-line flags — merged into one raw table
//! that remembers where each key came from, then checked once as a [`TrainConfig`], so a bad
//! value is reported with the key and the file (or flag) that set it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::DICTIONARY_KEYS;
use super::config::{TrainConfig, config_keys};
use crate::error::{Result, TuneError};
use crate::model::{Params, Value};

impl TrainConfig {
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

    pub(crate) fn set_value(&mut self, key: &str, value: toml::Value, file: &Path, shown: &str) {
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
}

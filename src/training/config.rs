//! Training settings: the seed's defaults, overridable by flags and by the training keys
//! (`lr`, `batch_size`, `weight_decay`) of a parameter dictionary.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TuneError};
use crate::model::{Params, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Most epochs to run (early stopping usually ends sooner).
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
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 50,
            patience: 10,
            lr: 1e-3,
            lr_factor: 0.1,
            lr_patience: 10,
            min_lr: 1e-6,
            batch_size: 100,
            weight_decay: 0.0,
            seed: 1,
            subset: None,
            split_seed: 27,
        }
    }
}

impl TrainConfig {
    /// Applies the training keys of a dictionary.
    pub fn with_params(mut self, params: &Params, file: &Path) -> Result<Self> {
        let bad = |key: &str, v: &Value, want: &str| TuneError::Config {
            file: file.to_path_buf(),
            key: key.into(),
            problem: format!("`{v}` is not {want}"),
            fix: format!("set `{key}` to {want}"),
        };
        if let Some(v) = params.get("lr") {
            self.lr = v.as_f64().filter(|x| *x > 0.0 && x.is_finite()).ok_or_else(|| bad("lr", v, "a positive number"))?;
        }
        if let Some(v) = params.get("batch_size") {
            self.batch_size = match v {
                Value::Int(i) if *i >= 1 => *i as usize,
                _ => return Err(bad("batch_size", v, "a whole number ≥ 1")),
            };
        }
        if let Some(v) = params.get("weight_decay") {
            self.weight_decay = v.as_f64().filter(|x| *x >= 0.0).ok_or_else(|| bad("weight_decay", v, "a number ≥ 0"))?;
        }
        Ok(self)
    }
}

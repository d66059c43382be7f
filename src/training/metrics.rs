//! One epoch's figures: the JSON line a trial streams and the row of `metrics.csv`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TuneError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f64,
    pub secs: f64,
}

impl EpochMetrics {
    /// The first figure that is NaN or infinite, if any: such an epoch is never stored.
    pub fn first_non_finite(&self) -> Option<(&'static str, f64)> {
        [
            ("train_loss", self.train_loss),
            ("train_acc", self.train_acc),
            ("val_loss", self.val_loss),
            ("val_acc", self.val_acc),
            ("lr", self.lr),
            ("secs", self.secs),
        ]
        .into_iter()
        .find(|(_, v)| !v.is_finite())
    }
}

/// Best val_acc of a history and its epoch; the first epoch on ties, as training restores it.
pub fn best_epoch(history: &[EpochMetrics]) -> Option<(f64, usize)> {
    history.iter().fold(None, |best: Option<(f64, usize)>, m| match best {
        Some((v, _)) if v >= m.val_acc => best,
        _ => Some((m.val_acc, m.epoch)),
    })
}

/// Writes the whole history as `metrics.csv` (columns in the struct's order), atomically.
pub fn write_csv(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for m in history {
        writer.serialize(m).map_err(|e| TuneError::io(path, std::io::Error::other(e)))?;
    }
    if history.is_empty() {
        writer
            .write_record(["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "secs"])
            .map_err(|e| TuneError::io(path, std::io::Error::other(e)))?;
    }
    let bytes = writer.into_inner().map_err(|e| TuneError::io(path, std::io::Error::other(e.to_string())))?;
    crate::files::write_atomic(path, &bytes)
}

/// Reads a `metrics.csv` back.
pub fn read_csv(path: &Path) -> Result<Vec<EpochMetrics>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| TuneError::io(path, std::io::Error::other(e)))?;
    reader.deserialize().collect::<std::result::Result<Vec<_>, _>>().map_err(|e| TuneError::CorruptData {
        path: path.to_path_buf(),
        problem: e.to_string(),
        fix: "delete the file; it is rewritten from the run's state".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_with_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let m = EpochMetrics {
            epoch: 1,
            train_loss: 0.5,
            train_acc: 0.8,
            val_loss: 0.4,
            val_acc: 0.85,
            lr: 1e-3,
            secs: 2.5,
        };
        write_csv(&path, std::slice::from_ref(&m)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,lr,secs\n"), "{text}");
        assert_eq!(read_csv(&path).unwrap(), vec![m]);
    }
}

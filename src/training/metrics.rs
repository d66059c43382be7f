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
    /// Inference latency, measured once, after the first epoch (a network's speed does not
    /// change as it learns); absent from every other epoch and from older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// Milliseconds per image of a forward pass in inference mode on the trial's own threads:
/// one image at a time (what a service answering single requests sees) and in batches of
/// 100 (what bulk scoring sees). Each is the median of several timed passes after a warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub batch_1: f64,
    pub batch_100: f64,
}

/// A row of `metrics.csv`: the epoch's figures with the latency flattened into two columns
/// (empty except on the epoch that measured it).
#[derive(Serialize, Deserialize)]
struct CsvRow {
    epoch: usize,
    train_loss: f64,
    train_acc: f64,
    val_loss: f64,
    val_acc: f64,
    lr: f64,
    secs: f64,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    latency_ms_batch100: Option<f64>,
}

impl From<&EpochMetrics> for CsvRow {
    fn from(m: &EpochMetrics) -> CsvRow {
        CsvRow {
            epoch: m.epoch,
            train_loss: m.train_loss,
            train_acc: m.train_acc,
            val_loss: m.val_loss,
            val_acc: m.val_acc,
            lr: m.lr,
            secs: m.secs,
            latency_ms: m.latency.map(|l| l.batch_1),
            latency_ms_batch100: m.latency.map(|l| l.batch_100),
        }
    }
}

impl From<CsvRow> for EpochMetrics {
    fn from(r: CsvRow) -> EpochMetrics {
        let latency = match (r.latency_ms, r.latency_ms_batch100) {
            (Some(batch_1), Some(batch_100)) => Some(Latency { batch_1, batch_100 }),
            _ => None,
        };
        EpochMetrics {
            epoch: r.epoch,
            train_loss: r.train_loss,
            train_acc: r.train_acc,
            val_loss: r.val_loss,
            val_acc: r.val_acc,
            lr: r.lr,
            secs: r.secs,
            latency,
        }
    }
}

impl EpochMetrics {
    /// An epoch of the records' unit and conformance tests: only its number and val_acc
    /// matter (losses 1.0, train_acc 0.5, lr 1e-3, one second, no latency).
    #[cfg(any(test, feature = "testing"))]
    pub fn at(epoch: usize, val_acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: 1.0,
            val_acc,
            lr: 1e-3,
            secs: 1.0,
            latency: None,
        }
    }

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
        writer.serialize(CsvRow::from(m)).map_err(|e| TuneError::io(path, std::io::Error::other(e)))?;
    }
    if history.is_empty() {
        writer
            .write_record([
                "epoch",
                "train_loss",
                "train_acc",
                "val_loss",
                "val_acc",
                "lr",
                "secs",
                "latency_ms",
                "latency_ms_batch100",
            ])
            .map_err(|e| TuneError::io(path, std::io::Error::other(e)))?;
    }
    let bytes = writer.into_inner().map_err(|e| TuneError::io(path, std::io::Error::other(e.to_string())))?;
    crate::files::write_atomic(path, &bytes)
}

/// Reads a `metrics.csv` back.
pub fn read_csv(path: &Path) -> Result<Vec<EpochMetrics>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| TuneError::io(path, std::io::Error::other(e)))?;
    let rows = reader.deserialize::<CsvRow>().collect::<std::result::Result<Vec<_>, _>>().map_err(|e| {
        TuneError::CorruptData {
            path: path.to_path_buf(),
            problem: e.to_string(),
            fix: "delete the file; it is rewritten from the run's state".into(),
        }
    })?;
    Ok(rows.into_iter().map(EpochMetrics::from).collect())
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
            latency: Some(Latency { batch_1: 1.5, batch_100: 0.25 }),
        };
        let later = EpochMetrics { epoch: 2, latency: None, ..m.clone() };
        write_csv(&path, &[m.clone(), later.clone()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,lr,secs,latency_ms,latency_ms_batch100\n"),
            "{text}"
        );
        assert!(text.contains(",1.5,0.25\n") && text.ends_with(",2.5,,\n"), "{text}");
        assert_eq!(read_csv(&path).unwrap(), vec![m, later]);
    }

    #[test]
    fn an_older_csv_and_json_line_without_latency_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, "epoch,train_loss,train_acc,val_loss,val_acc,lr,secs\n1,0.5,0.8,0.4,0.85,0.001,2.5\n")
            .unwrap();
        let read = read_csv(&path).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].val_acc, read[0].latency), (0.85, None));
        let line =
            r#"{"epoch":1,"train_loss":0.5,"train_acc":0.8,"val_loss":0.4,"val_acc":0.85,"lr":0.001,"secs":2.5}"#;
        let m: EpochMetrics = serde_json::from_str(line).unwrap();
        assert_eq!(m.latency, None);
        assert!(!serde_json::to_string(&m).unwrap().contains("latency"), "no latency key when none was measured");
    }
}

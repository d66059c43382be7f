//! Recorded learning curves replayed as trials: the table (`benches/curves/*.jsonl.gz`), the
//! nearest recorded configuration of a sampled one, and [`ReplayLauncher`], which "trains" a
//! trial by sleeping through its recorded epochs on tokio's clock. Under
//! [`super::run::run_simulated`] that clock is simulated, so the real loop, samplers and
//! pruners run a study of hours in moments (as Syne Tune's simulator backend does).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::launch::{Exit, Launch, Message};
use super::space::{Distribution, SearchSpace};
use crate::error::{Result, TuneError};
use crate::model::params::{Params, Value};
use crate::training::EpochMetrics;

/// One recorded configuration, trained to the end.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub trial: usize,
    pub params: Params,
    pub val_acc: Vec<f64>,
    pub secs: Vec<f64>,
    /// The trial's time outside its epochs (process start, data loading).
    #[serde(default)]
    pub start_secs: f64,
}

impl Row {
    /// What the configuration is worth trained to the end: its best epoch (what early
    /// stopping keeps).
    pub fn final_value(&self) -> f64 {
        self.val_acc.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// Seconds of the whole recorded trial.
    pub fn total_secs(&self) -> f64 {
        self.start_secs + self.secs.iter().sum::<f64>()
    }
}

/// A learning-curve table.
#[derive(Debug, Clone)]
pub struct CurveTable {
    pub file: PathBuf,
    pub rows: Vec<Row>,
}

impl CurveTable {
    /// Reads a gzip JSON-lines table (plain JSON lines when the name does not end in `.gz`).
    pub fn load(path: &Path) -> Result<CurveTable> {
        let file = std::fs::File::open(path).map_err(|e| TuneError::io(path, e))?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        let bad = |line: usize, problem: String| TuneError::Config {
            file: path.to_path_buf(),
            key: format!("line {line}"),
            problem,
            fix: "re-export the table with benches/curves/export.py".into(),
        };
        let mut rows = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| TuneError::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let row: Row = serde_json::from_str(&line).map_err(|e| bad(i + 1, e.to_string()))?;
            if row.val_acc.is_empty() || row.val_acc.len() != row.secs.len() {
                return Err(bad(i + 1, "val_acc and secs must be non-empty and of one length".into()));
            }
            if row.val_acc.iter().chain(&row.secs).chain([&row.start_secs]).any(|v| !v.is_finite() || *v < 0.0) {
                return Err(bad(i + 1, "a value is negative, NaN or infinite".into()));
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(bad(0, "the table holds no curve".into()));
        }
        rows.sort_by_key(|r| r.trial);
        Ok(CurveTable { file: path.to_path_buf(), rows })
    }

    /// The best final value of any recorded configuration: regret is measured against it.
    pub fn best_final(&self) -> f64 {
        self.rows.iter().map(Row::final_value).fold(f64::NEG_INFINITY, f64::max)
    }

    /// Mean seconds of one whole recorded trial.
    pub fn mean_trial_secs(&self) -> f64 {
        self.rows.iter().map(Row::total_secs).sum::<f64>() / self.rows.len() as f64
    }

    /// Most epochs of any curve.
    pub fn epochs(&self) -> usize {
        self.rows.iter().map(|r| r.val_acc.len()).max().unwrap_or(0)
    }

    /// The index of the recorded configuration nearest `params` in the space's normalised
    /// coordinates (ties: the lowest trial number).
    pub fn nearest(&self, space: &SearchSpace, params: &Params) -> usize {
        let mut best = (f64::INFINITY, 0);
        for (i, row) in self.rows.iter().enumerate() {
            let d = distance(space, params, &row.params);
            if d < best.0 {
                best = (d, i);
            }
        }
        best.1
    }
}

/// Squared distance between two configurations: per key of either, 1 when only one has it
/// (an inactive block), the range-normalised difference for numbers (log-scaled where the
/// distribution is), 0 or 1 for names and choices. The Optuna replay script uses the same rule.
pub fn distance(space: &SearchSpace, a: &Params, b: &Params) -> f64 {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let d = match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => key_distance(space.params.iter().find(|(n, _)| n == k).map(|(_, d)| d), x, y),
                _ => 1.0,
            };
            d * d
        })
        .sum()
}

fn key_distance(dist: Option<&Distribution>, x: &Value, y: &Value) -> f64 {
    let numeric = |low: f64, high: f64, log: bool| {
        let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else { return 1.0 };
        let f = |v: f64| if log { v.max(f64::MIN_POSITIVE).ln() } else { v };
        let span = f(high) - f(low);
        if span > 0.0 { ((f(x) - f(y)) / span).abs() } else { 0.0 }
    };
    match dist {
        Some(Distribution::Float { low, high, log }) => numeric(*low, *high, *log),
        Some(Distribution::Int { low, high, log, .. }) => numeric(*low as f64, *high as f64, *log),
        _ => f64::from(u8::from(x != y)),
    }
}

/// One epoch a replayed trial reported, on the simulated clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Seconds since the first trial started.
    pub at: f64,
    pub trial: usize,
    /// The table row the trial replays.
    pub row: usize,
    pub val_acc: f64,
}

/// Starts each trial as a replay of the recorded configuration nearest its parameters: it
/// waits the row's start-up seconds, then each epoch's seconds before reporting that epoch.
/// A trial resumed after a stop continues its curve (its epochs so far are kept in its
/// directory, as a checkpoint would be). Every report is logged for the benchmark.
pub struct ReplayLauncher {
    table: Arc<CurveTable>,
    space: SearchSpace,
    origin: Mutex<Option<Instant>>,
    log: Arc<Mutex<Vec<Report>>>,
}

impl ReplayLauncher {
    pub fn new(table: Arc<CurveTable>, space: SearchSpace) -> ReplayLauncher {
        ReplayLauncher { table, space, origin: Mutex::new(None), log: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Every epoch reported so far, in order.
    pub fn reports(&self) -> Arc<Mutex<Vec<Report>>> {
        self.log.clone()
    }
}

const PROGRESS_FILE: &str = "replay_epochs";

impl Launch for ReplayLauncher {
    fn spawn(
        &self,
        number: usize,
        dir: &Path,
        tx: mpsc::UnboundedSender<Message>,
    ) -> std::io::Result<oneshot::Sender<()>> {
        let origin = *self.origin.lock().expect("not poisoned").get_or_insert_with(Instant::now);
        let params = crate::model::params::read_params(&dir.join("params.toml")).map_err(std::io::Error::other)?;
        let row_index = self.table.nearest(&self.space, &params);
        let row = self.table.rows[row_index].clone();
        let progress = dir.join(PROGRESS_FILE);
        let done: usize = std::fs::read_to_string(&progress).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let lr = params.get("lr").and_then(Value::as_f64).unwrap_or(0.0);
        let log = self.log.clone();
        let (kill_tx, mut kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let epochs = async {
                tokio::time::sleep(Duration::from_secs_f64(row.start_secs)).await;
                for k in done..row.val_acc.len() {
                    tokio::time::sleep(Duration::from_secs_f64(row.secs[k])).await;
                    let (val_acc, secs) = (row.val_acc[k], row.secs[k]);
                    let at = origin.elapsed().as_secs_f64();
                    log.lock().expect("not poisoned").push(Report { at, trial: number, row: row_index, val_acc });
                    std::fs::write(&progress, (k + 1).to_string())?;
                    let m = EpochMetrics {
                        epoch: k + 1,
                        train_loss: 0.0,
                        train_acc: 0.0,
                        val_loss: 0.0,
                        val_acc,
                        lr,
                        secs,
                        latency: None,
                    };
                    let _ = tx.send(Message::Epoch(number, m));
                }
                std::io::Result::Ok(())
            };
            let outcome = tokio::select! {
                r = epochs => match r {
                    Ok(()) => Exit::Success,
                    Err(e) => Exit::Failed(format!("replay could not record its progress: {e}")),
                },
                _ = &mut kill_rx => Exit::Killed,
            };
            let _ = tx.send(Message::Exit { number, outcome });
        });
        Ok(kill_tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> SearchSpace {
        let text = r#"
            [study]
            name = "t"
            [params]
            lr = { float = [1e-4, 1e-2], log = true }
            n_conv = { int = [1, 2] }
            "conv*_channels" = { choice = [16, 32] }
        "#;
        SearchSpace::parse(text, Path::new("t.toml")).unwrap()
    }

    fn params(lr: f64, channels: &[i64]) -> Params {
        let mut p = Params::new();
        p.insert("lr".into(), Value::Float(lr));
        p.insert("n_conv".into(), Value::Int(channels.len() as i64));
        for (i, c) in channels.iter().enumerate() {
            p.insert(format!("conv{i}_channels"), Value::Int(*c));
        }
        p
    }

    #[test]
    fn distance_is_normalised_per_key() {
        let s = space();
        // lr 1e-4 → 1e-2 spans the whole log range: 1; one more block: n_conv 1/1 plus a key only one has.
        let rows = [
            (params(1e-4, &[16]), params(1e-2, &[16]), 1.0, "the log range end to end"),
            (params(1e-3, &[16]), params(1e-3, &[32]), 1.0, "another choice"),
            (params(1e-3, &[16]), params(1e-3, &[16, 16]), 2.0, "a block more: the depth's range and one key"),
            (params(1e-3, &[16]), params(1e-3, &[16]), 0.0, "the same configuration"),
        ];
        for (a, b, want, why) in rows {
            assert!((distance(&s, &a, &b) - want).abs() < 1e-12, "{why}: {}", distance(&s, &a, &b));
        }
    }

    #[test]
    fn nearest_picks_the_closest_row_and_the_lowest_number_on_ties() {
        let row = |trial, p| Row { trial, params: p, val_acc: vec![0.5], secs: vec![1.0], start_secs: 0.0 };
        let t = CurveTable {
            file: "t".into(),
            rows: vec![row(0, params(1e-4, &[16])), row(1, params(1e-2, &[32])), row(2, params(1e-2, &[32]))],
        };
        assert_eq!(t.nearest(&space(), &params(2e-4, &[16])), 0);
        assert_eq!(t.nearest(&space(), &params(5e-3, &[32])), 1);
    }

    #[test]
    fn a_table_with_a_bad_line_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, "{\"trial\":0,\"params\":{},\"val_acc\":[0.5],\"secs\":[1.0]}\n{\"trial\":1}\n").unwrap();
        let err = CurveTable::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}

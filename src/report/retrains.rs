//! The retrains of a study (`<study>/retrain/trial-N/seed-k/`) as the report shows them: each
//! seed's validation curve and its one test result, and each trial's mean ± std over seeds —
//! the figures that say whether a winner beats the baseline by more than seed noise. Also the
//! record of a `tune retrain --top` rung (`retrain/top.json`), which says which retrained
//! trials were candidates that lost on validation and were never tested.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TuneError};
use crate::training::EpochMetrics;

/// One `tune retrain --top` candidate: what the study measured, and what its first retrain
/// seed did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopCandidate {
    pub trial: usize,
    /// Best val_acc in the study, at the study's fidelity.
    pub study_val_acc: f64,
    /// Best val_acc of the retrain's first seed, and its epoch.
    pub val_acc: f64,
    pub epoch: usize,
    /// Whether it stopped early (else it ran every epoch of the budget).
    pub stopped_early: bool,
}

/// A `--top` rung's candidates in the study's order, and the pick: `retrain/top.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopRung {
    pub candidates: Vec<TopCandidate>,
    pub chosen: usize,
}

impl TopRung {
    pub const FILE: &'static str = "top.json";

    pub fn write(&self, retrain_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(retrain_dir).map_err(|e| TuneError::io(retrain_dir, e))?;
        crate::files::write_atomic(
            &retrain_dir.join(Self::FILE),
            serde_json::to_string_pretty(self).expect("serialisable").as_bytes(),
        )
    }

    /// The rung recorded under `retrain_dir`, if a `--top` retrain ran there.
    pub fn read(retrain_dir: &Path) -> Result<Option<TopRung>> {
        let path = retrain_dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| TuneError::CorruptData {
                path,
                problem: e.to_string(),
                fix: "rerun the same `tune retrain --best --top K` command: it rewrites the file from the saved runs"
                    .into(),
            }),
            Err(_) => Ok(None),
        }
    }
}

/// One seed of a retrain, finished or still training.
#[derive(Debug, Clone)]
pub struct SeedRun {
    pub seed: usize,
    pub dir: PathBuf,
    pub history: Vec<EpochMetrics>,
    /// Accuracy on the balanced test split; `None` while the seed trains.
    pub test_accuracy: Option<f64>,
    /// `confusion[true][predicted]` of that one test; `None` while the seed trains.
    pub confusion: Option<Vec<Vec<usize>>>,
}

impl SeedRun {
    /// Best val_acc and its epoch (the first epoch on ties, as training keeps it).
    pub fn best(&self) -> Option<(f64, usize)> {
        crate::training::metrics::best_epoch(&self.history)
    }
}

/// Every seed of one retrained trial.
#[derive(Debug, Clone)]
pub struct Retrained {
    pub trial: usize,
    pub seeds: Vec<SeedRun>,
    /// A `tune retrain --top` candidate that lost to this trial on validation: it trained one
    /// seed and was never tested.
    pub passed_over_for: Option<usize>,
}

impl Retrained {
    /// Test accuracies of the tested seeds.
    pub fn tested(&self) -> Vec<f64> {
        self.seeds.iter().filter_map(|s| s.test_accuracy).collect()
    }

    /// One line: `trial 0: test 0.9439 ± 0.0010 over 3 seeds (1 still training)`.
    pub fn line(&self) -> String {
        if let (Some(chosen), Some((val, epoch))) = (self.passed_over_for, self.seeds.first().and_then(SeedRun::best)) {
            return format!(
                "trial {}: a --top candidate, not picked (trial {chosen} validated better): val_acc {val:.4} at epoch {epoch}, never tested",
                self.trial
            );
        }
        let accs = self.tested();
        let training = self.seeds.len() - accs.len();
        let pending = if training > 0 { format!(" ({training} still training)") } else { String::new() };
        if accs.is_empty() {
            return format!("trial {}: no seed tested yet{pending}", self.trial);
        }
        let (mean, std) = super::analysis::mean_std(&accs);
        let each: Vec<String> = accs.iter().map(|a| format!("{a:.4}")).collect();
        format!(
            "trial {}: test accuracy {mean:.4} ± {std:.4} over {} seed(s) [{}]{pending}",
            self.trial,
            accs.len(),
            each.join(", ")
        )
    }
}

/// Numbered subdirectories `<prefix>N` of `dir`, in numeric order.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<(usize, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| TuneError::io(dir, e))?;
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok().map(|n| (n, e.path())))
        .collect();
    found.sort();
    Ok(found)
}

/// The retrains under `retrain_dir` (none when it does not exist). A seed that has not
/// finished an epoch yet is left out; its test result is read only from `test.json`.
pub fn find(retrain_dir: &Path) -> Result<Vec<Retrained>> {
    if !retrain_dir.is_dir() {
        return Ok(Vec::new());
    }
    let rung = TopRung::read(retrain_dir)?;
    let mut out = Vec::new();
    for (trial, trial_dir) in numbered(retrain_dir, "trial-")? {
        let mut seeds = Vec::new();
        for (seed, dir) in numbered(&trial_dir, "seed-")? {
            let metrics = dir.join("metrics.csv");
            if !metrics.is_file() {
                continue;
            }
            let history = crate::training::metrics::read_csv(&metrics)?;
            if history.is_empty() {
                continue;
            }
            let test_path = dir.join("test.json");
            let test = match std::fs::read_to_string(&test_path) {
                Ok(text) => Some(serde_json::from_str::<crate::evaluation::Report>(&text).map_err(|e| {
                    TuneError::CorruptData {
                        path: test_path.clone(),
                        problem: e.to_string(),
                        fix: "rerun the same `tune retrain` command: it re-tests the saved best epoch".into(),
                    }
                })?),
                Err(_) => None,
            };
            let (test_accuracy, confusion) = match test {
                Some(report) => (Some(report.accuracy), Some(report.confusion)),
                None => (None, None),
            };
            seeds.push(SeedRun { seed, dir, history, test_accuracy, confusion });
        }
        if !seeds.is_empty() {
            let passed_over_for = rung
                .as_ref()
                .filter(|r| r.chosen != trial && r.candidates.iter().any(|c| c.trial == trial))
                .filter(|_| seeds.iter().all(|s| s.test_accuracy.is_none()))
                .map(|r| r.chosen);
            out.push(Retrained { trial, seeds, passed_over_for });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: usize, val: f64) -> EpochMetrics {
        EpochMetrics {
            epoch: e,
            train_loss: 0.5,
            train_acc: 0.8,
            val_loss: 0.4,
            val_acc: val,
            lr: 1e-3,
            secs: 1.0,
            latency: None,
        }
    }

    fn seed_dir(root: &Path, trial: usize, seed: usize, vals: &[f64], test: Option<f64>) {
        let dir = root.join(format!("trial-{trial}/seed-{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        let history: Vec<EpochMetrics> = vals.iter().enumerate().map(|(i, &v)| epoch(i + 1, v)).collect();
        crate::training::metrics::write_csv(&dir.join("metrics.csv"), &history).unwrap();
        if let Some(acc) = test {
            let labels = [0u8, 1, 2, 3];
            let correct = (acc * 4.0).round() as usize;
            let predicted: Vec<u8> =
                labels.iter().enumerate().map(|(i, &l)| if i < correct { l } else { (l + 1) % 10 }).collect();
            let report = crate::evaluation::Report::new("test", 0.3, &labels, &predicted);
            std::fs::write(dir.join("test.json"), serde_json::to_string(&report).unwrap()).unwrap();
        }
    }

    #[test]
    fn finds_trials_and_seeds_in_numeric_order_with_tests_and_running_seeds() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        seed_dir(r, 10, 0, &[0.80, 0.85], Some(0.75));
        seed_dir(r, 2, 1, &[0.70, 0.90, 0.90, 0.88], Some(1.0));
        seed_dir(r, 2, 0, &[0.70], Some(0.5));
        seed_dir(r, 2, 11, &[0.60], None);
        std::fs::create_dir_all(r.join("trial-2/seed-3")).unwrap(); // nothing finished yet
        std::fs::create_dir_all(r.join("not-a-trial")).unwrap();
        let found = find(r).unwrap();
        assert_eq!(found.iter().map(|t| t.trial).collect::<Vec<_>>(), vec![2, 10]);
        let two = &found[0];
        assert_eq!(two.seeds.iter().map(|s| s.seed).collect::<Vec<_>>(), vec![0, 1, 11]);
        assert_eq!(two.tested(), vec![0.5, 1.0]);
        assert_eq!(two.seeds[0].confusion.as_ref().map(|m| m.len()), Some(10), "the test's confusion matrix is kept");
        assert_eq!(two.seeds[2].confusion, None, "a seed still training has none");
        assert_eq!(two.seeds[1].best(), Some((0.90, 2)), "first epoch of a tie");
        assert_eq!(
            two.line(),
            "trial 2: test accuracy 0.7500 ± 0.3536 over 2 seed(s) [0.5000, 1.0000] (1 still training)"
        );
        assert_eq!(found[1].line(), "trial 10: test accuracy 0.7500 ± 0.0000 over 1 seed(s) [0.7500]");
    }

    #[test]
    fn a_top_candidate_that_was_not_picked_says_so_instead_of_still_training() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        seed_dir(r, 4, 0, &[0.80, 0.86, 0.85], None);
        seed_dir(r, 9, 0, &[0.82, 0.84], Some(0.75));
        let candidate =
            |trial, val_acc| TopCandidate { trial, study_val_acc: 0.8, val_acc, epoch: 2, stopped_early: false };
        let before = find(r).unwrap();
        assert!(before[0].line().contains("still training"), "without the rung: {}", before[0].line());
        TopRung { candidates: vec![candidate(4, 0.86), candidate(9, 0.87)], chosen: 9 }.write(r).unwrap();
        let found = find(r).unwrap();
        assert_eq!(
            found[0].line(),
            "trial 4: a --top candidate, not picked (trial 9 validated better): val_acc 0.8600 at epoch 2, never tested"
        );
        assert_eq!(found[1].passed_over_for, None, "the pick is reported as any retrain");
        assert!(found[1].line().starts_with("trial 9: test accuracy 0.7500"), "{}", found[1].line());
    }

    #[test]
    fn the_top_rung_round_trips_through_its_file_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(TopRung::read(dir.path()).unwrap(), None);
        let c = |trial, val_acc| TopCandidate { trial, study_val_acc: 0.9, val_acc, epoch: 3, stopped_early: true };
        let rung = TopRung { candidates: vec![c(3, 0.8), c(5, 0.85)], chosen: 5 };
        rung.write(dir.path()).unwrap();
        assert_eq!(TopRung::read(dir.path()).unwrap(), Some(rung));
        std::fs::write(dir.path().join(TopRung::FILE), "{").unwrap();
        let err = TopRung::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("top.json") && err.contains("--top"), "{err}");
    }

    #[test]
    fn no_retrain_directory_is_no_retrains_and_a_damaged_test_result_is_named() {
        let root = tempfile::tempdir().unwrap();
        assert!(find(&root.path().join("retrain")).unwrap().is_empty());
        seed_dir(root.path(), 0, 0, &[0.8], None);
        std::fs::write(root.path().join("trial-0/seed-0/test.json"), "{").unwrap();
        let err = find(root.path()).unwrap_err().to_string();
        assert!(err.contains("trial-0/seed-0/test.json") && err.contains("tune retrain"), "{err}");
    }
}

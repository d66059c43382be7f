//! Evaluating a saved model on one split: loss, accuracy, per-class precision / recall /
//! accuracy and the confusion matrix — what `tune eval` prints and `tune retrain` stores.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{CLASS_NAMES, CLASSES, Images};
use crate::error::{Result, TuneError};
use crate::model::{Architecture, params::read_params};
use crate::training::{evaluate, load_model};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    /// One-vs-rest accuracy: (TP + TN) / N.
    pub accuracy: f64,
    pub support: usize,
}

/// The report of one evaluation, as written to `test.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub split: String,
    pub images: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

impl Report {
    pub fn new(split: &str, loss: f64, labels: &[u8], predictions: &[u8]) -> Report {
        let mut confusion = vec![vec![0usize; CLASSES]; CLASSES];
        for (&t, &p) in labels.iter().zip(predictions) {
            confusion[t as usize][p as usize] += 1;
        }
        let n = labels.len();
        let correct: usize = (0..CLASSES).map(|c| confusion[c][c]).sum();
        let per_class = (0..CLASSES)
            .map(|c| {
                let tp = confusion[c][c];
                let actual: usize = confusion[c].iter().sum();
                let predicted: usize = (0..CLASSES).map(|t| confusion[t][c]).sum();
                let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
                ClassScores {
                    class: CLASS_NAMES[c].to_string(),
                    precision: ratio(tp, predicted),
                    recall: ratio(tp, actual),
                    accuracy: ratio(n - actual - predicted + 2 * tp, n),
                    support: actual,
                }
            })
            .collect();
        Report {
            split: split.to_string(),
            images: n,
            loss,
            accuracy: if n == 0 { 0.0 } else { correct as f64 / n as f64 },
            per_class,
            confusion,
        }
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "{} split: {} images, loss {:.4}, accuracy {:.4}\n",
            self.split, self.images, self.loss, self.accuracy
        );
        out.push_str(&format!("{:<13}{:>10}{:>8}{:>10}{:>9}\n", "class", "precision", "recall", "accuracy", "support"));
        for c in &self.per_class {
            out.push_str(&format!(
                "{:<13}{:>10.4}{:>8.4}{:>10.4}{:>9}\n",
                c.class, c.precision, c.recall, c.accuracy, c.support
            ));
        }
        out
    }
}

/// Evaluates `arch` with the weights in `weights` on `indices` of `images`.
fn evaluate_weights(
    arch: &Architecture,
    weights: &Path,
    images: &Images,
    indices: &[usize],
    split: &str,
) -> Result<Report> {
    let device = crate::backend::device();
    let model = load_model(arch, weights, &device)?;
    let eval = evaluate(&model, images, indices, &device);
    let labels: Vec<u8> = indices.iter().map(|&i| images.labels[i]).collect();
    Ok(Report::new(split, eval.loss, &labels, &eval.predictions))
}

/// Evaluates the model saved in `dir` (params.toml + best.bpk) on `indices` of `images`.
pub fn evaluate_dir(dir: &Path, images: &Images, indices: &[usize], split: &str) -> Result<Report> {
    let params_path = dir.join("params.toml");
    if !params_path.is_file() {
        return Err(TuneError::Checkpoint { path: params_path, problem: "no params.toml here".into() });
    }
    let arch = Architecture::from_params(&read_params(&params_path)?, &params_path)?;
    evaluate_weights(&arch, &dir.join("best.bpk"), images, indices, split)
}

/// Evaluates trial `n` of `study` ([`crate::study::storage::open_study`]: in the store `storage`
/// names, else a journal's directory or its name under `runs_dir`): its parameters from the
/// records, its weights from `<artifacts>/n/best.bpk` (default: the study's `trials/`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_store_trial(
    storage: Option<&str>,
    runs_dir: &Path,
    study: &str,
    n: usize,
    artifacts: Option<&Path>,
    images: &Images,
    indices: &[usize],
    split: &str,
) -> Result<Report> {
    let (study_dir, mut store) = crate::study::storage::open_study(storage, runs_dir, Some(Path::new(study)))?;
    let trials = store.trials()?;
    let trial = trials.get(&n).ok_or_else(|| TuneError::Study(format!("{}: no trial {n}", store.location())))?;
    let dir = artifacts.map_or_else(|| study_dir.join("trials"), Path::to_path_buf).join(n.to_string());
    let origin = PathBuf::from(format!("{} trial {n}", store.location()));
    let arch = Architecture::from_params(&trial.params, &origin)?;
    evaluate_weights(&arch, &dir.join("best.bpk"), images, indices, split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_from_a_known_confusion() {
        // 4 images: class 0 twice (one mistaken for 1), class 1 twice (both right).
        let r = Report::new("t", 0.5, &[0, 0, 1, 1], &[0, 1, 1, 1]);
        assert_eq!(r.accuracy, 0.75);
        assert_eq!(r.confusion[0][1], 1);
        assert_eq!(r.confusion.iter().flatten().sum::<usize>(), 4);
        assert_eq!((r.per_class[0].precision, r.per_class[0].recall), (1.0, 0.5));
        assert!((r.per_class[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.per_class[1].recall, 1.0);
        assert_eq!(r.per_class[0].accuracy, 0.75);
        assert_eq!(r.per_class[5].support, 0);
    }
}

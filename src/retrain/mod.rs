//! `tune retrain`: train a study's winning (or any) configuration from scratch on the 50k
//! train split with early stopping on validation, restore the best epoch, and evaluate it
//! once on the balanced test split. With several seeds, report mean ± standard deviation.
//! Each seed keeps its checkpoints, so the same command resumes an interrupted retrain: a
//! finished seed is not trained (or tested) again.
//!
//! A PBT winner replays its schedule of hyperparameters (as Ray Tune's
//! `PopulationBasedTrainingReplay`): one network trained from scratch with its oldest
//! ancestor's parameters up to the first fork's epoch, then each descendant's up to the next
//! fork, and the winner's to the end. What the study's forks copied (weights of other trials)
//! is not replayed: the schedule is what made the winner, and it is what a retrain can repeat.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::CLASS_NAMES;
use crate::error::{Result, TuneError};
use crate::evaluation::{Report, evaluate_dir};
use crate::model::Architecture;
use crate::study::TrialRecord;
use crate::study::resolved::Resolved;
use crate::training::{Display, TrainConfig, TrainData};

pub mod pick;
pub mod top;
pub use pick::{Caps, best_trial};

/// What `tune retrain` retrains, and how.
#[derive(Debug, Clone, Default)]
pub struct RetrainOptions {
    pub data_dir: Option<PathBuf>,
    /// Seed of the balanced test split.
    pub split_seed: u64,
    /// The study's best trial (`trial` must then be `None`).
    pub best: bool,
    pub trial: Option<usize>,
    /// Study directory (default: the only study under `runs_dir`); with `storage`, the study's name.
    pub study: Option<PathBuf>,
    /// Where studies live on this machine (`runs`): searched for the only study without
    /// `study`, and where a store's study keeps its retrains.
    pub runs_dir: PathBuf,
    /// A shared store's URL; `None` reads the journal.
    pub storage: Option<String>,
    /// With `best`, pruned trials qualify too.
    pub include_pruned: bool,
    /// With `best`, only networks under these caps (size, latency) qualify.
    pub caps: Caps,
    /// Most epochs (default: the study's max_epochs).
    pub epochs: Option<usize>,
    /// The plateau schedule's patiences (default: the study's, sized for its trials).
    pub patience: Option<usize>,
    pub lr_patience: Option<usize>,
    pub seeds: u32,
    pub subset: Option<usize>,
    pub threads: Option<usize>,
    /// Replace an earlier retrain of the trial instead of resuming it.
    pub fresh: bool,
    /// With `best`: train the first seed of this many of the best trials, and go on with the
    /// one that validates best at the retrain's fidelity.
    pub top: Option<usize>,
}

/// What `retrain/trial-N/summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub study: PathBuf,
    pub trial: usize,
    pub seeds: Vec<u64>,
    pub test_accuracy: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

/// The schedule of parameters `chosen` trained with: (its parameters, the epoch they end at),
/// oldest ancestor first; `None` as the end means to the run's last epoch.
pub fn schedule<'a>(
    trials: &'a BTreeMap<usize, TrialRecord>,
    chosen: &'a TrialRecord,
) -> Vec<(&'a TrialRecord, Option<usize>)> {
    let mut stages = vec![(chosen, None)];
    let mut t = chosen;
    while let Some(fork) = &t.fork {
        let Some(parent) = trials.get(&fork.parent) else { break };
        stages.push((parent, Some(fork.epoch)));
        t = parent;
    }
    // Each parent's stage ends at the epoch its child was forked.
    stages.reverse();
    stages
}

/// The one and only look at the test split, with the best epoch's weights; a seed that was
/// already tested (its retrain resumed after it finished) keeps its recorded result, unless
/// its best weights have changed since (a step-wise schedule an older tune had stopped early
/// trained on to its end and found a better epoch): those weights are then tested.
fn test_once(
    dir: &Path,
    images: &crate::data::Images,
    test: &[usize],
    outcome: &crate::training::Outcome,
) -> Result<Report> {
    let path = dir.join("test.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = modified(&dir.join("best.bpk")) > modified(&path);
    if stale && path.is_file() {
        println!("{}: the best epoch is now {}, after its test; testing it", dir.display(), outcome.best_epoch);
    } else if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).map_err(|e| {
            TuneError::Study(format!("{}: unreadable test result ({e}); rerun with --fresh", path.display()))
        });
    }
    let report: Report = evaluate_dir(dir, images, test, "test")?;
    crate::report::plots::confusion(&dir.join("confusion.png"), &report.confusion, &CLASS_NAMES)?;
    crate::report::plots::training_history(&dir.join("history.png"), &outcome.history)?;
    // Written last: its presence marks the seed as done.
    crate::files::write_atomic(&path, serde_json::to_string_pretty(&report).expect("serialisable").as_bytes())?;
    Ok(report)
}

/// One stage of a trial's schedule: the record whose parameters train, its network and its
/// settings (one stage unless the trial was forked by PBT).
type Stage<'a> = (&'a TrialRecord, Architecture, TrainConfig);

/// What every seed of every retrain of one command shares.
struct Retrainer {
    data: crate::data::FashionMnist,
    splits: crate::data::Splits,
    device: burn::tensor::Device,
    /// The study's `retrain/`: `trial-N/seed-k/` per seed, `top.json` for a `--top` rung.
    retrain_dir: PathBuf,
}

impl Retrainer {
    fn trial_dir(&self, trial: usize) -> PathBuf {
        self.retrain_dir.join(format!("trial-{trial}"))
    }

    /// Trains (or resumes) seed `k` of the trial whose schedule is `stages`, in
    /// `retrain/trial-N/seed-k`; `fresh` replaces an earlier retrain there.
    fn train_seed(&self, stages: &[Stage], k: usize, fresh: bool) -> Result<(u64, PathBuf, crate::training::Outcome)> {
        let (chosen, _, base) = stages.last().expect("one stage at least");
        let seed = crate::study::trial::trial_seed(chosen.seed, 1000 + k);
        let dir = self.trial_dir(chosen.number).join(format!("seed-{k}"));
        let cfg = TrainConfig { seed, ..base.clone() };
        let resume = !fresh
            && stages.iter().any(|(t, arch, c)| {
                crate::training::same_run(&dir, arch, &t.params, &TrainConfig { seed, ..c.clone() })
            });
        if !resume && dir.exists() {
            // Hours of training are never discarded by a changed flag, only by --fresh.
            if !fresh {
                return Err(TuneError::Config {
                    file: "<command line>".into(),
                    key: "--fresh".into(),
                    problem: format!(
                        "{} holds a retrain of this trial with other settings (see its train.toml)",
                        dir.display()
                    ),
                    fix: "repeat that retrain's flags to resume it, or pass --fresh to replace it".into(),
                });
            }
            tracing::info!("{}: starting afresh (--fresh)", dir.display());
            std::fs::remove_dir_all(&dir).map_err(|e| TuneError::io(&dir, e))?;
        }
        if resume {
            println!("trial {} seed {k}: resuming {}", chosen.number, dir.display());
        }
        let train_idx = crate::training::training_indices(&self.data.train, &self.splits, &cfg);
        tracing::info!(
            "retraining trial {} (seed {k}: {seed}) on {} images, up to {} epochs → {}",
            chosen.number,
            train_idx.len(),
            cfg.epochs,
            dir.display()
        );
        let td = TrainData {
            train_images: &self.data.train,
            train: train_idx,
            val_images: &self.data.official_test,
            val: self.splits.validation.clone(),
        };
        let mut outcome = None;
        for (i, (t, arch, stage)) in stages.iter().enumerate() {
            let stage = TrainConfig { seed, ..stage.clone() };
            crate::training::write_run_files(&dir, arch, &t.params, &stage)?;
            let resume = resume || i > 0;
            outcome = Some(crate::training::train(
                &td,
                arch,
                &stage,
                &dir,
                &self.device,
                resume,
                Display::Human,
                &mut |_| {},
            )?);
        }
        Ok((seed, dir, outcome.expect("one stage at least")))
    }
}

/// Each stage of `chosen`'s schedule with its network and its settings at the retrain's
/// budget (the study's settings, the trial's dictionary, then the command's flags).
fn stages<'a>(
    trials: &'a BTreeMap<usize, TrialRecord>,
    chosen: &'a TrialRecord,
    resolved: &Resolved,
    settings_path: &Path,
    location: &str,
    args: &RetrainOptions,
) -> Result<Vec<Stage<'a>>> {
    let mut stages = Vec::new();
    for (t, end) in schedule(trials, chosen) {
        let params_file = PathBuf::from(format!("{location} trial {}", t.number));
        let arch = Architecture::from_params(&t.params, &params_file)?;
        let cfg = resolved
            .space
            .study
            .training
            .as_layer(settings_path, "study.training.")
            .dictionary(&t.params, &params_file)
            .flag("epochs", "--epochs", args.epochs)?
            .flag("patience", "--patience", args.patience)?
            .flag("lr_patience", "--lr-patience", args.lr_patience)?
            .flag("subset", "--subset", args.subset)?
            .flag("split_seed", "--split-seed", Some(args.split_seed))?
            .build()?;
        // A stage stops at its fork; its learning-rate schedule spans the whole run, as the
        // study's trial did.
        let epochs = end.map_or(cfg.epochs, |e| e.min(cfg.epochs));
        let plan_epochs = Some(cfg.epochs);
        stages.push((t, arch, TrainConfig { subset: args.subset, epochs, plan_epochs, ..cfg }));
    }
    Ok(stages)
}

pub fn run(args: &RetrainOptions) -> Result<Summary> {
    if !args.best && args.trial.is_none() {
        return Err(TuneError::Config {
            file: "<command line>".into(),
            key: "--best".into(),
            problem: "which trial?".into(),
            fix: "pass --best or --trial N".into(),
        });
    }
    crate::backend::set_threads(args.threads);
    // The parameters come from the study's records: a journal directory, or a shared store
    // (then only they are needed, so the retrain runs on any machine).
    let (study, mut storage) =
        crate::study::storage::open_study(args.storage.as_deref(), &args.runs_dir, args.study.as_deref())?;
    let settings_path = PathBuf::from(match args.storage {
        Some(_) => format!("{} settings", storage.location()),
        None => study.join("settings.json").display().to_string(),
    });
    let resolved = storage
        .settings()?
        .ok_or_else(|| TuneError::Study(format!("{}: no such study (no settings recorded)", storage.location())))?;
    let trials = storage.trials()?;
    let candidates: Vec<&TrialRecord> = match args.trial {
        Some(n) => {
            vec![trials.get(&n).ok_or_else(|| TuneError::Study(format!("{}: no trial {n}", storage.location())))?]
        }
        None => pick::best_trials(&trials, args.include_pruned, args.caps, args.top.unwrap_or(1))
            .map_err(|found| TuneError::Study(format!("{}: {found}", storage.location())))?,
    };
    let location = storage.location();
    let stages_of = |t| stages(&trials, t, &resolved, &settings_path, &location, args);
    let (data, splits) = crate::data::load_with_splits(args.data_dir.as_deref(), args.split_seed)?;
    let r = Retrainer { data, splits, device: crate::backend::device(), retrain_dir: study.join("retrain") };
    // With --top, each candidate's first seed is the study's last rung at the retrain's
    // fidelity: the one with the best validation accuracy there goes on, untested until then.
    let mut trained_first = false;
    let chosen = match candidates.as_slice() {
        [only] => {
            if let Some(k) = args.top.filter(|&k| k > 1) {
                println!("--top {k}: only trial {} qualifies, so there is nothing to choose", only.number);
            }
            *only
        }
        several => {
            let mut rung = Vec::new();
            for t in several {
                let (_, _, outcome) = r.train_seed(&stages_of(t)?, 0, args.fresh)?;
                rung.push(top::candidate(t, &outcome));
            }
            let pick = top::decide(rung);
            println!("{}", top::render(&pick));
            pick.write(&r.retrain_dir)?;
            trained_first = true;
            trials.get(&pick.chosen).expect("a candidate is a trial")
        }
    };
    let stages = stages_of(chosen)?;
    if stages.len() > 1 {
        let steps: Vec<String> =
            stages.iter().map(|(t, _, cfg)| format!("trial {} to epoch {}", t.number, cfg.epochs)).collect();
        println!("trial {} was forked (PBT): replaying its schedule: {}", chosen.number, steps.join(", then "));
    }
    let out = r.trial_dir(chosen.number);
    let mut seeds = Vec::new();
    let mut accs = Vec::new();
    for k in 0..args.seeds as usize {
        // The pick's first seed was trained (afresh, if asked) on the rung above.
        let fresh = args.fresh && !(trained_first && k == 0);
        let (seed, dir, outcome) = r.train_seed(&stages, k, fresh)?;
        let report = test_once(&dir, &r.data.train, &r.splits.test, &outcome)?;
        println!(
            "seed {k}: best val_acc {:.4} at epoch {} → {}",
            outcome.best_val_acc,
            outcome.best_epoch,
            report.render()
        );
        seeds.push(seed);
        accs.push(report.accuracy);
    }
    let (mean, std) = crate::report::analysis::mean_std(&accs);
    let summary = Summary { study: study.clone(), trial: chosen.number, seeds, test_accuracy: accs, mean, std };
    std::fs::create_dir_all(&out).map_err(|e| TuneError::io(&out, e))?;
    crate::files::write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("serialisable").as_bytes(),
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::TrialState;

    #[test]
    fn a_forks_schedule_runs_through_its_ancestors() {
        use crate::study::trial::Fork;
        let t = |n: usize, fork: Option<(usize, usize)>| TrialRecord {
            number: n,
            params: Default::default(),
            seed: 0,
            state: TrialState::Complete,
            reason: None,
            history: Vec::new(),
            secs: 0.0,
            retry_of: None,
            fork: fork.map(|(parent, epoch)| Fork { parent, epoch, changes: Vec::new(), replaces: None }),
            times: Default::default(),
            size_cache: Default::default(),
        };
        // 9 forked from 4 after epoch 6; 4 from 1 after epoch 3; 1 was sampled.
        let trials: BTreeMap<usize, TrialRecord> =
            [(1, t(1, None)), (4, t(4, Some((1, 3)))), (9, t(9, Some((4, 6)))), (7, t(7, None))].into();
        let got: Vec<(usize, Option<usize>)> =
            schedule(&trials, &trials[&9]).iter().map(|(t, e)| (t.number, *e)).collect();
        assert_eq!(got, [(1, Some(3)), (4, Some(6)), (9, None)]);
        let alone: Vec<(usize, Option<usize>)> =
            schedule(&trials, &trials[&7]).iter().map(|(t, e)| (t.number, *e)).collect();
        assert_eq!(alone, [(7, None)], "a sampled trial is one stage");
    }
}

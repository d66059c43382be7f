//! The one check of the `[study]` settings: names, budgets, sampler and pruner combinations,
//! objectives and their caps; every error names the key and the fix.

use super::*;
use crate::study::objectives::{Direction, Metric};

/// Caps of the `[study]` table, named in errors, checked before anything is allocated.
pub const MAX_TRIALS: usize = 100_000;
pub const MAX_CONCURRENCY: usize = 256;
pub const MAX_GRID_POINTS: usize = 1_000;
pub const MAX_NAME_LEN: usize = 100;

/// Checks the `[study]` settings; `err` names the file (or flag) and key.
pub fn check_study(s: &StudySettings, err: &ErrFn) -> Result<()> {
    let name_ok = !s.name.is_empty()
        && s.name.len() <= MAX_NAME_LEN
        && !s.name.starts_with('.')
        && s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(err(
            "study.name",
            format!("{:?} cannot name a study directory", s.name),
            format!("use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', not starting with '.'"),
        ));
    }
    if s.metric != "val_acc" {
        return Err(err("study.metric", format!("`{}` is not tracked", s.metric), "use metric = \"val_acc\"".into()));
    }
    if s.direction != "maximize" {
        return Err(err(
            "study.direction",
            format!("`{}` does not fit val_acc", s.direction),
            "use direction = \"maximize\"".into(),
        ));
    }
    let max_epochs = crate::training::config::MAX_EPOCHS;
    let ranges = [
        ("study.trials", s.trials, 1, MAX_TRIALS),
        ("study.concurrency", s.concurrency.unwrap_or(1), 1, MAX_CONCURRENCY),
        ("study.grid_points", s.grid_points, 1, MAX_GRID_POINTS),
        ("study.startup_trials", s.startup_trials, 0, MAX_TRIALS),
        ("study.history_lag", s.history_lag, 0, MAX_TRIALS),
        ("study.max_params", s.max_params.unwrap_or(1), 1, crate::model::shape::MAX_PARAMS),
        ("study.pruning.min_resource", s.pruning.min_resource, 1, max_epochs),
        ("study.pruning.reduction_factor", s.pruning.reduction_factor, 2, 100),
        ("study.pruning.warmup_epochs", s.pruning.warmup_epochs, 0, max_epochs),
        ("study.pruning.startup_trials", s.pruning.startup_trials, 0, MAX_TRIALS),
        ("study.tpe.max_bad", s.tpe.max_bad, 1, MAX_TRIALS),
    ];
    for (key, v, low, high) in ranges {
        if !(low..=high).contains(&v) {
            return Err(err(
                key,
                format!("{v} is outside {low}..={high}"),
                format!("set `{key}` to a whole number in {low}..={high}"),
            ));
        }
    }
    if s.scheduler == SchedulerKind::Pbt {
        if !s.scheduler.fits(s.pruner) {
            return Err(err(
                "study.pruner",
                format!("pruner = {:?} would stop trials that PBT replaces by forks itself", s.pruner),
                "set pruner = \"none\" with scheduler = \"pbt\"".into(),
            ));
        }
        if !(1..s.training.epochs.max(2)).contains(&s.pbt.interval) {
            return Err(err(
                "study.pbt.interval",
                format!("{} epochs leaves no step before the last epoch ({})", s.pbt.interval, s.training.epochs),
                format!("set an interval in 1..{}", s.training.epochs.max(2)),
            ));
        }
        if !(s.pbt.quantile > 0.0 && s.pbt.quantile <= 0.5) {
            return Err(err(
                "study.pbt.quantile",
                format!("{} is outside (0, 0.5]", s.pbt.quantile),
                "use a share such as 0.25 (Ray Tune's default)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&s.pbt.resample_probability) {
            return Err(err(
                "study.pbt.resample_probability",
                format!("{} is outside [0, 1]", s.pbt.resample_probability),
                "use a probability such as 0.25 (Ray Tune's default)".into(),
            ));
        }
    }
    if s.scheduler == SchedulerKind::Promote && !s.scheduler.fits(s.pruner) {
        return Err(err(
            "study.scheduler",
            format!("\"promote\" needs rungs, and pruner = {:?} has none", s.pruner),
            "use pruner = \"asha\" or \"hyperband\" with scheduler = \"promote\", or leave scheduler out".into(),
        ));
    }
    if !(0.0..=1.0).contains(&s.tpe.exploration) {
        return Err(err(
            "study.tpe.exploration",
            format!("{} is outside [0, 1]", s.tpe.exploration),
            "set a share such as 0.1 (0: never draw uniformly after the start-up)".into(),
        ));
    }
    if !(1..=1000).contains(&s.tpe.candidates) {
        return Err(err(
            "study.tpe.candidates",
            format!("{} is outside 1..=1000", s.tpe.candidates),
            "set `study.tpe.candidates` to a whole number in 1..=1000 (Optuna uses 24)".into(),
        ));
    }
    check_objectives(s, err)?;
    if s.max_retries > 100 {
        return Err(err(
            "study.max_retries",
            format!("{} is outside 0..=100", s.max_retries),
            "set `study.max_retries` to a whole number in 0..=100".into(),
        ));
    }
    s.timing().map_err(|(key, problem, fix)| err(key, problem, fix.into()))?;
    s.placement(crate::backend::NAME).map_err(|(key, problem, fix)| err(key, problem, fix))?;
    s.training.check().map_err(|(key, problem, fix)| err(&format!("study.training.{key}"), problem, fix))
}

/// `objectives`: val_acc first (pruners and schedulers judge on it), each metric once, sizes
/// minimised; `[study.nsga2]` in range.
fn check_objectives(s: &StudySettings, err: &ErrFn) -> Result<()> {
    let first_ok = s.objectives.first().is_none_or(|o| o.metric == Metric::ValAcc);
    if !first_ok {
        return Err(err(
            "study.objectives",
            "the first objective must be val_acc: pruners and schedulers judge trials on it".into(),
            "list { metric = \"val_acc\", direction = \"maximize\" } first".into(),
        ));
    }
    for (i, o) in s.objectives.iter().enumerate() {
        let expected = if o.metric == Metric::ValAcc { Direction::Maximize } else { Direction::Minimize };
        if o.direction != expected {
            return Err(err(
                &format!("study.objectives[{i}].direction"),
                format!("{} is only ever wanted {:?}d", o.metric.name(), expected).to_lowercase(),
                format!("write direction = \"{}\"", format!("{expected:?}").to_lowercase()),
            ));
        }
        if s.objectives[..i].iter().any(|p| p.metric == o.metric) {
            return Err(err(
                &format!("study.objectives[{i}].metric"),
                format!("{} is listed twice", o.metric.name()),
                "list each metric once".into(),
            ));
        }
    }
    let n = &s.nsga2;
    if !(2..=MAX_TRIALS).contains(&n.population) {
        return Err(err(
            "study.nsga2.population",
            format!("{} is outside 2..={MAX_TRIALS}", n.population),
            "set a population such as 20 (Optuna's default is 50)".into(),
        ));
    }
    for (key, p) in [
        ("mutation_probability", n.mutation_probability.unwrap_or(0.0)),
        ("swapping_probability", n.swapping_probability),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(err(
                &format!("study.nsga2.{key}"),
                format!("{p} is outside [0, 1]"),
                "give a probability in [0, 1]".into(),
            ));
        }
    }
    Ok(())
}

//! Ranking trials: `leaderboard.csv` and the terminal table. Only complete and pruned trials
//! are ranked, by best val_acc (complete before pruned on ties); running, failed and
//! infeasible trials follow, unranked, whatever epochs they reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::objectives::{self, Metric, Objective};
use super::trial::{TrialRecord, TrialState};
use crate::error::{Result, TuneError};

/// A network's parameters and FLOPs, when its shapes can be inferred.
type Size = Option<(usize, u64)>;

/// A ranked trial with its best val_acc and its size.
type Ranked<'a> = (&'a TrialRecord, f64, Size);

/// One row of the leaderboard.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub rank: Option<usize>,
    pub trial: &'a TrialRecord,
    /// With several objectives: its non-dominated front (0 is the Pareto front).
    pub front: Option<usize>,
    /// With several objectives: its network's parameters and FLOPs, inferred once for the row.
    pub size: Size,
}

impl Row<'_> {
    /// The row's value of one objective's metric (val_acc, size, or latency), if measured.
    pub fn objective(&self, metric: Metric) -> Option<f64> {
        objectives::value_of(metric, self.trial.value()?, self.size, self.trial.latency())
    }

    /// The same, as a leaderboard cell or JSON value: counts as integers, latency in ms.
    pub fn objective_json(&self, metric: Metric) -> serde_json::Value {
        match (metric, self.objective(metric)) {
            (_, None) => serde_json::Value::Null,
            (Metric::Params | Metric::Flops, Some(v)) => (v as u64).into(),
            (_, Some(v)) => v.into(),
        }
    }
}

/// Orders trials: complete and pruned ones by best val_acc, then the others unranked by number.
pub fn rank(trials: &BTreeMap<usize, TrialRecord>) -> Vec<Row<'_>> {
    rank_with(trials, &[])
}

/// As [`rank`]; with two objectives or more, ranked trials go by non-dominated front first,
/// then by val_acc within a front (a network that cannot be built comes last).
pub fn rank_with<'a>(trials: &'a BTreeMap<usize, TrialRecord>, objectives: &[Objective]) -> Vec<Row<'a>> {
    let multi = objectives.len() >= 2;
    let ranked: Vec<Ranked> =
        trials.values().filter_map(|t| t.value().map(|v| (t, v, if multi { t.size() } else { None }))).collect();
    let fronts: Vec<Option<usize>> = if multi {
        let costs: Vec<Option<Vec<f64>>> = ranked
            .iter()
            .map(|(t, v, size)| objectives::to_costs(objectives::values_of(t, *v, *size, objectives)?, objectives))
            .collect();
        let known: Vec<Vec<f64>> = costs.iter().flatten().cloned().collect();
        let mut levels = objectives::fronts(&known).into_iter();
        costs.iter().map(|c| Some(if c.is_some() { levels.next().unwrap_or(usize::MAX) } else { usize::MAX })).collect()
    } else {
        vec![None; ranked.len()]
    };
    let mut order: Vec<(Ranked, Option<usize>)> = ranked.into_iter().zip(fronts).collect();
    order.sort_by(|((a, va, _), fa), ((b, vb, _), fb)| {
        fa.cmp(fb).then(vb.total_cmp(va)).then(a.state.cmp(&b.state)).then(a.number.cmp(&b.number))
    });
    let mut rows: Vec<Row> = order
        .into_iter()
        .enumerate()
        .map(|(i, ((t, _, size), front))| Row {
            rank: Some(i + 1),
            trial: t,
            front: front.filter(|f| *f != usize::MAX),
            size,
        })
        .collect();
    rows.extend(trials.values().filter(|t| t.value().is_none()).map(|t| Row {
        rank: None,
        trial: t,
        front: None,
        size: None,
    }));
    rows
}

/// The columns a multi-objective leaderboard adds after the fixed ones: the front, and each
/// objective other than val_acc.
fn objective_columns(objectives: &[Objective]) -> Vec<String> {
    if objectives.len() < 2 {
        return Vec::new();
    }
    std::iter::once("front".to_string())
        .chain(objectives.iter().filter(|o| o.metric != Metric::ValAcc).map(|o| o.metric.name().to_string()))
        .collect()
}

/// A row's values of [`objective_columns`].
fn objective_cells(row: &Row, objectives: &[Objective]) -> Vec<String> {
    if objectives.len() < 2 {
        return Vec::new();
    }
    std::iter::once(row.front.map_or(String::new(), |f| f.to_string()))
        .chain(objectives.iter().filter(|o| o.metric != Metric::ValAcc).map(|o| match row.objective_json(o.metric) {
            serde_json::Value::Null => String::new(),
            v => v.to_string(),
        }))
        .collect()
}

/// One line naming the unranked trials by state, e.g. `not ranked: 1 running (#4), 2 failed (#1, #3)`.
pub fn unranked_line(trials: &BTreeMap<usize, TrialRecord>) -> Option<String> {
    let mut by_state: BTreeMap<TrialState, Vec<usize>> = BTreeMap::new();
    for t in trials.values().filter(|t| t.value().is_none()) {
        by_state.entry(t.state).or_default().push(t.number);
    }
    if by_state.is_empty() {
        return None;
    }
    let parts: Vec<String> = by_state
        .iter()
        .map(|(state, numbers)| {
            let shown: Vec<String> = numbers.iter().take(8).map(|n| format!("#{n}")).collect();
            let more = if numbers.len() > 8 { ", …" } else { "" };
            format!("{} {} ({}{more})", numbers.len(), state.name(), shown.join(", "))
        })
        .collect();
    Some(format!("not ranked: {}", parts.join(", ")))
}

/// Every parameter name used by any trial, sorted.
pub fn param_names(trials: &BTreeMap<usize, TrialRecord>) -> Vec<String> {
    trials.values().flat_map(|t| t.params.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// `seconds`: the trial processes' own time; `start` and `end`: UTC wall-clock times of its
/// creation and its finish (or last epoch); `duration_secs` between them (pauses included);
/// `worker`: the `host:pid` that ran its last epoch.
pub const FIXED_COLUMNS: [&str; 12] = [
    "rank",
    "trial",
    "state",
    "best_val_acc",
    "best_epoch",
    "epochs",
    "seconds",
    "start",
    "end",
    "duration_secs",
    "worker",
    "reason",
];

/// A trial's `start`, `end`, `duration_secs` and `worker`, where its records have them.
pub fn time_columns(t: &TrialRecord) -> (Option<&str>, Option<&str>, Option<f64>, Option<&str>) {
    let times = &t.times;
    let end = times.finished.at.as_deref().or_else(|| times.epochs.last()?.at.as_deref());
    let duration = times.duration_secs().map(|d| (d * 10.0).round() / 10.0);
    (times.created.at.as_deref(), end, duration, times.worker())
}

/// Writes `leaderboard.csv`: the fixed columns, then one column per parameter.
pub fn write_csv(path: &Path, trials: &BTreeMap<usize, TrialRecord>) -> Result<()> {
    write_csv_with(path, trials, &[])
}

/// As [`write_csv`], ranked by `objectives` (with `front` and the other objectives' columns
/// after the fixed ones, where there are two or more).
pub fn write_csv_with(path: &Path, trials: &BTreeMap<usize, TrialRecord>, objectives: &[Objective]) -> Result<()> {
    let names = param_names(trials);
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| TuneError::io(path, std::io::Error::other(e));
    let header =
        FIXED_COLUMNS.iter().map(|s| s.to_string()).chain(objective_columns(objectives)).chain(names.iter().cloned());
    w.write_record(header).map_err(io)?;
    for row in rank_with(trials, objectives) {
        let t = row.trial;
        let best = t.best();
        let mut rec = vec![
            row.rank.map_or(String::new(), |r| r.to_string()),
            t.number.to_string(),
            t.state.name().to_string(),
            best.map_or(String::new(), |b| format!("{:.4}", b.0)),
            best.map_or(String::new(), |b| b.1.to_string()),
            t.history.len().to_string(),
            format!("{:.1}", t.secs),
        ];
        let (start, end, duration, worker) = time_columns(t);
        rec.extend([start, end].map(|v| v.unwrap_or_default().to_string()));
        rec.push(duration.map_or(String::new(), |d| format!("{d:.1}")));
        rec.push(worker.unwrap_or_default().to_string());
        rec.push(t.reason.clone().unwrap_or_default());
        rec.extend(objective_cells(&row, objectives));
        rec.extend(names.iter().map(|n| t.params.get(n).map_or(String::new(), |v| v.to_string())));
        w.write_record(rec).map_err(io)?;
    }
    let bytes = w.into_inner().map_err(|e| TuneError::io(path, std::io::Error::other(e.to_string())))?;
    crate::files::write_atomic(path, &bytes)
}

/// The parameters worth showing in a narrow table: those that vary between trials.
pub fn varying_params(trials: &BTreeMap<usize, TrialRecord>) -> Vec<String> {
    param_names(trials)
        .into_iter()
        .filter(|n| {
            let values: BTreeSet<String> =
                trials.values().map(|t| t.params.get(n).map_or(String::new(), |v| v.to_string())).collect();
            values.len() > 1
        })
        .collect()
}

/// A terminal table of the top `n` trials with up to 6 varying parameters.
pub fn render(trials: &BTreeMap<usize, TrialRecord>, n: usize) -> String {
    render_with(trials, n, &[])
}

/// As [`render`], ranked by `objectives` (their columns first, where there are two or more).
pub fn render_with(trials: &BTreeMap<usize, TrialRecord>, n: usize, objectives: &[Objective]) -> String {
    let params: Vec<String> = varying_params(trials).into_iter().take(6).collect();
    let mut out = format!(
        "{:>4} {:>5} {:<10} {:>8} {:>5} {:>6} {:>8}",
        "rank", "trial", "state", "val_acc", "best", "epochs", "secs"
    );
    for c in objective_columns(objectives) {
        out.push_str(&format!(" {:>10}", c));
    }
    for p in &params {
        out.push_str(&format!(" {:>12}", truncate(p, 12)));
    }
    out.push('\n');
    for row in rank_with(trials, objectives).into_iter().filter(|r| r.rank.is_some()).take(n) {
        let t = row.trial;
        let best = t.best();
        out.push_str(&format!(
            "{:>4} {:>5} {:<10} {:>8} {:>5} {:>6} {:>8.0}",
            row.rank.map_or("-".into(), |r| r.to_string()),
            t.number,
            t.state.name(),
            best.map_or("-".into(), |b| format!("{:.4}", b.0)),
            best.map_or("-".into(), |b| b.1.to_string()),
            t.history.len(),
            t.secs
        ));
        for c in objective_cells(&row, objectives) {
            out.push_str(&format!(" {:>10}", c));
        }
        for p in &params {
            out.push_str(&format!(" {:>12}", truncate(&t.params.get(p).map_or("-".into(), short), 12)));
        }
        out.push('\n');
    }
    if let Some(line) = unranked_line(trials) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn short(v: &crate::model::Value) -> String {
    match v {
        crate::model::Value::Float(x) if *x != 0.0 && x.abs() < 0.01 => format!("{x:.2e}"),
        crate::model::Value::Float(x) => format!("{x:.3}"),
        other => other.to_string(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

/// Counts per state, for summaries.
pub fn state_counts(trials: &BTreeMap<usize, TrialRecord>) -> BTreeMap<TrialState, usize> {
    let mut counts = BTreeMap::new();
    for t in trials.values() {
        *counts.entry(t.state).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::EpochMetrics;

    fn trial(number: usize, state: TrialState, val_acc: &[f64]) -> TrialRecord {
        let history = val_acc
            .iter()
            .enumerate()
            .map(|(i, v)| EpochMetrics {
                epoch: i + 1,
                train_loss: 1.0,
                train_acc: 0.5,
                val_loss: 1.0,
                val_acc: *v,
                lr: 1e-3,
                secs: 1.0,
                latency: None,
            })
            .collect();
        TrialRecord {
            number,
            params: Default::default(),
            seed: 1,
            state,
            reason: None,
            history,
            secs: 1.0,
            retry_of: None,
            fork: None,
            times: Default::default(),
            size_cache: Default::default(),
        }
    }

    #[test]
    fn only_complete_and_pruned_trials_are_ranked() {
        let trials: BTreeMap<usize, TrialRecord> = [
            trial(0, TrialState::Failed, &[0.99]),
            trial(1, TrialState::Complete, &[0.80, 0.85]),
            trial(2, TrialState::Running, &[0.95]),
            trial(3, TrialState::Pruned, &[0.85]),
            trial(4, TrialState::Infeasible, &[]),
        ]
        .into_iter()
        .map(|t| (t.number, t))
        .collect();
        let order: Vec<(Option<usize>, usize)> = rank(&trials).iter().map(|r| (r.rank, r.trial.number)).collect();
        // (rank, trial): the failed 0.99 and the running 0.95 are never ranked; complete wins the tie.
        assert_eq!(order, vec![(Some(1), 1), (Some(2), 3), (None, 0), (None, 2), (None, 4)]);
        let table = render(&trials, 10);
        assert!(table.contains("not ranked: 1 running (#2), 1 failed (#0), 1 infeasible (#4)"), "{table}");
        assert!(!table.contains("0.9900"), "a failed trial's figure is not shown as a result: {table}");
    }
}

//! Ranking trials: `leaderboard.csv` and the terminal table. Trained trials rank by best
//! val_acc (complete before pruned on ties); failed and infeasible trials follow, unranked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::trial::{TrialRecord, TrialState};
use crate::error::{Result, TuneError};

/// One row of the leaderboard.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub rank: Option<usize>,
    pub trial: &'a TrialRecord,
}

/// Orders trials: best val_acc first among trained ones.
pub fn rank(trials: &BTreeMap<usize, TrialRecord>) -> Vec<Row<'_>> {
    let mut trained: Vec<&TrialRecord> = trials.values().filter(|t| t.best().is_some()).collect();
    trained.sort_by(|a, b| {
        let (va, vb) = (a.best().map_or(0.0, |x| x.0), b.best().map_or(0.0, |x| x.0));
        vb.total_cmp(&va).then(a.state.cmp(&b.state)).then(a.number.cmp(&b.number))
    });
    let mut rows: Vec<Row> = trained.into_iter().enumerate().map(|(i, t)| Row { rank: Some(i + 1), trial: t }).collect();
    rows.extend(trials.values().filter(|t| t.best().is_none()).map(|t| Row { rank: None, trial: t }));
    rows
}

/// Every parameter name used by any trial, sorted.
pub fn param_names(trials: &BTreeMap<usize, TrialRecord>) -> Vec<String> {
    trials.values().flat_map(|t| t.params.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
}

pub const FIXED_COLUMNS: [&str; 8] = ["rank", "trial", "state", "best_val_acc", "best_epoch", "epochs", "seconds", "reason"];

/// Writes `leaderboard.csv`: the fixed columns, then one column per parameter.
pub fn write_csv(path: &Path, trials: &BTreeMap<usize, TrialRecord>) -> Result<()> {
    let names = param_names(trials);
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| TuneError::io(path, std::io::Error::other(e));
    w.write_record(FIXED_COLUMNS.iter().map(|s| s.to_string()).chain(names.iter().cloned())).map_err(io)?;
    for row in rank(trials) {
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
            t.reason.clone().unwrap_or_default(),
        ];
        rec.extend(names.iter().map(|n| t.params.get(n).map_or(String::new(), |v| v.to_string())));
        w.write_record(rec).map_err(io)?;
    }
    let bytes = w.into_inner().map_err(|e| TuneError::io(path, std::io::Error::other(e.to_string())))?;
    crate::storage::write_atomic(path, &bytes)
}

/// The parameters worth showing in a narrow table: those that vary between trials.
pub fn varying_params(trials: &BTreeMap<usize, TrialRecord>) -> Vec<String> {
    param_names(trials)
        .into_iter()
        .filter(|n| {
            let values: BTreeSet<String> = trials.values().map(|t| t.params.get(n).map_or(String::new(), |v| v.to_string())).collect();
            values.len() > 1
        })
        .collect()
}

/// A terminal table of the top `n` trials with up to 6 varying parameters.
pub fn render(trials: &BTreeMap<usize, TrialRecord>, n: usize) -> String {
    let params: Vec<String> = varying_params(trials).into_iter().take(6).collect();
    let mut out = format!("{:>4} {:>5} {:<10} {:>8} {:>5} {:>6} {:>8}", "rank", "trial", "state", "val_acc", "best", "epochs", "secs");
    for p in &params {
        out.push_str(&format!(" {:>12}", truncate(p, 12)));
    }
    out.push('\n');
    for row in rank(trials).into_iter().take(n) {
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
        for p in &params {
            out.push_str(&format!(" {:>12}", truncate(&t.params.get(p).map_or("-".into(), short), 12)));
        }
        out.push('\n');
    }
    out
}

fn short(v: &crate::model::Value) -> String {
    match v {
        crate::model::Value::Float(x) if x.abs() < 0.01 => format!("{x:.2e}"),
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

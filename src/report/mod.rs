//! `tune report`: a study's leaderboard (terminal, CSV, JSON, Markdown), its plots (PNG and
//! SVG) and one HTML page bringing them together, in `<study>/report/`. It reads one snapshot
//! of the journal and writes only under `report/`, so it is safe while the study runs.

pub mod analysis;
mod html;
pub mod plots;
pub mod retrains;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Result, TuneError};
use crate::study::leaderboard::{self, FIXED_COLUMNS, param_names, rank, rank_with, varying_params};
use crate::study::objectives::{Metric, Objective};
use crate::study::{TrialRecord, TrialState};

/// What `generate` produced.
pub struct Generated {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub trials: BTreeMap<usize, TrialRecord>,
    pub retrains: Vec<retrains::Retrained>,
}

/// Writes the exports and plots of study `name` (wherever its records came from), with the
/// retrains found under `retrain_dir`, into `out`.
pub fn generate_at(
    name: &str,
    trials: BTreeMap<usize, TrialRecord>,
    objectives: &[Objective],
    retrain_dir: &Path,
    out: &Path,
) -> Result<Generated> {
    let out = out.to_path_buf();
    std::fs::create_dir_all(&out).map_err(|e| TuneError::io(&out, e))?;
    let mut files = Vec::new();
    let csv = out.join("leaderboard.csv");
    leaderboard::write_csv_with(&csv, &trials, objectives)?;
    files.push(csv);
    let json = out.join("leaderboard.json");
    crate::files::write_atomic(
        &json,
        serde_json::to_string_pretty(&records(&trials, objectives)).expect("serialisable").as_bytes(),
    )?;
    files.push(json);
    let md = out.join("leaderboard.md");
    crate::files::write_atomic(&md, markdown(&trials, 20, objectives).as_bytes())?;
    files.push(md);

    let ranked: Vec<&TrialRecord> = rank(&trials).into_iter().filter(|r| r.rank.is_some()).map(|r| r.trial).collect();
    let varying = varying_params(&trials);
    files.extend(plots::leaderboard(&out, &ranked)?);
    files.extend(plots::history(&out, &trials)?);
    files.extend(plots::learning_curves(&out, &trials)?);
    files.extend(plots::parallel_coordinates(&out, &trials, &varying)?);
    files.extend(plots::front(&out, &trials, objectives)?);
    let importance = analysis::importance(&trials, &varying);
    files.extend(plots::bars(
        &out,
        "importance",
        "Parameter importance (ε² of best val_acc by parameter)",
        "share of val_acc variance",
        &importance,
    )?);
    let infeasible = analysis::infeasibility(&trials, &varying);
    if !infeasible.is_empty() {
        files.extend(plots::bars(
            &out,
            "infeasible",
            "What made networks infeasible (ε² of the infeasible indicator)",
            "share of infeasibility explained",
            &infeasible,
        )?);
    }
    let retrains = retrains::find(retrain_dir)?;
    if !retrains.is_empty() {
        files.extend(plots::retrain_curves(&out, &retrains)?);
    }
    let page = out.join("index.html");
    let html = html::page(
        name,
        &trials,
        objectives,
        &importance,
        (!infeasible.is_empty()).then_some(&analysis::infeasible_layers(&trials)[..]),
        &retrains,
        &relative_to(retrain_dir, &out),
    );
    crate::files::write_atomic(&page, html.as_bytes())?;
    files.push(page);
    Ok(Generated { dir: out, files, trials, retrains })
}

/// `target` as the page in `from` links to it: relative when both share a parent (the usual
/// `<study>/report` and `<study>/retrain`), absolute otherwise.
fn relative_to(target: &Path, from: &Path) -> String {
    match (target.parent(), from.parent(), target.file_name()) {
        (Some(a), Some(b), Some(name)) if a == b => format!("../{}", name.to_string_lossy()),
        _ => std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf()).display().to_string(),
    }
}

/// Leaderboard rows as flat JSON records (the CSV's columns), which `pandas.read_json` reads.
pub fn records(
    trials: &BTreeMap<usize, TrialRecord>,
    objectives: &[Objective],
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let names = param_names(trials);
    rank_with(trials, objectives)
        .into_iter()
        .map(|row| {
            let t = row.trial;
            let best = t.best();
            let mut m = serde_json::Map::new();
            let (start, end, duration, worker) = leaderboard::time_columns(t);
            let vals: [serde_json::Value; FIXED_COLUMNS.len()] = [
                row.rank.into(),
                t.number.into(),
                t.state.name().into(),
                best.map(|b| b.0).into(),
                best.map(|b| b.1).into(),
                t.history.len().into(),
                ((t.secs * 10.0).round() / 10.0).into(),
                start.into(),
                end.into(),
                duration.into(),
                worker.into(),
                t.reason.clone().into(),
            ];
            for (k, v) in FIXED_COLUMNS.iter().zip(vals) {
                m.insert(k.to_string(), v);
            }
            if objectives.len() >= 2 {
                m.insert("front".into(), row.front.into());
                for o in objectives.iter().filter(|o| o.metric != Metric::ValAcc) {
                    m.insert(o.metric.name().into(), row.objective_json(o.metric));
                }
            }
            for n in &names {
                m.insert(
                    n.clone(),
                    t.params.get(n).map_or(serde_json::Value::Null, |v| serde_json::to_value(v).expect("value")),
                );
            }
            m
        })
        .collect()
}

/// A Markdown table of the top `n` trials with the varying parameters.
pub fn markdown(trials: &BTreeMap<usize, TrialRecord>, n: usize, objectives: &[Objective]) -> String {
    let params = varying_params(trials);
    let multi = objectives.len() >= 2;
    let mut s = format!(
        "| rank |{} trial | state | best val_acc | best epoch | epochs |{}\n|---|{}---|---|---|---|---|{}\n",
        if multi { " front | parameters |" } else { "" },
        params.iter().map(|p| format!(" {p} |")).collect::<String>(),
        if multi { "---|---|" } else { "" },
        "---|".repeat(params.len())
    );
    for row in rank_with(trials, objectives).into_iter().filter(|r| r.rank.is_some()).take(n) {
        let t = row.trial;
        let best = t.best();
        let front = match (multi, row.front) {
            (false, _) => String::new(),
            (true, f) => format!(
                " {} | {} |",
                f.map_or("–".into(), |f| f.to_string()),
                row.size.map_or("–".into(), |s| crate::model::shape::group(s.0))
            ),
        };
        s.push_str(&format!(
            "| {} |{front} {} | {} | {} | {} | {} |{}\n",
            row.rank.map_or("–".into(), |r| r.to_string()),
            t.number,
            t.state.name(),
            best.map_or("–".into(), |b| format!("{:.4}", b.0)),
            best.map_or("–".into(), |b| b.1.to_string()),
            t.history.len(),
            params
                .iter()
                .map(|p| format!(" {} |", t.params.get(p).map_or("–".into(), |v| v.to_string())))
                .collect::<String>()
        ));
    }
    if let Some(line) = leaderboard::unranked_line(trials) {
        s.push_str(&format!("\n{line}\n"));
    }
    s
}

/// The one-line state summary used by the terminal and the page.
pub fn counts_line(trials: &BTreeMap<usize, TrialRecord>) -> String {
    let c = leaderboard::state_counts(trials);
    let get = |s| c.get(&s).copied().unwrap_or(0);
    format!(
        "{} trials: {} complete, {} pruned, {} failed, {} infeasible, {} running, {} paused",
        trials.len(),
        get(TrialState::Complete),
        get(TrialState::Pruned),
        get(TrialState::Failed),
        get(TrialState::Infeasible),
        get(TrialState::Running),
        get(TrialState::Paused)
    )
}

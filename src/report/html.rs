//! The report page: a self-contained HTML file next to its SVG plots.

use std::collections::BTreeMap;

use super::retrains::Retrained;
use crate::study::TrialRecord;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The retrains: one row per seed, each trial's mean ± std, the curves and the confusion matrices.
fn retrain_section(retrains: &[Retrained], link: &str) -> String {
    if retrains.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for t in retrains {
        for s in &t.seeds {
            let (best, epoch) = s.best().unwrap_or((0.0, 0));
            let (test, confusion) = match s.test_accuracy {
                Some(a) => {
                    let m = format!("{link}/trial-{}/seed-{}/confusion.svg", t.trial, s.seed);
                    (format!("{a:.4}"), format!("<a href=\"{}\">confusion matrix</a>", escape(&m)))
                }
                None if t.passed_over_for.is_some() => ("not picked (--top), never tested".to_string(), String::new()),
                None => ("training".to_string(), String::new()),
            };
            rows.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td><td>{best:.4} (epoch {epoch})</td><td>{test}</td><td>{confusion}</td></tr>\n", t.trial, s.seed, s.history.len()));
        }
    }
    let lines: String = retrains.iter().map(|t| format!("<li>{}</li>", escape(&t.line()))).collect();
    format!(
        "<h2>Retrains</h2><p>Each seed retrained from scratch on the 50,000-image train split, restored to its best validation epoch and tested once on the balanced 10,000-image test split (<code>tune retrain</code>). Mean ± sample standard deviation over seeds:</p><ul>{lines}</ul>\
         <table><tr><th>trial</th><th>seed</th><th>epochs</th><th>best val_acc</th><th>test accuracy</th><th></th></tr>\n{rows}</table>\
         <img src=\"retrain_curves.svg\" alt=\"retrain curves\">"
    )
}

pub fn page(
    name: &str,
    trials: &BTreeMap<usize, TrialRecord>,
    objectives: &[crate::study::objectives::Objective],
    importance: &[(String, f64)],
    // Where the study had infeasible networks: the layers where they collapsed.
    infeasible_layers: Option<&[(String, usize)]>,
    retrains: &[Retrained],
    retrain_link: &str,
) -> String {
    let md = super::markdown(trials, 20, objectives);
    let mut table = String::from("<div class=\"scroll\"><table>\n");
    for (i, line) in md.lines().enumerate() {
        if i == 1 {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tag = if i == 0 { "th" } else { "td" };
        table.push_str("<tr>");
        for c in cells {
            table.push_str(&format!("<{tag}>{}</{tag}>", escape(c)));
        }
        table.push_str("</tr>\n");
    }
    table.push_str("</table></div>");
    let best = trials
        .values()
        .filter(|t| t.value().is_some())
        .max_by(|a, b| a.value().unwrap_or(0.0).total_cmp(&b.value().unwrap_or(0.0)));
    let best_line = best.map_or("no trained trial yet".to_string(), |t| {
        let (v, e) = t.best().unwrap_or((0.0, 0));
        format!(
            "best: trial #{} with val_acc {v:.4} at epoch {e} — retrain it with <code>tune retrain --best</code>",
            t.number
        )
    });
    let front_section = if objectives.len() >= 2 {
        "<h2>Accuracy against size</h2><p>Ranked by non-dominated front: a trial on front 0 has no other trial at least as accurate and at least as small. <code>tune retrain --best --max-params N</code> retrains the best network under a size budget.</p><img src=\"front.svg\" alt=\"the non-dominated front\">\n"
    } else {
        ""
    };
    let imp: String =
        importance.iter().take(5).map(|(p, e)| format!("<li><code>{}</code>: {:.2}</li>", escape(p), e)).collect();
    let mut infeasible_section = String::new();
    if let Some(layers) = infeasible_layers {
        let l: String = layers.iter().map(|(l, n)| format!("<li><code>{}</code>: {n}</li>", escape(l))).collect();
        infeasible_section = format!(
            "<h2>Infeasible networks</h2><p>Rejected by shape inference before launch, by the layer where they collapsed:</p><ul>{l}</ul>\
             <p>Parameters by how much of the infeasibility they explain (ε²):</p><img src=\"infeasible.svg\" alt=\"infeasibility by parameter\">"
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tune report: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f0f0f0; }} .scroll {{ overflow-x: auto; }} img {{ max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }}
</style></head><body>
<h1>Study <code>{name}</code></h1>
<p>{counts}. {best_line}.</p>
<p><a href="dashboard.html">Interactive dashboard</a> of this snapshot: hover, filter, zoom (one file, works offline; <code>tune dashboard</code> serves it live).</p>
<h2>Leaderboard</h2>
{table}
<p>Exports: <a href="leaderboard.csv">CSV</a>, <a href="leaderboard.json">JSON</a>, <a href="leaderboard.md">Markdown</a>.</p>
<img src="leaderboard.svg" alt="leaderboard">
<h2>Optimization history</h2><img src="history.svg" alt="optimization history">
<h2>Learning curves</h2><img src="learning_curves.svg" alt="learning curves">
<h2>Parallel coordinates</h2><img src="parallel_coordinates.svg" alt="parallel coordinates">
{front_section}<h2>Parameter importance</h2>
<p>ε² (bias-corrected correlation ratio): the share of the variance of best val_acc explained by grouping the trained trials by one parameter (numbers in up to 4 quantile bins), less what as many groups would explain by chance. One parameter at a time, no interactions; noisy with few trials, and left out where there are too few trials per value.</p>
<ul>{imp}</ul>
<img src="importance.svg" alt="parameter importance">
{infeasible_section}
{retrain_section}
</body></html>
"#,
        name = escape(name),
        counts = super::counts_line(trials),
        retrain_section = retrain_section(retrains, retrain_link),
    )
}

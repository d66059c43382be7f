//! The study's progress bar: trials finished of the budget, counts by state, the best so far.

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Study;
use crate::study::leaderboard;
use crate::study::trial::{TrialRecord, TrialState};

pub(super) fn study_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("study [{bar:30}] {pos}/{len} trials {msg} ({elapsed}, ETA {eta})")
            .expect("static")
            .progress_chars("=> "),
    );
    bar
}

fn bar_message(trials: &BTreeMap<usize, TrialRecord>) -> String {
    let c = leaderboard::state_counts(trials);
    let get = |s| c.get(&s).copied().unwrap_or(0);
    let best = trials.values().filter_map(|t| t.value().map(|v| (v, t.number))).max_by(|a, b| a.0.total_cmp(&b.0));
    format!(
        "done {} · pruned {} · failed {} · infeasible {} · running {} · paused {} · best {}",
        get(TrialState::Complete),
        get(TrialState::Pruned),
        get(TrialState::Failed),
        get(TrialState::Infeasible),
        get(TrialState::Running),
        get(TrialState::Paused),
        best.map_or("-".into(), |(v, n)| format!("{v:.4} (#{n})"))
    )
}

impl Study {
    pub(super) fn show_progress(&self) {
        self.bar.set_position(
            self.trials.values().filter(|t| t.state.is_finished() && t.counts_toward_budget()).count() as u64,
        );
        self.bar.set_message(bar_message(&self.trials));
    }
}

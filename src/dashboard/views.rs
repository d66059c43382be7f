//! What the page is sent: compact JSON shapes of trials, studies and retrains. Times are Unix
//! seconds (the page formats them in the viewer's time zone); a trial recorded before tune kept
//! timestamps has none, and the page leaves it off the timeline.

use std::collections::BTreeMap;

use serde::Serialize;

use super::live::LiveStudy;
use crate::model::Params;
use crate::report::retrains::Retrained;
use crate::study::TrialRecord;
use crate::study::objectives::Objective;

/// One trial as the page draws it.
#[derive(Debug, Serialize)]
pub struct TrialView<'a> {
    pub n: usize,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub params: &'a Params,
    /// val_acc of each epoch, in order.
    pub val: Vec<f64>,
    /// When each epoch ended.
    pub at: Vec<Option<f64>>,
    pub created: Option<f64>,
    pub finished: Option<f64>,
    pub worker: Option<&'a str>,
    pub best: Option<f64>,
    /// Parameters of its network (for the accuracy-versus-size front).
    pub size: Option<usize>,
    /// Forward FLOPs per image.
    pub flops: Option<u64>,
    /// Inference ms per image, alone and in batches of 100 (timed after its first epoch).
    pub latency_ms: Option<f64>,
    pub latency_ms_batch100: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<usize>,
}

impl<'a> TrialView<'a> {
    pub fn of(t: &'a TrialRecord) -> TrialView<'a> {
        let size = t.size();
        let latency = t.latency();
        TrialView {
            size: size.map(|s| s.0),
            flops: size.map(|s| s.1),
            latency_ms: latency.map(|l| l.batch_1),
            latency_ms_batch100: latency.map(|l| l.batch_100),
            n: t.number,
            state: t.state.name(),
            reason: t.reason.as_deref(),
            params: &t.params,
            val: t.history.iter().map(|m| m.val_acc).collect(),
            at: t.times.epochs.iter().map(|s| s.unix_secs()).collect(),
            created: t.times.created.unix_secs(),
            finished: t.times.finished.unix_secs(),
            worker: t.times.worker(),
            best: t.best().map(|b| b.0),
            parent: t.fork.as_ref().map(|f| f.parent),
            retry_of: t.retry_of,
        }
    }
}

/// `GET /api/studies/{name}?since=V`: the trials changed after version V, and what is computed
/// over the whole study (sent whole each time something changed: it is small).
#[derive(Debug, Serialize)]
pub struct StudyUpdate<'a> {
    pub name: &'a str,
    pub version: u64,
    pub trials: Vec<TrialView<'a>>,
    pub log_params: &'a [String],
    /// The study's objectives (empty: val_acc alone).
    pub objectives: &'a [Objective],
    /// Parameters that vary between trials, in name order: the parallel-coordinate axes.
    pub varying: Vec<String>,
    /// (parameter, ε²), most important first (`tune report`'s measure).
    pub importance: Vec<(String, f64)>,
}

impl<'a> StudyUpdate<'a> {
    pub fn of(s: &'a LiveStudy, since: u64) -> StudyUpdate<'a> {
        let changed: Vec<&TrialRecord> = s.changed_since(since).collect();
        StudyUpdate::build(&s.entry.name, s.version, changed, &s.trials, (&s.log_params, &s.objectives))
    }

    /// Every trial of a study read whole (`tune report`'s snapshot).
    pub fn whole(
        name: &'a str,
        trials: &'a BTreeMap<usize, TrialRecord>,
        space: (&'a [String], &'a [Objective]),
    ) -> StudyUpdate<'a> {
        StudyUpdate::build(name, trials.len() as u64, trials.values().collect(), trials, space)
    }

    fn build(
        name: &'a str,
        version: u64,
        changed: Vec<&'a TrialRecord>,
        all: &BTreeMap<usize, TrialRecord>,
        (log_params, objectives): (&'a [String], &'a [Objective]),
    ) -> StudyUpdate<'a> {
        // Whole-study figures only when something changed: a quiet poll stays a few bytes.
        let varying = if changed.is_empty() { Vec::new() } else { crate::study::leaderboard::varying_params(all) };
        StudyUpdate {
            name,
            version,
            trials: changed.into_iter().map(TrialView::of).collect(),
            log_params,
            objectives,
            importance: if varying.is_empty() {
                Vec::new()
            } else {
                crate::report::analysis::importance(all, &varying)
            },
            varying,
        }
    }
}

/// A line of `GET /api/studies`.
#[derive(Debug, Serialize)]
pub struct StudySummary {
    pub name: String,
    pub created: Option<String>,
    pub trials: usize,
    /// Trials per state name.
    pub states: BTreeMap<&'static str, usize>,
    pub best: Option<f64>,
}

impl StudySummary {
    pub fn of(s: &LiveStudy) -> StudySummary {
        let mut states = BTreeMap::new();
        for t in s.trials.values() {
            *states.entry(t.state.name()).or_insert(0) += 1;
        }
        StudySummary {
            name: s.entry.name.clone(),
            created: s.entry.created.clone(),
            trials: s.trials.len(),
            states,
            best: s.trials.values().filter_map(|t| t.value()).reduce(f64::max),
        }
    }
}

/// One retrained seed: its validation curve, test accuracy and confusion matrix.
#[derive(Debug, Serialize)]
pub struct SeedView {
    pub trial: usize,
    pub seed: usize,
    pub val: Vec<f64>,
    pub test_accuracy: Option<f64>,
    /// `confusion[true][predicted]` on the balanced test split, once tested.
    pub confusion: Option<Vec<Vec<usize>>>,
    /// A `tune retrain --top` candidate that another trial beat on validation: never tested.
    pub not_picked: bool,
}

/// Every seed of every retrain of a study (as `retrains::find` read them from the study's own
/// `retrain/` directory).
pub fn retrains(found: &[Retrained]) -> Vec<SeedView> {
    found
        .iter()
        .flat_map(|t| {
            t.seeds.iter().map(|s| SeedView {
                trial: t.trial,
                seed: s.seed,
                val: s.history.iter().map(|m| m.val_acc).collect(),
                test_accuracy: s.test_accuracy,
                confusion: s.confusion.clone(),
                not_picked: t.passed_over_for.is_some(),
            })
        })
        .collect()
}

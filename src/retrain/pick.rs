//! Which trial `tune retrain --best` retrains: the best complete one (or pruned, when asked),
//! under the caps a deployment sets: at most N parameters, at most M ms per image. That is
//! the accuracy-versus-size (or -speed) front's pick under a budget.

use std::collections::BTreeMap;

use crate::study::leaderboard::rank;
use crate::study::{TrialRecord, TrialState};

/// Budgets a network must meet to be picked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caps {
    /// At most this many parameters.
    pub max_params: Option<usize>,
    /// At most this many milliseconds per image, one image at a time (the latency each trial
    /// measured after its first epoch).
    pub max_latency_ms: Option<f64>,
}

impl Caps {
    fn small_enough(&self, t: &TrialRecord) -> bool {
        self.max_params.is_none_or(|max| t.size().is_some_and(|(n, _)| n <= max))
    }

    fn fast_enough(&self, t: &TrialRecord) -> bool {
        self.max_latency_ms.is_none_or(|max| t.latency().is_some_and(|l| l.batch_1 <= max))
    }
}

/// The best trial to retrain: complete ones (and pruned ones when asked) by best val_acc,
/// within `caps`. Without one, says which cap nothing met (and the nearest miss), or which
/// states the study holds.
pub fn best_trial(
    trials: &BTreeMap<usize, TrialRecord>,
    include_pruned: bool,
    caps: Caps,
) -> std::result::Result<&TrialRecord, String> {
    best_trials(trials, include_pruned, caps, 1).map(|best| best[0])
}

/// The `k` best trials to retrain (fewer when fewer qualify, never none), best first, as
/// [`best_trial`] picks one.
pub fn best_trials(
    trials: &BTreeMap<usize, TrialRecord>,
    include_pruned: bool,
    caps: Caps,
    k: usize,
) -> std::result::Result<Vec<&TrialRecord>, String> {
    let qualifies =
        |t: &&TrialRecord| t.state == TrialState::Complete || (include_pruned && t.state == TrialState::Pruned);
    let ranked: Vec<&TrialRecord> =
        rank(trials).into_iter().filter(|r| r.rank.is_some()).map(|r| r.trial).filter(qualifies).collect();
    let within: Vec<&TrialRecord> =
        ranked.iter().copied().filter(|t| caps.small_enough(t) && caps.fast_enough(t)).take(k.max(1)).collect();
    if !within.is_empty() {
        return Ok(within);
    }
    let group = crate::model::shape::group;
    if let (Some(max), Some(smallest)) = (caps.max_params, ranked.iter().filter_map(|t| t.size()).map(|s| s.0).min())
        && !ranked.iter().any(|t| caps.small_enough(t))
    {
        return Err(format!(
            "no qualifying trial has at most {} parameters (the smallest has {}): raise --max-params, or resume the study with a space of smaller networks",
            group(max),
            group(smallest)
        ));
    }
    if let Some(max) = caps.max_latency_ms
        && !ranked.is_empty()
    {
        let fastest = ranked
            .iter()
            .filter(|t| caps.small_enough(t))
            .filter_map(|t| t.latency())
            .map(|l| l.batch_1)
            .min_by(f64::total_cmp);
        let nearest = match fastest {
            Some(ms) => format!("the fastest takes {ms:.3} ms"),
            None => "none has a measured latency: it is timed after each trial's first epoch, and this study's trials predate it".into(),
        };
        let both = if caps.max_params.is_some() { " within --max-params" } else { "" };
        return Err(format!(
            "no qualifying trial{both} infers one image in at most {max} ms ({nearest}): raise --max-latency-ms, or resume the study with a space of smaller networks"
        ));
    }
    let counts = crate::study::leaderboard::state_counts(trials);
    let found = if counts.is_empty() {
        "no trials".to_string()
    } else {
        counts.iter().map(|(s, n)| format!("{n} {}", s.name())).collect::<Vec<_>>().join(", ")
    };
    let hint = if !include_pruned && counts.contains_key(&TrialState::Pruned) {
        "; pass --include-pruned to consider pruned trials"
    } else {
        ""
    };
    Err(format!(
        "no complete trial to retrain (found {found}): resume the study until a trial completes, or pass --trial N{hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::Latency;

    /// A trial of one epoch at `val_acc`, keyed by its number.
    fn one_epoch(number: usize, params: crate::model::Params, state: TrialState, val_acc: f64) -> (usize, TrialRecord) {
        (number, TrialRecord::one_epoch(number, params, state, val_acc))
    }

    #[test]
    fn best_trial_is_complete_and_a_study_without_one_is_refused() {
        let t = |number, state, v: f64| one_epoch(number, Default::default(), state, v);
        let trials: BTreeMap<usize, TrialRecord> =
            [t(0, TrialState::Failed, 0.99), t(1, TrialState::Pruned, 0.9), t(2, TrialState::Complete, 0.8)].into();
        assert_eq!(best_trial(&trials, false, Caps::default()).unwrap().number, 2);
        assert_eq!(best_trial(&trials, true, Caps::default()).unwrap().number, 1);
        let unfinished: BTreeMap<usize, TrialRecord> =
            [t(0, TrialState::Failed, 0.99), t(1, TrialState::Running, 0.9), t(2, TrialState::Pruned, 0.5)].into();
        let err = best_trial(&unfinished, false, Caps::default()).unwrap_err();
        assert!(err.contains("1 running, 1 pruned, 1 failed") && err.contains("--include-pruned"), "{err}");
    }

    #[test]
    fn the_k_best_are_ranked_best_first_within_the_caps_and_as_many_as_qualify() {
        let t = |number: usize, channels: i64, state, val_acc: f64| {
            let params: crate::model::Params =
                [("conv0_channels".to_string(), crate::model::Value::Int(channels))].into();
            one_epoch(number, params, state, val_acc)
        };
        let trials: BTreeMap<usize, TrialRecord> = [
            t(0, 8, TrialState::Complete, 0.90),
            t(1, 64, TrialState::Complete, 0.95),
            t(2, 8, TrialState::Pruned, 0.97),
            t(3, 8, TrialState::Complete, 0.93),
        ]
        .into();
        let numbers = |v: Vec<&TrialRecord>| v.iter().map(|t| t.number).collect::<Vec<_>>();
        assert_eq!(numbers(best_trials(&trials, false, Caps::default(), 2).unwrap()), [1, 3]);
        assert_eq!(numbers(best_trials(&trials, true, Caps::default(), 2).unwrap()), [2, 1]);
        assert_eq!(numbers(best_trials(&trials, false, Caps::default(), 9).unwrap()), [1, 3, 0], "all that qualify");
        let small = params_cap(trials[&0].size().unwrap().0);
        assert_eq!(numbers(best_trials(&trials, false, small, 3).unwrap()), [3, 0], "the large one is over the cap");
    }

    #[test]
    fn a_size_budget_picks_the_best_network_under_it_and_names_the_smallest_otherwise() {
        let t = |number: usize, channels: i64, val_acc: f64| {
            let params: crate::model::Params =
                [("conv0_channels".to_string(), crate::model::Value::Int(channels))].into();
            one_epoch(number, params, TrialState::Complete, val_acc)
        };
        let trials: BTreeMap<usize, TrialRecord> = [t(0, 64, 0.93), t(1, 16, 0.91), t(2, 8, 0.90)].into();
        let size = |n: usize| trials[&n].size().unwrap().0;
        assert!(size(0) > size(1) && size(1) > size(2), "more channels, more parameters");
        assert_eq!(best_trial(&trials, false, Caps::default()).unwrap().number, 0);
        assert_eq!(
            best_trial(&trials, false, params_cap(size(1))).unwrap().number,
            1,
            "the best at or under the budget"
        );
        assert_eq!(best_trial(&trials, false, params_cap(size(1) - 1)).unwrap().number, 2);
        let err = best_trial(&trials, false, params_cap(size(2) - 1)).unwrap_err();
        assert!(err.contains("--max-params") && err.contains(&crate::model::shape::group(size(2))), "{err}");
    }

    fn params_cap(max: usize) -> Caps {
        Caps { max_params: Some(max), ..Caps::default() }
    }

    #[test]
    fn a_latency_cap_picks_the_best_network_fast_enough_and_names_the_fastest_otherwise() {
        let t = |number: usize, val_acc: f64, ms: Option<f64>| {
            let (n, mut record) = one_epoch(number, Default::default(), TrialState::Complete, val_acc);
            record.history[0].latency = ms.map(|batch_1| Latency { batch_1, batch_100: batch_1 / 4.0 });
            (n, record)
        };
        let trials: BTreeMap<usize, TrialRecord> =
            [t(0, 0.93, Some(2.0)), t(1, 0.92, None), t(2, 0.91, Some(0.5))].into();
        let cap = |ms: f64| Caps { max_latency_ms: Some(ms), ..Caps::default() };
        assert_eq!(best_trial(&trials, false, cap(2.0)).unwrap().number, 0, "at the cap qualifies");
        assert_eq!(best_trial(&trials, false, cap(1.0)).unwrap().number, 2, "unmeasured trials never qualify");
        let err = best_trial(&trials, false, cap(0.25)).unwrap_err();
        assert!(err.contains("--max-latency-ms") && err.contains("the fastest takes 0.500 ms"), "{err}");
        let old: BTreeMap<usize, TrialRecord> = [t(0, 0.9, None)].into();
        let err = best_trial(&old, false, cap(1.0)).unwrap_err();
        assert!(err.contains("none has a measured latency"), "{err}");
    }
}

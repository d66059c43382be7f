//! The study's events: what a worker records (a trial created, an epoch, a pause, a resume,
//! an end), stamped with when and by whom, and how the trial records follow from them
//! ([`apply`]). Every backend stores these; the journal file ([`super::journal`]) is one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stamp::Stamp;
use super::trial::{Fork, Times, TrialRecord, TrialState};
use crate::model::Params;
use crate::training::EpochMetrics;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A trial was sampled (and launched unless `infeasible` is set).
    /// `retry_of`: the configuration of a trial whose worker was lost, run again under a new
    /// number (it takes no place in the trial budget).
    Created {
        number: usize,
        params: Params,
        seed: u64,
        infeasible: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_of: Option<usize>,
        /// PBT: forked from another trial's checkpoint (takes no place in the budget either).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fork: Option<Fork>,
    },
    Epoch {
        number: usize,
        metrics: EpochMetrics,
    },
    Finished {
        number: usize,
        state: TrialState,
        reason: Option<String>,
        secs: f64,
    },
    /// A promoting scheduler stopped the trial at a rung; its checkpoint is kept.
    Paused {
        number: usize,
        reason: String,
        secs: f64,
    },
    /// A paused trial was promoted: it runs again from its checkpoint.
    Resumed {
        number: usize,
    },
}

impl Event {
    /// The trial it is about.
    pub fn number(&self) -> usize {
        match self {
            Event::Created { number, .. }
            | Event::Epoch { number, .. }
            | Event::Finished { number, .. }
            | Event::Paused { number, .. }
            | Event::Resumed { number } => *number,
        }
    }
}

/// An event as recorded: the event's fields and its stamp in one JSON object (a journal line,
/// a database row's body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    #[serde(flatten)]
    pub event: Event,
    #[serde(flatten)]
    pub stamp: Stamp,
}

impl Stamped {
    /// `event`, recorded by this process now.
    pub fn now(event: Event) -> Stamped {
        Stamped { event, stamp: Stamp::now() }
    }
}

/// The JSON of `event` as this process records it now, stamped; `Err` names a field that is
/// not a finite number (such an event is never recorded).
pub fn record_json(event: &Event) -> std::result::Result<String, String> {
    check_finite(event)?;
    #[derive(Serialize)]
    struct Record<'a> {
        #[serde(flatten)]
        event: &'a Event,
        #[serde(flatten)]
        stamp: Stamp,
    }
    Ok(serde_json::to_string(&Record { event, stamp: Stamp::now() }).expect("serialisable"))
}

impl Event {
    /// The first field that is NaN or infinite, named.
    fn non_finite(&self) -> Option<String> {
        match self {
            Event::Created { number, params, .. } => params
                .iter()
                .find(|(_, v)| v.as_f64().is_some_and(|x| !x.is_finite()))
                .map(|(k, _)| format!("trial {number}'s `{k}`")),
            Event::Epoch { number, metrics } => metrics
                .first_non_finite()
                .map(|(what, _)| format!("trial {number}'s {what} at epoch {}", metrics.epoch)),
            Event::Finished { number, secs, .. } | Event::Paused { number, secs, .. } => {
                (!secs.is_finite()).then(|| format!("trial {number}'s seconds"))
            }
            Event::Resumed { .. } => None,
        }
    }
}

/// `Ok` when every number in the event is finite, else the first one that is not, named.
pub(crate) fn check_finite(event: &Event) -> std::result::Result<(), String> {
    event.non_finite().map_or(Ok(()), Err)
}

/// Applies one event to the trial records. Idempotent, so a reader may see an event twice
/// (a write retried after a dropped connection): a number is created once, an epoch is
/// appended only as the next one, and the first finish of a trial is the one that counts
/// (a worker declared lost cannot overwrite that verdict later). A trial pauses only while it
/// runs, resumes only while paused, and a paused trial may be closed (finished) as it is.
pub(crate) fn apply(trials: &mut BTreeMap<usize, TrialRecord>, record: Stamped) {
    let Stamped { event, stamp } = record;
    match event {
        Event::Created { number, params, seed, infeasible, retry_of, fork } => {
            let state = if infeasible.is_some() { TrialState::Infeasible } else { TrialState::Running };
            trials.entry(number).or_insert(TrialRecord {
                number,
                params,
                seed,
                state,
                reason: infeasible,
                history: Vec::new(),
                secs: 0.0,
                retry_of,
                fork,
                times: Times { created: stamp, ..Times::default() },
                size_cache: Default::default(),
            });
        }
        Event::Epoch { number, metrics } => {
            if let Some(t) = trials.get_mut(&number)
                && metrics.epoch == t.history.len() + 1
            {
                t.history.push(metrics);
                t.times.epochs.push(stamp);
            }
        }
        Event::Finished { number, state, reason, secs } => {
            if let Some(t) = trials.get_mut(&number)
                && !t.state.is_finished()
            {
                t.state = state;
                t.reason = reason;
                t.secs += secs;
                t.times.finished = stamp;
            }
        }
        Event::Paused { number, reason, secs } => {
            if let Some(t) = trials.get_mut(&number)
                && t.state == TrialState::Running
            {
                t.state = TrialState::Paused;
                t.reason = Some(reason);
                t.secs += secs;
            }
        }
        Event::Resumed { number } => {
            if let Some(t) = trials.get_mut(&number)
                && t.state == TrialState::Paused
            {
                t.state = TrialState::Running;
                t.reason = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::stamp::worker;

    #[test]
    fn pauses_resumes_and_closes_follow_the_trial_state() {
        let mut trials = BTreeMap::new();
        let created = |number| Event::Created {
            number,
            params: Params::new(),
            seed: 1,
            infeasible: None,
            retry_of: None,
            fork: None,
        };
        let paused = |number| Event::Paused { number, reason: "rung 0".into(), secs: 2.0 };
        // (event, state of trial 0 after it, why)
        let rows: Vec<(Event, TrialState, &str)> = vec![
            (created(0), TrialState::Running, "created"),
            (Event::Resumed { number: 0 }, TrialState::Running, "a running trial is not resumed"),
            (paused(0), TrialState::Paused, "paused at a rung"),
            (paused(0), TrialState::Paused, "a second pause changes nothing"),
            (Event::Resumed { number: 0 }, TrialState::Running, "promoted"),
            (paused(0), TrialState::Paused, "paused again"),
            (
                Event::Finished { number: 0, state: TrialState::Pruned, reason: Some("closed".into()), secs: 0.0 },
                TrialState::Pruned,
                "closed when the budget was spent",
            ),
            (Event::Resumed { number: 0 }, TrialState::Pruned, "a finished trial is never resumed"),
        ];
        for (event, state, why) in rows {
            apply(&mut trials, Stamped::now(event));
            assert_eq!(trials[&0].state, state, "{why}");
        }
        assert_eq!(trials[&0].secs, 4.0, "each pause adds its process's seconds once per pause");
        let line = serde_json::to_string(&Event::Resumed { number: 3 }).unwrap();
        assert_eq!(line, r#"{"event":"resumed","number":3}"#);
    }

    /// Every record carries its UTC time and worker; records from before stamps still read;
    /// a trial's times come from its records.
    #[test]
    fn records_are_stamped_and_unstamped_ones_still_read() {
        let created = Event::Created {
            number: 0,
            params: Params::new(),
            seed: u64::MAX,
            infeasible: None,
            retry_of: None,
            fork: None,
        };
        let line = record_json(&created).unwrap();
        let back: Stamped = serde_json::from_str(&line).unwrap();
        assert_eq!(back.event, created, "the event reads back whole (a u64 seed too): {line}");
        let at = back.stamp.at.as_deref().expect("a time");
        assert!(at.len() == 24 && at.ends_with('Z') && humantime::parse_rfc3339(at).is_ok(), "{at}");
        assert_eq!(back.stamp.worker.as_deref(), Some(worker()));
        assert!(worker().ends_with(&format!(":{}", std::process::id())));
        let old: Stamped = serde_json::from_str(r#"{"event":"resumed","number":3}"#).unwrap();
        assert_eq!((old.event, old.stamp), (Event::Resumed { number: 3 }, Stamp::default()));
        assert!(
            record_json(&Event::Finished { number: 0, state: TrialState::Complete, reason: None, secs: f64::NAN })
                .is_err()
        );

        let stamp = |secs: u64| Stamp {
            at: Some(
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                    .to_string(),
            ),
            worker: Some(format!("w{secs}")),
        };
        let mut trials = BTreeMap::new();
        apply(&mut trials, Stamped { event: created, stamp: stamp(100) });
        apply(
            &mut trials,
            Stamped { event: Event::Epoch { number: 0, metrics: EpochMetrics::at(1, 0.5) }, stamp: stamp(130) },
        );
        assert_eq!(trials[&0].times.duration_secs(), Some(30.0), "running: up to its last epoch");
        let done = Event::Finished { number: 0, state: TrialState::Complete, reason: None, secs: 45.0 };
        apply(&mut trials, Stamped { event: done, stamp: stamp(145) });
        let t = &trials[&0].times;
        assert_eq!((t.duration_secs(), t.worker()), (Some(45.0), Some("w130")), "{t:?}");
    }
}

//! Where a study's records live. The study loop, `tune report` and `tune retrain` reach them
//! only through [`StudyStorage`], so a backend shared by many workers (a database) can stand
//! where the embedded journal stands today. One test suite ([`tests::conformance`]) runs
//! against every backend.

mod journal;

use std::collections::BTreeMap;

pub use journal::JournalStorage;

use super::journal::{Event, apply};
use super::start::Resolved;
use super::trial::TrialRecord;
use crate::error::Result;

/// A position in a study's record of events; `Cursor::START` reads everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub u64);

impl Cursor {
    pub const START: Cursor = Cursor(0);
}

/// The records of one study.
pub trait StudyStorage: Send {
    /// Creates the study with these settings and the space file's text, or opens it when it
    /// exists with the same ones; a different space under the same name is refused. From
    /// here on this process may record events.
    fn create_or_open(&mut self, resolved: &Resolved, space_text: &str) -> Result<()>;

    /// The frozen settings, if the study exists.
    fn settings(&self) -> Result<Option<Resolved>>;

    /// The number the next created trial takes; recording its `Created` event claims it.
    fn next_number(&mut self) -> Result<usize>;

    /// Records one event durably (only finite numbers are accepted).
    fn record(&mut self, event: &Event) -> Result<()>;

    /// The events recorded after `cursor`, in order, and the cursor after them: a reader
    /// that keeps its cursor reads each event once, however long the study grows.
    fn read_since(&mut self, cursor: Cursor) -> Result<(Vec<Event>, Cursor)>;

    /// Every trial, rebuilt from all events.
    fn trials(&mut self) -> Result<BTreeMap<usize, TrialRecord>> {
        Ok(rebuild(self.read_since(Cursor::START)?.0))
    }
}

/// Trial records from events in recorded order.
pub fn rebuild(events: Vec<Event>) -> BTreeMap<usize, TrialRecord> {
    let mut trials = BTreeMap::new();
    for e in events {
        apply(&mut trials, e);
    }
    trials
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Params;
    use crate::study::TrialState;
    use crate::training::EpochMetrics;

    fn resolved(seed: u64) -> Resolved {
        let space = crate::study::SearchSpace::parse(&format!("[study]\nname = \"c\"\nseed = {seed}\n[params]\nconv0_channels = 8\n"), std::path::Path::new("c.toml")).unwrap();
        Resolved { space, concurrency: 1, threads_per_trial: 1, split_seed: 27, data_dir: None }
    }

    fn epoch(epoch: usize, val_acc: f64) -> Event {
        Event::Epoch { number: 0, metrics: EpochMetrics { epoch, train_loss: 1.0, train_acc: 0.5, val_loss: 1.0, val_acc, lr: 1e-3, secs: 1.0 } }
    }

    /// What every backend must do. `make` opens the same study afresh each call.
    pub(crate) fn conformance(make: &dyn Fn() -> Box<dyn StudyStorage>) {
        let mut s = make();
        assert!(s.settings().unwrap().is_none(), "a new study has no settings");
        s.create_or_open(&resolved(1), "space text").unwrap();
        assert_eq!(s.settings().unwrap().unwrap().space.study.seed, 1);
        assert_eq!(s.next_number().unwrap(), 0);
        s.record(&Event::Created { number: 0, params: Params::new(), seed: 5, infeasible: None }).unwrap();
        assert_eq!(s.next_number().unwrap(), 1, "recording Created claims the number");
        s.record(&epoch(1, 0.5)).unwrap();
        let (first, cursor) = s.read_since(Cursor::START).unwrap();
        assert_eq!(first.len(), 2);
        s.record(&epoch(2, 0.7)).unwrap();
        s.record(&Event::Finished { number: 0, state: TrialState::Complete, reason: None, secs: 2.0 }).unwrap();
        let (new, cursor2) = s.read_since(cursor).unwrap();
        assert_eq!(new.len(), 2, "only what is new since the cursor: {new:?}");
        assert!(s.read_since(cursor2).unwrap().0.is_empty());
        assert!(s.record(&epoch(3, f64::NAN)).is_err(), "non-finite numbers are refused");
        drop(s);

        // Reopened: the same records, and a different space is refused.
        let mut again = make();
        assert!(again.create_or_open(&resolved(2), "other").is_err(), "a different space under the same name");
        again.create_or_open(&resolved(1), "space text").unwrap();
        let trials = again.trials().unwrap();
        assert_eq!(trials[&0].state, TrialState::Complete);
        assert_eq!(trials[&0].best(), Some((0.7, 2)));
        assert_eq!(again.next_number().unwrap(), 1, "numbers continue after a reopen");
    }
}

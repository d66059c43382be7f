//! Where a study's records live. The study loop, `tune report`, `tune retrain` and `tune
//! eval` reach them only through [`StudyStorage`], so the embedded journal (one machine, zero
//! set-up) and PostgreSQL (any number of workers on any number of machines) are
//! interchangeable. One test suite ([`conformance`]) runs against every backend.

pub mod bench;
mod catalog;
mod embedded;
mod postgres;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::study::settings::Liveness;
pub use catalog::{Catalog, StudyEntry, open_study};
pub use embedded::{JournalStorage, replay};
pub use postgres::{PgStorage, StudyListing, use_password_file};

use super::events::{Event, Stamped, apply};
use super::resolved::Resolved;
use super::trial::TrialRecord;
use crate::error::{Result, TuneError};

/// A position in a study's record of events; `Cursor::START` reads everything. What the two
/// numbers mean is the backend's (a byte offset; a transaction and an event id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub u64, pub u64);

impl Cursor {
    pub const START: Cursor = Cursor(0, 0);
}

/// A trial number this process holds before its configuration is sampled. `draw` counts
/// the sampled configurations before it (numbers minus re-runs of lost trials), so a lost
/// worker shifts no enqueued network, grid point or random draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub number: usize,
    pub draw: usize,
}

/// A trial no process runs, taken by this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Its configuration is recorded: run (or resume) it.
    Run(usize),
    /// Its worker was lost before sampling it: sample it here.
    Sample(Reservation),
}

/// A trial found without a live worker, and the number its configuration runs again under.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaped {
    pub lost: usize,
    pub retry: Option<usize>,
    pub reason: String,
}

/// The records of one study.
pub trait StudyStorage: Send {
    /// Where the records are, for messages (`runs/s/journal.jsonl`, `postgresql://host/db`).
    fn location(&self) -> String;

    /// Creates the study with these settings and the space file's text, or opens it when it
    /// exists with the same ones; a different space under the same name is refused. From
    /// here on this process may record events.
    fn create_or_open(&mut self, resolved: &Resolved, space_text: &str) -> Result<()>;

    /// The frozen settings, if the study exists.
    fn settings(&mut self) -> Result<Option<Resolved>>;

    /// Claims the next trial number for this process while the trial budget (trained
    /// configurations, re-runs excepted) has room; `None` once every place is taken. Numbers
    /// have no holes or duplicates across workers, and the budget is reached exactly.
    fn reserve(&mut self, budget: usize) -> Result<Option<Reservation>>;

    /// Records the `Created` event of a number this process reserved (an infeasible draw
    /// gives its place in the budget back); `false` when the reservation was lost meanwhile.
    fn create(&mut self, created: &Event) -> Result<bool>;

    /// Gives back a reservation that will not be sampled (the grid is exhausted).
    fn cancel(&mut self, reservation: Reservation) -> Result<()>;

    /// Records one epoch, finish or pause durably (only finite numbers are accepted); `false`
    /// when it was not recorded because the trial no longer runs (declared lost meanwhile).
    /// A paused trial runs nowhere: no worker heartbeats it and none reaps it.
    fn record(&mut self, event: &Event) -> Result<bool>;

    /// PBT's exploit step as one write: the paused trial that `closed` (a `Finished` event)
    /// ends is closed, and a trial outside the budget is created under a new number from
    /// `make(number)` (its `Created` event, whose fork names the replaced trial), which this
    /// process then runs. `None` when that trial is not paused any more (another worker decided
    /// first). Both happen or neither, and a retry after a lost connection finds the fork it
    /// made instead of making a second.
    fn replace_paused(&mut self, closed: &Event, make: &dyn Fn(usize) -> Event) -> Result<Option<usize>>;

    /// Claims paused trial `number` for this process and records its `Resumed` event;
    /// `false` when it is not paused any more (another worker resumed or closed it first).
    fn resume(&mut self, number: usize) -> Result<bool>;

    /// Records the `Finished` event of a paused trial that will never be promoted; `false`
    /// when it is not paused any more.
    fn close_paused(&mut self, finished: &Event) -> Result<bool>;

    /// The events recorded after `cursor`, in order, and the cursor after them: a reader
    /// that keeps its cursor reads each event once, however long the study grows. An event
    /// may show up a moment after its write returned (a shared store shows a transaction's
    /// events once every older one has ended), never out of order or not at all.
    fn read_since(&mut self, cursor: Cursor) -> Result<(Vec<Stamped>, Cursor)>;

    /// Every trial, rebuilt from all events.
    fn trials(&mut self) -> Result<BTreeMap<usize, TrialRecord>> {
        Ok(rebuild(self.read_since(Cursor::START)?.0))
    }

    /// Claims a trial that no process runs: left running by an earlier run of this study,
    /// released by a stopped worker, a re-run of a lost one, or a number whose worker was lost
    /// before sampling it.
    fn take_queued(&mut self) -> Result<Option<Queued>>;

    /// Hands trials this process stops running (Ctrl-C, the time budget) back to the queue,
    /// so any worker resumes them at once instead of waiting for the grace period.
    fn release(&mut self, numbers: &[usize]) -> Result<()>;

    /// Tells other workers that this process still runs these trials.
    fn heartbeat(&mut self, numbers: &[usize]) -> Result<()>;

    /// Marks running trials whose worker stopped sending heartbeats as failed ("worker
    /// lost") and re-queues each configuration as a new trial while retries remain. Exactly
    /// one worker acts on each lost trial.
    fn reap(&mut self, liveness: &Liveness) -> Result<Vec<Reaped>>;
}

/// How long a worker waits for a shared store that went away, unless `study.store_wait` says.
pub fn postgres_patience() -> Duration {
    crate::study::settings::DEFAULT_STORE_WAIT
}

/// Applies what [`StudyStorage::read_since`] returned to `trials`, in recorded order, and moves
/// `cursor` past it: the one loop by which every reader (a worker, the journal's own view, the
/// dashboard) follows a study. Returns each event's trial number, in order.
pub fn absorb(
    trials: &mut BTreeMap<usize, TrialRecord>,
    cursor: &mut Cursor,
    (events, next): (Vec<Stamped>, Cursor),
) -> Vec<usize> {
    *cursor = next;
    events
        .into_iter()
        .map(|e| {
            let number = e.event.number();
            apply(trials, e);
            number
        })
        .collect()
}

/// Trial records from events in recorded order.
pub fn rebuild(events: Vec<Stamped>) -> BTreeMap<usize, TrialRecord> {
    let (mut trials, mut end) = (BTreeMap::new(), Cursor::START);
    absorb(&mut trials, &mut end, (events, Cursor::START));
    trials
}

/// Where studies are kept: a runs directory of journals, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageSpec {
    Journal(PathBuf),
    Postgres(String),
}

impl StorageSpec {
    /// `--storage` (or `TUNE_STORAGE`, or `study.storage`): a `postgresql://` URL; `None`
    /// keeps the journal under `runs_dir`. `origin` names where the text came from.
    pub fn parse(text: Option<&str>, origin: &str, runs_dir: &Path) -> Result<StorageSpec> {
        const FIX: &str = "give postgresql://user@host:port/database, or leave it out to keep the study's journal under the runs directory";
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(StorageSpec::Journal(runs_dir.to_path_buf())),
            Some(url) => url_of(url, origin, FIX).map(StorageSpec::Postgres),
        }
    }

    /// A shared store's URL, where only a shared store will do; `Err` naming `origin` when
    /// `text` is not one.
    pub fn parse_url(text: &str, origin: &str) -> Result<String> {
        url_of(text.trim(), origin, "give postgresql://user@host:port/database")
    }

    /// The storage of study `name`; `patience`: how long to wait for a shared store that
    /// goes away mid-study.
    pub fn open(&self, name: &str, patience: Duration) -> Result<Box<dyn StudyStorage>> {
        Ok(match self {
            StorageSpec::Journal(runs) => Box::new(JournalStorage::new(&runs.join(name))),
            StorageSpec::Postgres(url) => {
                let mut pg = PgStorage::connect(url, name)?;
                pg.set_patience(patience);
                Box::new(pg)
            }
        })
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, StorageSpec::Postgres(_))
    }
}

fn url_of(text: &str, origin: &str, fix: &str) -> Result<String> {
    if text.starts_with("postgresql://") || text.starts_with("postgres://") {
        return Ok(text.to_string());
    }
    Err(TuneError::Config {
        file: origin.into(),
        key: "storage".into(),
        problem: format!("`{}` is not a storage URL", redact(text)),
        fix: fix.into(),
    })
}

/// A URL with its password hidden, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The checks every backend runs, exported (with the `testing` feature) so the PostgreSQL
/// suite (`tests/postgres/`) runs the same ones as the journal's unit tests. `make` opens
/// the same (new) study afresh on each call.
#[cfg(any(test, feature = "testing"))]
pub mod conformance {
    use super::*;
    use crate::model::Params;
    use crate::study::trial::TrialState;
    use crate::training::EpochMetrics;

    fn resolved(seed: u64) -> Resolved {
        let space = crate::study::space::SearchSpace::parse(
            &format!("[study]\nname = \"c\"\nseed = {seed}\n[params]\nconv0_channels = 8\n"),
            Path::new("c.toml"),
        )
        .unwrap();
        Resolved { space, concurrency: 1, threads_per_trial: 1, split_seed: 27, data_dir: None }
    }

    fn epoch(number: usize, epoch: usize, val_acc: f64) -> Event {
        Event::Epoch { number, metrics: EpochMetrics::at(epoch, val_acc) }
    }

    fn created(number: usize) -> Event {
        Event::Created {
            number,
            params: Params::new(),
            seed: 5 + number as u64,
            infeasible: None,
            retry_of: None,
            fork: None,
        }
    }

    fn create(s: &mut dyn StudyStorage, budget: usize) -> Option<usize> {
        let r = s.reserve(budget).unwrap()?;
        assert!(s.create(&created(r.number)).unwrap(), "a reservation is created by its holder");
        Some(r.number)
    }

    /// Pausing, resuming (once), closing a paused trial; a paused trial runs nowhere, so it is
    /// neither queued nor reaped.
    /// `reaps`: the backend reaps lost trials (a shared store); a journal has one writer.
    pub fn pauses(make: &dyn Fn() -> Box<dyn StudyStorage>, reaps: bool) {
        let mut s = make();
        s.create_or_open(&resolved(1), "space text").unwrap();
        let n = create(&mut *s, 10).unwrap();
        s.record(&epoch(n, 1, 0.5)).unwrap();
        let paused = Event::Paused { number: n, reason: "rung 0".into(), secs: 1.0 };
        assert!(s.record(&paused).unwrap(), "a running trial pauses");
        assert_eq!(s.trials().unwrap()[&n].state, TrialState::Paused);
        assert!(!s.record(&paused).unwrap(), "a paused trial does not pause again");
        let fast = Liveness { heartbeat: Duration::from_millis(1), grace: Duration::from_millis(1), max_retries: 1 };
        std::thread::sleep(Duration::from_millis(20));
        assert!(s.reap(&fast).unwrap().is_empty(), "a paused trial has no worker to lose");
        assert!(s.take_queued().unwrap().is_none(), "nor is it queued");
        assert!(s.resume(n).unwrap(), "a paused trial is resumed");
        assert!(!s.resume(n).unwrap(), "once");
        assert_eq!(s.trials().unwrap()[&n].state, TrialState::Running);
        s.record(&epoch(n, 2, 0.6)).unwrap();
        assert!(s.record(&Event::Paused { number: n, reason: "rung 1".into(), secs: 1.0 }).unwrap());
        let closed = Event::Finished { number: n, state: TrialState::Pruned, reason: Some("closed".into()), secs: 0.0 };
        assert!(s.close_paused(&closed).unwrap(), "a paused trial is closed");
        assert!(!s.close_paused(&closed).unwrap() && !s.resume(n).unwrap(), "a closed trial stays closed");
        let t = &s.trials().unwrap()[&n];
        assert_eq!((t.state, t.history.len(), t.secs), (TrialState::Pruned, 2, 2.0), "{t:?}");

        // PBT's replacement: the paused trial closes and the fork appears, outside the budget,
        // running here; a trial not paused is not replaced, and nothing is recorded then.
        let m = create(&mut *s, 10).unwrap();
        s.record(&epoch(m, 1, 0.4)).unwrap();
        let fork = |number| match created(number) {
            Event::Created { number, params, seed, infeasible, retry_of, .. } => Event::Created {
                number,
                params,
                seed,
                infeasible,
                retry_of,
                fork: Some(crate::study::trial::Fork { parent: n, epoch: 1, changes: vec![], replaces: Some(m) }),
            },
            _ => unreachable!(),
        };
        let replaced =
            Event::Finished { number: m, state: TrialState::Pruned, reason: Some("replaced".into()), secs: 0.0 };
        let before = s.read_since(Cursor::START).unwrap().0.len();
        assert_eq!(s.replace_paused(&replaced, &fork).unwrap(), None, "a running trial is not replaced");
        assert_eq!(s.read_since(Cursor::START).unwrap().0.len(), before, "and nothing is recorded");
        assert!(s.record(&Event::Paused { number: m, reason: "step".into(), secs: 1.0 }).unwrap());
        let f = s.replace_paused(&replaced, &fork).unwrap().expect("a paused trial is replaced");
        assert!(f > m, "the fork takes a new number");
        assert_eq!(s.replace_paused(&replaced, &fork).unwrap(), None, "once");
        let trials = s.trials().unwrap();
        assert_eq!(trials[&m].state, TrialState::Pruned);
        assert_eq!(trials[&f].state, TrialState::Running);
        assert_eq!(trials[&f].fork.as_ref().and_then(|k| k.replaces), Some(m), "the fork names what it replaced");
        // Its worker lost, the fork is re-run as the same fork (parent, epoch, changes).
        std::thread::sleep(Duration::from_millis(20));
        let reaped = s.reap(&fast).unwrap();
        if reaps {
            let rerun = reaped.iter().find(|r| r.lost == f).and_then(|r| r.retry).expect("the lost fork is re-run");
            let again = &s.trials().unwrap()[&rerun];
            let original = trials[&f].fork.clone().unwrap();
            assert_eq!(again.fork, Some(crate::study::trial::Fork { replaces: None, ..original }));
            assert_eq!(again.retry_of, Some(f));
        } else {
            assert!(reaped.is_empty(), "one writer loses no worker");
        }
        assert!(create(&mut *s, 3).is_some(), "a fork does not count against the budget of 3");
        assert_eq!(create(&mut *s, 3), None, "the budget's trials do");
    }

    /// Recording, reading since a cursor, claiming numbers, the budget, reopening.
    pub fn records(make: &dyn Fn() -> Box<dyn StudyStorage>) {
        let mut s = make();
        assert!(s.settings().unwrap().is_none(), "a new study has no settings");
        s.create_or_open(&resolved(1), "space text").unwrap();
        assert_eq!(s.settings().unwrap().unwrap().space.study.seed, 1);
        assert_eq!(create(&mut *s, 10), Some(0), "number 0 first");
        s.record(&epoch(0, 1, 0.5)).unwrap();
        let (first, cursor) = s.read_since(Cursor::START).unwrap();
        assert_eq!(first.len(), 2);
        assert!(
            first
                .iter()
                .all(|r| r.stamp.at.is_some() && r.stamp.worker.as_deref() == Some(crate::study::stamp::worker())),
            "every record is stamped with its time and this worker: {first:?}"
        );
        s.record(&epoch(0, 2, 0.7)).unwrap();
        assert!(
            s.record(&Event::Finished { number: 0, state: TrialState::Complete, reason: None, secs: 2.0 }).unwrap()
        );
        let (new, cursor2) = s.read_since(cursor).unwrap();
        assert_eq!(new.len(), 2, "only what is new since the cursor: {new:?}");
        assert!(s.read_since(cursor2).unwrap().0.is_empty());
        assert!(s.record(&epoch(0, 3, f64::NAN)).is_err(), "non-finite numbers are refused");
        // An infeasible draw gives its place in the budget back; a cancelled one too.
        let r = s.reserve(2).unwrap().unwrap();
        assert_eq!(r, Reservation { number: 1, draw: 1 });
        let infeasible = Event::Created {
            number: 1,
            params: Params::new(),
            seed: 6,
            infeasible: Some("conv0_pool: collapses".into()),
            retry_of: None,
            fork: None,
        };
        assert!(s.create(&infeasible).unwrap());
        let r = s.reserve(2).unwrap().expect("one place left");
        s.cancel(r).unwrap();
        let left = create(&mut *s, 2).expect("the cancelled place is free again");
        assert!(left >= r.number);
        assert_eq!(s.reserve(2).unwrap(), None, "the budget of 2 is reached exactly");
        s.release(&[left]).unwrap(); // stopped by Ctrl-C: handed back
        drop(s);

        // Reopened: the same records, and a different space is refused.
        let mut again = make();
        assert!(again.create_or_open(&resolved(2), "other").is_err(), "a different space under the same name");
        again.create_or_open(&resolved(1), "space text").unwrap();
        let trials = again.trials().unwrap();
        assert_eq!(trials[&0].state, TrialState::Complete);
        assert_eq!(trials[&0].best(), Some((0.7, 2)));
        assert_eq!(trials[&1].state, TrialState::Infeasible);
        assert_eq!(trials[&left].state, TrialState::Running);
        // The trial left running by the earlier process is queued for this one, once.
        assert_eq!(again.take_queued().unwrap(), Some(Queued::Run(left)));
        assert_eq!(again.take_queued().unwrap(), None, "each queued trial is taken once");
        let next = create(&mut *again, 10).unwrap();
        assert!(next > left, "numbers continue after a reopen");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_is_a_runs_directory_or_a_postgres_url_and_nothing_else() {
        let runs = Path::new("elsewhere");
        assert_eq!(StorageSpec::parse(None, "--storage", runs).unwrap(), StorageSpec::Journal(runs.into()));
        assert_eq!(StorageSpec::parse(Some("  "), "--storage", runs).unwrap(), StorageSpec::Journal(runs.into()));
        let url = "postgresql://u@localhost:5432/tune";
        assert_eq!(StorageSpec::parse(Some(url), "--storage", runs).unwrap(), StorageSpec::Postgres(url.into()));
        for bad in ["", "mysql://u:secret@h/db"] {
            let err = StorageSpec::parse_url(bad, "--storage").unwrap_err().to_string();
            assert!(err.contains("--storage") && err.contains("postgresql://"), "{err}");
            assert!(!err.contains("secret"), "the password stays hidden: {err}");
        }
    }
}

//! The embedded backend: a study directory with `journal.jsonl` (append-only, fsync'd),
//! `settings.json`, `space.toml` and an OS lock (`.lock`) that makes this process its only
//! writer. Zero set-up for one machine.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Cursor, Liveness, Queued, Reaped, Reservation, StudyStorage};
use crate::error::{Result, TuneError};
use crate::study::resolved::Resolved;
use crate::study::trial::{TrialRecord, TrialState};
use crate::study::{
    events::{Event, Stamped},
    journal::{Journal, parse_line},
};

/// Replays a study directory's journal into trial records, in trial-number order (read
/// only: no lock is taken, so `tune report` may read a running study).
pub fn replay(study_dir: &Path) -> Result<BTreeMap<usize, TrialRecord>> {
    JournalStorage::new(study_dir).trials()
}

pub struct JournalStorage {
    dir: PathBuf,
    journal: Journal,
    /// Held from `create_or_open` on: the study's OS lock.
    lock: Option<File>,
    /// The number this process reserved and has not created yet.
    reserved: Option<usize>,
    /// The trials as of `seen`, for reservations.
    known: BTreeMap<usize, TrialRecord>,
    seen: Cursor,
    /// Trials an earlier run left running, to resume (taken from the end).
    queued: Vec<usize>,
}

impl JournalStorage {
    /// The study in `dir` (which need not exist yet: `create_or_open` creates it).
    pub fn new(dir: &Path) -> JournalStorage {
        JournalStorage {
            dir: dir.to_path_buf(),
            journal: Journal::open(dir),
            lock: None,
            reserved: None,
            known: BTreeMap::new(),
            seen: Cursor::START,
            queued: Vec::new(),
        }
    }

    /// A torn last line is an event a crash interrupted: it never happened. Cut it off before
    /// appending, or the next event would be glued to it and the journal would no longer read.
    fn cut_torn_tail(&self) -> Result<()> {
        let path = self.journal.path();
        let Ok(bytes) = std::fs::read(path) else { return Ok(()) };
        if bytes.is_empty() || bytes.ends_with(b"\n") {
            return Ok(());
        }
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        tracing::warn!("{}: dropping a torn last line left by a crash ({} bytes)", path.display(), bytes.len() - keep);
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| TuneError::io(path, e))?;
        f.set_len(keep as u64).and_then(|_| f.sync_all()).map_err(|e| TuneError::io(path, e))
    }
}

impl JournalStorage {
    /// The trials as of now; only what is new since the last call is read.
    fn catch_up(&mut self) -> Result<&BTreeMap<usize, TrialRecord>> {
        let read = self.read_since(self.seen)?;
        super::absorb(&mut self.known, &mut self.seen, read);
        Ok(&self.known)
    }

    fn is_paused(&mut self, number: usize) -> Result<bool> {
        Ok(self.catch_up()?.get(&number).is_some_and(|t| t.state == TrialState::Paused))
    }
}

impl StudyStorage for JournalStorage {
    fn create_or_open(&mut self, resolved: &Resolved, space_text: &str) -> Result<()> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir.join("trials")).map_err(|e| TuneError::io(dir, e))?;
        let held = match self.lock.take() {
            Some(file) => file,
            None => lock(dir)?,
        };
        check_frozen(dir, resolved)?; // refused: the lock is released with `held`
        self.lock = Some(held);
        // Frozen copies: the space as written, and every resolved setting.
        if !dir.join("space.toml").exists() {
            crate::files::write_atomic(&dir.join("space.toml"), space_text.as_bytes())?;
        }
        crate::files::write_atomic(
            &dir.join("settings.json"),
            serde_json::to_string_pretty(resolved).expect("serialisable").as_bytes(),
        )?;
        self.cut_torn_tail()?;
        // This process holds the lock, so whatever is recorded running was left by an earlier run.
        let trials = self.trials()?;
        self.queued = trials.values().rev().filter(|t| t.state == TrialState::Running).map(|t| t.number).collect();
        Ok(())
    }

    fn location(&self) -> String {
        self.journal.path().display().to_string()
    }

    fn settings(&mut self) -> Result<Option<Resolved>> {
        Resolved::load(&self.dir)
    }

    fn reserve(&mut self, budget: usize) -> Result<Option<Reservation>> {
        let trials = self.catch_up()?;
        let used = trials.values().filter(|t| t.counts_toward_budget()).count();
        if used >= budget {
            return Ok(None);
        }
        let number = trials.keys().max().map_or(0, |m| m + 1);
        let retries = trials.values().filter(|t| t.is_extra()).count();
        self.reserved = Some(number);
        Ok(Some(Reservation { number, draw: number - retries }))
    }

    fn create(&mut self, created: &Event) -> Result<bool> {
        let Event::Created { number, .. } = created else { panic!("create takes a Created event") };
        if self.reserved != Some(*number) {
            return Ok(false);
        }
        self.reserved = None;
        self.record(created)?;
        Ok(true)
    }

    fn cancel(&mut self, reservation: Reservation) -> Result<()> {
        if self.reserved == Some(reservation.number) {
            self.reserved = None;
        }
        Ok(())
    }

    fn take_queued(&mut self) -> Result<Option<Queued>> {
        Ok(self.queued.pop().map(Queued::Run))
    }

    /// One process runs a journal's study: what it stops is queued again when it reopens.
    fn release(&mut self, _numbers: &[usize]) -> Result<()> {
        Ok(())
    }

    /// The OS lock already proves the only worker alive.
    fn heartbeat(&mut self, _numbers: &[usize]) -> Result<()> {
        Ok(())
    }

    fn reap(&mut self, _liveness: &Liveness) -> Result<Vec<Reaped>> {
        Ok(Vec::new())
    }

    fn record(&mut self, event: &Event) -> Result<bool> {
        debug_assert!(self.lock.is_some(), "record before create_or_open");
        if let Event::Paused { number, .. } = event
            && self.catch_up()?.get(number).is_none_or(|t| t.state != TrialState::Running)
        {
            return Ok(false);
        }
        self.journal.append(event)?;
        Ok(true)
    }

    /// One append of both lines: only a torn write (which leaves the second line unread) can
    /// split them.
    fn replace_paused(&mut self, closed: &Event, make: &dyn Fn(usize) -> Event) -> Result<Option<usize>> {
        let Event::Finished { number: replaces, .. } = closed else { panic!("replace_paused takes a Finished event") };
        if !self.is_paused(*replaces)? {
            return Ok(None);
        }
        let after_known = self.catch_up()?.keys().max().map_or(0, |m| m + 1);
        let number = after_known.max(self.reserved.map_or(0, |r| r + 1));
        self.journal.append_all(&[closed.clone(), make(number)])?;
        Ok(Some(number))
    }

    /// The OS lock makes this process the only writer: the records say whether it is paused.
    fn resume(&mut self, number: usize) -> Result<bool> {
        if !self.is_paused(number)? {
            return Ok(false);
        }
        self.record(&Event::Resumed { number })
    }

    fn close_paused(&mut self, finished: &Event) -> Result<bool> {
        let Event::Finished { number, .. } = finished else { panic!("close_paused takes a Finished event") };
        if !self.is_paused(*number)? {
            return Ok(false);
        }
        self.record(finished)
    }

    fn read_since(&mut self, cursor: Cursor) -> Result<(Vec<Stamped>, Cursor)> {
        let path = self.journal.path();
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), cursor)),
            Err(e) => return Err(TuneError::io(path, e)),
        };
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(cursor.0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| TuneError::io(path, e))?;
        // Whole lines only: a line still being written (or torn by a crash) is not an event yet.
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let text = std::str::from_utf8(&bytes[..complete]).map_err(|e| TuneError::CorruptStudy {
            path: path.to_path_buf(),
            problem: format!("not UTF-8 text after byte {} ({e})", cursor.0),
            fix: "restore the journal or move the study directory away to start afresh".into(),
        })?;
        let from_start = cursor == Cursor::START;
        let events = text
            .lines()
            .enumerate()
            .map(|(i, line)| parse_line(path, line, from_start.then_some(i + 1)))
            .collect::<Result<Vec<_>>>()?;
        Ok((events, Cursor(cursor.0 + complete as u64, 0)))
    }
}

fn check_frozen(dir: &Path, resolved: &Resolved) -> Result<()> {
    match Resolved::load(dir)? {
        Some(frozen) => frozen.check_same_study(resolved, &dir.display().to_string()),
        None => Ok(()),
    }
}

/// Takes the study's OS lock (`.lock`), held until the returned file is dropped — or the
/// process dies, even by kill -9. The holder's pid is written inside for the message.
pub(super) fn lock(dir: &Path) -> Result<File> {
    use std::io::Write;
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| TuneError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {
            let pid = std::process::id().to_string();
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(pid.as_bytes()))
                .map_err(|e| TuneError::io(&path, e))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = if holder.trim().is_empty() {
                "another process".to_string()
            } else {
                format!("process {}", holder.trim())
            };
            Err(TuneError::Study(format!(
                "{}: study is being run by {holder}; wait for it or stop it first",
                dir.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(TuneError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let study = dir.path().join("c");
        crate::study::storage::conformance::records(&|| Box::new(JournalStorage::new(&study)));
        let paused = dir.path().join("p");
        crate::study::storage::conformance::pauses(&|| Box::new(JournalStorage::new(&paused)), false);
    }

    #[test]
    fn a_torn_tail_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = JournalStorage::new(dir.path());
        let space = crate::study::space::SearchSpace::parse(
            "[study]\nname = \"t\"\n[params]\nconv0_channels = 8\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let resolved = Resolved { space, concurrency: 1, threads_per_trial: 1, split_seed: 27, data_dir: None };
        s.create_or_open(&resolved, "").unwrap();
        s.reserve(10).unwrap();
        assert!(
            s.create(&Event::Created {
                number: 0,
                params: Default::default(),
                seed: 1,
                infeasible: None,
                retry_of: None,
                fork: None
            })
            .unwrap()
        );
        drop(s);
        // kill -9 in the middle of writing the next event:
        let path = dir.path().join(Journal::FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"event\":\"created\",\"numb");
        std::fs::write(&path, text).unwrap();
        let mut s = JournalStorage::new(dir.path());
        s.create_or_open(&resolved, "").unwrap();
        s.reserve(10).unwrap();
        assert!(
            s.create(&Event::Created {
                number: 1,
                params: Default::default(),
                seed: 2,
                infeasible: None,
                retry_of: None,
                fork: None
            })
            .unwrap()
        );
        let trials = s.trials().unwrap();
        assert_eq!(
            trials.keys().copied().collect::<Vec<_>>(),
            [0, 1],
            "the journal still reads after the crash and a resume"
        );
    }
}

//! The study's records: an append-only, fsync'd JSON-lines journal (`journal.jsonl`), as
//! Optuna's JournalStorage. Appends are atomic per line; replay ignores a torn last line, so
//! a kill -9 at any moment loses at most the event being written. Readers (`tune report`)
//! replay the same file and never write to it.

use std::path::{Path, PathBuf};

use super::events::{Event, Stamped, record_json};
use crate::error::{Result, TuneError};
use crate::files::append_lines;

/// Appends events to a study's journal.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub const FILE: &'static str = "journal.jsonl";

    pub fn open(study_dir: &Path) -> Journal {
        Journal { path: study_dir.join(Self::FILE) }
    }

    /// Appends one event. Only finite numbers are stored (JSON has no NaN or infinity, and a
    /// `null` in their place would make the journal unreadable), so every record reads back.
    pub fn append(&self, event: &Event) -> Result<()> {
        self.append_all(std::slice::from_ref(event))
    }

    /// Appends events in one write (and one sync), so they land together.
    pub fn append_all(&self, events: &[Event]) -> Result<()> {
        let lines = events.iter().map(record_json).collect::<std::result::Result<Vec<_>, _>>().map_err(|what| {
            TuneError::Study(format!(
                "{}: refusing to record {what}, which is not a finite number",
                self.path.display()
            ))
        })?;
        append_lines(&self.path, &lines)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Parses one journal line; `line_no` (1-based) is named in the error when known.
pub(crate) fn parse_line(path: &Path, line: &str, line_no: Option<usize>) -> Result<Stamped> {
    serde_json::from_str(line).map_err(|e| TuneError::CorruptStudy {
        path: path.to_path_buf(),
        problem: match line_no {
            Some(n) => format!("line {n}: {e}"),
            None => format!("a recent line: {e}"),
        },
        fix: "restore the line or move the study directory away to start afresh".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Params;
    use crate::study::storage::replay;
    use crate::study::trial::TrialState;
    use crate::training::EpochMetrics;
    #[test]
    fn replay_rebuilds_trials_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        j.append(&Event::Created {
            number: 0,
            params: Params::new(),
            seed: 1,
            infeasible: None,
            retry_of: None,
            fork: None,
        })
        .unwrap();
        j.append(&Event::Epoch { number: 0, metrics: EpochMetrics::at(1, 0.5) }).unwrap();
        j.append(&Event::Epoch { number: 0, metrics: EpochMetrics::at(1, 0.5) }).unwrap(); // duplicate after a resume
        j.append(&Event::Epoch { number: 0, metrics: EpochMetrics::at(2, 0.7) }).unwrap();
        j.append(&Event::Finished { number: 0, state: TrialState::Complete, reason: None, secs: 3.0 }).unwrap();
        j.append(&Event::Created {
            number: 1,
            params: Params::new(),
            seed: 2,
            infeasible: Some("conv2_pool: …".into()),
            retry_of: None,
            fork: None,
        })
        .unwrap();
        j.append(&Event::Created {
            number: 2,
            params: Params::new(),
            seed: 3,
            infeasible: None,
            retry_of: None,
            fork: None,
        })
        .unwrap();
        let mut text = std::fs::read_to_string(j.path()).unwrap();
        text.push_str("{\"event\":\"epoch\",\"num");
        std::fs::write(j.path(), &text).unwrap();
        let trials = replay(dir.path()).unwrap();
        assert_eq!(trials.len(), 3);
        assert_eq!(trials[&0].history.len(), 2);
        assert_eq!(trials[&0].best(), Some((0.7, 2)));
        assert_eq!(trials[&0].state, TrialState::Complete);
        assert_eq!(trials[&1].state, TrialState::Infeasible);
        assert_eq!(trials[&2].state, TrialState::Running, "an unfinished trial is resumed");
    }

    #[test]
    fn non_finite_numbers_never_reach_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        let params: Params = [("lr".to_string(), crate::model::Value::Float(f64::INFINITY))].into();
        assert!(
            j.append(&Event::Created { number: 0, params, seed: 1, infeasible: None, retry_of: None, fork: None })
                .is_err()
        );
        assert!(j.append(&Event::Epoch { number: 0, metrics: EpochMetrics::at(1, f64::NAN) }).is_err());
        assert!(
            j.append(&Event::Finished { number: 0, state: TrialState::Failed, reason: None, secs: f64::INFINITY })
                .is_err()
        );
        j.append(&Event::Created {
            number: 0,
            params: Params::new(),
            seed: 1,
            infeasible: None,
            retry_of: None,
            fork: None,
        })
        .unwrap();
        assert_eq!(replay(dir.path()).unwrap().len(), 1, "what was recorded reads back");
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error_naming_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(Journal::FILE), "garbage\n{}\n").unwrap();
        let err = replay(dir.path()).unwrap_err().to_string();
        assert!(err.contains("journal.jsonl") && err.contains("line 1"), "{err}");
    }
}

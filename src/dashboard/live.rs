//! The dashboard's view of each study, kept up to date from the store's own record of events:
//! a reader with a cursor (as a worker is), so a poll costs what the study wrote since the last
//! one, not the study's size. Each trial remembers the version at which it last changed, so a
//! page that has seen version `v` is sent only the trials changed after it.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::study::storage::{Catalog, Cursor, StudyEntry, StudyStorage, absorb};
use crate::study::trial::TrialRecord;

/// One study as the dashboard keeps it.
pub struct LiveStudy {
    pub entry: StudyEntry,
    storage: Box<dyn StudyStorage>,
    cursor: Cursor,
    /// How many events have been applied: the version a page asks "since".
    pub version: u64,
    pub trials: BTreeMap<usize, TrialRecord>,
    changed: BTreeMap<usize, u64>,
    /// Parameters the space samples on a log scale (frozen with the study).
    pub log_params: Vec<String>,
    /// What the study optimises (empty: val_acc alone).
    pub objectives: Vec<crate::study::objectives::Objective>,
}

impl LiveStudy {
    /// Reads what the study recorded since the last call.
    pub fn refresh(&mut self) -> Result<()> {
        let read = self.storage.read_since(self.cursor)?;
        for number in absorb(&mut self.trials, &mut self.cursor, read) {
            self.version += 1;
            self.changed.insert(number, self.version);
        }
        Ok(())
    }

    /// The trials changed after version `since` (all of them for 0), in number order.
    pub fn changed_since(&self, since: u64) -> impl Iterator<Item = &TrialRecord> {
        self.changed.iter().filter(move |(_, v)| **v > since).filter_map(|(n, _)| self.trials.get(n))
    }
}

/// The studies of one catalog, opened on first use.
pub struct Studies {
    catalog: Box<dyn Catalog>,
    open: BTreeMap<String, LiveStudy>,
}

impl Studies {
    pub fn new(catalog: Box<dyn Catalog>) -> Studies {
        Studies { catalog, open: BTreeMap::new() }
    }

    pub fn location(&self) -> String {
        self.catalog.location()
    }

    /// Every study of the catalog, refreshed (one listing for all of them).
    pub fn all(&mut self) -> Result<Vec<&LiveStudy>> {
        let entries = self.catalog.list()?;
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        for entry in entries {
            self.open_entry(entry)?.refresh()?;
        }
        Ok(names.iter().filter_map(|n| self.open.get(n)).collect())
    }

    /// Study `name`, refreshed; `None` when the catalog has no study of that name. The name is
    /// only ever compared with the catalog's own names, never joined onto a path.
    pub fn study(&mut self, name: &str) -> Result<Option<&LiveStudy>> {
        if !self.open.contains_key(name) {
            let Some(entry) = self.catalog.list()?.into_iter().find(|e| e.name == name) else {
                return Ok(None);
            };
            self.open_entry(entry)?;
        }
        let live = self.open.get_mut(name).expect("opened above");
        live.refresh()?;
        Ok(Some(live))
    }

    /// The live study of a listed entry, opened (its settings read) on first use.
    fn open_entry(&mut self, entry: StudyEntry) -> Result<&mut LiveStudy> {
        let name = entry.name.clone();
        if !self.open.contains_key(&name) {
            let mut storage = self.catalog.storage(&entry)?;
            let settings = storage.settings()?;
            let log_params = settings.as_ref().map(|r| r.space.log_params()).unwrap_or_default();
            let objectives = settings.map(|r| r.space.study.objectives).unwrap_or_default();
            let live = LiveStudy {
                entry,
                storage,
                cursor: Cursor::START,
                version: 0,
                trials: BTreeMap::new(),
                changed: BTreeMap::new(),
                log_params,
                objectives,
            };
            self.open.insert(name.clone(), live);
        }
        Ok(self.open.get_mut(&name).expect("opened above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::storage::StorageSpec;
    use crate::study::{events::Event, journal::Journal};

    fn created(n: usize) -> Event {
        Event::Created {
            number: n,
            params: Default::default(),
            seed: n as u64,
            infeasible: None,
            retry_of: None,
            fork: None,
        }
    }

    #[test]
    fn a_page_gets_only_the_trials_changed_since_its_version_and_unknown_names_are_none() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("s")).unwrap();
        let journal = Journal::open(&root.path().join("s"));
        journal.append(&created(0)).unwrap();
        journal.append(&created(1)).unwrap();
        let mut studies = Studies::new(StorageSpec::Journal(root.path().into()).catalog(root.path()));
        let v = {
            let s = studies.study("s").unwrap().unwrap();
            assert_eq!(s.changed_since(0).count(), 2);
            s.version
        };
        assert_eq!(v, 2);
        journal
            .append(&Event::Finished {
                number: 1,
                state: crate::study::TrialState::Failed,
                reason: Some("boom".into()),
                secs: 1.0,
            })
            .unwrap();
        let s = studies.study("s").unwrap().unwrap();
        let changed: Vec<usize> = s.changed_since(v).map(|t| t.number).collect();
        assert_eq!(changed, vec![1], "only the trial that changed");
        assert_eq!(s.version, 3);
        assert!(studies.study("../s").unwrap().is_none());
        assert!(studies.study("nope").unwrap().is_none());
        assert_eq!(studies.all().unwrap().len(), 1);
    }
}

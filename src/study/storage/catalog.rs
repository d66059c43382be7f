//! Where studies are kept, as a whole: a runs directory of journals, or a PostgreSQL store.
//! Commands list, open and delete studies through [`Catalog`] and never ask which backend
//! they talk to.

use std::path::{Path, PathBuf};

use super::{JournalStorage, PgStorage, StorageSpec, StudyStorage, postgres_patience, redact};
use crate::error::{Result, TuneError};

/// One study of a catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyEntry {
    pub name: String,
    /// Where this machine keeps the study's own files (report, retrains): the study's
    /// directory of a runs directory, or `<runs>/<name>` for a store.
    pub dir: PathBuf,
    /// When it was created, where the backend records it.
    pub created: Option<String>,
}

pub trait Catalog: Send {
    /// Where the studies are, for messages (passwords hidden).
    fn location(&self) -> String;

    /// Every study, in a stable order.
    fn list(&mut self) -> Result<Vec<StudyEntry>>;

    /// The records of study `name`, which must exist.
    fn open(&mut self, name: &str) -> Result<(StudyEntry, Box<dyn StudyStorage>)> {
        let entry = self.list()?.into_iter().find(|e| e.name == name).ok_or_else(|| {
            TuneError::Study(format!("{}: there is no study `{name}`; see `tune study list`", self.location()))
        })?;
        let storage = self.storage(&entry)?;
        Ok((entry, storage))
    }

    /// The records of a listed study.
    fn storage(&mut self, entry: &StudyEntry) -> Result<Box<dyn StudyStorage>>;

    /// Deletes study `name` and all its records; false when there is none of that name.
    fn delete(&mut self, name: &str) -> Result<bool>;
}

impl StorageSpec {
    /// The catalog this spec names; `runs` is where a store's studies keep their local files.
    pub fn catalog(&self, runs: &Path) -> Box<dyn Catalog> {
        match self {
            StorageSpec::Journal(dir) => Box::new(Journals { root: dir.clone() }),
            StorageSpec::Postgres(url) => Box::new(Store { url: url.clone(), runs: runs.to_path_buf() }),
        }
    }
}

/// The study `study` names and its records, from the store `storage` names (a URL) or else the
/// journals under `runs_dir`: a store's study by its name; a journal's by its directory, or by
/// its name under `runs_dir`; without `study`, the only study there. The one way a command
/// that works on one study (`tune retrain`, `tune eval --trial`) finds it. Returns the
/// study's local directory (its trials' files, retrains) and its records.
pub fn open_study(
    storage: Option<&str>,
    runs_dir: &Path,
    study: Option<&Path>,
) -> Result<(PathBuf, Box<dyn StudyStorage>)> {
    let spec = StorageSpec::parse(storage, "--storage", runs_dir)?;
    let (mut catalog, root, name) = match (spec, study) {
        // A study directory is a catalog of one.
        (StorageSpec::Journal(_), Some(dir)) => {
            // A bare name is looked for under the runs directory first; a path is taken as given.
            let bare = dir.components().count() == 1 && dir.is_relative();
            let under_runs = runs_dir.join(dir);
            let dir = if bare && (under_runs.is_dir() || !dir.is_dir()) { under_runs } else { dir.to_path_buf() };
            (StorageSpec::Journal(dir.clone()).catalog(&dir), dir, None)
        }
        (spec @ StorageSpec::Journal(_), None) => (spec.catalog(runs_dir), runs_dir.to_path_buf(), None),
        (spec @ StorageSpec::Postgres(_), Some(name)) => {
            (spec.catalog(runs_dir), runs_dir.to_path_buf(), Some(name.to_string_lossy().into_owned()))
        }
        (StorageSpec::Postgres(_), None) => {
            return Err(TuneError::Config {
                file: "<command line>".into(),
                key: "--study".into(),
                problem: "which study of the store?".into(),
                fix: "pass --study NAME (see `tune study list --storage URL`)".into(),
            });
        }
    };
    if name.is_none() && !root.exists() {
        return Err(TuneError::Study(format!(
            "{}: no such directory; run a study first, or pass --study DIR or --runs-dir DIR",
            root.display()
        )));
    }
    let (entry, storage) = match name {
        Some(name) => catalog.open(&name)?,
        None => match catalog.list()?.as_slice() {
            [one] => (one.clone(), catalog.storage(one)?),
            [] => return Err(TuneError::Study(format!("{}: no study here; pass --study DIR", catalog.location()))),
            many => {
                return Err(TuneError::Study(format!(
                    "several studies under {}: {}; choose one with --study {}/NAME",
                    catalog.location(),
                    many.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "),
                    root.display()
                )));
            }
        },
    };
    Ok((entry.dir, storage))
}

/// A runs directory (or one study's directory) of journals.
struct Journals {
    root: PathBuf,
}

impl Catalog for Journals {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&mut self) -> Result<Vec<StudyEntry>> {
        Ok(find_studies(&self.root)?
            .into_iter()
            .map(|dir| StudyEntry {
                name: dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                dir,
                created: None,
            })
            .collect())
    }

    fn storage(&mut self, entry: &StudyEntry) -> Result<Box<dyn StudyStorage>> {
        Ok(Box::new(JournalStorage::new(&entry.dir)))
    }

    /// Removes the study's directory, once no `tune run` holds it (its lock is taken first).
    fn delete(&mut self, name: &str) -> Result<bool> {
        let Some(entry) = self.list().ok().and_then(|l| l.into_iter().find(|e| e.name == name)) else {
            return Ok(false);
        };
        let held = super::embedded::lock(&entry.dir)?;
        std::fs::remove_dir_all(&entry.dir).map_err(|e| TuneError::io(&entry.dir, e))?;
        drop(held);
        Ok(true)
    }
}

/// A PostgreSQL store.
struct Store {
    url: String,
    runs: PathBuf,
}

impl Catalog for Store {
    fn location(&self) -> String {
        redact(&self.url)
    }

    fn list(&mut self) -> Result<Vec<StudyEntry>> {
        Ok(PgStorage::list(&self.url)?
            .into_iter()
            .map(|s| StudyEntry { dir: self.runs.join(&s.name), name: s.name, created: Some(s.created) })
            .collect())
    }

    fn storage(&mut self, entry: &StudyEntry) -> Result<Box<dyn StudyStorage>> {
        StorageSpec::Postgres(self.url.clone()).open(&entry.name, postgres_patience())
    }

    /// Deletes the store's records (trial directories on the machines are left alone).
    fn delete(&mut self, name: &str) -> Result<bool> {
        PgStorage::delete(&self.url, name)
    }
}

/// The studies under `path`: itself if it holds a journal, else its subdirectories that do.
pub fn find_studies(path: &Path) -> Result<Vec<PathBuf>> {
    if path.join(crate::study::journal::Journal::FILE).is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| TuneError::io(path, e))?;
    let mut studies: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join(crate::study::journal::Journal::FILE).is_file())
        .collect();
    studies.sort();
    if studies.is_empty() {
        return Err(TuneError::Study(format!(
            "{}: no study here (no {} in it or its subdirectories); run `tune run SPACE.toml` first",
            path.display(),
            crate::study::journal::Journal::FILE
        )));
    }
    Ok(studies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_directory_lists_opens_and_deletes_its_studies() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a"] {
            let study = dir.path().join(name);
            std::fs::create_dir_all(&study).unwrap();
            std::fs::write(study.join("journal.jsonl"), "").unwrap();
        }
        let mut c = StorageSpec::Journal(dir.path().to_path_buf()).catalog(dir.path());
        let names: Vec<String> = c.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b"]);
        let (entry, mut storage) = c.open("a").unwrap();
        assert_eq!(entry.dir, dir.path().join("a"));
        assert!(storage.trials().unwrap().is_empty());
        assert!(c.open("zz").err().is_some_and(|e| e.to_string().contains("no study `zz`")));
        // A study a `tune run` holds is not deleted under it.
        let held = crate::study::storage::embedded::lock(&dir.path().join("b")).unwrap();
        assert!(c.delete("b").is_err(), "held by a run");
        drop(held);
        assert!(c.delete("b").unwrap());
        assert!(!dir.path().join("b").exists());
        assert!(!c.delete("b").unwrap(), "gone");
    }

    #[test]
    fn one_study_is_found_by_its_directory_its_name_or_as_the_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let study = |name: &str| {
            std::fs::create_dir_all(runs.join(name)).unwrap();
            std::fs::write(runs.join(name).join("journal.jsonl"), "").unwrap();
        };
        study("a");
        let found = |s: Option<&Path>| open_study(None, &runs, s).map(|(d, _)| d);
        assert_eq!(found(None).unwrap(), runs.join("a"), "the only study");
        assert_eq!(found(Some(Path::new("a"))).unwrap(), runs.join("a"), "by name under the runs directory");
        assert_eq!(found(Some(&runs.join("a"))).unwrap(), runs.join("a"), "by directory");
        study("b");
        let several = found(None).unwrap_err().to_string();
        assert!(several.contains("several studies") && several.contains("a, b"), "{several}");
        let missing = found(Some(Path::new("zz"))).unwrap_err().to_string();
        assert!(missing.contains("zz"), "{missing}");
        let typo = found(Some(Path::new("other/zz"))).unwrap_err().to_string();
        assert!(typo.contains("other/zz") && !typo.contains("runs/other"), "a path is named as given: {typo}");
        let store = open_study(Some("postgresql://u@localhost:1/db"), &runs, None).err().unwrap().to_string();
        assert!(store.contains("--study"), "a store needs the study's name: {store}");
    }
}

//! A study's frozen settings (`settings.json`): the checked space and how the study was run.
//! The storages keep them and compare a resumed study's against them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TuneError};
use crate::study::space::SearchSpace;

/// Resolved settings written into the study directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolved {
    pub space: SearchSpace,
    pub concurrency: usize,
    pub threads_per_trial: usize,
    pub split_seed: u64,
    pub data_dir: Option<PathBuf>,
}

impl Resolved {
    /// An existing study's frozen settings must agree with the new ones on everything but
    /// the trial budget, the concurrency and the operational settings, or results from two
    /// different studies would mix. `location` names where the study is kept.
    pub fn check_same_study(&self, new: &Resolved, location: &str) -> Result<()> {
        let (a, b) = (&self.space, &new.space);
        let same = a.params == b.params
            && a.study.seed == b.study.seed
            && a.study.sampler == b.study.sampler
            && a.study.pruner == b.study.pruner
            && a.study.training == b.study.training
            && a.study.pruning == b.study.pruning
            && a.study.tpe == b.study.tpe
            && a.study.objectives == b.study.objectives
            && a.study.nsga2 == b.study.nsga2
            && self.split_seed == new.split_seed;
        if same {
            return Ok(());
        }
        Err(TuneError::Config {
            file: new.space.file.clone(),
            key: "study.name".into(),
            problem: format!("study `{}` already exists in {location} with other parameters, seed, sampler, pruner or training settings", b.study.name),
            fix: "give the study a new name, run the original space file again to resume it, or move (or `tune study delete`) the old study".into(),
        })
    }

    /// Reads a study directory's `settings.json`; `None` when the study has none yet.
    pub fn load(dir: &Path) -> Result<Option<Resolved>> {
        let path = dir.join("settings.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TuneError::io(&path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| TuneError::CorruptStudy {
            path,
            problem: e.to_string(),
            fix: "the study directory is damaged: move it away to start the study afresh".into(),
        })
    }
}

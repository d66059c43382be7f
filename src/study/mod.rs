//! A study: the search space, samplers, pruners, trial records, the journal, the leaderboard
//! and the orchestration loop of `tune run`.

pub mod devices;
pub mod distribution;
pub mod events;
pub mod instant;
pub mod journal;
pub mod launch;
pub mod leaderboard;
pub mod objectives;
pub mod pruner;
pub mod replay;
pub mod resolved;
pub mod run;
pub mod rung_stats;
pub mod sampler;
pub mod scheduler;
pub mod search_bench;
pub mod settings;
pub mod space;
pub mod stamp;
pub mod start;
pub mod storage;
pub mod trial;

pub use run::{RunOptions, Summary, run, run_simulated};
pub use space::SearchSpace;
pub use trial::{TrialRecord, TrialState};

//! Training one network: settings, the loop, per-epoch schedules and metrics.

pub mod adam;
pub mod config;
pub mod latency;
pub mod layers;
pub mod metrics;
pub mod optimizer;
pub mod run;
pub mod schedule;

pub use config::TrainConfig;
pub use metrics::{EpochMetrics, Latency};
pub use run::{
    Display, Evaluation, Outcome, TrainData, evaluate, load_model, same_run, train, training_indices, write_run_files,
};

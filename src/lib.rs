//! tune: hyperparameter tuning for burn CNNs on Fashion-MNIST.
//!
//! One concept per module: `data` (files, splits, batches), `model` (the parameter dictionary,
//! shape inference, the burn module), `training` (one run), `storage` (durable files),
//! `bench` (throughput figures), `commands` (the command line, one file per command).

#![forbid(unsafe_code)]

pub mod backend;
pub mod bench;
pub mod commands;
pub mod dashboard;
pub mod data;
pub mod error;
pub mod evaluation;
pub mod files;
pub mod font;
/// The flex kernels, their own crate: every `unsafe` block of tune lives there.
pub use tune_kernels as kernels;
pub mod logging;
pub mod memory;
pub mod model;
pub mod report;
pub mod retrain;
pub mod study;
/// Tiny generated data sets for tests (the `testing` feature, on in this package's own tests).
#[cfg(any(test, feature = "testing"))]
pub mod testdata;
pub mod training;

pub use error::{Result, TuneError};

//! A params file: an architecture whose shapes and size are inferred, or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tune::model::{Architecture, Params, infer};

fuzz_target!(|text: &str| {
    let Ok(params) = toml::from_str::<Params>(text) else { return };
    if let Ok(arch) = Architecture::from_params(&params, Path::new("fuzz.toml")) {
        if let Ok(summary) = infer(&arch) {
            assert!(summary.total() <= tune::model::shape::MAX_PARAMS);
        }
    }
    let _ = tune::training::config::Layered::default().dictionary(&params, Path::new("fuzz.toml")).build();
});

//! A `--config` file: a checked training config that is always writable as train.toml, or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    let Ok(table) = toml::from_str::<toml::Table>(text) else { return };
    let Ok(layers) = tune::training::config::Layered::default().table(&table, Path::new("fuzz.toml"), "") else { return };
    if let Ok(cfg) = layers.build() {
        assert!(cfg.check().is_ok());
        assert!(toml::to_string(&cfg).is_ok());
    }
});

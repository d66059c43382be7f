//! Bytes as an IDX image or label file, raw or gzip: parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tune::data::idx;

fuzz_target!(|bytes: &[u8]| {
    let p = Path::new("fuzz.idx");
    let Ok(decoded) = idx::decode_maybe_gz(p, bytes.to_vec()) else { return };
    let _ = idx::parse_images(p, &decoded);
    let _ = idx::parse_labels(p, &decoded);
});

//! A search space file: parsed and checked, or refused with an error — never a panic. A space
//! that passes samples, enumerates and checks its networks without a panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use std::path::Path;
use tune::study::SearchSpace;

fuzz_target!(|text: &str| {
    let Ok(space) = SearchSpace::parse(text, Path::new("fuzz.toml")) else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..4 {
        let mut p = tune::study::sampler::random_params(&space, &mut rng);
        SearchSpace::prune_inactive(&mut p);
        let _ = tune::study::start::feasibility(&p, &space);
    }
    let _ = tune::study::sampler::Grid::new(&space);
    assert!(space.study.training.check().is_ok());
});

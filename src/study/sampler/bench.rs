//! `tune bench sampler`: each sampler's own time to propose one configuration with a long
//! history (synthetic trials drawn from the space, with made-up values), no training. With
//! two objectives or more (the first trial's proposal computes every network's size once;
//! later ones reuse it), NSGA-II too.
//! Figures, not assertions.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Ask, Proposal, RandomSampler, Sampler, TpeSampler};
use crate::error::Result;
use crate::study::settings::TpeSettings;
use crate::study::space::SearchSpace;
use crate::study::trial::{TrialRecord, TrialState};
use crate::training::EpochMetrics;

fn history(space: &SearchSpace, n: usize) -> BTreeMap<usize, TrialRecord> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let mut params = super::random_params(space, &mut rng);
            SearchSpace::prune_inactive(&mut params);
            let val_acc = rng.random_range(0.5..0.93);
            let m = EpochMetrics {
                epoch: 1,
                train_loss: 1.0,
                train_acc: val_acc,
                val_loss: 1.0,
                val_acc,
                lr: 1e-3,
                secs: 1.0,
                latency: None,
            };
            (
                i,
                TrialRecord {
                    number: i,
                    params,
                    seed: i as u64,
                    state: TrialState::Complete,
                    reason: None,
                    history: vec![m],
                    secs: 1.0,
                    retry_of: None,
                    fork: None,
                    times: Default::default(),
                    size_cache: Default::default(),
                },
            )
        })
        .collect()
}

/// Times each sampler's proposals for `space_file` after histories of `history_sizes` finished
/// trials, `proposals` times each; prints the figures.
pub fn run(space_file: &Path, history_sizes: &[usize], proposals: usize) -> Result<()> {
    let mut space = SearchSpace::from_file(space_file)?;
    space.study.history_lag = 0;
    println!("space: {} · {} proposals per row · time to propose one configuration", space_file.display(), proposals);
    println!("{:>8}  {:<28} {:>12} {:>12}", "history", "sampler", "mean ms", "max ms");
    for &n in history_sizes {
        let trials = history(&space, n);
        let mut samplers: Vec<(&str, Box<dyn Sampler>)> = vec![("random", Box::new(RandomSampler))];
        for (name, multivariate) in [("tpe univariate", false), ("tpe multivariate (default)", true)] {
            let mut s = space.clone();
            s.study.tpe = TpeSettings { multivariate, exploration: 0.0, ..s.study.tpe.clone() };
            samplers.push((name, Box::new(TpeSampler::from_space(&s))));
        }
        if space.study.objectives.len() >= 2 {
            samplers.push(("nsga2", Box::new(super::Nsga2Sampler::from_space(&space))));
        }
        for (name, sampler) in samplers {
            let mut times = Vec::new();
            for k in 0..proposals {
                let ask = Ask { number: n, draw: n + k, index: n + k, trials: &trials };
                let t = Instant::now();
                let p = sampler.propose(&space, &ask);
                times.push(t.elapsed().as_secs_f64() * 1e3);
                assert!(matches!(p, Proposal::Params(_)), "a full history never waits");
            }
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            let max = times.iter().copied().fold(0.0, f64::max);
            println!("{n:>8}  {name:<28} {mean:>12.3} {max:>12.3}");
        }
    }
    Ok(())
}

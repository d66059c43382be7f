//! Grid search: every distinct network of the grid (inactive block parameters do not make
//! new points), visited in a seeded shuffled order so early stops still see a spread.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{Result, TuneError};
use crate::model::Params;
use crate::study::space::SearchSpace;

/// Most grid points enumerated; beyond this a grid search is not what anyone wants.
pub const MAX_POINTS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Grid {
    points: Vec<Params>,
}

/// Visits the grid's points in order of its own draws (enqueued networks do not use up points).
pub struct GridSampler {
    grid: Grid,
}

impl GridSampler {
    pub fn new(space: &SearchSpace) -> Result<GridSampler> {
        Ok(GridSampler { grid: Grid::new(space)? })
    }
}

impl super::Sampler for GridSampler {
    fn propose(&self, _space: &SearchSpace, ask: &super::Ask) -> super::Proposal {
        match self.grid.point(ask.index) {
            Some(p) => super::Proposal::Params(p),
            None => super::Proposal::Exhausted,
        }
    }
}

impl Grid {
    pub fn new(space: &SearchSpace) -> Result<Grid> {
        let axes: Vec<(String, Vec<crate::model::Value>)> =
            space.params.iter().map(|(k, d)| (k.clone(), d.grid(space.study.grid_points))).collect();
        let total =
            axes.iter().try_fold(1usize, |acc, (_, v)| acc.checked_mul(v.len()).filter(|n| *n <= MAX_POINTS * 10));
        let Some(total) = total else {
            return Err(TuneError::Config {
                file: space.file.clone(),
                key: "study.sampler".into(),
                problem: format!("the grid has more than {} points", MAX_POINTS * 10),
                fix: "use sampler = \"tpe\", fix some parameters, or lower study.grid_points".into(),
            });
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut points = Vec::new();
        for mut index in 0..total {
            let mut p = Params::new();
            for (key, values) in axes.iter().rev() {
                p.insert(key.clone(), values[index % values.len()].clone());
                index /= values.len();
            }
            SearchSpace::prune_inactive(&mut p);
            let fingerprint = toml::to_string(&p).expect("serialisable");
            if seen.insert(fingerprint) {
                points.push(p);
            }
        }
        points.shuffle(&mut StdRng::seed_from_u64(space.study.seed));
        Ok(Grid { points })
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The point for trial `n`; `None` once the grid is exhausted.
    pub fn point(&self, n: usize) -> Option<Params> {
        self.points.get(n).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn covers_every_distinct_network_once() {
        let space = SearchSpace::parse(
            "[study]\nname = \"g\"\nsampler = \"grid\"\n[params]\nn_conv = { int = [1, 2] }\n\"conv*_channels\" = { choice = [8, 16] }\nlr = { float = [0.001, 0.01], log = true }",
            Path::new("g.toml"),
        )
        .unwrap();
        let grid = Grid::new(&space).unwrap();
        // n_conv=1: 2 channel choices; n_conv=2: 4; times 3 lr points = 18 distinct networks.
        assert_eq!(grid.len(), 18);
        let all: std::collections::BTreeSet<String> =
            (0..18).map(|i| toml::to_string(&grid.point(i).unwrap()).unwrap()).collect();
        assert_eq!(all.len(), 18);
        assert!(grid.point(18).is_none());
    }
}

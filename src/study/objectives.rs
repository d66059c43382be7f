//! What a multi-objective study optimises (`[study] objectives`), each trial's values, and
//! the non-dominated fronts and crowding distances NSGA-II and the leaderboard rank by.
//!
//! val_acc is measured by training; a network's parameters and FLOPs follow from its
//! dictionary (shape inference), so they cost nothing and are known even for a pruned trial;
//! its inference latency is timed once, after its first epoch, on the trial's own threads.
//! Pruners and schedulers judge trials on val_acc alone (the first objective); the leaderboard
//! ranks by front, then val_acc.

use serde::{Deserialize, Serialize};

use super::trial::TrialRecord;
use crate::training::Latency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Best validation accuracy.
    ValAcc,
    /// Parameters of the network (trainable and not).
    Params,
    /// Forward FLOPs per image.
    Flops,
    /// Milliseconds per image of inference one image at a time.
    LatencyMs,
    /// Milliseconds per image of inference in batches of 100.
    LatencyMsBatch100,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::ValAcc => "val_acc",
            Metric::Params => "params",
            Metric::Flops => "flops",
            Metric::LatencyMs => "latency_ms",
            Metric::LatencyMsBatch100 => "latency_ms_batch100",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}

/// One entry of `[study] objectives`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    pub metric: Metric,
    pub direction: Direction,
}

/// A trial's value of each objective, as measured (val_acc as a share, params and FLOPs as
/// counts, latency in ms per image); `None` for a trial that is not ranked (running, failed,
/// infeasible) or lacks a measure (a latency from before tune timed it).
pub fn values(t: &TrialRecord, objectives: &[Objective]) -> Option<Vec<f64>> {
    values_of(t, t.value()?, t.size(), objectives)
}

/// The objectives' values of trial `t` from its best val_acc and its network's size
/// (parameters, FLOPs), for callers that already hold both.
pub fn values_of(t: &TrialRecord, acc: f64, size: Option<(usize, u64)>, objectives: &[Objective]) -> Option<Vec<f64>> {
    objectives.iter().map(|o| value_of(o.metric, acc, size, t.latency())).collect()
}

/// One metric's value from what a trial has measured.
pub fn value_of(metric: Metric, acc: f64, size: Option<(usize, u64)>, latency: Option<Latency>) -> Option<f64> {
    match metric {
        Metric::ValAcc => Some(acc),
        Metric::Params => size.map(|s| s.0 as f64),
        Metric::Flops => size.map(|s| s.1 as f64),
        Metric::LatencyMs => latency.map(|l| l.batch_1),
        Metric::LatencyMsBatch100 => latency.map(|l| l.batch_100),
    }
}

/// The same values, each turned so that smaller is better (what dominance compares).
pub fn costs(t: &TrialRecord, objectives: &[Objective]) -> Option<Vec<f64>> {
    to_costs(values(t, objectives)?, objectives)
}

/// Values turned into costs: maximised objectives negated.
pub fn to_costs(values: Vec<f64>, objectives: &[Objective]) -> Option<Vec<f64>> {
    Some(values.iter().zip(objectives).map(|(x, o)| if o.direction == Direction::Maximize { -x } else { *x }).collect())
}

/// Whether cost vector `a` dominates `b`: no worse in every objective, better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// The front of each point (0: non-dominated; 1: non-dominated once front 0 is removed; …).
/// Two objectives (every shipped study): a sort and a sweep, O(N log N); more: Deb et al.'s
/// fast non-dominated sort, O(M·N²), which at 10,000 trials would cost a proposal ~0.1 s.
pub fn fronts(points: &[Vec<f64>]) -> Vec<usize> {
    if points.iter().all(|p| p.len() == 2) { fronts_2d(points) } else { fronts_any(points) }
}

/// Two objectives: in order of (cost 0, cost 1), a point belongs to the first front whose
/// last point does not dominate it. Within a front, cost 1 falls as cost 0 rises, so its last
/// point dominates a newcomer whenever any of its points does, and the fronts' last cost 1
/// values rise with the front: a binary search finds the front.
fn fronts_2d(points: &[Vec<f64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| points[a][0].total_cmp(&points[b][0]).then(points[a][1].total_cmp(&points[b][1])));
    let mut front = vec![0usize; points.len()];
    let mut last: Vec<usize> = Vec::new(); // the last point placed in each front
    for i in order {
        let k = last.partition_point(|&l| dominates(&points[l], &points[i]));
        if k == last.len() {
            last.push(i);
        } else {
            last[k] = i;
        }
        front[i] = k;
    }
    front
}

fn fronts_any(points: &[Vec<f64>]) -> Vec<usize> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in i + 1..n {
            if dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominates_list[j].push(i);
                dominated_by[i] += 1;
            }
        }
    }
    let mut front = vec![0usize; n];
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    let mut level = 0;
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            front[i] = level;
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        current = next;
        level += 1;
    }
    front
}

/// Each point's crowding distance within its own front (`fronts` as [`fronts`] gives them):
/// what NSGA-II's parents and multi-objective TPE's good group are ordered by after the front.
pub fn crowding_by_front(points: &[Vec<f64>], fronts: &[usize]) -> Vec<f64> {
    let levels = fronts.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); levels];
    for (i, &f) in fronts.iter().enumerate() {
        members[f].push(i);
    }
    let mut distance = vec![0.0; points.len()];
    for front in &members {
        for (&i, d) in front.iter().zip(crowding(points, front)) {
            distance[i] = d;
        }
    }
    distance
}

/// Crowding distance of each of `members` (indices into `points`, one front): the sum over
/// objectives of the normalised gap between its neighbours; the ends of each objective get
/// infinity, so NSGA-II keeps the front's extremes.
pub fn crowding(points: &[Vec<f64>], members: &[usize]) -> Vec<f64> {
    let mut distance = vec![0.0; members.len()];
    let Some(first) = members.first() else { return distance };
    // One column per objective: its value of each member.
    let columns: Vec<Vec<f64>> =
        (0..points[*first].len()).map(|o| members.iter().map(|&i| points[i][o]).collect()).collect();
    for column in &columns {
        let value = |k: usize| column[k];
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by(|&a, &b| value(a).total_cmp(&value(b)));
        let (low, high) = (value(order[0]), value(order[order.len() - 1]));
        distance[order[0]] = f64::INFINITY;
        distance[order[order.len() - 1]] = f64::INFINITY;
        if high > low {
            for w in order.windows(3) {
                distance[w[1]] += (value(w[2]) - value(w[0])) / (high - low);
            }
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_objective_sweep_agrees_with_the_general_sort() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for n in [0, 1, 2, 7, 60, 400] {
            // Few distinct values, so ties in one cost or both are common.
            let points: Vec<Vec<f64>> =
                (0..n).map(|_| vec![rng.random_range(0..12) as f64, rng.random_range(0..12) as f64]).collect();
            assert_eq!(super::fronts_2d(&points), super::fronts_any(&points), "{points:?}");
        }
    }

    #[test]
    fn fronts_peel_non_dominated_layers() {
        // (cost1, cost2): 0 and 1 trade off, 2 is dominated by 0, 3 by 2.
        let points = vec![vec![1.0, 5.0], vec![3.0, 1.0], vec![2.0, 6.0], vec![3.0, 7.0], vec![1.0, 5.0]];
        assert_eq!(fronts(&points), vec![0, 0, 1, 2, 0], "equal points do not dominate each other");
        assert!(dominates(&[1.0, 1.0], &[1.0, 2.0]) && !dominates(&[1.0, 2.0], &[1.0, 2.0]));
    }

    #[test]
    fn crowding_keeps_the_extremes_and_prefers_the_lonely() {
        let points = vec![vec![0.0, 10.0], vec![1.0, 9.0], vec![5.0, 5.0], vec![10.0, 0.0], vec![1.1, 8.9]];
        let d = crowding(&points, &[0, 1, 2, 3, 4]);
        assert!(d[0].is_infinite() && d[3].is_infinite());
        assert!(d[2] > d[1] && d[2] > d[4], "the point far from its neighbours: {d:?}");
    }
}

//! The numbers behind the plots, computed before anything is drawn (as Optuna's
//! visualization does): so they can be tested, exported and explained.
//!
//! Parameter importance is ε², the bias-corrected correlation ratio: group the trained trials
//! by the parameter's value (numbers in up to 4 quantile bins, at least 3 trials a bin; choices
//! by value) and take the share of the variance of best val_acc that lies between the groups,
//! less what k groups would explain by chance: ε² = (SS_between − (k−1)·MS_within) / SS_total,
//! floored at 0. Plain η² would give 1.0 to any parameter whose every trial has its own value.
//! It is a one-parameter-at-a-time measure: it ignores interactions and, with few trials, it
//! is noisy — read it as "where the results differed", not as a causal ranking. The same
//! measure on the infeasible-or-not indicator over all sampled trials says which parameters
//! made networks impossible.

use std::collections::BTreeMap;

use crate::model::Value;
use crate::study::{TrialRecord, TrialState};

/// ε² of `y` grouped by the parameter `key` over `trials` (those lacking the key are skipped);
/// `None` when there are too few trials per group to say anything.
pub fn eta_squared(trials: &[&TrialRecord], key: &str, y: impl Fn(&TrialRecord) -> f64) -> Option<f64> {
    let points: Vec<(&Value, f64)> = trials.iter().filter_map(|t| t.params.get(key).map(|v| (v, y(t)))).collect();
    if points.len() < 3 {
        return None;
    }
    let groups = group_labels(&points.iter().map(|(v, _)| *v).collect::<Vec<_>>());
    let k = groups.iter().collect::<std::collections::BTreeSet<_>>().len();
    let n = points.len();
    if k < 2 || n <= k {
        return None;
    }
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let total: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    if total <= 1e-18 {
        return Some(0.0);
    }
    let mut by_group: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for (g, (_, y)) in groups.iter().zip(&points) {
        let e = by_group.entry(*g).or_insert((0.0, 0));
        e.0 += y;
        e.1 += 1;
    }
    let between: f64 = by_group.values().map(|(s, n)| *n as f64 * (s / *n as f64 - mean).powi(2)).sum();
    let within_mean_square = (total - between).max(0.0) / (n - k) as f64;
    Some(((between - (k - 1) as f64 * within_mean_square) / total).clamp(0.0, 1.0))
}

/// Group index of each value: numbers with more than 4 distinct values fall into 4 quantile
/// bins; everything else groups by equality.
fn group_labels(values: &[&Value]) -> Vec<usize> {
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.as_f64()).collect();
    let mut distinct: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    distinct.sort();
    distinct.dedup();
    match numbers {
        Some(xs) if distinct.len() > 4 || (distinct.len() > 2 && distinct.len() * 2 > xs.len()) => {
            let bins = (xs.len() / 3).clamp(2, 4);
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let cuts: Vec<f64> = (1..bins).map(|q| sorted[q * sorted.len() / bins]).collect();
            xs.iter().map(|x| cuts.iter().filter(|&&c| *x >= c).count()).collect()
        }
        _ => values.iter().map(|v| distinct.binary_search(&v.to_string()).unwrap_or(0)).collect(),
    }
}

/// (parameter, η²) sorted by importance, over trained trials.
pub fn importance(trials: &BTreeMap<usize, TrialRecord>, params: &[String]) -> Vec<(String, f64)> {
    let trained: Vec<&TrialRecord> = trials.values().filter(|t| t.value().is_some()).collect();
    sorted(
        params
            .iter()
            .filter_map(|p| eta_squared(&trained, p, |t| t.value().unwrap_or(0.0)).map(|e| (p.clone(), e)))
            .collect(),
    )
}

/// (parameter, η²) of the infeasible indicator over every sampled trial; empty when none was.
pub fn infeasibility(trials: &BTreeMap<usize, TrialRecord>, params: &[String]) -> Vec<(String, f64)> {
    let all: Vec<&TrialRecord> = trials.values().collect();
    if !all.iter().any(|t| t.state == TrialState::Infeasible) {
        return Vec::new();
    }
    let flag = |t: &TrialRecord| if t.state == TrialState::Infeasible { 1.0 } else { 0.0 };
    sorted(params.iter().filter_map(|p| eta_squared(&all, p, flag).map(|e| (p.clone(), e))).collect())
}

/// How often each layer was the one where an infeasible network collapsed.
pub fn infeasible_layers(trials: &BTreeMap<usize, TrialRecord>) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in trials.values().filter(|t| t.state == TrialState::Infeasible) {
        let layer = t.reason.as_deref().and_then(|r| r.split(':').next()).unwrap_or("?").trim().to_string();
        *counts.entry(layer).or_insert(0) += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    v
}

fn sorted(mut v: Vec<(String, f64)>) -> Vec<(String, f64)> {
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Position of a value on a parallel-coordinates axis, in [0, 1].
pub fn axis_position(values: &[Value], v: &Value) -> f64 {
    let numbers: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
    match (numbers, v.as_f64()) {
        (Some(xs), Some(x)) => {
            let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            let log = lo > 0.0 && hi / lo > 50.0;
            let t = |x: f64| if log { x.ln() } else { x };
            if hi > lo { (t(x) - t(lo)) / (t(hi) - t(lo)) } else { 0.5 }
        }
        _ => {
            let mut distinct: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            distinct.sort();
            distinct.dedup();
            let i = distinct.iter().position(|d| *d == v.to_string()).unwrap_or(0);
            if distinct.len() > 1 { i as f64 / (distinct.len() - 1) as f64 } else { 0.5 }
        }
    }
}

/// Mean and sample standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n.max(1.0);
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Params;

    fn trial(n: usize, a: i64, b: &str, v: f64) -> TrialRecord {
        let params: Params = [("a".to_string(), Value::Int(a)), ("b".to_string(), Value::Str(b.into()))].into();
        let m = crate::training::EpochMetrics {
            epoch: 1,
            train_loss: 0.0,
            train_acc: 0.0,
            val_loss: 0.0,
            val_acc: v,
            lr: 0.0,
            secs: 0.0,
            latency: None,
        };
        TrialRecord {
            number: n,
            params,
            seed: 0,
            state: TrialState::Complete,
            reason: None,
            history: vec![m],
            secs: 0.0,
            retry_of: None,
            fork: None,
            times: Default::default(),
            size_cache: Default::default(),
        }
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = super::mean_std(&[0.9, 0.92, 0.94]);
        assert!((m - 0.92).abs() < 1e-12 && (s - 0.02).abs() < 1e-12);
        assert_eq!(super::mean_std(&[0.5]), (0.5, 0.0));
    }

    #[test]
    fn importance_finds_the_parameter_that_decides_the_result() {
        // `b` decides the value; `a` is noise.
        let trials: BTreeMap<usize, TrialRecord> = (0..12)
            .map(|i| {
                (
                    i,
                    trial(
                        i,
                        (i * 7 % 5) as i64,
                        if i % 2 == 0 { "x" } else { "y" },
                        if i % 2 == 0 { 0.9 } else { 0.5 },
                    ),
                )
            })
            .collect();
        let imp = importance(&trials, &["a".into(), "b".into()]);
        assert_eq!(imp[0].0, "b");
        assert!((imp[0].1 - 1.0).abs() < 1e-9, "{imp:?}");
        assert!(imp[1].1 < 0.5, "{imp:?}");
    }

    #[test]
    fn a_value_per_trial_explains_nothing_by_itself() {
        // Every trial has its own `a`, values unrelated to it: plain η² would say 1.0.
        let trials: BTreeMap<usize, TrialRecord> =
            (0..4).map(|i| (i, trial(i, i as i64, "x", [0.8, 0.6, 0.9, 0.7][i]))).collect();
        let e = eta_squared(&trials.values().collect::<Vec<_>>(), "a", |t| t.value().unwrap());
        assert!(e.is_none_or(|e| e < 0.5), "{e:?}");
    }

    #[test]
    fn infeasibility_blames_the_right_parameter() {
        let mut trials: BTreeMap<usize, TrialRecord> = (0..10).map(|i| (i, trial(i, i as i64 % 2, "x", 0.8))).collect();
        for t in trials.values_mut().filter(|t| t.params["a"] == Value::Int(1)) {
            t.state = TrialState::Infeasible;
            t.reason = Some("conv1_pool: a 3×3 max-pool does not fit".into());
        }
        let inf = infeasibility(&trials, &["a".into(), "b".into()]);
        assert_eq!(inf[0], ("a".to_string(), 1.0));
        assert_eq!(infeasible_layers(&trials), vec![("conv1_pool".to_string(), 5)]);
    }

    #[test]
    fn axis_positions() {
        let vals = [Value::Float(1e-4), Value::Float(1e-2)];
        assert!((axis_position(&vals, &Value::Float(1e-3)) - 0.5).abs() < 1e-9, "log axis for wide ranges");
        let cats = [Value::Str("elu".into()), Value::Str("relu".into()), Value::Str("gelu".into())];
        assert_eq!(axis_position(&cats, &Value::Str("relu".into())), 1.0);
    }
}

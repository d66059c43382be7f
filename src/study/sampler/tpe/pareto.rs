//! Multi-objective TPE (MOTPE; Ozaki et al. 2020, as Optuna's `TPESampler` runs a study with
//! several directions): the good group is the first γ(n) trials by non-dominated front instead
//! of by val_acc. Whole fronts go in while they fit; the front that does not fit is cut by
//! crowding distance, keeping its extremes and its loneliest members (Optuna cuts it by
//! hypervolume contribution instead, and weights the good trials by it; here every good trial
//! weighs the same). The rest of the search — the densities, the candidates, l(x)/g(x) — is
//! TPE's own.

use super::super::Observation;
use crate::study::objectives;

/// The good and the bad observations of a study with several objectives. Only trials trained
/// to their end with every objective measured can be good; pruned and paused trials (judged on
/// val_acc alone at a rung) and unvalued ones are bad, after the ranked ones.
pub fn split<'h, 'a>(
    history: &'h [Observation<'a>],
    good: usize,
) -> (Vec<&'h Observation<'a>>, Vec<&'h Observation<'a>>) {
    let (ranked, rest): (Vec<&Observation>, Vec<&Observation>) =
        history.iter().partition(|o| o.stopped_at.is_none() && o.costs.is_some());
    let points: Vec<Vec<f64>> = ranked.iter().map(|o| o.costs.clone().expect("partitioned on costs")).collect();
    let fronts = objectives::fronts(&points);
    let crowding = objectives::crowding_by_front(&points, &fronts);
    let mut order: Vec<usize> = (0..points.len()).collect();
    // By front, then the loneliest first; stable, so ties keep trial order.
    order.sort_by(|&a, &b| fronts[a].cmp(&fronts[b]).then(crowding[b].total_cmp(&crowding[a])));
    let mut sorted: Vec<&Observation> = order.into_iter().map(|i| ranked[i]).collect();
    let bad_ranked = sorted.split_off(good.min(sorted.len()));
    (sorted, bad_ranked.into_iter().chain(rest).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn o(n: i64, costs: Option<Vec<f64>>, stopped_at: Option<usize>) -> Observation<'static> {
        Observation {
            params: std::borrow::Cow::Owned([("n".to_string(), Value::Int(n))].into()),
            value: costs.as_ref().map(|c| -c[0]),
            stopped_at,
            costs,
        }
    }

    fn numbers(set: &[&Observation]) -> Vec<i64> {
        set.iter().map(|o| o.params["n"].as_f64().unwrap() as i64).collect()
    }

    #[test]
    fn the_good_group_is_the_front_not_the_most_accurate() {
        // (−val_acc, parameters): 0, 1 and 2 trade accuracy for size; 3 and 4 are more
        // accurate than 2 but dominated by 1; 5 was pruned; 6 failed.
        let history = vec![
            o(0, Some(vec![-0.93, 900.0]), None),
            o(1, Some(vec![-0.92, 100.0]), None),
            o(2, Some(vec![-0.80, 10.0]), None),
            o(3, Some(vec![-0.91, 800.0]), None),
            o(4, Some(vec![-0.90, 700.0]), None),
            o(5, Some(vec![-0.99, 1.0]), Some(1)),
            o(6, None, None),
        ];
        let (good, bad) = split(&history, 3);
        assert_eq!(numbers(&good), [0, 2, 1], "the front, its extremes first");
        assert_eq!(numbers(&bad), [3, 4, 5, 6], "then front 1 by crowding, then the pruned and the failed");
    }

    #[test]
    fn a_front_that_does_not_fit_keeps_its_extremes_and_loneliest() {
        // One front of five along a line; four good places: the ends, then the loneliest.
        let history = vec![
            o(0, Some(vec![0.0, 10.0]), None),
            o(1, Some(vec![1.0, 9.0]), None),
            o(2, Some(vec![1.1, 8.9]), None),
            o(3, Some(vec![6.0, 4.0]), None),
            o(4, Some(vec![10.0, 0.0]), None),
        ];
        let (good, bad) = split(&history, 4);
        assert_eq!(numbers(&good)[..2], [0, 4]);
        assert_eq!(numbers(&good)[2], 3, "the lonely middle before the crowded pair");
        assert_eq!(bad.len(), 1);
        assert!([1, 2].contains(&numbers(&bad)[0]), "one of the crowded pair is left out");
    }
}

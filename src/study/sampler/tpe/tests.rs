//! TPE's tests: proposals, the good/bad split, joint and univariate models, several objectives.
use super::*;
use rand::SeedableRng;
use std::path::Path;

#[test]
fn the_bad_group_is_capped_evenly_along_its_ranking() {
    let history: Vec<Observation> = (0..41)
        .map(|n| Observation {
            params: std::borrow::Cow::Owned([("n".to_string(), Value::Int(n))].into()),
            value: Some(n as f64 / 100.0),
            stopped_at: None,
            costs: None,
        })
        .collect();
    let (good, bad) = split(&history, 4);
    assert_eq!(good.len(), 5, "γ(41) = 5: the good group is never capped");
    let kept: Vec<String> = bad.iter().map(|o| o.params["n"].to_string()).collect();
    assert_eq!(kept, ["35", "26", "17", "8"], "4 of the 36 bad ones, best to worst, evenly spaced");
    assert_eq!(split(&history, 1000).1.len(), 36, "below the cap nothing changes");
}

#[test]
fn stopped_trials_rank_at_the_rung_they_reached() {
    let o = |n: i64, value: Option<f64>, stopped_at: Option<usize>| Observation {
        params: std::borrow::Cow::Owned([("n".to_string(), Value::Int(n))].into()),
        value,
        stopped_at,
        costs: None,
    };
    // (observation, why it ranks where it does)
    let history = vec![
        o(0, Some(0.95), Some(1)), // best value, but judged after one epoch
        o(1, Some(0.80), None),    // trained to its end: above every stopped trial
        o(2, None, None),          // failed: last
        o(3, Some(0.85), Some(3)), // reached epoch 3: above those stopped at epoch 1
        o(4, Some(0.90), None),
        o(5, Some(0.70), Some(3)),
    ];
    let (good, bad) = split(&history, usize::MAX);
    let order: Vec<String> = good.iter().chain(&bad).map(|o| o.params["n"].to_string()).collect();
    assert_eq!(order, ["4", "1", "3", "5", "0", "2"]);
    assert_eq!(good.len(), 1, "γ(5 valued) = 1");
}

fn space(sampler: &str, tpe: &str) -> SearchSpace {
    SearchSpace::parse(
        &format!("[study]\nname = \"toy\"\nsampler = \"{sampler}\"\nstartup_trials = 8\n[study.tpe]\n{tpe}\n[params]\nweight_decay = {{ float = [0.0, 1.0] }}\ndrop_rate = {{ float = [0.0, 0.99] }}\nconv0_channels = {{ int = [1, 64] }}\nconv0_activation = {{ choice = [\"relu\", \"elu\", \"tanh\", \"sigmoid\"] }}"),
        Path::new("toy.toml"),
    )
    .unwrap()
}

/// Peak at weight_decay = 0.8, drop_rate = 0.2, 48 channels, tanh.
fn objective(p: &Params) -> f64 {
    let f = |k: &str| p[k].as_f64().unwrap();
    let act = if p["conv0_activation"] == Value::Str("tanh".into()) { 0.0 } else { 0.3 };
    -(f("weight_decay") - 0.8).powi(2)
        - (f("drop_rate") - 0.2).powi(2)
        - ((f("conv0_channels") - 48.0) / 64.0).powi(2)
        - act
}

/// Values of `trials` sequential trials on the toy objective.
fn run(space: &SearchSpace, seed: u64, trials: usize, objective: &dyn Fn(&Params) -> f64) -> Vec<(Params, f64)> {
    let tpe = TpeSampler::from_space(space);
    let mut history: Vec<Observation> = Vec::new();
    for n in 0..trials {
        let mut rng = StdRng::seed_from_u64(seed * 1000 + n as u64);
        let p = if space.study.sampler == crate::study::settings::SamplerKind::Random {
            let mut p = random::sample(space, &mut rng);
            SearchSpace::prune_inactive(&mut p);
            p
        } else {
            tpe.sample_from(space, &history, &mut rng)
        };
        history.push(Observation {
            value: Some(objective(&p)),
            params: std::borrow::Cow::Owned(p),
            stopped_at: None,
            costs: None,
        });
    }
    history.into_iter().map(|o| (o.params.into_owned(), o.value.unwrap())).collect()
}

fn late_mean(v: &[(Params, f64)]) -> f64 {
    v[30..].iter().map(|x| x.1).sum::<f64>() / (v.len() - 30) as f64
}

#[test]
fn tpe_concentrates_on_the_good_region_faster_than_random_joint_or_not() {
    for tpe in ["multivariate = true", "multivariate = false"] {
        let (mut tpe_late, mut random_late) = (0.0, 0.0);
        for seed in 0..5 {
            tpe_late += late_mean(&run(&space("tpe", tpe), seed, 60, &objective));
            random_late += late_mean(&run(&space("random", ""), seed, 60, &objective));
        }
        assert!(
            tpe_late > random_late + 0.1,
            "{tpe}: TPE mean of trials 30–59 {tpe_late:.3} vs random {random_late:.3} (sum over 5 seeds)"
        );
    }
}

/// Two objectives that trade weight_decay against itself, with drop_rate adding to the
/// second: every Pareto-optimal point has drop_rate 0, whatever its weight_decay.
fn two_costs(p: &Params) -> Vec<f64> {
    let f = |k: &str| p[k].as_f64().unwrap();
    vec![f("weight_decay"), 1.0 - f("weight_decay") + 3.0 * f("drop_rate")]
}

/// Late trials' mean drop_rate and mean weight_decay, over 5 seeds of 60 trials, with the
/// two costs given to TPE (multi-objective) or only the first as the value.
fn late_on_two_costs(multi: bool) -> (f64, f64) {
    let space = space("tpe", "");
    let tpe = TpeSampler::from_space(&space);
    let (mut drop_late, mut decay_late) = (0.0, 0.0);
    for seed in 0..5 {
        let mut history: Vec<Observation> = Vec::new();
        for n in 0..60 {
            let p = tpe.sample_from(&space, &history, &mut StdRng::seed_from_u64(seed * 1000 + n));
            let costs = two_costs(&p);
            history.push(Observation {
                value: Some(-costs[0]),
                params: std::borrow::Cow::Owned(p),
                stopped_at: None,
                costs: multi.then_some(costs),
            });
        }
        let late = &history[30..];
        drop_late += late.iter().map(|o| o.params["drop_rate"].as_f64().unwrap()).sum::<f64>() / 30.0;
        decay_late += late.iter().map(|o| o.params["weight_decay"].as_f64().unwrap()).sum::<f64>() / 30.0;
    }
    (drop_late / 5.0, decay_late / 5.0)
}

#[test]
fn with_two_objectives_tpe_moves_towards_the_front_and_spreads_along_it() {
    let (multi_drop, multi_decay) = late_on_two_costs(true);
    let (single_drop, single_decay) = late_on_two_costs(false);
    // The front is at drop_rate 0, all along weight_decay; the first objective alone
    // knows nothing of drop_rate and piles onto weight_decay 0.
    assert!(
        multi_drop < 0.8 * single_drop,
        "nearer the front: mean drop_rate {multi_drop:.3} against {single_drop:.3} on the first objective alone"
    );
    assert!(
        multi_decay > 1.5 * single_decay,
        "spread along it, not piled at weight_decay 0: mean {multi_decay:.3} against {single_decay:.3}"
    );
}

#[test]
fn seeded_and_deterministic() {
    let s = space("tpe", "");
    let values = |seed| run(&s, seed, 20, &objective).into_iter().map(|x| x.1).collect::<Vec<_>>();
    assert_eq!(values(3), values(3));
    assert_ne!(values(3), values(4));
}

#[test]
fn conditional_blocks_are_proposed_exactly_when_they_exist() {
    let s = SearchSpace::parse(
        "[study]\nname = \"c\"\nstartup_trials = 4\n[params]\nn_conv = { int = [1, 3] }\n\"conv*_channels\" = { int = [4, 64] }\nlr = { float = [1e-4, 1e-2], log = true }\n",
        Path::new("c.toml"),
    )
    .unwrap();
    // Deeper is better, and wider blocks better still: the joint model must keep each
    // block's width with its depth.
    let objective = |p: &Params| {
        let n = p["n_conv"].as_f64().unwrap();
        n + (0..n as usize).map(|i| p[&format!("conv{i}_channels")].as_f64().unwrap() / 64.0).sum::<f64>()
    };
    for (p, _) in run(&s, 1, 40, &objective) {
        let n = p["n_conv"].as_f64().unwrap() as usize;
        for i in 0..3 {
            assert_eq!(p.contains_key(&format!("conv{i}_channels")), i < n, "block {i} with n_conv = {n}: {p:?}");
        }
    }
}

#[test]
fn no_collapse_onto_a_cheap_region_that_is_worse() {
    // Narrow networks (the cheap region, channels ≤ 16) score worse; TPE's late proposals
    // stay away from it, while exploration still looks there now and then.
    let s = space("tpe", "exploration = 0.1");
    let objective =
        |p: &Params| (p["conv0_channels"].as_f64().unwrap() / 64.0) - 0.1 * p["drop_rate"].as_f64().unwrap();
    let mut late_cheap = 0;
    let mut late = 0;
    for seed in 0..5 {
        for (p, _) in run(&s, seed, 60, &objective).into_iter().skip(30) {
            late += 1;
            late_cheap += usize::from(p["conv0_channels"].as_f64().unwrap() <= 16.0);
        }
    }
    assert!(late_cheap * 10 < late, "{late_cheap} of {late} late proposals in the cheap, worse region");
}

#[test]
fn unvalued_trials_push_tpe_away_from_their_region() {
    // Every trial with channels < 32 was infeasible; good ones were near 48.
    let s = space("tpe", "multivariate = false");
    let mut history = Vec::new();
    let mut rng = StdRng::seed_from_u64(9);
    for i in 0..40 {
        let mut p = random::sample(&s, &mut rng);
        let ch = if i % 2 == 0 { 1 + i % 31 } else { 32 + i % 33 };
        p.insert("conv0_channels".into(), Value::Int(ch as i64));
        let value = (ch >= 32).then(|| objective(&p));
        history.push(Observation { params: std::borrow::Cow::Owned(p), value, stopped_at: None, costs: None });
    }
    for multivariate in [false, true] {
        let mut sampler = TpeSampler::from_space(&s);
        sampler.settings = TpeSettings { multivariate, exploration: 0.0, ..sampler.settings.clone() };
        let draws: Vec<i64> = (0..30)
            .map(|seed| match &sampler.sample_from(&s, &history, &mut StdRng::seed_from_u64(seed))["conv0_channels"] {
                Value::Int(c) => *c,
                _ => 0,
            })
            .collect();
        let low = draws.iter().filter(|c| **c < 32).count();
        assert!(low <= 3, "multivariate {multivariate}: TPE kept proposing the infeasible region: {draws:?}");
    }
}

//! Property tests: arbitrary input to every parser of user files gives `Ok` or a `TuneError` —
//! never a panic, an abort or a hang — and what a study records always reads back.
//! (`cargo fuzz` targets under `fuzz/` run the same parsers for longer; see README.)

use std::path::Path;

use proptest::prelude::*;
use rand::SeedableRng;
use tune::model::{Architecture, Params, Value, infer};
use tune::study::SearchSpace;
use tune::study::pruner::{Curve, should_prune};
use tune::study::settings::{PrunerKind, PrunerSettings};
use tune::study::storage::replay;
use tune::study::{events::Event, journal::Journal};
use tune::training::EpochMetrics;
use tune::training::layers::Layered;

/// TOML scalars with the values that broke things before: extremes, infinities, NaN, strings.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-3i64..300).prop_map(|i| i.to_string()),
        prop::sample::select(vec![
            "inf",
            "-inf",
            "nan",
            "0.0",
            "-1.0",
            "1e39",
            "1e-300",
            "0.5",
            "\"relu\"",
            "\"swish\"",
            "true",
            "[]",
            "{}"
        ])
        .prop_map(String::from),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

fn distribution() -> impl Strategy<Value = String> {
    prop_oneof![
        scalar(),
        (scalar(), scalar()).prop_map(|(a, b)| format!("{{ int = [{a}, {b}] }}")),
        (scalar(), scalar(), scalar()).prop_map(|(a, b, s)| format!("{{ int = [{a}, {b}], step = {s} }}")),
        (scalar(), scalar(), any::<bool>()).prop_map(|(a, b, l)| format!("{{ float = [{a}, {b}], log = {l} }}")),
        prop::collection::vec(scalar(), 0..4).prop_map(|v| format!("{{ choice = [{}] }}", v.join(", "))),
    ]
}

fn param_key() -> impl Strategy<Value = String> {
    let suffixes = ["pad", "channels", "filter", "stride", "pool", "activation"];
    prop_oneof![
        prop::sample::select(vec!["lr", "batch_size", "weight_decay", "drop_rate", "n_conv", "n_fc", "bogus"])
            .prop_map(String::from),
        (0usize..20, prop::sample::select(suffixes.to_vec())).prop_map(|(i, s)| format!("conv{i}_{s}")),
        prop::sample::select(suffixes.to_vec()).prop_map(|s| format!("\"conv*_{s}\"")),
        (0usize..20, prop::sample::select(vec!["neurons", "activation"])).prop_map(|(i, s)| format!("fc{i}_{s}")),
        prop::sample::select(vec!["neurons", "activation"]).prop_map(|s| format!("\"fc*_{s}\"")),
    ]
}

fn study_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "trials",
        "concurrency",
        "seed",
        "grid_points",
        "startup_trials",
        "history_lag",
        "max_params",
        "sampler",
        "pruner",
        "training.max_epochs",
        "training.patience",
        "training.lr",
        "training.lr_factor",
        "training.batch_size",
        "training.weight_decay",
        "training.subset",
        "pruning.min_resource",
        "pruning.reduction_factor",
        "pruning.warmup_epochs",
    ])
    .prop_map(String::from)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_search_space_parses_or_is_refused(
        study in prop::collection::vec((study_key(), scalar()), 0..5),
        params in prop::collection::vec((param_key(), distribution()), 0..8),
        seed in any::<u64>(),
    ) {
        let mut text = String::from("[study]\nname = \"p\"\n");
        let (plain, nested): (Vec<_>, Vec<_>) = study.iter().partition(|(k, _)| !k.contains('.'));
        for (k, v) in plain { text.push_str(&format!("{k} = {v}\n")); }
        for table in ["training", "pruning"] {
            text.push_str(&format!("[study.{table}]\n"));
            for (k, v) in nested.iter().filter(|(k, _)| k.starts_with(table)) {
                text.push_str(&format!("{} = {v}\n", k.split_once('.').unwrap().1));
            }
        }
        text.push_str("[params]\n");
        for (k, v) in &params { text.push_str(&format!("{k} = {v}\n")); }
        if let Ok(space) = SearchSpace::parse(&text, Path::new("p.toml")) {
            // A space that passed its checks samples, builds, and enumerates without a panic.
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for _ in 0..5 {
                let mut p = tune::study::sampler::random_params(&space, &mut rng);
                SearchSpace::prune_inactive(&mut p);
                let _ = tune::study::start::feasibility(&p, &space);
            }
            let _ = tune::study::sampler::Grid::new(&space);
            prop_assert!(space.study.training.check().is_ok());
            prop_assert!(toml::to_string(&space.study.training).is_ok());
        }
    }

    #[test]
    fn any_params_file_builds_or_is_refused(entries in prop::collection::vec((param_key(), scalar()), 0..10)) {
        let text: String = entries.iter().filter(|(k, _)| !k.contains('*')).map(|(k, v)| format!("{k} = {v}\n")).collect();
        let Ok(params) = toml::from_str::<Params>(&text) else { return Ok(()) };
        if let Ok(arch) = Architecture::from_params(&params, Path::new("p.toml"))
            && let Ok(summary) = infer(&arch)
        {
            prop_assert!(summary.total() <= tune::model::shape::MAX_PARAMS);
        }
        let _ = Layered::default().dictionary(&params, Path::new("p.toml")).build();
    }

    #[test]
    fn any_training_config_is_checked_and_stays_writable(
        entries in prop::collection::vec((prop::sample::select(tune::training::config::config_keys()), scalar()), 0..6),
        lr in proptest::option::of(any::<f64>()),
        epochs in proptest::option::of(any::<usize>()),
    ) {
        let text: String = entries.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let Ok(table) = toml::from_str::<toml::Table>(&text) else { return Ok(()) };
        let layers = Layered::default().table(&table, Path::new("c.toml"), "");
        if let Ok(layers) = layers.and_then(|l| l.flag("lr", "--lr", lr)).and_then(|l| l.flag("epochs", "--epochs", epochs))
            && let Ok(cfg) = layers.build()
        {
            prop_assert!(cfg.check().is_ok());
            prop_assert!(cfg.lr.is_finite() && cfg.weight_decay.is_finite() && cfg.epochs >= 1);
            prop_assert!(toml::to_string(&cfg).is_ok(), "a checked config is always writable as train.toml");
        }
    }

    #[test]
    fn any_bytes_as_idx_or_gzip_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..2000), header in any::<[u8; 16]>()) {
        let p = Path::new("x.idx");
        let _ = tune::data::idx::parse_images(p, &bytes);
        let _ = tune::data::idx::parse_labels(p, &bytes);
        let mut framed = header.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = tune::data::idx::parse_images(p, &framed);
        let _ = tune::data::idx::parse_labels(p, &framed);
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("x.gz");
        let mut fake = vec![0x1f, 0x8b];
        fake.extend_from_slice(&bytes);
        std::fs::write(&gz, &fake).unwrap();
        let _ = tune::data::idx::read_maybe_gz(&gz);
        let csv = dir.path().join("x.csv");
        std::fs::write(&csv, &bytes).unwrap();
        let _ = tune::data::kaggle::read_csv(&csv);
    }

    #[test]
    fn finite_records_round_trip_through_the_journal(
        trials in prop::collection::vec((any::<u64>(), prop::collection::vec((0.0f64..1.0, 0.0f64..1e6, 1e-9f64..1.0), 0..4), -1e300f64..1e300), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        for (n, (seed, epochs, lr)) in trials.iter().enumerate() {
            let params: Params = [("lr".to_string(), Value::Float(*lr)), ("n_conv".to_string(), Value::Int(*seed as i64))].into();
            j.append(&Event::Created { number: n, params, seed: *seed, infeasible: None, retry_of: None, fork: None }).unwrap();
            for (e, (acc, loss, rate)) in epochs.iter().enumerate() {
                let metrics = EpochMetrics { epoch: e + 1, train_loss: *loss, train_acc: *acc, val_loss: *loss, val_acc: *acc, lr: *rate, secs: *loss, latency: None };
                j.append(&Event::Epoch { number: n, metrics }).unwrap();
            }
        }
        let back = replay(dir.path()).unwrap();
        prop_assert_eq!(back.len(), trials.len());
        for (n, (seed, epochs, lr)) in trials.iter().enumerate() {
            prop_assert_eq!(back[&n].seed, *seed);
            prop_assert_eq!(&back[&n].params["lr"], &Value::Float(*lr));
            prop_assert_eq!(back[&n].history.len(), epochs.len());
            for (m, (acc, loss, _)) in back[&n].history.iter().zip(epochs) {
                prop_assert_eq!((m.val_acc, m.train_loss), (*acc, *loss));
            }
        }
    }

    #[test]
    fn pruners_decide_in_bounded_time_whatever_the_settings(
        min_resource in any::<usize>(), reduction_factor in any::<usize>(), warmup in any::<usize>(), startup in any::<usize>(),
        max_epochs in any::<usize>(), curves in prop::collection::vec(prop::collection::vec(0.0f64..1.0, 0..6), 1..6),
    ) {
        let s = PrunerSettings { min_resource, reduction_factor, warmup_epochs: warmup, startup_trials: startup };
        let all: Vec<Curve> = curves.iter().enumerate().map(|(number, v)| Curve { number, val_acc: v.clone(), finished: number % 2 == 0 , paused: false, born: 0 }).collect();
        for kind in [PrunerKind::None, PrunerKind::Median, PrunerKind::Asha, PrunerKind::Hyperband] {
            for trial in &all {
                let _ = should_prune(kind, &s, max_epochs, trial, &all);
            }
        }
    }
}

//! Population-based training: a fork continues its parent's curve, and its retrain replays its schedule.

use crate::common::*;

/// A PBT fork starts from its parent's weights and optimiser state: its first epoch of its own
/// continues the parent's curve, far above what any trial reached in its first epoch.
pub(crate) fn a_pbt_fork_continues_its_parents_curve_from_its_checkpoint() {
    let f = Fixture::new(1600, 200);
    let text = "[study]\nname = \"pbt\"\ntrials = 4\nseed = 8\nsampler = \"random\"\npruner = \"none\"\nscheduler = \"pbt\"\nenqueue_default = false\n\
        [study.pbt]\ninterval = 2\nresample_probability = 0.0\n\
        [study.training]\nmax_epochs = 4\npatience = 4\nsubset = 1200\n\n\
        [params]\nlr = { float = [1e-4, 1.5e-4], log = true }\nn_conv = 1\nconv0_channels = 4\nconv0_pool = 2\nn_fc = 0\n";
    let s = f.write("pbt.toml", text);
    let out = ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", f.data().to_str().unwrap()]));
    let trials = tune::study::run::load_trials(&f.path("runs/pbt")).unwrap();
    let forks: Vec<_> = trials.values().filter(|t| t.fork.is_some()).collect();
    assert!(!forks.is_empty(), "the worst of 4 at epoch 2 is replaced by a fork:\n{out}");
    let first_epochs: Vec<f64> = trials.values().filter(|t| t.fork.is_none()).map(|t| t.history[0].val_acc).collect();
    let best_first = first_epochs.iter().copied().fold(0.0, f64::max);
    for t in forks {
        let fork = t.fork.as_ref().unwrap();
        let parent = &trials[&fork.parent];
        let (at_fork, next) = (parent.history[fork.epoch - 1].val_acc, t.history[fork.epoch].val_acc);
        eprintln!("fork {}: parent {at_fork:.3} → {next:.3}; best first epoch {best_first:.3}", t.number);
        assert!(
            next >= at_fork - 0.1 && next > best_first + 0.05,
            "trial {}: epoch {} val_acc {next:.3} continues its parent's {at_fork:.3} (best first epoch {best_first:.3})\n{out}",
            t.number,
            fork.epoch + 1
        );
        assert!(!fork.changes.is_empty() && fork.changes.iter().all(|c| c.key == "lr"), "{fork:?}");
    }
    // Retraining a fork replays its schedule: its parent's lr up to the fork, then its own.
    let fork = trials.values().find(|t| t.fork.is_some()).unwrap();
    let (parent, at) = (fork.fork.as_ref().unwrap().parent, fork.fork.as_ref().unwrap().epoch);
    let n = fork.number.to_string();
    let d = f.data();
    let out = ok(f.run(&["retrain", "--trial", &n, "--study", "runs/pbt", "--data-dir", d.to_str().unwrap()]));
    assert!(out.contains("replaying its schedule"), "{out}");
    let rows = csv_rows(&f.path(&format!("runs/pbt/retrain/trial-{n}/seed-0/metrics.csv")));
    let lr = |epoch: usize| rows[epoch - 1][5].parse::<f64>().unwrap();
    let (parent_lr, own_lr) = (trials[&parent].params["lr"].as_f64().unwrap(), fork.params["lr"].as_f64().unwrap());
    assert!((lr(at) - parent_lr).abs() < 1e-12, "epoch {at} trains with trial {parent}'s lr {parent_lr}: {}", lr(at));
    assert!((lr(at + 1) - own_lr).abs() < 1e-12, "epoch {} with the fork's own {own_lr}: {}", at + 1, lr(at + 1));
    assert_eq!(rows.len(), 4, "to the end");

    // Under a cosine schedule, the replay follows the rates the study's trials had, epoch by
    // epoch: the parent's stage stops at the fork, but its schedule spans the whole run.
    let cosine = text
        .replace("name = \"pbt\"", "name = \"cos\"")
        .replace("subset = 1200", "subset = 1200\nlr_schedule = \"cosine\"");
    let s = f.write("cos.toml", &cosine);
    ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", d.to_str().unwrap()]));
    let trials = tune::study::run::load_trials(&f.path("runs/cos")).unwrap();
    let fork = trials.values().find(|t| t.fork.is_some()).expect("a fork");
    let n = fork.number.to_string();
    let args = ["retrain", "--trial", &n, "--study", "runs/cos", "--subset", "1200", "--data-dir", d.to_str().unwrap()];
    ok(f.run(&args));
    let rows = csv_rows(&f.path(&format!("runs/cos/retrain/trial-{n}/seed-0/metrics.csv")));
    let replayed: Vec<f64> = rows.iter().map(|r| r[5].parse().unwrap()).collect();
    let studied: Vec<f64> = fork.history.iter().map(|m| m.lr).collect();
    assert_eq!(replayed.len(), studied.len());
    for (a, b) in replayed.iter().zip(&studied) {
        assert!((a - b).abs() <= 1e-12 + 1e-9 * b.abs(), "replayed rates {replayed:?} vs the study's {studied:?}");
    }
    assert!(
        studied.windows(2).all(|w| w[1] < w[0]) || fork.fork.as_ref().unwrap().changes.iter().any(|c| c.key == "lr")
    );
}

//! `tune report`, `tune retrain` and `tune eval` through the real binary.

mod common;
use common::*;
use std::path::Path;

fn main() {
    let no_browser = common::harness::without_browser("renders the report");
    common::harness::run(vec![
        (
            "report_renders_every_plot_and_export_for_a_mixed_study",
            None,
            report_renders_every_plot_and_export_for_a_mixed_study,
        ),
        ("the_report_page_renders_in_a_real_browser", no_browser, the_report_page_renders_in_a_real_browser),
        ("report_on_an_empty_dir_says_what_to_do", None, report_on_an_empty_dir_says_what_to_do),
        ("retrain_best_tests_once_and_eval_agrees", None, retrain_best_tests_once_and_eval_agrees),
        (
            "retrain_top_picks_on_validation_and_tests_only_the_pick",
            None,
            retrain_top_picks_on_validation_and_tests_only_the_pick,
        ),
    ])
}

fn assert_image(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|_| panic!("{} exists", path.display()));
    if path.extension().unwrap() == "png" {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        let (w, h) = (
            u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
            u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
        );
        assert!(w >= 400 && h >= 150 && bytes.len() > 8_000, "{}: {w}×{h}, {} bytes", path.display(), bytes.len());
    } else {
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>") && text.len() > 2_000,
            "{}",
            path.display()
        );
    }
}

fn report_renders_every_plot_and_export_for_a_mixed_study() {
    let f = Fixture::new(0, 0);
    fixture_study(&f.path("runs/mixed"));
    let out = ok(f.run(&["report", "runs"]));
    assert!(out.contains("9 trials: 4 complete, 2 pruned, 1 failed, 1 infeasible, 1 running"), "{out}");
    let r = f.path("runs/mixed/report");
    for plot in ["leaderboard", "history", "learning_curves", "parallel_coordinates", "importance", "infeasible"] {
        assert_image(&r.join(format!("{plot}.png")));
        assert_image(&r.join(format!("{plot}.svg")));
    }
    let headers = csv_headers(&r.join("leaderboard.csv"));
    assert_eq!(
        headers[..12],
        [
            "rank",
            "trial",
            "state",
            "best_val_acc",
            "best_epoch",
            "epochs",
            "seconds",
            "start",
            "end",
            "duration_secs",
            "worker",
            "reason"
        ]
    );
    assert!(headers.contains(&"conv0_activation".to_string()));
    let json: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(r.join("leaderboard.json")).unwrap()).unwrap();
    assert_eq!(json.len(), 9);
    assert_eq!(json[0].keys().cloned().collect::<std::collections::BTreeSet<_>>(), headers.iter().cloned().collect());
    assert_eq!(json[0]["trial"], 6, "the best complete trial ranks first; the better running trial 8 is not ranked");
    let unranked: Vec<(serde_json::Value, serde_json::Value)> =
        json[6..].iter().map(|r| (r["trial"].clone(), r["rank"].clone())).collect();
    assert_eq!(
        unranked,
        [(3.into(), serde_json::Value::Null), (7.into(), serde_json::Value::Null), (8.into(), serde_json::Value::Null)],
        "failed, infeasible and running trials follow, unranked"
    );
    assert!(out.contains("not ranked: 1 running (#8), 1 failed (#3), 1 infeasible (#7)"), "{out}");
    let md = std::fs::read_to_string(r.join("leaderboard.md")).unwrap();
    assert!(md.starts_with("| rank | trial | state |"), "{md}");
    let html = std::fs::read_to_string(r.join("index.html")).unwrap();
    for needle in [
        "leaderboard.svg",
        "history.svg",
        "learning_curves.svg",
        "parallel_coordinates.svg",
        "importance.svg",
        "infeasible.svg",
        "conv0_pool",
        "dashboard.html",
    ] {
        assert!(html.contains(needle), "index.html mentions {needle}");
    }
    assert!(!r.join("front.svg").exists() && !html.contains("front.svg"), "one objective: no front plot");
    // The interactive page, offline: the dashboard's own page with the snapshot inside.
    let dashboard = std::fs::read_to_string(r.join("dashboard.html")).unwrap();
    assert!(dashboard.contains("TUNE_EMBEDDED") && dashboard.contains("ASHA rung 1"), "the data is embedded");
    assert!(!dashboard.contains("src=\"vendor/") && !dashboard.contains("src=\"http"), "and its scripts too");
}

/// The static page, opened from its file in a real browser (headless Chromium), renders with
/// its content: the report is meant to be shared and opened offline.
fn the_report_page_renders_in_a_real_browser() {
    let chromium = std::env::var("TUNE_CHROMIUM").unwrap();
    let f = Fixture::new(0, 0);
    fixture_study(&f.path("runs/mixed"));
    ok(f.run(&["report", "runs"]));
    let r = f.path("runs/mixed/report");
    let shot = f.path("shot.png");
    let status = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,3000",
        ])
        .arg(format!("--user-data-dir={}", f.path("chrome").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", r.join("index.html").display()))
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&shot).unwrap();
    assert!(bytes.len() > 50_000, "the rendered page has content: {} bytes", bytes.len());
}

fn report_on_an_empty_dir_says_what_to_do() {
    let f = Fixture::new(0, 0);
    std::fs::create_dir_all(f.path("runs")).unwrap();
    let o = f.run(&["report", "runs"]);
    assert_eq!(o.status.code(), Some(6));
    assert!(text(&o).contains("tune run"), "{}", text(&o));
}

fn retrain_best_tests_once_and_eval_agrees() {
    let f = Fixture::new(600, 100);
    let s = f.write(
        "s.toml",
        "[study]\nname = \"r\"\ntrials = 2\npruner = \"none\"\nseed = 1\n[study.training]\nmax_epochs = 2\nsubset = 300\n\
         [params]\nlr = { float = [2e-3, 5e-3] }\nconv0_channels = 6\nconv0_pool = 2\nconv1_channels = 8\nconv1_pool = 2\nfc0_neurons = 24\n",
    );
    let d = f.data();
    ok(f.run(&["run", s.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--concurrency", "2"]));
    let out = ok(f.run(&["retrain", "--best", "--epochs", "2", "--seeds", "2", "--data-dir", d.to_str().unwrap()]));
    assert!(out.contains("test accuracy over 2 seeds") && !out.contains("resuming"), "{out}");
    // One directory per retrained trial, one per seed under it.
    let trials: Vec<_> = std::fs::read_dir(f.path("runs/r/retrain")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(trials.len(), 1, "{trials:?}");
    let trial_dir = trials[0].clone();
    assert!(trial_dir.file_name().unwrap().to_str().unwrap().starts_with("trial-"), "{trial_dir:?}");
    let dir = trial_dir.join("seed-0");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("test.json")).unwrap()).unwrap();
    let total: u64 = report["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 100, "the confusion matrix covers the whole balanced test split (10 per class here)");
    assert_eq!(report["per_class"].as_array().unwrap().len(), 10);
    for file in ["confusion.png", "confusion.svg", "history.png", "metrics.csv", "best.bpk", "params.toml"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["test_accuracy"].as_array().unwrap().len(), 2);
    // The report shows the retrain: the same mean as summary.json, the curves, and links to
    // each seed's confusion matrix that resolve from the page.
    let rep = ok(f.run(&["report", "runs/r"]));
    let trial = summary["trial"].as_u64().unwrap();
    let mean = format!(
        "retrain trial {trial}: test accuracy {:.4} ± {:.4} over 2 seed(s)",
        summary["mean"].as_f64().unwrap(),
        summary["std"].as_f64().unwrap()
    );
    assert!(rep.contains(&mean), "{rep}\nwanted: {mean}");
    let report_dir = f.path("runs/r/report");
    assert_image(&report_dir.join("retrain_curves.png"));
    assert_image(&report_dir.join("retrain_curves.svg"));
    let page = std::fs::read_to_string(report_dir.join("index.html")).unwrap();
    for seed in 0..2 {
        let link = format!("../retrain/trial-{trial}/seed-{seed}/confusion.svg");
        assert!(page.contains(&format!("href=\"{link}\"")), "{link} in the page");
        assert!(report_dir.join(&link).is_file(), "{link} resolves");
    }
    // `tune eval` of the saved model gives the same test accuracy.
    let eval =
        ok(f.run(&["eval", "--model", dir.to_str().unwrap(), "--split", "test", "--data-dir", d.to_str().unwrap()]));
    let acc = report["accuracy"].as_f64().unwrap();
    assert!(eval.contains(&format!("accuracy {acc:.4}")), "{eval} vs {acc}");
    // A study trial evaluates by number from the journal under --runs-dir, as its directory does.
    let trial_n = trial_dir.file_name().unwrap().to_str().unwrap().trim_start_matches("trial-").to_string();
    let by_dir = ok(f.run(&[
        "eval",
        "--model",
        &format!("runs/r/trials/{trial_n}"),
        "--split",
        "val",
        "--data-dir",
        d.to_str().unwrap(),
    ]));
    std::fs::rename(f.path("runs"), f.path("elsewhere")).unwrap();
    let args = ["eval", "--study", "r", "--trial", &trial_n, "--runs-dir", "elsewhere", "--split", "val", "--data-dir"];
    let by_number = f.run(&[&args[..], &[d.to_str().unwrap()]].concat());
    std::fs::rename(f.path("elsewhere"), f.path("runs")).unwrap();
    let by_number = ok(by_number);
    let accuracy = |out: &str| out.lines().find(|l| l.contains("accuracy")).map(str::to_string);
    assert!(accuracy(&by_dir).is_some() && accuracy(&by_number) == accuracy(&by_dir), "{by_number}\nvs\n{by_dir}");
    // The same command resumes: finished seeds are neither trained nor tested again; a seed
    // whose test was lost (a crash after training) is tested without training.
    let read = |seed: &str, file: &str| std::fs::read(trial_dir.join(seed).join(file)).unwrap();
    let (metrics0, test0, metrics1) =
        (read("seed-0", "metrics.csv"), read("seed-0", "test.json"), read("seed-1", "metrics.csv"));
    let test1 = read("seed-1", "test.json");
    std::fs::remove_file(trial_dir.join("seed-1/test.json")).unwrap();
    let again = ok(f.run(&["retrain", "--best", "--epochs", "2", "--seeds", "2", "--data-dir", d.to_str().unwrap()]));
    assert!(again.contains("seed 0: resuming") && again.contains("seed 1: resuming"), "{again}");
    assert_eq!(
        (read("seed-0", "metrics.csv"), read("seed-0", "test.json"), read("seed-1", "metrics.csv")),
        (metrics0.clone(), test0, metrics1)
    );
    assert_eq!(read("seed-1", "test.json"), test1, "the same weights give the same test result");
    let resumed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(resumed, summary);
    // Other settings never discard the finished retrain; --fresh replaces it.
    let refused = f.run(&["retrain", "--best", "--epochs", "1", "--data-dir", d.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("--fresh") && text(&refused).contains("seed-0"), "{}", text(&refused));
    assert_eq!(read("seed-0", "metrics.csv"), metrics0, "left as it was");
    let other = ok(f.run(&["retrain", "--best", "--epochs", "1", "--fresh", "--data-dir", d.to_str().unwrap()]));
    assert!(!other.contains("resuming"), "{other}");
    assert_eq!(String::from_utf8(read("seed-0", "metrics.csv")).unwrap().lines().count(), 2, "header and one epoch");
    // The retrain takes the study's patiences unless told otherwise; a changed patience is
    // another run, refused without --fresh like any other setting.
    let patiences = || {
        let cfg: toml::Table = toml::from_str(&String::from_utf8(read("seed-0", "train.toml")).unwrap()).unwrap();
        (cfg["patience"].as_integer(), cfg["lr_patience"].as_integer())
    };
    assert_eq!(patiences(), (Some(10), Some(5)), "the study's (tune's defaults)");
    let longer = [
        "retrain",
        "--best",
        "--epochs",
        "1",
        "--patience",
        "7",
        "--lr-patience",
        "2",
        "--data-dir",
        d.to_str().unwrap(),
    ];
    let refused = f.run(&longer);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert_eq!(patiences(), (Some(10), Some(5)), "left as it was");
    ok(f.run(&[&longer[..], &["--fresh"]].concat()));
    assert_eq!(patiences(), (Some(7), Some(2)));
}

fn retrain_top_picks_on_validation_and_tests_only_the_pick() {
    let f = Fixture::new(600, 100);
    let s = f.write(
        "s.toml",
        "[study]\nname = \"t\"\ntrials = 3\npruner = \"none\"\nseed = 5\n[study.training]\nmax_epochs = 1\nsubset = 200\n\
         [params]\nlr = { float = [1e-3, 8e-3] }\nconv0_channels = { choice = [4, 8] }\nconv0_pool = 2\nfc0_neurons = 16\n",
    );
    let d = f.data();
    ok(f.run(&["run", s.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--concurrency", "2"]));
    let args = ["retrain", "--best", "--top", "2", "--epochs", "2", "--seeds", "2", "--data-dir", d.to_str().unwrap()];
    let out = ok(f.run(&args));
    assert!(out.contains("top trials at the retrain's fidelity") && out.contains("← picked"), "{out}");
    let retrain = f.path("runs/t/retrain");
    let read_json = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{}", path.display()))).unwrap()
    };
    let rung = read_json(&retrain.join("top.json"));
    let candidates = rung["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2, "{rung}");
    let field = |i: usize, key: &str| candidates[i][key].as_f64().unwrap();
    assert!(field(0, "study_val_acc") >= field(1, "study_val_acc"), "the study's best first: {rung}");
    let chosen = rung["chosen"].as_u64().unwrap();
    let best = if field(1, "val_acc") > field(0, "val_acc") { 1 } else { 0 };
    assert_eq!(candidates[best]["trial"].as_u64().unwrap(), chosen, "the best retrain val_acc is picked: {rung}");
    let other = candidates[1 - best]["trial"].as_u64().unwrap();
    let (picked, passed) = (retrain.join(format!("trial-{chosen}")), retrain.join(format!("trial-{other}")));
    // The pick goes on to its second seed and the test; the other is never tested.
    for file in ["seed-0/test.json", "seed-1/test.json", "summary.json"] {
        assert!(picked.join(file).is_file(), "{file} of the pick");
    }
    assert!(passed.join("seed-0/metrics.csv").is_file(), "the other trained its first seed");
    for file in ["seed-0/test.json", "seed-1", "summary.json"] {
        assert!(!passed.join(file).exists(), "{file} of the trial not picked");
    }
    // The pick's retrain val_acc is its first seed's best epoch.
    let vals: Vec<f64> = std::fs::read_to_string(picked.join("seed-0/metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert_eq!(vals.len(), 2, "two epochs");
    let picked_val = candidates[best]["val_acc"].as_f64().unwrap();
    assert!(vals.iter().any(|v| (v - picked_val).abs() < 1e-9), "{vals:?} vs {picked_val}");
    assert_eq!(read_json(&picked.join("summary.json"))["trial"].as_u64().unwrap(), chosen);
    // The same command resumes: nothing trains again, and the pick is the same.
    let metrics = |dir: &Path| std::fs::read(dir.join("seed-0/metrics.csv")).unwrap();
    let before = (metrics(&picked), metrics(&passed));
    let again = ok(f.run(&args));
    assert!(
        again.contains(&format!("trial {chosen} seed 0: resuming"))
            && again.contains(&format!("trial {other} seed 0: resuming")),
        "{again}"
    );
    assert_eq!((metrics(&picked), metrics(&passed)), before);
    assert_eq!(read_json(&retrain.join("top.json")), rung);
    // Best weights newer than their test (a run that trained on after it) are tested again.
    let test_path = picked.join("seed-0/test.json");
    let tested = std::fs::read(&test_path).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(picked.join("seed-0/best.bpk")).unwrap().set_modified(later).unwrap();
    let retested = ok(f.run(&args));
    assert!(
        retested.contains("after its test; testing it") && retested.matches("testing it").count() == 1,
        "{retested}"
    );
    assert_eq!(std::fs::read(&test_path).unwrap(), tested, "the same weights, the same result");
    // The report tells the candidate that lost from a seed still training.
    let rep = ok(f.run(&["report", "runs/t"]));
    assert!(
        rep.contains(&format!("trial {other}: a --top candidate, not picked (trial {chosen} validated better)")),
        "{rep}"
    );
    let page = std::fs::read_to_string(f.path("runs/t/report/index.html")).unwrap();
    assert!(page.contains("not picked (--top), never tested"), "the page's row for the candidate that lost");
    // --top (like the other choosing flags) picks among the best: with a trial named there
    // is nothing to choose, and the command says so rather than ignore it.
    for flag in [&["--top", "2"][..], &["--include-pruned"], &["--max-params", "1000"]] {
        let refused = f.run(&[&["retrain", "--trial", "0", "--data-dir", d.to_str().unwrap()][..], flag].concat());
        assert_eq!(refused.status.code(), Some(2), "{flag:?}: {}", text(&refused));
        assert!(text(&refused).contains("--trial") && text(&refused).contains(flag[0]), "{}", text(&refused));
    }
}

//! `tune dashboard` through the real binary: its API over a runs directory, its token, its
//! fixed routes, and the page in a real Chromium (where `TUNE_CHROMIUM` names one).

mod common;
use common::browser::Browser;
use common::dashboard::Dashboard;
use common::*;

use tune::study::{events::Event, journal::Journal};

fn main() {
    let no_browser = common::harness::without_browser("drives the dashboard");
    common::harness::run(vec![
        (
            "the_api_sends_studies_and_the_trials_changed_since_a_version_and_nothing_else",
            None,
            the_api_sends_studies_and_the_trials_changed_since_a_version_and_nothing_else,
        ),
        ("a_token_guards_the_data_but_not_the_page", None, a_token_guards_the_data_but_not_the_page),
        (
            "in_a_real_browser_epochs_arrive_live_hover_names_the_trial_and_a_filter_hides_pruned",
            no_browser.clone(),
            in_a_real_browser_epochs_arrive_live_hover_names_the_trial_and_a_filter_hides_pruned,
        ),
        (
            "bench_dashboard_at_10000_trials",
            Some("a benchmark: run it with --ignored --nocapture, TUNE_CHROMIUM set".into()),
            bench_dashboard_at_10000_trials,
        ),
    ]);
}

/// A study with complete, pruned, failed, infeasible and running (trial 8) trials, and one
/// journal written before tune kept timestamps.
fn studies(f: &Fixture) {
    fixture_study(&f.path("runs/s"));
    let created =
        Event::Created { number: 0, params: Default::default(), seed: 0, infeasible: None, retry_of: None, fork: None };
    // An Event alone serialises without the stamp every record now carries.
    f.write("runs/old/journal.jsonl", &format!("{}\n", serde_json::to_string(&created).unwrap()));
}

fn the_api_sends_studies_and_the_trials_changed_since_a_version_and_nothing_else() {
    let f = Fixture::new(10, 10);
    studies(&f);
    let d = Dashboard::start(&f, &["runs"]);
    let list = d.json("api/studies");
    let names: Vec<&str> = list["studies"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["old", "s"]);
    let s = &list["studies"][1];
    assert_eq!(s["trials"], 9);
    assert_eq!(
        s["states"],
        serde_json::json!({"complete": 4, "pruned": 2, "failed": 1, "infeasible": 1, "running": 1})
    );

    let all = d.json("api/studies/s?since=0");
    let trials = all["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 9);
    let eight = trials.iter().find(|t| t["n"] == 8).unwrap();
    assert_eq!((eight["state"].as_str(), eight["val"].as_array().unwrap().len()), (Some("running"), 5));
    assert!(eight["created"].as_f64().unwrap() > 1.7e9, "a Unix time: {eight}");
    assert!(eight["worker"].as_str().unwrap().contains(':'), "host:pid");
    assert!(eight["size"].as_u64().unwrap() > 1000 && eight["flops"].as_u64().unwrap() > 10_000, "{eight}");
    assert_eq!(all["trials"][1]["reason"], "ASHA rung 1");
    assert_eq!(all["objectives"], serde_json::json!([]), "val_acc alone");
    let version = all["version"].as_u64().unwrap();

    // A new epoch of the running trial: only that trial comes back, one epoch longer.
    Journal::open(&f.path("runs/s")).append(&fixture_epoch(8, 6)).unwrap();
    let next = d.json(&format!("api/studies/s?since={version}"));
    assert_eq!(next["version"].as_u64(), Some(version + 1));
    let changed = next["trials"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!((changed[0]["n"].as_u64(), changed[0]["val"].as_array().unwrap().len()), (Some(8), 6));
    let quiet = d.json(&format!("api/studies/s?since={}", version + 1));
    assert!(quiet["trials"].as_array().unwrap().is_empty() && quiet["importance"].as_array().unwrap().is_empty());

    // A journal from before timestamps reads, with no times.
    let old = d.json("api/studies/old?since=0");
    assert_eq!(old["trials"][0]["created"], serde_json::Value::Null);
    assert_eq!(old["trials"][0]["state"], "running");
    assert_eq!(d.json("api/studies/s/retrains"), serde_json::json!([]));

    // Fixed routes only: no request names a file, whatever its dots and escapes.
    for target in [
        "/api/studies/..%2Fs",
        "/api/studies/%2E%2E%2Fs%2Fjournal.jsonl",
        "/api/studies/s/../../../etc/passwd",
        "/vendor/../runs/s/journal.jsonl",
        "/../runs/s/journal.jsonl",
        "/runs/s/journal.jsonl",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/vendor/echarts.min.js/../../../Cargo.toml",
    ] {
        let (status, reply) = d.raw("GET", target);
        assert!(status.contains(" 404") || status.contains(" 400"), "{target}: {status}");
        assert!(
            !reply.contains("\"event\"") && !reply.contains("root:") && !reply.contains("[package]"),
            "{target}: {reply}"
        );
    }
    // Read-only: nothing but GET.
    for method in ["POST", "PUT", "DELETE"] {
        let (status, _) = d.raw(method, "/api/studies/s");
        assert!(status.contains(" 405"), "{method}: {status}");
    }
    let (status, page) = d.raw("GET", "/");
    assert!(status.contains(" 200") && page.contains("dashboard.js"));
    assert!(page.to_lowercase().contains("content-security-policy: default-src 'self'"), "{page}");
    let (status, library) = d.get("vendor/echarts.min.js", None);
    assert!(status == 200 && library.len() > 1_000_000, "the vendored chart library is served");
    assert_eq!(d.get("api/studies/nope", None).0, 404);
}

fn a_token_guards_the_data_but_not_the_page() {
    let f = Fixture::new(10, 10);
    studies(&f);
    let token = "0123456789abcdef-token";
    let d = Dashboard::start(&f, &["runs", "--token", token]);
    assert!(d.url.ends_with(&format!("/?token={token}")), "the URL to open carries it: {}", d.url);
    assert_eq!(d.get("api/studies", None).0, 401);
    assert_eq!(d.get("api/studies/s?since=0", Some("0123456789abcdef-wrong")).0, 401);
    assert_eq!(d.get("api/studies/s/retrains", None).0, 401);
    let (status, body) = d.get("api/studies", Some(token));
    assert!(status == 200 && body.contains("\"s\""), "{body}");
    assert_eq!(d.get(&format!("api/studies/s?since=0&token={token}"), None).0, 200);
    assert_eq!(d.get("", None).0, 200, "the page holds no data");
    let short = f.run(&["dashboard", "runs", "--port", "0", "--token", "short"]);
    assert_eq!(short.status.code(), Some(2), "{}", text(&short));
    assert!(text(&short).contains("--token"), "{}", text(&short));
}

fn in_a_real_browser_epochs_arrive_live_hover_names_the_trial_and_a_filter_hides_pruned() {
    let chromium = std::env::var("TUNE_CHROMIUM").expect("TUNE_CHROMIUM names a Chromium");
    let f = Fixture::new(10, 10);
    studies(&f);
    let d = Dashboard::start(&f, &["runs"]);
    let mut b = Browser::start(&chromium, 1400, 1000);
    b.navigate(&format!("{}#s", d.url));
    let status = "document.getElementById('status').dataset";
    assert!(
        b.wait_for(&format!("{status}.trials === '9'"), 30),
        "the page shows the study: {}",
        b.eval(&format!("{status}.trials"))
    );
    let loaded = b.eval("tuneDashboard.loadedAt");
    let epochs = b.eval(&format!("Number({status}.epochs)")).as_u64().unwrap();

    // A worker records an epoch: the page shows it without a reload.
    Journal::open(&f.path("runs/s")).append(&fixture_epoch(8, 6)).unwrap();
    assert!(b.wait_for(&format!("Number({status}.epochs) === {}", epochs + 1), 15), "the new epoch appeared");
    assert_eq!(b.eval("tuneDashboard.loadedAt"), loaded, "without a reload");
    let series = |id: &str| format!("tuneDashboard.charts.{id}.getOption().series.find((s) => s.id === ");
    let grown = b.eval(&format!("{}'curves-running').data.filter((p) => p[2] === 8).length", series("curves")));
    assert_eq!(grown, 6, "trial 8's curve grew to 6 epochs");

    // The mouse over trial 2's point names it and its parameters.
    let at = b.eval(
        "(() => { const c = tuneDashboard.charts.history; const t = tuneDashboard.model.trials.get(2);
          const [x, y] = c.convertToPixel({ seriesId: 'history-complete' }, [2, t.best]);
          const r = document.getElementById('history').getBoundingClientRect(); return [r.left + x, r.top + y]; })()",
    );
    b.hover(at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
    let tip = "(document.querySelector('#history .tune-tooltip') || {}).innerText || ''";
    assert!(b.wait_for(&format!("({tip}).includes('trial 2')"), 10), "a tooltip for trial 2: {}", b.eval(tip));
    let shown = b.eval(tip).as_str().unwrap().to_string();
    for part in ["complete", "conv0_activation = gelu", "conv0_channels = 24", "conv0_pool = 1", "lr = 0.0003"] {
        assert!(shown.contains(part), "the tooltip shows {part}: {shown}");
    }
    assert!(!shown.contains("0.000300000"), "floats at six significant digits: {shown}");
    if let Ok(dir) = std::env::var("TUNE_SCREENSHOTS") {
        std::fs::write(std::path::Path::new(&dir).join("dashboard-hover.png"), b.screenshot()).unwrap();
    }

    // Hiding pruned trials takes them off every chart.
    let pruned = format!("{}'history-pruned').data.length", series("history"));
    assert_eq!(b.eval(&pruned), 2);
    b.eval("document.getElementById('filter-pruned').click()");
    assert!(b.wait_for(&format!("{pruned} === 0"), 5), "pruned trials hidden from the history");
    assert_eq!(b.eval(&format!("{}'curves-pruned').data.length", series("curves"))), 0);
    assert_eq!(b.eval(&format!("{}'pruned-at').data.length", series("curves"))), 0);
    let names = b.eval(&format!("{}'parallel').data.map((d) => d.name)", series("parallel")));
    assert!(
        !names.as_array().unwrap().iter().any(|n| n == "1" || n == "5"),
        "not in the parallel coordinates: {names}"
    );
    assert_eq!(b.eval(&format!("{status}.shown")), "7");
    b.eval("document.getElementById('filter-pruned').click()");
    assert!(b.wait_for(&format!("{pruned} === 2"), 5), "and back");

    // The accuracy-versus-size front: exactly the ranked trials no network as small or smaller beats.
    let api = d.json("api/studies/s?since=0");
    let ranked: Vec<(u64, u64, f64)> = api["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "complete" || t["state"] == "pruned")
        .map(|t| (t["n"].as_u64().unwrap(), t["size"].as_u64().unwrap(), t["best"].as_f64().unwrap()))
        .collect();
    let beaten = |&(n, size, best): &(u64, u64, f64)| {
        ranked.iter().any(|&(m, s, b)| m != n && s <= size && b >= best && (s < size || b > best || m < n))
    };
    let mut expected: Vec<(u64, u64, f64)> = ranked.iter().copied().filter(|t| !beaten(t)).collect();
    expected.sort_by_key(|t| t.1);
    let drawn = b.eval(&format!("{}'front').data.map((p) => p[2])", series("front")));
    let expected: Vec<u64> = expected.iter().map(|t| t.0).collect();
    assert!(expected.len() >= 2, "the fixture has a trade-off: {ranked:?}");
    assert_eq!(drawn, serde_json::json!(expected), "the drawn front, smallest first");

    // `tune report`'s dashboard.html is the same page, working from the file alone.
    ok(f.run(&["report", "runs/s"]));
    b.navigate(&format!("file://{}", f.path("runs/s/report/dashboard.html").display()));
    assert!(
        b.wait_for(&format!("{status}.trials === '9' && {status}.epochs === '{}'", epochs + 1), 20),
        "the snapshot drew"
    );
    assert!(b.eval("document.getElementById('status').textContent").as_str().unwrap().contains("snapshot"));
    assert_eq!(b.eval(&format!("{}'history-pruned').data.length", series("history"))), 2);
}

/// A simulated study of `n` trials (no training): 12 parameters as a CNN space has them, 30%
/// complete after 12 epochs, 55% pruned at epoch 1–4, 10% failed, 5% infeasible.
fn simulated_study(dir: &std::path::Path, n: usize) {
    use tune::model::{Params, Value};
    use tune::study::TrialState;
    std::fs::create_dir_all(dir).unwrap();
    let journal = Journal::open(dir);
    let mut events = Vec::new();
    let unit = |i: usize, salt: usize| ((i * 2_654_435_761 + salt * 40_503) % 1_000_003) as f64 / 1_000_003.0;
    for i in 0..n {
        let mut params = Params::new();
        params.insert("lr".into(), Value::Float(1e-4 * 30f64.powf(unit(i, 1))));
        params.insert("weight_decay".into(), Value::Float(1e-6 * 1000f64.powf(unit(i, 2))));
        params.insert("drop_rate".into(), Value::Float(0.5 * unit(i, 3)));
        params.insert("n_conv".into(), Value::Int(2 + (i % 3) as i64));
        for c in 0..3 {
            params.insert(format!("conv{c}_channels"), Value::Int([16, 32, 48, 64][(i / (c + 1)) % 4]));
            params.insert(format!("conv{c}_activation"), Value::Str(["relu", "elu", "gelu"][(i / (c + 2)) % 3].into()));
        }
        params.insert("fc0_neurons".into(), Value::Int([128, 256, 512][i % 3]));
        params.insert("aug_shift".into(), Value::Int((i % 3) as i64));
        let roll = unit(i, 4);
        let infeasible = (roll < 0.05).then(|| "conv2_pool: does not fit".to_string());
        events.push(Event::Created {
            number: i,
            params,
            seed: i as u64,
            infeasible: infeasible.clone(),
            retry_of: None,
            fork: None,
        });
        if infeasible.is_some() {
            continue;
        }
        let (epochs, state) = match roll {
            r if r < 0.15 => (1 + i % 3, TrialState::Failed),
            r if r < 0.70 => (1 + i % 4, TrialState::Pruned),
            _ => (12, TrialState::Complete),
        };
        for e in 1..=epochs {
            let mut event = fixture_epoch(0, e);
            if let Event::Epoch { number, metrics } = &mut event {
                *number = i;
                metrics.val_acc = 0.80 + 0.1 * unit(i, 5) + 0.005 * e as f64;
            }
            events.push(event);
        }
        events.push(Event::Finished { number: i, state, reason: None, secs: 10.0 });
    }
    for chunk in events.chunks(5_000) {
        journal.append_all(chunk).unwrap();
    }
}

/// Figures, not assertions: the page's first load and the time to show a new epoch at 10,000
/// trials. `cargo test --release --test cli_dashboard -- --ignored --nocapture` (with
/// TUNE_CHROMIUM set); docs/dashboard.md has the figures of one run.
fn bench_dashboard_at_10000_trials() {
    let chromium = std::env::var("TUNE_CHROMIUM").expect("TUNE_CHROMIUM names a Chromium");
    let trials: usize = std::env::var("TUNE_BENCH_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(10_000);
    let f = Fixture::new(10, 10);
    let started = std::time::Instant::now();
    simulated_study(&f.path("runs/big"), trials);
    let journal_mb = std::fs::metadata(f.path("runs/big/journal.jsonl")).unwrap().len() as f64 / 1e6;
    println!("{trials} trials written in {:.2} s; journal {journal_mb:.1} MB", started.elapsed().as_secs_f64());

    let d = Dashboard::start(&f, &["runs"]);
    for round in ["cold (the server reads the journal)", "warm"] {
        let t = std::time::Instant::now();
        let (status, body) = d.get("api/studies/big?since=0", None);
        assert_eq!(status, 200);
        println!(
            "GET every trial, {round}: {:.0} ms, {:.1} MB of JSON",
            t.elapsed().as_secs_f64() * 1e3,
            body.len() as f64 / 1e6
        );
    }
    let mut b = Browser::start(&chromium, 1400, 1000);
    let status = "document.getElementById('status').dataset";
    for load in 1..=3 {
        b.navigate("about:blank");
        assert!(b.wait_for("document.getElementById('status') === null", 10));
        let t = std::time::Instant::now();
        b.navigate(&format!("{}#big", d.url));
        assert!(b.wait_for(&format!("{status}.trials === '{trials}'"), 120), "the page loaded");
        let render = b.eval("tuneDashboard.lastRenderMs").as_f64().unwrap();
        println!(
            "page load {load}: {:.0} ms to all {trials} trials drawn (of which the first render {render:.0} ms)",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let journal = Journal::open(&f.path("runs/big"));
    for k in 1..=3 {
        let epochs = b.eval(&format!("Number({status}.epochs)")).as_u64().unwrap();
        let renders = b.eval("tuneDashboard.renders").as_u64().unwrap();
        let mut event = fixture_epoch(0, 12 + k);
        if let Event::Epoch { number, .. } = &mut event {
            *number = trials - 1;
        }
        let t = std::time::Instant::now();
        journal.append(&event).unwrap();
        assert!(b.wait_for(&format!("Number({status}.epochs) === {}", epochs + 1), 30), "the epoch appeared");
        let shown = t.elapsed().as_secs_f64() * 1e3;
        let render = b.eval("tuneDashboard.lastRenderMs").as_f64().unwrap();
        assert_eq!(b.eval("tuneDashboard.renders").as_u64().unwrap(), renders + 1);
        println!("new epoch {k}: shown {shown:.0} ms after its write (polling every 1,000 ms; redraw {render:.0} ms)");
    }
}

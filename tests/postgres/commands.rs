//! The reading commands (report, eval, retrain, the dashboard, study list and delete) over the store.

use crate::common;
use crate::common::workers::*;
use crate::common::*;
use libtest_mimic::Failed;

pub(crate) fn read_commands() -> Result<(), Failed> {
    let url = url().unwrap();
    let f = Fixture::new(400, 60);
    let name = unique("read");
    let s = f.write("read.toml", &random_space(&name, 3, "", 1, 300));
    finish(worker(&f, &s, &url, &["--artifacts", "shared-art"]), "the worker")?;
    // report
    let out = ok(f.run(&["report", "--storage", &url, "--study", &name, "--out", "rep"]));
    check(out.contains("3 complete") || out.contains("complete 3"), format!("report counts: {out}"))?;
    for file in ["leaderboard.csv", "leaderboard.json", "leaderboard.md", "index.html"] {
        check(f.path("rep").join(file).is_file(), format!("report wrote {file}"))?;
    }
    // eval (parameters from the store, weights from the artifacts)
    let out = ok(f.run(&[
        "eval",
        "--storage",
        &url,
        "--study",
        &name,
        "--trial",
        "0",
        "--artifacts",
        "shared-art",
        "--split",
        "val",
        "--data-dir",
        "data",
    ]));
    check(out.contains("validation split") && out.contains("accuracy"), out.clone())?;
    // retrain (only the parameters are needed)
    let out = ok(f.run(&[
        "retrain",
        "--best",
        "--storage",
        &url,
        "--study",
        &name,
        "--epochs",
        "1",
        "--subset",
        "200",
        "--data-dir",
        "data",
    ]));
    check(
        out.contains("test split")
            && std::fs::read_dir(f.path(&format!("runs/{name}/retrain")))
                .is_ok_and(|mut d| d.any(|t| t.is_ok_and(|t| t.path().join("seed-0/test.json").is_file()))),
        out.clone(),
    )?;
    // the dashboard over the store: the study, its trials with their stamps, the retrain
    {
        let d = common::dashboard::Dashboard::start(&f, &["--storage", &url]);
        let list = d.json("api/studies");
        let listed = list["studies"].as_array().unwrap().iter().find(|s| s["name"] == name.as_str()).cloned();
        check(
            listed.as_ref().is_some_and(|s| s["states"]["complete"] == 3),
            format!("dashboard lists {name}: {list}"),
        )?;
        let all = d.json(&format!("api/studies/{name}?since=0"));
        let trials = all["trials"].as_array().unwrap();
        check(
            trials.len() == 3
                && trials.iter().all(|t| {
                    t["created"].is_f64() && t["finished"].is_f64() && t["val"].as_array().unwrap().len() == 1
                }),
            format!("dashboard trials from the store: {all}"),
        )?;
        let quiet = d.json(&format!("api/studies/{name}?since={}", all["version"]));
        check(quiet["trials"].as_array().unwrap().is_empty(), format!("nothing new: {quiet}"))?;
        let seeds = d.json(&format!("api/studies/{name}/retrains"));
        check(
            seeds[0]["test_accuracy"].is_f64() && seeds[0]["confusion"].as_array().is_some_and(|m| m.len() == 10),
            format!("the retrain with its confusion matrix: {seeds}"),
        )?;
    }
    // list and delete
    let out = ok(f.run(&["study", "list", "--storage", &url]));
    check(out.contains(&name), format!("listed: {out}"))?;
    let refused = f.run(&["study", "delete", &name, "--storage", &url]);
    check(refused.status.code() == Some(2) && text(&refused).contains("--yes"), text(&refused))?;
    ok(f.run(&["study", "delete", &name, "--storage", &url, "--yes"]));
    check(!ok(f.run(&["study", "list", "--storage", &url])).contains(&name), "deleted".into())?;
    let again = f.run(&["report", "--storage", &url, "--study", &name]);
    check(!again.status.success() && text(&again).contains("no study"), text(&again))
}

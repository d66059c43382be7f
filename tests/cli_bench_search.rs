//! `tune bench search` through the binary: a tiny generated table, the table printed with
//! both baselines, per-seed rows written and read back (`--extra`), bad tables refused.

mod common;

use common::{Fixture, ok, text};

const SPACE: &str = r#"
[study]
name = "replay"
[study.training]
max_epochs = 3
[params]
lr = { float = [1e-4, 1e-2], log = true }
drop_rate = { float = [0.1, 0.5] }
"#;

/// 30 configurations: higher lr learns faster but ends lower, so the first epoch misleads.
fn table(f: &Fixture) {
    let mut lines = String::new();
    for i in 0..30 {
        let lr = 1e-4 * 100f64.powf(i as f64 / 29.0);
        let drop = 0.1 + 0.4 * ((i * 7) % 30) as f64 / 29.0;
        let fast = i as f64 / 29.0;
        let curve: Vec<f64> =
            (1..=3).map(|e| 0.80 + 0.02 * fast * (4 - e) as f64 + 0.01 * e as f64 * (1.0 - fast)).collect();
        lines += &format!(
            "{{\"trial\":{i},\"params\":{{\"lr\":{lr},\"drop_rate\":{drop}}},\"val_acc\":{curve:?},\"secs\":[5.0,5.0,5.0],\"start_secs\":1.0}}\n"
        );
    }
    f.write("table.jsonl", &lines);
    f.write("space.toml", SPACE);
}

#[test]
fn prints_the_table_with_both_baselines_and_round_trips_its_rows() {
    let f = Fixture::new(0, 0);
    table(&f);
    let args = [
        "bench",
        "search",
        "--table",
        "table.jsonl",
        "--space",
        "space.toml",
        "--seeds",
        "3",
        "--workers",
        "1,4",
        "--methods",
        "tpe+asha",
        "--out",
        "rows.csv",
    ];
    let out = ok(f.run(&args));
    for want in ["random+none", "random+first_epoch", "tpe+asha", "regret", "30 curves"] {
        assert!(out.contains(want), "missing {want}:\n{out}");
    }
    let rows = common::csv_rows(&f.path("rows.csv"));
    assert_eq!(rows.len(), 3 * 3 * 2 * 4, "methods × seeds × worker counts × fractions");
    // The same command again gives the same rows: the replay is deterministic.
    let first = std::fs::read_to_string(f.path("rows.csv")).unwrap();
    ok(f.run(&args));
    assert_eq!(first, std::fs::read_to_string(f.path("rows.csv")).unwrap());
    // Another tool's rows join the table under their own method name.
    f.write("other.csv", &first.replace("tpe+asha", "other+tool"));
    let out = ok(f.run(&[
        "bench",
        "search",
        "--table",
        "table.jsonl",
        "--space",
        "space.toml",
        "--seeds",
        "1",
        "--workers",
        "1",
        "--methods",
        "tpe+asha",
        "--extra",
        "other.csv",
    ]));
    assert!(out.contains("other+tool"), "{out}");
}

#[test]
fn a_bad_table_is_refused_naming_the_line() {
    let f = Fixture::new(0, 0);
    table(&f);
    f.write("bad.jsonl", "{\"trial\":0,\"params\":{},\"val_acc\":[0.5, 0.6],\"secs\":[1.0]}\n");
    let o = f.run(&["bench", "search", "--table", "bad.jsonl", "--space", "space.toml"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("bad.jsonl") && t.contains("line 1") && t.contains("one length"), "{t}");
    let o = f.run(&["bench", "search", "--methods", "tpe+fast", "--table", "table.jsonl", "--space", "space.toml"]);
    assert!(!o.status.success() && text(&o).contains("pruners are"), "{}", text(&o));
    for (flag, value, want) in
        [("--budget-trials", "0", "above 0"), ("--budget-trials", "inf", "above 0"), ("--workers", "0", "--workers")]
    {
        let o =
            f.run(&["bench", "search", "--table", "table.jsonl", "--space", "space.toml", &format!("{flag}={value}")]);
        assert!(!o.status.success() && text(&o).contains(want), "{flag}={value}: {}", text(&o));
    }
}

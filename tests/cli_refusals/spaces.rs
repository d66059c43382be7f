//! Search spaces and `tune run` flags: hostile ones refused before anything is written, mutated ones refused cleanly.

use std::path::Path;

use crate::common::*;
use crate::{SPACE_HEAD, TINY_SPACE_PARAMS, refused};

pub(crate) fn bad_spaces_and_study_flags_are_refused_before_anything_is_written() {
    let f = Fixture::new(300, 50);
    let d = f.data();
    let d = d.to_str().unwrap();
    // (space text, extra flags, exit code, what the message names)
    let cases: Vec<(String, Vec<&str>, i32, Vec<&str>)> = vec![
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}lr = inf\n"), vec![], 2, vec!["`lr`", "can produce `inf`"]),
        (
            format!("{SPACE_HEAD}[study.training]\nlr = inf\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.training.lr`"],
        ),
        (
            format!("{SPACE_HEAD}[study.training]\nweight_decay = -1.0\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.training.weight_decay`"],
        ),
        (
            format!("{SPACE_HEAD}[study.training]\nseed = 3\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.training.seed`"],
        ),
        (
            format!(
                "{SPACE_HEAD}pruner = \"hyperband\"\n[study.training]\nmax_epochs = 2\n[study.pruning]\nmin_resource = 4611686018427387904\nreduction_factor = 4\n{TINY_SPACE_PARAMS}"
            ),
            vec![],
            2,
            vec!["`study.pruning.min_resource`"],
        ),
        (
            format!("{SPACE_HEAD}[params]\nn_conv = {{ int = [1, 1000000000] }}\n\"conv*_channels\" = 8\n"),
            vec![],
            2,
            vec!["`n_conv`", "0..=16"],
        ),
        (format!("{SPACE_HEAD}[params]\nconv40_channels = 8\n"), vec![], 2, vec!["conv40_channels", "at most 16"]),
        (
            format!("{SPACE_HEAD}sampler = \"grid\"\ngrid_points = 1000000000000\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.grid_points`"],
        ),
        (
            format!("{SPACE_HEAD}[params]\nn_conv = 2\n\"conv*_channels\" = {{ int = [8, 100000000] }}\n"),
            vec![],
            2,
            vec!["conv*_channels", "1..=2048"],
        ),
        (
            format!("{SPACE_HEAD}[params]\n\"conv*_channels\" = {{ int = [8, 64] }}\n"),
            vec![],
            2,
            vec!["conv*_channels", "applies to no block"],
        ),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--max-epochs", "0"], 2, vec!["`--max-epochs`"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--subset", "0"], 2, vec!["`--subset`", "every class"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--trials", "0"], 2, vec!["--trials"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--concurrency", "0"], 2, vec!["--concurrency"]),
        (
            format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"),
            vec!["--split-seed", "18446744073709551615"],
            2,
            vec!["--split-seed"],
        ),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--timeout", "0s"], 2, vec!["--timeout", "between 1 second"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--timeout", "soon"], 2, vec!["--timeout", "not a duration"]),
        (
            format!("{SPACE_HEAD}timeout = \"forever\"\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.timeout`", "not a duration"],
        ),
        // shared storage: a URL that is not one, liveness settings that would reap live workers
        (
            format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"),
            vec!["--storage", "mysql://u:secret@h/db"],
            2,
            vec!["--storage", "not a storage URL", "postgresql://user@host", "u:***@h"],
        ),
        (
            format!("{SPACE_HEAD}storage = \"runs.db\"\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`storage`", "not a storage URL"],
        ),
        (
            format!("{SPACE_HEAD}heartbeat = \"2m\"\ngrace = \"1m\"\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.grace`", "not longer than the heartbeat"],
        ),
        (
            format!("{SPACE_HEAD}max_retries = 1000\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.max_retries`", "0..=100"],
        ),
        // a store that cannot be reached at start: exit 8 with the fix, nothing written
        (
            format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"),
            vec!["--storage", "postgresql://tune@127.0.0.1:1/tune"],
            8,
            vec!["127.0.0.1:1", "out of reach", "fix: start the server"],
        ),
        ("[study]\nname = \"a\\u0000b\"\n[params]\nconv0_channels = 4\n".into(), vec![], 2, vec!["`study.name`"]),
        (
            format!("[study]\nname = \"{}\"\n[params]\nconv0_channels = 4\n", "x".repeat(300)),
            vec![],
            2,
            vec!["`study.name`", "1 to 100"],
        ),
        // enqueued dictionaries: an unknown key, a value outside the space, an impossible network
        (
            format!(
                "{SPACE_HEAD}enqueue = [ {{ conv0_chanels = 4 }} ]\n[params]\nconv0_channels = {{ choice = [4, 8] }}\n"
            ),
            vec![],
            2,
            vec!["`study.enqueue[0].conv0_chanels`", "not a parameter"],
        ),
        (
            format!(
                "{SPACE_HEAD}enqueue = [ {{ conv0_channels = 5 }} ]\n[params]\nconv0_channels = {{ choice = [4, 8] }}\n"
            ),
            vec![],
            2,
            vec!["`study.enqueue[0].conv0_channels`", "`5` is not one of 4, 8"],
        ),
        (
            format!(
                "{SPACE_HEAD}enqueue = [ {{ conv0_filter = 30 }} ]\n[params]\nconv0_channels = 4\nconv0_pad = 0\nconv0_filter = {{ choice = [3, 30] }}\n"
            ),
            vec![],
            4,
            vec!["`study.enqueue[0]`", "does not fit"],
        ),
        // a space where every network collapses: refused with exit 4, nothing recorded
        (
            format!(
                "{SPACE_HEAD}[params]\nconv0_channels = 4\nconv0_filter = 20\nconv0_stride = 5\nconv1_channels = 4\nconv1_pool = {{ int = [4, 8] }}\n"
            ),
            vec![],
            4,
            vec!["`params`", "conv1_pool", "0 of 400"],
        ),
    ];
    for (i, (space, flags, code, needles)) in cases.into_iter().enumerate() {
        let path = f.write(&format!("space{i}.toml"), &space);
        let mut args = vec!["run", path.to_str().unwrap(), "--data-dir", d];
        let mut names = needles.clone();
        if flags.is_empty() {
            names.push(path.file_name().unwrap().to_str().unwrap()); // errors in the file name it
        }
        args.extend(flags);
        refused(&f, &args, code, &names);
    }
    // A binary file passed as the space, and missing or damaged data: also nothing written.
    let bin = f.path("space.bin");
    std::fs::write(&bin, [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0, 1]).unwrap();
    refused(&f, &["run", bin.to_str().unwrap(), "--data-dir", d], 2, &["space.bin", "not UTF-8"]);
    refused(&f, &["run", "nowhere.toml", "--data-dir", d], 2, &["nowhere.toml", "no such file"]);
    refused(&f, &["run", "data", "--data-dir", d], 2, &["data", "is a directory"]);
    refused(&f, &["train", "--params", "nowhere.toml", "--data-dir", d], 2, &["nowhere.toml", "no such file"]);
    let good = f.write("good.toml", &format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"));
    std::fs::create_dir_all(f.path("empty")).unwrap();
    refused(
        &f,
        &["run", good.to_str().unwrap(), "--data-dir", f.path("empty").to_str().unwrap()],
        3,
        &["missing: train-images-idx3-ubyte.gz"],
    );
}
pub(crate) fn enqueued_dictionaries_may_leave_out_the_spaces_fixed_values() {
    let f = Fixture::new(300, 50);
    let space = f.write(
        "e.toml",
        "[study]\nname = \"e\"\ntrials = 1\nenqueue_default = false\nenqueue = [ { conv0_channels = 8 } ]\n[study.training]\nmax_epochs = 1\nsubset = 100\n[params]\nconv0_channels = { choice = [4, 8] }\nconv0_pool = 2\nfc0_neurons = 8\ndrop_rate = 0.2\n",
    );
    ok(f.run(&["run", space.to_str().unwrap(), "--data-dir", f.data().to_str().unwrap()]));
    let params = std::fs::read_to_string(f.path("runs/e/trials/0/params.toml")).unwrap();
    assert!(
        params.contains("conv0_channels = 8")
            && params.contains("drop_rate = 0.2")
            && params.contains("conv0_pool = 2"),
        "{params}"
    );
}

/// Mutations of the shipped `cnn.toml` (values swapped for hostile ones, keys added, lines cut)
/// through the binary: each ends at the data check (exit 3: the space passed) or in one clear
/// refusal (exit 2 with a fix), never a panic, and never writes a study.
pub(crate) fn mutated_spaces_are_refused_cleanly_or_pass_their_checks() {
    use rand::{Rng, SeedableRng, seq::IndexedRandom};
    let f = Fixture::new(0, 0);
    std::fs::create_dir_all(f.path("empty")).unwrap();
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/cnn.toml")).unwrap();
    let values = [
        "0",
        "-1",
        "3",
        "1000000000",
        "9223372036854775807",
        "1e308",
        "inf",
        "nan",
        "1.5",
        "\"relu\"",
        "\"x\"",
        "[]",
        "{}",
        "true",
        "{ int = [1, 1000000] }",
        "{ float = [0.0, 1.0], log = true }",
        "{ choice = [] }",
        "{ int = [5, 1], step = 0 }",
    ];
    let keys = [
        "trials",
        "timeout",
        "max_epochs",
        "lr",
        "batch_size",
        "subset",
        "min_resource",
        "n_conv",
        "\"conv*_channels\"",
        "conv0_pool",
        "drop_rate",
        "init",
        "aug_shift",
        "enqueue",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut passed = 0;
    for case in 0..60 {
        let mut lines: Vec<String> = base.lines().map(String::from).collect();
        for _ in 0..rng.random_range(1..=3) {
            let j = rng.random_range(0..lines.len());
            match rng.random_range(0..3) {
                0 if lines[j].contains('=') => {
                    lines[j] =
                        format!("{} = {}", lines[j].split('=').next().unwrap().trim(), values.choose(&mut rng).unwrap())
                }
                1 => {
                    let section =
                        ["[study]", "[study.training]", "[study.pruning]", "[params]"].choose(&mut rng).unwrap();
                    let at = lines.iter().position(|l| l == section).unwrap_or(0);
                    lines.insert(
                        at + 1,
                        format!("{} = {}", keys.choose(&mut rng).unwrap(), values.choose(&mut rng).unwrap()),
                    );
                }
                _ => {
                    let cut = lines[j].floor_char_boundary(rng.random_range(0..=lines[j].len()));
                    lines[j].truncate(cut);
                }
            }
        }
        let space = f.write("m.toml", &(lines.join("\n") + "\n"));
        let o = f.run(&["run", space.to_str().unwrap(), "--data-dir", "empty", "--runs-dir", "runs"]);
        let msg = text(&o);
        match o.status.code() {
            Some(3) => passed += 1,
            Some(2) => {
                assert!(msg.contains("fix"), "case {case}: a refusal says how to fix it:\n{msg}\n{}", lines.join("\n"))
            }
            other => panic!("case {case}: exit {other:?}\n{msg}\n{}", lines.join("\n")),
        }
        assert!(!f.path("runs").exists(), "case {case} wrote a study:\n{}", lines.join("\n"));
    }
    assert!(passed > 0 && passed < 60, "the mutations exercise both outcomes: {passed} of 60 passed");
}

//! Signing in to the store: the password's sources and that it is written nowhere, and TLS checked like libpq.

use crate::common::workers::*;
use crate::common::*;
use libtest_mimic::Failed;
use tune::study::TrialState;

/// A role that logs in with `password` and owns database `db`, both made afresh (a role left
/// by an interrupted earlier run may own objects here); returns the admin connection.
fn role_with_database(admin_url: &str, role: &str, password: &str, db: &str) -> Result<postgres::Client, Failed> {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))?;
    admin.batch_execute(&format!(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
         REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role}; END IF; END $$"
    ))?;
    admin.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))?;
    admin.batch_execute(&format!("CREATE DATABASE {db} OWNER {role}"))?;
    Ok(admin)
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                found.push(path);
            }
        }
    }
    found
}

/// A role that signs in with a password (SCRAM, `.ci/postgres`'s pg_hba line): the password
/// from `--storage-password-file`, `PGPASSWORD` or a `PGPASSFILE`; a wrong one is exit 8
/// naming the user and not the password; and after a study, its report, a retrain and a
/// listing, the password is in no file the study wrote and in none of the commands' output
/// — even when it was given in the URL.
pub(crate) fn secrets() -> Result<(), Failed> {
    let admin_url = url().unwrap();
    let password = format!("s3cret-{}", std::process::id());
    // The least-privileged role README describes: it logs in and owns one database, nothing more.
    let db = "tune_secret_test";
    let mut admin = role_with_database(&admin_url, "tune_secret", &password, db)?;
    let server = admin_url.trim_start_matches("postgresql://postgres@").rsplit_once('/').unwrap().0.to_string();
    let host = format!("{server}/{db}");
    let bare = format!("postgresql://tune_secret@{host}");
    let f = Fixture::new(400, 60);
    let name = unique("secret");
    let s = f.write("secret.toml", &random_space(&name, 2, "", 1, 300));
    let file = f.write("pw", &format!("{password}\n"));
    let wrong = f.write("wrong", "not-it\n");
    let mut outputs = Vec::new();
    // A wrong password: exit 8, naming the user, not the password.
    let o = f.run(&["study", "list", "--storage", &bare, "--storage-password-file", wrong.to_str().unwrap()]);
    check(o.status.code() == Some(8), format!("wrong password: {}", text(&o)))?;
    check(text(&o).contains("tune_secret") && !text(&o).contains("not-it"), text(&o))?;
    // Without any password: refused too.
    let o = f
        .cmd(&["study", "list", "--storage", &bare])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent")
        .output()?;
    check(o.status.code() == Some(8), format!("no password: {}", text(&o)))?;
    // The file: a whole study, then its report and a retrain.
    let pw = file.to_str().unwrap();
    outputs.push(ok(f.run(&[
        "run",
        s.to_str().unwrap(),
        "--storage",
        &bare,
        "--storage-password-file",
        pw,
        "--data-dir",
        "data",
    ])));
    outputs.push(ok(f.run(&[
        "report",
        "--storage",
        &bare,
        "--storage-password-file",
        pw,
        "--study",
        &name,
        "--out",
        "rep",
    ])));
    outputs.push(ok(f.run(&[
        "retrain",
        "--best",
        "--storage",
        &bare,
        "--storage-password-file",
        pw,
        "--study",
        &name,
        "--epochs",
        "1",
        "--subset",
        "100",
        "--data-dir",
        "data",
    ])));
    // PGPASSWORD, a PGPASSFILE, and the password in the URL itself.
    let o = f.cmd(&["study", "list", "--storage", &bare]).env("PGPASSWORD", &password).output()?;
    outputs.push(text(&o));
    check(o.status.success() && text(&o).contains(&name), format!("PGPASSWORD: {}", text(&o)))?;
    let pgpass = f.write("pgpass", &format!("*:*:*:tune_secret:{password}\n"));
    let o =
        f.cmd(&["study", "list", "--storage", &bare]).env_remove("PGPASSWORD").env("PGPASSFILE", &pgpass).output()?;
    outputs.push(text(&o));
    check(o.status.success() && text(&o).contains(&name), format!("PGPASSFILE: {}", text(&o)))?;
    let with_password = format!("postgresql://tune_secret:{password}@{host}");
    outputs.push(ok(f.run(&["report", "--storage", &with_password, "--study", &name, "--out", "rep2"])));
    // Nowhere: not in the output, not in any file except the ones holding it on purpose.
    for out in &outputs {
        check(!out.contains(&password), format!("the password was printed:\n{out}"))?;
    }
    let leaked: Vec<_> =
        files_containing(f.dir.path(), &password).into_iter().filter(|p| *p != file && *p != pgpass).collect();
    check(leaked.is_empty(), format!("the password is in {leaked:?}"))?;
    // Nor in the store's own records of the study.
    let mut store = postgres::Client::connect(&format!("postgresql://postgres@{host}"), postgres::NoTls)?;
    let rows = store
        .query(
            "SELECT (SELECT count(*) FROM tune_events WHERE body LIKE '%' || $1 || '%') + \
         (SELECT count(*) FROM tune_studies WHERE row_to_json(tune_studies)::text LIKE '%' || $1 || '%')",
            &[&password],
        )
        .map_err(|e| format!("reading the store's records: {e:?}"))?;
    check(rows[0].get::<_, i64>(0) == 0, "the password is in the store's records".into())?;
    drop(store);
    admin.batch_execute(&format!("DROP DATABASE {db}")).map_err(|e| format!("dropping {db}: {e:?}"))?;
    admin.batch_execute("DROP ROLE tune_secret").map_err(|e| format!("dropping the role: {e:?}"))?;
    Ok(())
}

/// A role that may only come over TLS (`.ci/postgres`: `hostssl` with SCRAM, its server
/// certificate signed by a test CA for `localhost` only): verify-full passes to `localhost` and
/// runs a study, fails to `127.0.0.1` (a name the certificate lacks), where verify-ca passes;
/// another CA, no CA, and no TLS at all are refused with exit 8; the password shows nowhere.
pub(crate) fn tls() -> Result<(), Failed> {
    let tls_dir = std::path::PathBuf::from(std::env::var("TUNE_TEST_PG_TLS")?);
    let admin_url = url().unwrap();
    let password = format!("tls-pw-{}", std::process::id());
    let db = "tune_tls_test";
    let mut admin = role_with_database(&admin_url, "tune_tls", &password, db)?;
    let port = admin_url.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_string();
    let ca = tls_dir.join("ca.crt");
    let other_ca = tls_dir.join("other-ca.crt");
    let store = |host: &str, query: String| format!("postgresql://tune_tls@{host}:{port}/{db}?{query}");
    let f = Fixture::new(400, 60);
    // No ~/.postgresql/root.crt to fall back on.
    let home = f.dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let mut outputs = Vec::new();
    let mut list = |storage: &str| -> Result<std::process::Output, Failed> {
        let o =
            f.cmd(&["study", "list", "--storage", storage]).env("PGPASSWORD", &password).env("HOME", &home).output()?;
        outputs.push(text(&o));
        Ok(o)
    };
    let full = store("localhost", format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let o = list(&full)?;
    check(o.status.success(), format!("verify-full to localhost: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", format!("sslmode=verify-full&sslrootcert={}", ca.display())))?;
    check(
        o.status.code() == Some(8) && text(&o).contains("not valid for name") && text(&o).contains("sslmode"),
        format!("verify-full to a name the certificate lacks: {}", text(&o)),
    )?;
    let o = list(&store("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={}", ca.display())))?;
    check(o.status.success(), format!("verify-ca to 127.0.0.1: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={}", other_ca.display())))?;
    check(o.status.code() == Some(8) && text(&o).contains("UnknownIssuer"), format!("another CA: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", "sslmode=verify-full".into()))?;
    check(o.status.code() == Some(8) && text(&o).contains("sslrootcert"), format!("no CA: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", "sslmode=require".into()))?;
    check(o.status.success(), format!("require, unverified: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", "sslmode=disable".into()))?;
    check(
        o.status.code() == Some(8) && text(&o).contains("tune_tls") && text(&o).contains("no encryption"),
        format!("no TLS on a hostssl-only role: {}", text(&o)),
    )?;
    let o = f
        .cmd(&["study", "list", "--storage", &full])
        .env("PGPASSWORD", "not-the-password")
        .env("HOME", &home)
        .output()?;
    check(
        o.status.code() == Some(8) && text(&o).contains("tune_tls") && !text(&o).contains("not-the-password"),
        format!("a wrong password over TLS: {}", text(&o)),
    )?;
    // A whole study over verify-full.
    let name = unique("tls");
    let s = f.write("tls.toml", &random_space(&name, 2, "", 1, 300));
    let o = f
        .cmd(&["run", s.to_str().unwrap(), "--storage", &full, "--data-dir", "data"])
        .env("PGPASSWORD", &password)
        .env("HOME", &home)
        .output()?;
    outputs.push(text(&o));
    check(o.status.success(), format!("a study over verify-full: {}", text(&o)))?;
    let trials = store_trials(&format!("postgresql://postgres@127.0.0.1:{port}/{db}"), &name);
    check(
        trials.len() == 2 && trials.values().all(|t| t.state == TrialState::Complete),
        format!("the study's trials: {trials:?}"),
    )?;
    for out in &outputs {
        check(!out.contains(&password), format!("the password was printed:\n{out}"))?;
    }
    check(files_containing(f.dir.path(), &password).is_empty(), "the password is in a file".into())?;
    admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).map_err(|e| format!("dropping {db}: {e:?}"))?;
    admin.batch_execute("DROP ROLE tune_tls").map_err(|e| format!("dropping the role: {e:?}"))?;
    Ok(())
}

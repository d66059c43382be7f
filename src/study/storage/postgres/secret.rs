//! Where the store's password comes from, without it ever being in a URL that tune prints or
//! keeps: the URL itself, `--storage-password-file`, `PGPASSWORD`, or the password file of
//! libpq (`PGPASSFILE`, else `~/.pgpass`), in that order — libpq's own order, with the flag
//! (an explicit choice on this command) before the environment.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static PASSWORD_FILE: OnceLock<PathBuf> = OnceLock::new();

/// `--storage-password-file`: set once by the command line, read by every connection.
pub fn use_password_file(path: PathBuf) {
    let _ = PASSWORD_FILE.set(path);
}

/// The connection settings of `url` with the password filled in from the first source that
/// has one; `Err` says what is wrong (never with the password in it).
pub(super) fn config(url: &str) -> Result<postgres::Config, String> {
    let mut config: postgres::Config = url.parse().map_err(|e| format!("not a PostgreSQL URL ({e})"))?;
    if config.get_password().is_some() {
        return Ok(config);
    }
    let password = match PASSWORD_FILE.get() {
        Some(file) => Some(read_password_file(file)?),
        None => match std::env::var("PGPASSWORD") {
            Ok(p) if !p.is_empty() => Some(p),
            _ => pgpass_file()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|text| pgpass_lookup(&text, &config)),
        },
    };
    if let Some(p) = password {
        config.password(p);
    }
    Ok(config)
}

/// The whole first line of a password file (the way Docker and Kubernetes secrets are mounted).
fn read_password_file(file: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("cannot read the password file {} ({e})", file.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(format!("the password file {} is empty", file.display()));
    }
    Ok(line)
}

fn pgpass_file() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(f) => Some(PathBuf::from(f)),
        None => std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")),
    }
}

/// libpq's `hostname:port:database:username:password` lines: `*` matches anything, `\:` and
/// `\\` are escapes, the first matching line wins.
fn pgpass_lookup(text: &str, config: &postgres::Config) -> Option<String> {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or("").to_string();
    let database = config.get_dbname().map_or_else(|| user.clone(), str::to_string);
    let wanted = [host.as_str(), port.as_str(), database.as_str(), user.as_str()];
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).find_map(|line| {
        let fields = split_pgpass(line);
        let [h, p, d, u, password] = fields.as_slice() else { return None };
        let matches = [h, p, d, u].iter().zip(wanted).all(|(f, w)| f.as_str() == "*" || f.as_str() == w);
        matches.then(|| password.clone())
    })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut chars) = (Vec::new(), String::new(), line.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let config: postgres::Config = "postgresql://tune@db.lab:6543/studies".parse().unwrap();
        let text = "# comment\nother:6543:studies:tune:wrong\ndb.lab:*:studies:tune:s3cr\\:et\\\\x\n*:*:*:*:fallback\n";
        assert_eq!(pgpass_lookup(text, &config).as_deref(), Some("s3cr:et\\x"), "escapes, wildcards, first match");
        let other: postgres::Config = "postgresql://someone@elsewhere/db".parse().unwrap();
        assert_eq!(pgpass_lookup(text, &other).as_deref(), Some("fallback"));
        assert_eq!(pgpass_lookup("db.lab:6543:studies:tune\n", &config), None, "a line without a password");
        let default_db: postgres::Config = "postgresql://tune@db.lab:6543".parse().unwrap();
        assert_eq!(pgpass_lookup("db.lab:6543:tune:tune:p\n", &default_db).as_deref(), Some("p"), "database = user");
    }

    #[test]
    fn a_password_file_gives_its_first_line_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        assert_eq!(read_password_file(&file).unwrap(), "hunter2");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_password_file(&file).unwrap_err().contains("is empty"));
        let missing = read_password_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.contains("nope") && !missing.contains("hunter2"), "{missing}");
    }
}

//! The shared backend: one PostgreSQL database that any number of workers, on any number of
//! machines, write to at once.
//!
//! Why it cannot deadlock, lose or reorder records:
//! - every write is one short transaction; only reserving a trial number serializes (one
//!   update of the study's row hands out the next number while the budget has room, so
//!   numbers have no duplicates and the budget is exact; the configuration is sampled after,
//!   under the reservation). Epochs, finishes and heartbeats lock only
//!   their own trial's row; a reaper skips rows being written (`SKIP LOCKED`) and takes the
//!   study row last: one lock order;
//! - each event carries its transaction's id. A reader takes only events of transactions
//!   older than every transaction still in flight (`pg_snapshot_xmin`), ordered by (transaction,
//!   event id): those can no longer change, so a cursor on that pair never skips an event
//!   that commits later — and writers never wait for each other to get a sequence number;
//! - serialization failures, deadlock reports and dropped connections are retried with
//!   backoff for `patience`; a write whose acknowledgement was lost is safe to repeat
//!   (readers apply events idempotently, and a finished trial takes no further events).
//!
//! The blocking `postgres` client (tokio-postgres under the hood) keeps this a plain trait
//! object; calls made inside the study loop's runtime go through [`blocking`].

use std::time::{Duration, Instant};

mod conn;
mod schema;
mod secret;
mod study_storage;
mod tls;

pub use secret::use_password_file;

use std::collections::HashMap;

use postgres::Transaction;
use postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use conn::{Conn, blocking, transient};

use schema::migrate;

use super::{Cursor, Liveness, Queued, Reaped, Reservation, StudyStorage, redact};
use crate::error::{Result, TuneError};
use crate::study::events::{Event, Stamped};
use crate::study::resolved::Resolved;
use crate::study::trial::Fork;
use crate::study::trial::TrialState;

/// How long a worker waits for a store that went away before it stops (resumable).
pub const DEFAULT_PATIENCE: Duration = crate::study::settings::DEFAULT_STORE_WAIT;

pub struct PgStorage {
    url: String,
    /// The URL's settings with the password filled in ([`secret`]): never printed.
    config: postgres::Config,
    /// TLS as the URL's `sslmode` and `sslrootcert` ask ([`tls`]).
    connector: MakeRustlsConnect,
    client: Option<Conn>,
    name: String,
    id: Option<i32>,
    /// This process, as other workers see it in "worker lost" reasons.
    worker: String,
    patience: Duration,
    /// When the store last came back after an outage: nobody's heartbeat could reach it
    /// meanwhile, so this worker declares no trial lost until a grace period has passed.
    reconnected: Option<Instant>,
    had_outage: bool,
}

/// One study of a store: its name and when it was created.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyListing {
    pub name: String,
    pub created: String,
}

/// `host:pid`, and a connection counter when one process opens several (tests, the bench).
fn worker_name() -> String {
    static OPENED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    match OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => format!("{host}:{}", std::process::id()),
        k => format!("{host}:{}#{k}", std::process::id()),
    }
}

/// Numbers as PostgreSQL integers; a study never comes near 2^31 trials.
fn int(n: usize) -> i32 {
    i32::try_from(n).expect("trial numbers fit in 32 bits")
}

impl PgStorage {
    /// Connects to the store at `url` for study `name` (it need not exist yet), creating or
    /// upgrading tune's schema.
    pub fn connect(url: &str, name: &str) -> Result<PgStorage> {
        let refused = |problem| {
            TuneError::Store {
            url: redact(url),
            problem,
            fix: "give a postgresql://user@host:port/database?sslmode=verify-full&sslrootcert=CA.pem URL and the password in --storage-password-file, PGPASSWORD or ~/.pgpass".into(),
        }
        };
        let (plain_url, tls) = tls::split(url).map_err(refused)?;
        let mut config = secret::config(&plain_url).map_err(refused)?;
        config.ssl_mode(tls.wire_mode());
        let connector = tls.connector().map_err(refused)?;
        let mut s = PgStorage {
            url: url.to_string(),
            config,
            connector,
            client: None,
            name: name.to_string(),
            id: None,
            worker: worker_name(),
            patience: DEFAULT_PATIENCE,
            reconnected: None,
            had_outage: false,
        };
        // A store that is down at start-up is an error now, not a wait: nothing runs yet.
        s.patience = Duration::ZERO;
        s.with_client("connect", |_| Ok(()))?;
        s.patience = DEFAULT_PATIENCE;
        Ok(s)
    }

    /// How long to keep retrying when the store goes away mid-study.
    pub fn set_patience(&mut self, patience: Duration) {
        self.patience = patience;
    }

    fn err(&self, problem: String, fix: &str) -> TuneError {
        TuneError::Store { url: redact(&self.url), problem, fix: fix.into() }
    }

    fn new_client(&self) -> std::result::Result<Conn, postgres::Error> {
        let mut client = self.config.connect(self.connector.clone())?;
        migrate(&mut client)?;
        Ok(Conn { client, statements: HashMap::new() })
    }

    /// Runs `op` with a live connection, reconnecting and retrying transient failures with
    /// backoff until `patience` runs out.
    fn with_client<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut Conn) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = blocking(|| {
                if self.client.as_ref().is_none_or(|c| c.is_closed()) {
                    self.client = Some(self.new_client()?);
                    if self.had_outage {
                        tracing::warn!("{}: store reachable again", redact(&self.url));
                        self.reconnected = Some(Instant::now());
                        self.had_outage = false;
                    }
                }
                op(self.client.as_mut().expect("connected"))
            });
            match attempt {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == Some(&SqlState::RAISE_EXCEPTION) && e.to_string().contains("tune schema") => {
                    let detail = e.as_db_error().map_or(e.to_string(), |d| d.message().to_string());
                    return Err(self
                        .err(detail, "upgrade tune to the version that wrote this database, or use another database"));
                }
                Err(e) if tls::refused(&e) => {
                    return Err(self.err(
                        format!("{what}: {}", with_cause(&e)),
                        "the store's TLS did not pass: check sslmode and sslrootcert in the URL (verify-full needs a certificate that names the URL's host; verify-ca only the CA that signed it), or the server's ssl settings",
                    ));
                }
                Err(e) if transient(&e) => {
                    if e.is_closed()
                        || e.code().is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
                    {
                        blocking(|| self.client = None);
                        self.had_outage = true;
                    }
                    if started.elapsed() + backoff > self.patience {
                        let waited = started.elapsed().as_secs_f64();
                        return Err(self.err(
                            format!("{what}: the store is out of reach ({}); gave up after {waited:.0} s", with_cause(&e)),
                            "start the server (or check the URL, user and network), then run the same command again: the study resumes where its records end",
                        ));
                    }
                    tracing::warn!(
                        "{}: {what} failed ({}); retrying in {:.1} s",
                        redact(&self.url),
                        with_cause(&e),
                        backoff.as_secs_f64()
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(self.err(
                        format!("{what}: {}", e.as_db_error().map_or(e.to_string(), |d| d.to_string())),
                        "check the database and its permissions",
                    ));
                }
            }
        }
    }

    /// The study's id, once it exists.
    fn study_id(&mut self) -> Result<Option<i32>> {
        if self.id.is_none() {
            let name = self.name.clone();
            self.id = self.with_client("find study", |c| {
                Ok(c.query_opt("SELECT id FROM tune_studies WHERE name = $1", &[&name])?.map(|r| r.get(0)))
            })?;
        }
        Ok(self.id)
    }

    fn require_id(&mut self) -> Result<i32> {
        let name = self.name.clone();
        self.study_id()?.ok_or_else(|| {
            self.err(format!("there is no study `{name}`"), "list the studies with `tune study list --storage URL`")
        })
    }

    /// One write transaction; `op` gets it and the study id.
    fn write<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut Transaction, i32) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let id = self.require_id()?;
        self.with_client(what, |c| {
            let mut tx = c.transaction()?;
            let value = op(&mut tx, id)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// Every study in the store.
    pub fn list(url: &str) -> Result<Vec<StudyListing>> {
        let mut s = PgStorage::connect(url, "")?;
        s.with_client("list studies", |c| {
            let rows = c.query(
                "SELECT s.name, to_char(s.created_at, 'YYYY-MM-DD HH24:MI') FROM tune_studies s ORDER BY s.created_at",
                &[],
            )?;
            Ok(rows.iter().map(|r| StudyListing { name: r.get(0), created: r.get(1) }).collect())
        })
    }

    /// Deletes a study and all its records; false when there is none of that name.
    pub fn delete(url: &str, name: &str) -> Result<bool> {
        let mut s = PgStorage::connect(url, name)?;
        let name = name.to_string();
        s.with_client("delete study", |c| {
            let mut tx = c.transaction()?;
            let Some(row) = tx.query_opt("DELETE FROM tune_studies WHERE name = $1 RETURNING id", &[&name])? else {
                return Ok(false);
            };
            let id: i32 = row.get(0);
            tx.execute("DELETE FROM tune_trials WHERE study_id = $1", &[&id])?;
            tx.execute("DELETE FROM tune_events WHERE study_id = $1", &[&id])?;
            tx.commit()?;
            Ok(true)
        })
    }
}

impl PgStorage {
    /// Runs `update` (`UPDATE … WHERE (study_id, number) IN`) on those of `numbers` this
    /// worker runs, locking their rows in number order (one lock order with the reaper).
    fn update_mine(&mut self, what: &str, numbers: &[usize], update: &str) -> Result<()> {
        if numbers.is_empty() {
            return Ok(());
        }
        let (numbers, me): (Vec<i32>, String) = (numbers.iter().map(|n| int(*n)).collect(), self.worker.clone());
        let sql = format!(
            "{update} (SELECT study_id, number FROM tune_trials WHERE study_id = $1 AND number = ANY($2) AND owner = $3 AND running ORDER BY number FOR UPDATE)"
        );
        self.write(what, |tx, id| tx.execute(&sql, &[&id, &numbers, &me]).map(|_| ()))
    }
}

/// An error with its cause ("error connecting to server: failed to lookup address …").
fn with_cause(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl Drop for PgStorage {
    /// The client owns a small runtime, which must not be dropped on an async worker thread.
    fn drop(&mut self) {
        let client = self.client.take();
        blocking(move || drop(client));
    }
}

//! The shared backend: one PostgreSQL database that any number of workers, on any number of
//! machines, write to at once.
//!
//! Why it cannot deadlock or lose records:
//! - every write is one short transaction that first locks its study's row (one lock order);
//!   under that lock the event gets the next sequence number, so sequence order is commit
//!   order and a reader's cursor (the last sequence it read) never skips an event;
//! - a trial number is claimed in the same transaction that records its `Created` event,
//!   only if it is still the next free number (no holes, no duplicates, an exact budget);
//! - serialization failures, deadlock reports and dropped connections are retried with
//!   backoff for `patience`; a write whose acknowledgement was lost is safe to repeat
//!   (readers apply events idempotently, and a finished trial takes no further events).
//!
//! The blocking `postgres` client (tokio-postgres under the hood) keeps this a plain trait
//! object; calls made inside the study loop's runtime go through [`blocking`].

use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};

use super::{Cursor, Liveness, Reaped, StudyStorage, redact};
use crate::error::{Result, TuneError};
use crate::study::journal::Event;
use crate::study::start::Resolved;
use crate::study::trial::TrialState;

/// The schema this binary writes. A database at a newer version is refused.
pub const SCHEMA_VERSION: i32 = 1;

/// Tables of schema version 1 (`tune_schema` records the version).
const SCHEMA_V1: &str = "
CREATE TABLE tune_studies (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL,
    settings text NOT NULL,
    space text NOT NULL,
    next_number integer NOT NULL DEFAULT 0,
    last_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tune_trials (
    study_id integer NOT NULL REFERENCES tune_studies(id) ON DELETE CASCADE,
    number integer NOT NULL,
    running boolean NOT NULL,
    owner text,
    beat_at timestamptz NOT NULL DEFAULT now(),
    params text NOT NULL,
    seed bigint NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    PRIMARY KEY (study_id, number)
);
CREATE INDEX tune_trials_running ON tune_trials (study_id, number) WHERE running;
CREATE TABLE tune_events (
    study_id integer NOT NULL REFERENCES tune_studies(id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (study_id, seq)
);
";

/// How long a worker waits for a store that went away before it stops (resumable).
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(600);

pub struct PgStorage {
    url: String,
    client: Option<Client>,
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

/// One study as `tune study list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyListing {
    pub name: String,
    pub created: String,
    pub trials: i64,
    pub running: i64,
}

/// Runs `f` where blocking is allowed: inside a multi-threaded tokio runtime (the study
/// loop) it moves off the runtime's worker first; elsewhere it runs as is.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Worth retrying: the connection went away, the server is restarting, or PostgreSQL asks
/// for a retry (serialization failure, deadlock).
fn transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(), // I/O, not a server verdict
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        }
    }
}

fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

/// Numbers as PostgreSQL integers; a study never comes near 2^31 trials.
fn int(n: usize) -> i32 {
    i32::try_from(n).expect("trial numbers fit in 32 bits")
}

impl PgStorage {
    /// Connects to the store at `url` for study `name` (it need not exist yet), creating or
    /// upgrading tune's schema.
    pub fn connect(url: &str, name: &str) -> Result<PgStorage> {
        let mut s = PgStorage {
            url: url.to_string(),
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

    fn new_client(&self) -> std::result::Result<Client, postgres::Error> {
        let mut client = Client::connect(&self.url, NoTls)?;
        migrate(&mut client)?;
        Ok(client)
    }

    /// Runs `op` with a live connection, reconnecting and retrying transient failures with
    /// backoff until `patience` runs out.
    fn with_client<T>(&mut self, what: &str, mut op: impl FnMut(&mut Client) -> std::result::Result<T, postgres::Error>) -> Result<T> {
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
                    return Err(self.err(detail, "upgrade tune to the version that wrote this database, or use another database"));
                }
                Err(e) if transient(&e) => {
                    if e.is_closed() || e.code().is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57P")) {
                        blocking(|| self.client = None);
                        self.had_outage = true;
                    }
                    if started.elapsed() + backoff > self.patience {
                        let waited = started.elapsed().as_secs_f64();
                        return Err(self.err(
                            format!("{what}: the store is out of reach ({e}); gave up after {waited:.0} s"),
                            "start the server (or check the URL, user and network), then run the same command again: the study resumes where its records end",
                        ));
                    }
                    tracing::warn!("{}: {what} failed ({e}); retrying in {:.1} s", redact(&self.url), backoff.as_secs_f64());
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(self.err(format!("{what}: {}", e.as_db_error().map_or(e.to_string(), |d| d.to_string())), "check the database and its permissions")),
            }
        }
    }

    /// The study's id, once it exists.
    fn study_id(&mut self) -> Result<Option<i32>> {
        if self.id.is_none() {
            let name = self.name.clone();
            self.id = self.with_client("find study", |c| Ok(c.query_opt("SELECT id FROM tune_studies WHERE name = $1", &[&name])?.map(|r| r.get(0))))?;
        }
        Ok(self.id)
    }

    fn require_id(&mut self) -> Result<i32> {
        let name = self.name.clone();
        self.study_id()?.ok_or_else(|| self.err(format!("there is no study `{name}`"), "list the studies with `tune study list --storage URL`"))
    }

    /// One write transaction holding the study's row lock; `op` gets the transaction, the
    /// study id and the last sequence number, and returns its value and the new last
    /// sequence number.
    fn write<T>(&mut self, what: &str, mut op: impl FnMut(&mut Transaction, i32, i64) -> std::result::Result<(T, i64), postgres::Error>) -> Result<T> {
        let id = self.require_id()?;
        self.with_client(what, |c| {
            let mut tx = c.transaction()?;
            let last: i64 = tx.query_one("SELECT last_seq FROM tune_studies WHERE id = $1 FOR UPDATE", &[&id])?.get(0);
            let (value, new_last) = op(&mut tx, id, last)?;
            if new_last != last {
                tx.execute("UPDATE tune_studies SET last_seq = $2 WHERE id = $1", &[&id, &new_last])?;
            }
            tx.commit()?;
            Ok(value)
        })
    }

    /// Every study in the store.
    pub fn list(url: &str) -> Result<Vec<StudyListing>> {
        let mut s = PgStorage::connect(url, "")?;
        s.with_client("list studies", |c| {
            let rows = c.query(
                "SELECT s.name, to_char(s.created_at, 'YYYY-MM-DD HH24:MI'), s.next_number::bigint, \
                 (SELECT count(*) FROM tune_trials t WHERE t.study_id = s.id AND t.running) FROM tune_studies s ORDER BY s.created_at",
                &[],
            )?;
            Ok(rows.iter().map(|r| StudyListing { name: r.get(0), created: r.get(1), trials: r.get(2), running: r.get(3) }).collect())
        })
    }

    /// Deletes a study and all its records; false when there is none of that name.
    pub fn delete(url: &str, name: &str) -> Result<bool> {
        let mut s = PgStorage::connect(url, name)?;
        let name = name.to_string();
        s.with_client("delete study", |c| Ok(c.execute("DELETE FROM tune_studies WHERE name = $1", &[&name])? > 0))
    }
}

impl Drop for PgStorage {
    /// The client owns a small runtime, which must not be dropped on an async worker thread.
    fn drop(&mut self) {
        let client = self.client.take();
        blocking(move || drop(client));
    }
}

/// Creates tune's tables, or checks their version; one migrating worker at a time.
fn migrate(client: &mut Client) -> std::result::Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(7402311)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tune_schema (version integer NOT NULL)")?;
    let version: Option<i32> = tx.query_one("SELECT max(version) FROM tune_schema", &[])?.get(0);
    match version {
        None => {
            tx.batch_execute(SCHEMA_V1)?;
            tx.execute("INSERT INTO tune_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            // Surfaced as a refusal naming both versions (see `with_client`).
            tx.batch_execute(&format!(
                "DO $$ BEGIN RAISE EXCEPTION 'this database holds tune schema version {v}, newer than this binary''s version {SCHEMA_VERSION}'; END $$"
            ))?;
        }
        Some(_) => {}
    }
    tx.commit()
}

fn event_json(event: &Event) -> std::result::Result<String, String> {
    crate::study::journal::check_finite(event)?;
    Ok(serde_json::to_string(event).expect("serialisable"))
}

fn insert_event(tx: &mut Transaction, id: i32, seq: i64, body: &str) -> std::result::Result<(), postgres::Error> {
    tx.execute("INSERT INTO tune_events (study_id, seq, body) VALUES ($1, $2, $3)", &[&id, &seq, &body])?;
    Ok(())
}

impl StudyStorage for PgStorage {
    fn location(&self) -> String {
        format!("{} (study `{}`)", redact(&self.url), self.name)
    }

    fn create_or_open(&mut self, resolved: &Resolved, space_text: &str) -> Result<()> {
        let settings = serde_json::to_string(resolved).expect("serialisable");
        let name = self.name.clone();
        let space_text = space_text.to_string();
        let existing: Option<(i32, String)> = self.with_client("open study", |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tune_studies (name, settings, space) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[&name, &settings, &space_text],
            )?;
            let row = tx.query_one("SELECT id, settings FROM tune_studies WHERE name = $1", &[&name])?;
            tx.commit()?;
            Ok(Some((row.get(0), row.get(1))))
        })?;
        let (id, frozen) = existing.expect("selected");
        let frozen: Resolved = serde_json::from_str(&frozen).map_err(|e| self.err(format!("study `{name}`: its settings do not read back ({e})"), "delete the study (`tune study delete`) or restore the database"))?;
        frozen.check_same_study(resolved, &self.location())?;
        self.id = Some(id);
        Ok(())
    }

    fn settings(&mut self) -> Result<Option<Resolved>> {
        let Some(id) = self.study_id()? else { return Ok(None) };
        let text: String = self.with_client("read settings", |c| Ok(c.query_one("SELECT settings FROM tune_studies WHERE id = $1", &[&id])?.get(0)))?;
        serde_json::from_str(&text).map(Some).map_err(|e| self.err(format!("study `{}`: its settings do not read back ({e})", self.name), "delete the study or restore the database"))
    }

    fn create(&mut self, created: &Event) -> Result<bool> {
        let Event::Created { number, params, seed, infeasible, .. } = created else { panic!("create takes a Created event") };
        let body = event_json(created).map_err(|what| self.err(format!("refusing to record {what}, which is not a finite number"), "this is a bug in tune; please report it"))?;
        let (number, running) = (int(*number), infeasible.is_none());
        let (params, seed, me) = (serde_json::to_string(params).expect("serialisable"), *seed as i64, self.worker.clone());
        let mut attempts = 0;
        self.write("create trial", |tx, id, last| {
            attempts += 1;
            let row = tx.query_one("SELECT next_number FROM tune_studies WHERE id = $1", &[&id])?;
            let next: i32 = row.get(0);
            if next != number {
                // On a retry, the attempt whose acknowledgement was lost may have claimed it.
                let mine = attempts > 1
                    && tx.query_opt("SELECT 1 FROM tune_trials WHERE study_id = $1 AND number = $2 AND owner = $3", &[&id, &number, &me])?.is_some();
                return Ok((mine, last));
            }
            insert_event(tx, id, last + 1, &body)?;
            tx.execute(
                "INSERT INTO tune_trials (study_id, number, running, owner, params, seed) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, &number, &running, &me, &params, &seed],
            )?;
            tx.execute("UPDATE tune_studies SET next_number = $2 WHERE id = $1", &[&id, &(number + 1)])?;
            Ok((true, last + 1))
        })
    }

    fn record(&mut self, event: &Event) -> Result<()> {
        let number = match event {
            Event::Epoch { number, .. } | Event::Finished { number, .. } => int(*number),
            Event::Created { .. } => panic!("trials are created with `create`"),
        };
        let body = event_json(event).map_err(|what| self.err(format!("refusing to record {what}, which is not a finite number"), "a trial reported a non-finite figure; it is not recorded"))?;
        let finishing = matches!(event, Event::Finished { .. });
        self.write("record event", |tx, id, last| {
            let running: Option<bool> = tx.query_opt("SELECT running FROM tune_trials WHERE study_id = $1 AND number = $2", &[&id, &number])?.map(|r| r.get(0));
            if running != Some(true) {
                return Ok(((), last)); // finished already (declared lost): its verdict stands
            }
            insert_event(tx, id, last + 1, &body)?;
            if finishing {
                tx.execute("UPDATE tune_trials SET running = false WHERE study_id = $1 AND number = $2", &[&id, &number])?;
            }
            Ok(((), last + 1))
        })
    }

    fn read_since(&mut self, cursor: Cursor) -> Result<(Vec<Event>, Cursor)> {
        let Some(id) = self.study_id()? else { return Ok((Vec::new(), cursor)) };
        let after = cursor.0 as i64;
        let rows = self.with_client("read events", |c| c.query("SELECT seq, body FROM tune_events WHERE study_id = $1 AND seq > $2 ORDER BY seq", &[&id, &after]))?;
        let mut events = Vec::with_capacity(rows.len());
        let mut last = cursor;
        for row in rows {
            let (seq, body): (i64, String) = (row.get(0), row.get(1));
            let event = serde_json::from_str(&body).map_err(|e| self.err(format!("event {seq} of study `{}` does not read back ({e})", self.name), "restore the database from a backup"))?;
            events.push(event);
            last = Cursor(seq as u64);
        }
        Ok((events, last))
    }

    fn take_queued(&mut self) -> Result<Option<usize>> {
        let me = self.worker.clone();
        self.write("take a queued trial", |tx, id, last| {
            let row = tx.query_opt(
                "UPDATE tune_trials SET owner = $2, beat_at = now() WHERE study_id = $1 AND number = \
                 (SELECT number FROM tune_trials WHERE study_id = $1 AND running AND owner IS NULL ORDER BY number LIMIT 1) RETURNING number",
                &[&id, &me],
            )?;
            Ok((row.map(|r| r.get::<_, i32>(0) as usize), last))
        })
    }

    fn release(&mut self, numbers: &[usize]) -> Result<()> {
        if numbers.is_empty() {
            return Ok(());
        }
        let (numbers, me): (Vec<i32>, String) = (numbers.iter().map(|n| int(*n)).collect(), self.worker.clone());
        self.write("release trials", |tx, id, last| {
            tx.execute("UPDATE tune_trials SET owner = NULL WHERE study_id = $1 AND number = ANY($2) AND owner = $3 AND running", &[&id, &numbers, &me])?;
            Ok(((), last))
        })
    }

    fn heartbeat(&mut self, numbers: &[usize]) -> Result<()> {
        if numbers.is_empty() {
            return Ok(());
        }
        let (numbers, me): (Vec<i32>, String) = (numbers.iter().map(|n| int(*n)).collect(), self.worker.clone());
        self.write("heartbeat", |tx, id, last| {
            tx.execute("UPDATE tune_trials SET beat_at = now() WHERE study_id = $1 AND number = ANY($2) AND owner = $3 AND running", &[&id, &numbers, &me])?;
            Ok(((), last))
        })
    }

    fn reap(&mut self, liveness: &Liveness) -> Result<Vec<Reaped>> {
        if self.reconnected.is_some_and(|at| at.elapsed() < liveness.grace) {
            return Ok(Vec::new()); // heartbeats could not reach the store during the outage
        }
        let grace = liveness.grace.as_secs_f64();
        let max_retries = liveness.max_retries as i32;
        self.write("reap lost trials", |tx, id, mut last| {
            let stale = tx.query(
                "SELECT number, owner, params, seed, attempt, EXTRACT(EPOCH FROM now() - beat_at)::float8 FROM tune_trials \
                 WHERE study_id = $1 AND running AND owner IS NOT NULL AND beat_at < now() - make_interval(secs => $2) ORDER BY number",
                &[&id, &grace],
            )?;
            let mut reaped = Vec::new();
            for row in stale {
                let (number, owner, params, seed, attempt, age): (i32, String, String, i64, i32, f64) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
                let retry = if attempt < max_retries {
                    let next: i32 = tx.query_one("UPDATE tune_studies SET next_number = next_number + 1 WHERE id = $1 RETURNING next_number - 1", &[&id])?.get(0);
                    Some(next)
                } else {
                    None
                };
                let reason = match retry {
                    Some(r) => format!("worker lost: {owner} sent no heartbeat for {age:.0} s (grace {grace:.0} s); re-run as trial {r}"),
                    None => format!("worker lost: {owner} sent no heartbeat for {age:.0} s (grace {grace:.0} s); not re-run after {attempt} retries"),
                };
                let finished = Event::Finished { number: number as usize, state: TrialState::Failed, reason: Some(reason.clone()), secs: 0.0 };
                last += 1;
                insert_event(tx, id, last, &serde_json::to_string(&finished).expect("serialisable"))?;
                tx.execute("UPDATE tune_trials SET running = false WHERE study_id = $1 AND number = $2", &[&id, &number])?;
                if let Some(r) = retry {
                    let params_map = serde_json::from_str(&params).expect("written by tune");
                    let created = Event::Created { number: r as usize, params: params_map, seed: seed as u64, infeasible: None, retry_of: Some(number as usize) };
                    last += 1;
                    insert_event(tx, id, last, &serde_json::to_string(&created).expect("serialisable"))?;
                    tx.execute(
                        "INSERT INTO tune_trials (study_id, number, running, owner, params, seed, attempt) VALUES ($1, $2, true, NULL, $3, $4, $5)",
                        &[&id, &r, &params, &seed, &(attempt + 1)],
                    )?;
                }
                reaped.push(Reaped { lost: number as usize, retry: retry.map(|r| r as usize), reason });
            }
            Ok((reaped, last))
        })
    }
}

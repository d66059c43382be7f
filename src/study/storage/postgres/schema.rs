//! tune's tables in PostgreSQL, versioned in `tune_schema`, created or checked by the first
//! worker to connect (an advisory lock makes the others wait for it).

use postgres::Client;

/// The schema this binary writes. A database at a newer version is refused; an older one is
/// upgraded in place, one version at a time.
pub const SCHEMA_VERSION: i32 = 2;

/// Tables of schema version 1 (`tune_schema` records the version). Trials and events carry
/// their study's id without a foreign key on purpose: every insert would share-lock the
/// study's row, which each reservation updates, and 64 workers then queue on multixacts.
/// `PgStorage::delete` removes a study's rows itself.
const SCHEMA_V1: &str = "
CREATE TABLE tune_studies (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL,
    settings text NOT NULL,
    space text NOT NULL,
    next_number integer NOT NULL DEFAULT 0,
    budget_used integer NOT NULL DEFAULT 0,
    retries integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tune_trials (
    study_id integer NOT NULL,
    number integer NOT NULL,
    running boolean NOT NULL,
    owner text,
    beat_at timestamptz NOT NULL DEFAULT now(),
    params text,
    seed bigint NOT NULL DEFAULT 0,
    draw integer NOT NULL DEFAULT 0,
    attempt integer NOT NULL DEFAULT 0,
    PRIMARY KEY (study_id, number)
);
CREATE INDEX tune_trials_running ON tune_trials (study_id, number) WHERE running;
CREATE TABLE tune_events (
    id bigserial PRIMARY KEY,
    study_id integer NOT NULL,
    xid bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    body text NOT NULL
);
CREATE INDEX tune_events_order ON tune_events (study_id, xid, id);
";

/// Version 2: paused trials (promotion schedulers). A paused trial runs nowhere (`running`
/// is false) until a worker resumes it.
const UPGRADE_TO_V2: &str = "ALTER TABLE tune_trials ADD COLUMN paused boolean NOT NULL DEFAULT false;";

/// Creates tune's tables, or checks their version; one migrating worker at a time.
pub(crate) fn migrate(client: &mut Client) -> std::result::Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(7402311)", &[])?;
    let exists: bool = tx.query_one("SELECT to_regclass('tune_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        tx.batch_execute("CREATE TABLE tune_schema (version integer NOT NULL)")?;
    }
    let version: Option<i32> = tx.query_one("SELECT max(version) FROM tune_schema", &[])?.get(0);
    match version {
        None => {
            tx.batch_execute(SCHEMA_V1)?;
            tx.batch_execute(UPGRADE_TO_V2)?;
            tx.execute("INSERT INTO tune_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])?;
        }
        Some(1) => {
            tracing::info!("upgrading tune's tables from schema version 1 to {SCHEMA_VERSION} (paused trials)");
            tx.batch_execute(UPGRADE_TO_V2)?;
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

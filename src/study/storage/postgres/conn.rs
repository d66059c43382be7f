//! A connection with its prepared statements, and the rules for calling it from the study
//! loop's runtime and for retrying.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

/// A connection and the statements prepared on it: the hot writes are one round trip each.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// Runs `sql` as a statement prepared once per connection.
    pub(super) fn run(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        let statement = match self.statements.get(sql) {
            Some(st) => st.clone(),
            None => {
                let st = self.client.prepare(sql)?;
                self.statements.insert(sql, st.clone());
                st
            }
        };
        self.client.query(&statement, params)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Runs `f` where blocking is allowed: inside a multi-threaded tokio runtime (the study
/// loop) it moves off the runtime's worker first; elsewhere it runs as is.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Worth retrying: the connection went away, the server is restarting, or PostgreSQL asks
/// for a retry (serialization failure, deadlock).
pub(super) fn transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(), // I/O, not a server verdict
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57P")
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
        }
    }
}

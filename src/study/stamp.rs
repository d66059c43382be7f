//! When and by whom a record was written, carried by every journal line and database row.

use serde::{Deserialize, Serialize};

/// When and by whom a record was written: its UTC wall-clock time (RFC 3339, milliseconds)
/// and the worker process (`host:pid`). Records written before tune kept them have neither.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl Stamp {
    /// This process, now.
    pub fn now() -> Stamp {
        Stamp {
            at: Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
            worker: Some(worker().to_string()),
        }
    }

    /// The time as seconds since the Unix epoch, where it is recorded.
    pub fn unix_secs(&self) -> Option<f64> {
        let at = humantime::parse_rfc3339(self.at.as_deref()?).ok()?;
        Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
    }
}

/// This process as a worker: `host:pid`.
pub fn worker() -> &'static str {
    static WORKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    WORKER.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string());
        format!("{}:{}", host.unwrap_or_else(|_| "host".into()), std::process::id())
    })
}

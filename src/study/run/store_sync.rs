//! This worker's view of the records: what every worker recorded since the last read, and
//! this worker's own events, applied at once.

use super::*;

impl Study {
    /// Reads what was recorded since the last read (this worker's events and every other
    /// worker's), and stops local processes of trials another worker declared lost.
    pub(super) fn sync(&mut self) -> Result<()> {
        let read = self.storage.read_since(self.cursor)?;
        crate::study::storage::absorb(&mut self.trials, &mut self.cursor, read);
        for (n, r) in self.running.iter_mut() {
            if self.trials.get(n).is_some_and(|t| t.state.is_finished()) && !r.disowned && r.pruned.is_none() {
                tracing::warn!("trial {n} was declared lost by another worker; stopping its process here");
                r.disowned = true;
                r.stop();
            }
        }
        Ok(())
    }

    /// Waits (briefly) until trial `n`'s record is readable here: a trial another worker
    /// just re-queued becomes visible once every older transaction has ended.
    pub(super) fn await_record(&mut self, n: usize) -> Result<bool> {
        for _ in 0..100 {
            self.sync()?;
            if self.trials.contains_key(&n) {
                return Ok(true);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        tracing::warn!("trial {n} was queued but its record is not readable yet; handing it back");
        Ok(false)
    }

    /// Records an event, and applies it here at once: a shared store may show it to readers
    /// a moment later (applying it twice changes nothing). False when the store refused it
    /// because its trial no longer runs (declared lost by another worker meanwhile).
    pub(super) fn record(&mut self, event: &Event) -> Result<bool> {
        let recorded = self.storage.record(event)?;
        if recorded {
            crate::study::events::apply(&mut self.trials, crate::study::events::Stamped::now(event.clone()));
        }
        self.sync()?;
        Ok(recorded)
    }
}

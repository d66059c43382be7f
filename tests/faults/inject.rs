//! Injecting one fault into a worker, its namespace, the server or the artifacts disk, and healing it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::GRACE_SECS;
use crate::common::workers::*;
use crate::common::*;
use crate::report::Fault;
use crate::seed::Harness;
use libtest_mimic::Failed;
use rand::Rng;
use rand::rngs::StdRng;

impl Harness {
    pub(crate) fn inject(&mut self, fault: Fault, i: usize, rng: &mut StdRng, name: &str) -> Result<(), Failed> {
        let past_grace = Duration::from_millis(GRACE_SECS * 1000 + rng.random_range(1000..3000));
        match fault {
            Fault::Partition => {
                self.slots[i].ns.partition(true)?;
                let out = self.pause(past_grace, name);
                self.slots[i].ns.partition(false)?;
                out?;
            }
            Fault::OneWayPartition => {
                self.slots[i].ns.drop_outgoing()?;
                let out = self.pause(past_grace, name);
                self.slots[i].ns.clear_rules()?;
                out?;
            }
            Fault::LatencyAndLoss => {
                self.slots[i].ns.set_delay(Duration::from_millis(20));
                self.slots[i].ns.lossy(3)?;
                let out = self.pause(Duration::from_millis(rng.random_range(3000..6000)), name);
                self.slots[i].ns.set_delay(Duration::ZERO);
                self.slots[i].ns.clear_rules()?;
                out?;
            }
            Fault::Freeze => {
                let Some(pid) = self.pid(i) else { return Ok(()) };
                let tree = process_tree(pid);
                signal(&tree, "STOP")?;
                std::thread::sleep(past_grace);
                // Continue whatever of the tree still exists (the trial process may be gone).
                let _ = Command::new("kill").arg("-CONT").args(tree.iter().map(u32::to_string)).status();
            }
            Fault::KillWorker => {
                if let Some(mut child) = self.slots[i].child.take() {
                    self.ended_early.push(child.id());
                    let tree = process_tree(child.id());
                    let _ = Command::new("kill").arg("-9").args(tree.iter().map(u32::to_string)).status();
                    let _ = child.wait();
                    self.pause(Duration::from_millis(rng.random_range(500..2000)), name)?;
                    self.revive(name)?;
                }
            }
            Fault::KillPostmaster => {
                let pid_file = Path::new(&self.ctl).with_file_name("data").join("postmaster.pid");
                let pid = std::fs::read_to_string(&pid_file)?.lines().next().unwrap_or("").trim().to_string();
                let kill = Command::new("kill").args(["-9", &pid]).output()?;
                check(kill.status.success(), format!("kill -9 {pid}: {}", text(&kill)))?;
                std::thread::sleep(Duration::from_millis(rng.random_range(2000..4000)));
                let mut start = Command::new(&self.ctl).arg("start").output()?;
                for _ in 0..30 {
                    if start.status.success() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    start = Command::new(&self.ctl).arg("start").output()?;
                }
                check(start.status.success(), format!("pg_ctl start: {}", text(&start)))?;
            }
            Fault::FullArtifactsDisk => {
                // Fill the tmpfs; a worker whose checkpoint meets ENOSPC stops with exit 9.
                self.disk_full = true;
                let filler = self.artifacts.join("filler");
                let _ = fill(&filler);
                let out = self.pause(Duration::from_millis(rng.random_range(2000..4000)), name);
                std::fs::remove_file(&filler)?;
                out?;
                // A worker still writing when the space came back may stop on it just after.
                self.pause(Duration::from_millis(500), name)?;
                self.disk_full = false;
                self.revive(name)?;
            }
        }
        Ok(())
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let block = vec![0u8; 1 << 20];
    loop {
        file.write_all(&block)?;
    }
}

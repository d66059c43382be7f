//! Trials that train nothing: each reports its epochs a fixed time apart, with a val_acc that
//! depends only on its parameters and the epoch. `tune run --instant-objective-ms MS` (hidden)
//! runs a real study — sampling, the store, heartbeats, reaping, scheduling — at the store's
//! speed rather than training's: what the fault harness's second workload and storage tests
//! need (as `tune bench storage`'s instant objective, but through the whole study loop).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::launch::{Exit, Launch, Message};
use crate::training::{EpochMetrics, TrainConfig};

/// Reports each trial's epochs `epoch` apart in this process.
pub struct InstantLauncher {
    pub epoch: Duration,
}

/// A trial's val_acc at `epoch`: a value in [0.5, 0.9) fixed by its parameters, plus 0.001
/// an epoch, so configurations differ and curves rise.
pub fn objective(params_text: &str, epoch: usize) -> f64 {
    let mut h = DefaultHasher::new();
    params_text.hash(&mut h);
    0.5 + 0.4 * (h.finish() % 10_000) as f64 / 10_000.0 + 0.001 * epoch as f64
}

impl Launch for InstantLauncher {
    fn spawn(
        &self,
        number: usize,
        dir: &Path,
        tx: mpsc::UnboundedSender<Message>,
    ) -> std::io::Result<oneshot::Sender<()>> {
        let params = std::fs::read_to_string(dir.join("params.toml"))?;
        let cfg: TrainConfig = toml::from_str(&std::fs::read_to_string(dir.join("train.toml"))?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let (kill, mut killed) = oneshot::channel::<()>();
        let every = self.epoch;
        tokio::spawn(async move {
            // Epochs already recorded are reported again, as a resumed process replays its
            // checkpoint's; the loop keeps only the new ones.
            for epoch in 1..=cfg.epochs {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = &mut killed => {
                        let _ = tx.send(Message::Exit { number, outcome: Exit::Killed });
                        return;
                    }
                }
                let val_acc = objective(&params, epoch);
                let m = EpochMetrics {
                    epoch,
                    train_loss: 1.0 - val_acc,
                    train_acc: val_acc,
                    val_loss: 1.0 - val_acc,
                    val_acc,
                    lr: cfg.lr,
                    secs: every.as_secs_f64(),
                    latency: None,
                };
                let _ = tx.send(Message::Epoch(number, m));
            }
            let _ = tx.send(Message::Exit { number, outcome: Exit::Success });
        });
        Ok(kill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_objective_depends_on_the_parameters_and_rises_with_epochs() {
        let (a, b) = ("lr = 0.001\n", "lr = 0.002\n");
        assert_eq!(objective(a, 1), objective(a, 1));
        assert_ne!(objective(a, 1), objective(b, 1));
        assert!(objective(a, 2) > objective(a, 1));
        assert!((0.5..0.95).contains(&objective(a, 3)));
    }
}

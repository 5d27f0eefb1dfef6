//! This executor's lease on its workflows: it lasts for half the executor timeout
//! from the start of the last heartbeat that found it alive. Other executors declare
//! it dead only after a whole timeout of silence, so while the lease holds, nobody
//! else can have taken its workflows. A step body starts only under a valid lease:
//! a process that was paused (a GC-like stall, a VM migration, a partition) starts
//! no step after it resumes until a heartbeat has told it whether it still owns its
//! work. What it writes is fenced as well (see `store::writer`), so only a step body
//! already in flight when the pause began can overlap its successor.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub(crate) struct Lease {
    /// When the last heartbeat that found this executor alive was sent.
    renewed: Mutex<Option<Instant>>,
    valid_for: Mutex<Duration>,
    changed: Notify,
}

impl Lease {
    pub fn new() -> Lease {
        Lease { renewed: Mutex::new(None), valid_for: Mutex::new(Duration::MAX), changed: Notify::new() }
    }

    /// Sets how long a renewal lasts: half the executor timeout.
    pub fn set_executor_timeout(&self, timeout: Duration) {
        *self.valid_for.lock().expect("lease poisoned") = timeout / 2;
    }

    /// A heartbeat sent at `sent` found this executor alive.
    pub fn renew(&self, sent: Instant) {
        let mut renewed = self.renewed.lock().expect("lease poisoned");
        if renewed.is_none_or(|at| at < sent) {
            *renewed = Some(sent);
        }
        drop(renewed);
        self.changed.notify_waiters();
    }

    fn valid(&self) -> bool {
        let valid_for = *self.valid_for.lock().expect("lease poisoned");
        self.renewed.lock().expect("lease poisoned").is_none_or(|at| at.elapsed() < valid_for)
    }

    /// Returns at once while the lease holds; otherwise waits until a heartbeat
    /// renews it (or forever, if this executor was declared dead: then its tasks
    /// are ended).
    pub async fn wait_valid(&self, workflow_id: &str) {
        if self.valid() {
            return;
        }
        tracing::warn!(%workflow_id, "exactly: this executor's lease lapsed (no heartbeat for half the executor timeout); the next step waits for a heartbeat");
        while !self.valid() {
            let changed = self.changed.notified();
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

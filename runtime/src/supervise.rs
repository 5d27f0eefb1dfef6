//! Supervision and health.
//!
//! Every long-lived part of the runtime (the Kafka receiver threads, the SQS
//! pollers, the dispatcher, the heartbeat, the checkpoint writers) runs under
//! supervision: a process that stays up but consumes nothing is the worst failure
//! a message processor can have. A part that panics or ends while the runtime runs
//! is restarted with backoff where that is safe (its work is redone from durable
//! state: unacknowledged messages come back and deduplicate), or else the runtime
//! is marked failed, which makes [`Runtime::until_shutdown_signal`] return an error
//! naming the part, so that the process exits non-zero and its manager restarts it.
//!
//! Receivers publish their state; [`Runtime::health`] reports it with the failure.
//!
//! [`Runtime::until_shutdown_signal`]: crate::Runtime::until_shutdown_signal
//! [`Runtime::health`]: crate::Runtime::health

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::sync::watch;

/// The first pause before a stopped part is restarted; it doubles up to [`MAX_RESTART_DELAY`].
const MIN_RESTART_DELAY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A part that ran this long before stopping restarts after the shortest pause again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The pauses before a part that keeps stopping is started again, for every
/// supervised part alike: 0.5 s, doubling to 30 s, back to 0.5 s after a run of a
/// minute or more.
pub(crate) struct RestartDelay(Duration);

impl RestartDelay {
    pub fn new() -> RestartDelay {
        RestartDelay(MIN_RESTART_DELAY)
    }

    /// The pause after a run that lasted `ran_for`; the next one is twice as long.
    pub fn after(&mut self, ran_for: Duration) -> Duration {
        if ran_for > STABLE_AFTER {
            self.0 = MIN_RESTART_DELAY;
        }
        let delay = self.0;
        self.0 = (self.0 * 2).min(MAX_RESTART_DELAY);
        delay
    }
}

/// What a receiver is doing, as [`Runtime::health`](crate::Runtime::health) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiverState {
    /// Created, not consuming yet.
    Starting,
    /// Receiving messages (or waiting for them).
    Consuming,
    /// Taking no messages while the process runs its most workflows (`max_running`).
    PausedForRoom,
    /// Holding its messages unacknowledged while the database does not take them.
    WaitingForDatabase,
    /// Retrying while the queue server does not answer.
    WaitingForServer,
    /// Its client stopped working and is being created again.
    Rebuilding,
    /// It cannot work; the runtime has failed (see [`Health::failure`]).
    Failed,
    /// Stopped by shutdown.
    Stopped,
}

impl ReceiverState {
    /// The states an operator must hear about.
    fn is_bad(self) -> bool {
        matches!(
            self,
            ReceiverState::WaitingForDatabase
                | ReceiverState::WaitingForServer
                | ReceiverState::Rebuilding
                | ReceiverState::Failed
        )
    }

    /// The name used in logs and health reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverState::Starting => "starting",
            ReceiverState::Consuming => "consuming",
            ReceiverState::PausedForRoom => "paused for room",
            ReceiverState::WaitingForDatabase => "waiting for the database",
            ReceiverState::WaitingForServer => "waiting for the queue server",
            ReceiverState::Rebuilding => "rebuilding",
            ReceiverState::Failed => "failed",
            ReceiverState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ReceiverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One receiver's state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReceiverHealth {
    /// `kafka` or `sqs`.
    pub kind: &'static str,
    /// The consumer: its workflow and group, or its queue.
    pub name: String,
    /// What it is doing.
    pub state: ReceiverState,
    /// Since when.
    pub since: SystemTime,
    /// Why it went into its last bad state, if it ever did.
    pub last_error: Option<String>,
}

/// What [`Runtime::health`](crate::Runtime::health) reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Health {
    /// Every receiver of the runtime, Kafka consumers and SQS pollers.
    pub receivers: Vec<ReceiverHealth>,
    /// Set when a part of the runtime stopped and could not be restarted: the
    /// runtime does not work and the process should exit.
    pub failure: Option<String>,
    /// The parts of the runtime (dispatcher, heartbeat) that stopped and were started
    /// again, with how often and the last reason.
    pub restarts: Vec<PartRestarts>,
}

/// How often a part of the runtime was started again, and why the last time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PartRestarts {
    /// `dispatcher` or `heartbeat`.
    pub part: &'static str,
    /// How many times.
    pub count: u32,
    /// Why it stopped the last time.
    pub last_reason: String,
}

impl Health {
    /// Alive: no part has failed. A liveness check that fails this should restart the process.
    pub fn is_healthy(&self) -> bool {
        self.failure.is_none() && self.receivers.iter().all(|r| r.state != ReceiverState::Failed)
    }

    /// Healthy, and every receiver is consuming (or holding back for room).
    pub fn is_ready(&self) -> bool {
        self.is_healthy()
            && self.receivers.iter().all(|r| matches!(r.state, ReceiverState::Consuming | ReceiverState::PausedForRoom))
    }
}

/// A receiver's published state.
pub(crate) struct Probe {
    kind: &'static str,
    name: String,
    state: Mutex<(ReceiverState, SystemTime, Option<String>)>,
}

impl Probe {
    /// Moves to `state`; `reason` says why (kept as the last error for bad states).
    /// A move into a bad state is logged at error level, out of one at info level.
    pub fn set(&self, state: ReceiverState, reason: Option<&str>) {
        let mut current = self.state.lock().expect("probe poisoned");
        if current.0 == state {
            return;
        }
        let (kind, name) = (self.kind, &self.name);
        let mut last_error = current.2.take();
        if state.is_bad() {
            tracing::error!(receiver = kind, consumer = %name, state = state.as_str(), reason = reason.unwrap_or(""),
                "exactly: receiver is {state}");
            last_error = reason.map(str::to_owned).or(last_error);
        } else if current.0.is_bad() {
            tracing::info!(receiver = kind, consumer = %name, state = state.as_str(), was = current.0.as_str(),
                "exactly: receiver is {state} again");
        }
        *current = (state, SystemTime::now(), last_error);
    }

    fn report(&self) -> ReceiverHealth {
        let (state, since, last_error) = self.state.lock().expect("probe poisoned").clone();
        ReceiverHealth { kind: self.kind, name: self.name.clone(), state, since, last_error }
    }
}

/// The runtime's supervisor: its receivers' probes and whether it has failed.
pub(crate) struct Supervisor {
    probes: Mutex<Vec<Arc<Probe>>>,
    restarts: Mutex<Vec<PartRestarts>>,
    failure: watch::Sender<Option<String>>,
    stopping: AtomicBool,
}

impl Supervisor {
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor { probes: Mutex::new(Vec::new()), restarts: Mutex::new(Vec::new()), failure: watch::Sender::new(None), stopping: AtomicBool::new(false) })
    }

    /// A probe for a new receiver, reported by [`health`](Self::health) from now on.
    pub fn probe(&self, kind: &'static str, name: impl Into<String>) -> Arc<Probe> {
        let probe = Arc::new(Probe {
            kind,
            name: name.into(),
            state: Mutex::new((ReceiverState::Starting, SystemTime::now(), None)),
        });
        self.probes.lock().expect("probes poisoned").push(probe.clone());
        probe
    }

    /// Marks the runtime failed (the first failure is kept).
    pub fn fail(&self, part: &str, reason: &str) {
        let message = format!("{part} {reason}");
        tracing::error!(part, reason, "exactly: the runtime has failed: {message}; shut it down and restart the process");
        self.failure.send_if_modified(|failure| {
            let first = failure.is_none();
            if first {
                *failure = Some(message);
            }
            first
        });
    }

    /// Waits until the runtime has failed; returns why.
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.subscribe();
        let failed = failure.wait_for(Option::is_some).await.expect("the supervisor outlives its watchers");
        failed.clone().unwrap_or_default()
    }

    /// Shutdown has begun: parts that end now end on purpose.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn health(&self) -> Health {
        let receivers = self.probes.lock().expect("probes poisoned").iter().map(|p| p.report()).collect();
        let restarts = self.restarts.lock().expect("restarts poisoned").clone();
        Health { receivers, failure: self.failure.borrow().clone(), restarts }
    }

    fn restarted(&self, part: &'static str, reason: &str) {
        let mut restarts = self.restarts.lock().expect("restarts poisoned");
        match restarts.iter_mut().find(|r| r.part == part) {
            Some(r) => {
                r.count += 1;
                r.last_reason = reason.to_owned();
            }
            None => restarts.push(PartRestarts { part, count: 1, last_reason: reason.to_owned() }),
        }
    }
}

/// What to do when a supervised part stops while the runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnStop {
    /// Start it again after a pause (it keeps nothing that is not durable).
    Restart,
    /// Mark the runtime failed (restarting it could lose or repeat work).
    FailRuntime,
}

/// Runs the task `make` builds on the current tokio runtime, under supervision.
pub(crate) fn spawn<F, Fut>(supervisor: &Arc<Supervisor>, part: &'static str, on_stop: OnStop, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        let mut restart = RestartDelay::new();
        loop {
            let started = std::time::Instant::now();
            let ended = AssertUnwindSafe(make()).catch_unwind().await;
            if supervisor.is_stopping() {
                return;
            }
            let reason = match ended {
                Ok(()) => "ended unexpectedly".to_owned(),
                Err(panic) => format!("panicked: {}", panic_message(&*panic)),
            };
            if on_stop == OnStop::FailRuntime {
                supervisor.fail(part, &reason);
                return;
            }
            let delay = restart.after(started.elapsed());
            tracing::error!(part, reason, restart_in = ?delay, "exactly: a part of the runtime stopped; restarting it");
            supervisor.restarted(part, &reason);
            tokio::time::sleep(delay).await;
            if supervisor.is_stopping() {
                return;
            }
        }
    });
}

/// The text of a panic's payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

// ---------------------------------------------------------------- test hook

/// Parts armed to panic at their next fault point (tests of supervision).
static ARMED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
static ANY_ARMED: AtomicBool = AtomicBool::new(false);

/// Makes the next pass of `part` through its fault point panic, once. For tests of
/// supervision: `"kafka receiver"`, `"sqs poller"`, `"dispatcher"`, `"heartbeat"`,
/// `"checkpoint writer"`.
pub fn inject_panic(part: &'static str) {
    ARMED.lock().expect("fault points poisoned").push(part);
    ANY_ARMED.store(true, Ordering::SeqCst);
}

/// Panics if a test armed `part` (one relaxed load when none did).
pub(crate) fn fault_point(part: &'static str) {
    if !ANY_ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut armed = ARMED.lock().expect("fault points poisoned");
    if let Some(i) = armed.iter().position(|p| *p == part) {
        armed.remove(i);
        ANY_ARMED.store(!armed.is_empty(), Ordering::SeqCst);
        drop(armed);
        panic!("a panic injected into the {part} by a test");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_wait_longer_each_time_and_start_over_after_a_long_run() {
        let mut restart = RestartDelay::new();
        let short = Duration::from_secs(1);
        let pauses: Vec<Duration> = (0..8).map(|_| restart.after(short)).collect();
        assert_eq!(pauses[..3], [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(pauses[7], MAX_RESTART_DELAY);
        assert_eq!(restart.after(STABLE_AFTER + short), MIN_RESTART_DELAY);
    }
}

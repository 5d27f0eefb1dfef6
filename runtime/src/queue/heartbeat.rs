//! Executor heartbeats and the recovery of dead executors' work: each process
//! records that it is alive; one that stays silent longer than the timeout is
//! declared dead by any live one, which puts its PENDING workflows back on their
//! queues for whoever has capacity.

use std::sync::Arc;
use std::time::Duration;

use crate::workflow::engine::Engine;

/// Heartbeat settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeartbeatConfig {
    pub interval: Duration,
    /// Silence after which an executor is declared dead.
    pub timeout: Duration,
}

pub(crate) async fn run(engine: Arc<Engine>, config: HeartbeatConfig) {
    let executor = engine.config.executor_id.clone();
    let mut registered = false;
    while !engine.is_shutting_down() {
        crate::supervise::fault_point("heartbeat");
        let sent = std::time::Instant::now();
        match engine.store.heartbeat(&executor, &engine.config.app_version).await {
            Ok(alive) => {
                if registered && !alive {
                    // Declared dead while silent: the workflows it was running now
                    // belong to others. Stop them here so no workflow runs twice at
                    // once, and rerun those the dispatcher claimed back meanwhile.
                    tracing::error!(%executor, "exactly: this executor was declared dead (heartbeat missed); its running workflows were handed to other executors and stop here");
                    if let Err(e) = engine.recover_after_takeover().await {
                        tracing::error!(error = %e, "exactly: could not resume the workflows claimed back after the takeover; they run at the next launch");
                    }
                }
                registered = true;
                // Alive now (again, after a takeover whose tasks were just ended).
                engine.lease.renew(sent);
            }
            Err(e) => tracing::warn!(error = %e, "exactly: heartbeat failed"),
        }
        match engine.store.requeue_dead(&executor, config.timeout.as_millis() as i64).await {
            Ok(queues) if !queues.is_empty() => {
                tracing::warn!(?queues, "exactly: executors stopped heartbeating; their PENDING workflows are back on their queues");
                for queue in &queues {
                    engine.wake_dispatcher(queue);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "exactly: could not check for dead executors"),
        }
        tokio::time::sleep(config.interval).await;
    }
}

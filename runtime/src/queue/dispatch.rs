//! The dispatcher: one task per process that claims ENQUEUED workflows from every
//! queue within its limits and runs them. It wakes on NOTIFY when rows are
//! enqueued, when one of its own queued workflows ends, and otherwise polls, which
//! picks up slots freed by other processes and rate-limit windows that moved on.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::store::ENQUEUED_CHANNEL;
use crate::workflow::engine::Engine;

/// Most rows claimed by one query.
const CLAIM_BATCH: u32 = 500;

/// How often to look again without a wake-up.
pub(crate) const POLL: Duration = Duration::from_millis(200);

pub(crate) async fn run(engine: Arc<Engine>) {
    let mut listener = listen(&engine).await;
    let mut queues: Vec<_> = engine.queues.values().cloned().collect();
    queues.sort_by_key(|q| q.name);
    let mut delay = Duration::from_millis(50);
    while !engine.is_shutting_down() {
        // Claim from every queue; go round again at once while some queue filled a batch.
        let mut full = false;
        let mut failed = false;
        for queue in &queues {
            let want = engine.local_slots(queue).min(CLAIM_BATCH);
            if want == 0 {
                continue;
            }
            let claimed = match engine.store.claim(queue, &engine.config.executor_id, want).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(queue = queue.name, error = %e, "exactly: dispatcher cannot claim; retrying");
                    failed = true;
                    break;
                }
            };
            full |= claimed.len() as u32 == want && want == CLAIM_BATCH;
            if let Err(e) = engine.run_claimed(claimed).await {
                // The rows are PENDING for this executor: recovery runs them if this fails.
                tracing::warn!(queue = queue.name, error = %e, "exactly: could not start claimed workflows");
                failed = true;
            }
        }
        if failed {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            continue;
        }
        delay = Duration::from_millis(50);
        if full {
            continue;
        }
        wait_for_work(&engine, &mut listener).await;
    }
}

async fn listen(engine: &Engine) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(engine.store.pool()).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(error = %e, "exactly: dispatcher cannot LISTEN; it will poll");
            return None;
        }
    };
    match listener.listen(ENQUEUED_CHANNEL).await {
        Ok(()) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %e, "exactly: dispatcher cannot LISTEN; it will poll");
            None
        }
    }
}

/// Returns on a NOTIFY, a local wake-up or the poll interval, whichever comes first.
async fn wait_for_work(engine: &Engine, listener: &mut Option<PgListener>) {
    let notified = async {
        match listener {
            // `try_recv` reconnects after a lost connection (returning None once).
            Some(listener) => {
                let _ = listener.try_recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = notified => {}
        _ = engine.dispatch_wakeup.notified() => {}
        _ = tokio::time::sleep(POLL) => {}
    }
}

//! The dispatcher: one task per process that claims ENQUEUED workflows from every
//! queue within its limits and runs them. It wakes on NOTIFY when rows are
//! enqueued, when one of its own queued workflows ends, and otherwise polls, which
//! picks up slots freed by other processes and rate-limit windows that moved on.
//! A wake-up claims from the queues it concerns only; a poll from all of them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::store::ENQUEUED_CHANNEL;
use crate::workflow::engine::Engine;

/// Most rows claimed by one query.
const CLAIM_BATCH: u32 = 500;

/// How often to look again without a wake-up, unless configured
/// ([`RuntimeBuilder::dispatch_poll_interval`](crate::RuntimeBuilder::dispatch_poll_interval)).
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// Runs the dispatcher; `poll` is how often it looks at every queue without a wake-up.
pub(crate) async fn run(engine: Arc<Engine>, poll: Duration) {
    let mut listener = listen(&engine).await;
    let mut queues: Vec<_> = engine.queues.values().cloned().collect();
    queues.sort_by_key(|q| q.name);
    let all: HashSet<String> = queues.iter().map(|q| q.name.to_owned()).collect();
    // The queues that may have claimable work: all of them at first and at every
    // poll; after a wake-up, the ones it names.
    let mut due = all.clone();
    let mut delay = Duration::from_millis(50);
    while !engine.is_shutting_down() {
        crate::supervise::fault_point("dispatcher");
        let mut failed = false;
        if let Err(e) = engine.hand_back_unstarted().await {
            tracing::warn!(error = %e, "exactly: dispatcher cannot hand claimed workflows back; retrying");
            failed = true;
        }
        for queue in &queues {
            if failed || !due.contains(queue.name) {
                continue;
            }
            // Within the queue's per-process limit and the process's `max_running`.
            let want = engine.local_slots(queue).min(CLAIM_BATCH).min(engine.room().min(u32::MAX as usize) as u32);
            if want == 0 {
                due.remove(queue.name); // a slot freed here wakes it again, or the poll
                continue;
            }
            let claimed = match engine.store.claim(queue, &engine.config.executor_id, &engine.runnable, want).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(queue = queue.name, error = %e, "exactly: dispatcher cannot claim; retrying");
                    failed = true;
                    break;
                }
            };
            // A full batch: there may be more; go round again at once.
            if (claimed.len() as u32) < want || want < CLAIM_BATCH {
                due.remove(queue.name);
            }
            if let Err(e) = engine.run_claimed(claimed).await {
                // The rows it could not start are back on the queue (or retried above).
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
        if due.is_empty() {
            wait_for_work(&engine, &mut listener, &mut due, &all, poll).await;
        }
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

/// Waits for a NOTIFY (work enqueued on a queue, by any process), a local wake-up
/// (a slot of a queue freed here) or the poll interval, whichever comes first, and
/// adds the queues it concerns to `due`.
async fn wait_for_work(
    engine: &Engine,
    listener: &mut Option<PgListener>,
    due: &mut HashSet<String>,
    all: &HashSet<String>,
    poll: Duration,
) {
    let notified = async {
        match listener {
            Some(listener) => match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let mut queues = vec![notification.payload().to_owned()];
                    while let Some(more) = listener.next_buffered() {
                        queues.push(more.payload().to_owned());
                    }
                    Some(queues)
                }
                // Reconnected (notifications may have been missed) or failed: look everywhere.
                _ => None,
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        queues = notified => match queues {
            Some(queues) => due.extend(queues.into_iter().filter(|q| all.contains(q))),
            None => due.extend(all.iter().cloned()),
        },
        _ = engine.dispatch_woken() => {}
        _ = tokio::time::sleep(poll) => due.extend(all.iter().cloned()),
    }
    // Work handed back to a queue this process does not declare is for others.
    due.extend(engine.take_due_queues().into_iter().filter(|q| all.contains(q)));
}

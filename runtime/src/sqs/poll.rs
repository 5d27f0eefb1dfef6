//! One consumer's receive loop: long-poll up to 10 messages, store their workflow
//! rows in one transaction (extending the messages' visibility while that takes
//! long), then delete them in one call. Nothing is deleted before its row is
//! durable; a failure anywhere backs off and tries again, so an outage of SQS or of
//! the database delays messages but neither loses them nor stops the loop.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::DisplayErrorContext;
use futures_util::FutureExt;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
};
use tokio::sync::watch;

use crate::error::Error;
use crate::ingest::{self, Reject, safe_key};
use crate::supervise::{Probe, ReceiverState, RestartDelay, panic_message};
use crate::workflow::engine::{BatchStart, Engine};

use super::consumer::Ordering;
use super::launch::Consumer;
use super::message::SqsMessage;
use super::rejected;

/// How much longer than its long-polling wait a receive call may take before it is
/// abandoned (a server that accepted the connection and went silent).
const CALL_SLACK: Duration = Duration::from_secs(15);
/// Deadline of the other calls (delete, change visibility).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Delete attempts for one batch; messages still undeleted come back after their
/// visibility timeout and are deleted then, their workflows not run again.
const DELETE_ATTEMPTS: u32 = 5;
/// At shutdown, how long a batch already received may still take to store and delete.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Pause after an empty receive without long polling.
const SHORT_POLL_PAUSE: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// How often a receiver held back by `max_running` looks again.
const ROOM_CHECK: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs one poller under supervision: one that panics is started again with
/// backoff (the batch it held was not deleted: it comes back and deduplicates).
pub(crate) async fn run(engine: Arc<Engine>, consumer: Arc<Consumer>, mut stop: watch::Receiver<bool>, probe: Arc<Probe>) {
    let mut restart = RestartDelay::new();
    loop {
        let started = Instant::now();
        let ended = AssertUnwindSafe(receive_loop(&engine, &consumer, stop.clone(), &probe)).catch_unwind().await;
        let Err(panic) = ended else { break }; // stopped
        let delay = restart.after(started.elapsed());
        let reason = format!("the poller panicked: {}", panic_message(&*panic));
        probe.set(ReceiverState::Rebuilding, Some(&reason));
        tracing::error!(queue_url = %consumer.plan.queue_url, reason, restart_in = ?delay, "exactly: SQS poller stopped; starting it again");
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    probe.set(ReceiverState::Stopped, None);
    tracing::debug!(queue_url = %consumer.plan.queue_url, "exactly: SQS consumer stopped");
}

async fn receive_loop(engine: &Arc<Engine>, consumer: &Consumer, mut stop: watch::Receiver<bool>, probe: &Probe) {
    let url = consumer.plan.queue_url.as_str();
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u32;
    // Until a batch is stored again, the poller is waiting for the database, however
    // many empty receives come meanwhile.
    let mut storing_fails = false;
    'receiving: loop {
        crate::supervise::fault_point("sqs poller");
        // While the process runs its most workflows (`max_running`), receive nothing:
        // the messages wait in the queue.
        if !engine.has_room() {
            probe.set(ReceiverState::PausedForRoom, None);
        }
        while !engine.has_room() {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break 'receiving,
                _ = tokio::time::sleep(ROOM_CHECK) => {}
            }
        }
        let received = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            received = receive(consumer) => received,
        };
        let messages = match received {
            Ok(messages) => {
                if !storing_fails {
                    probe.set(ReceiverState::Consuming, None);
                }
                if failures > 0 {
                    tracing::info!(queue_url = url, failures, "exactly: SQS queue reachable again; receiving");
                }
                failures = 0;
                backoff = MIN_BACKOFF;
                messages
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(queue_url = url, error = %e, retry_in = ?backoff, failures, "exactly: cannot receive from SQS; retrying");
                if failures >= 3 {
                    probe.set(ReceiverState::WaitingForServer, Some(&e));
                }
                if pause(&mut stop, &mut backoff).await {
                    break;
                }
                continue;
            }
        };
        if messages.is_empty() {
            // Short polling (`wait_time_s = 0`) answers at once: pace the empty receives.
            if consumer.plan.wait_time_s == 0 {
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => break,
                    _ = tokio::time::sleep(SHORT_POLL_PAUSE) => {}
                }
            }
            continue;
        }
        // A batch already received is stored and deleted even when shutdown begins
        // meanwhile, within a grace period: anything cut short comes back later.
        let grace = async {
            let _ = stop.clone().wait_for(|stopped| *stopped).await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        let outcome = tokio::select! {
            outcome = handle(engine, consumer, messages) => outcome,
            _ = grace => {
                tracing::warn!(queue_url = url, "exactly: shutdown cut short storing a batch of SQS messages; they come back after their visibility timeout");
                break;
            }
        };
        storing_fails = outcome.is_err();
        if let Err(e) = outcome {
            if matches!(e, Error::ShuttingDown) {
                break;
            }
            probe.set(ReceiverState::WaitingForDatabase, Some(&e.to_string()));
            tracing::error!(queue_url = url, error = %e, retry_in = ?backoff, "exactly: could not store a batch of SQS messages; none was deleted, they come back after their visibility timeout");
            if pause(&mut stop, &mut backoff).await {
                break;
            }
        }
    }
}

/// Sleeps for the backoff (doubling it for next time); true if stopped meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let delay = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = stop.wait_for(|stopped| *stopped) => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

async fn receive(consumer: &Consumer) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
    let plan = &consumer.plan;
    let request = consumer
        .client
        .receive_message()
        .queue_url(&plan.queue_url)
        .max_number_of_messages(plan.batch_size as i32)
        .wait_time_seconds(plan.wait_time_s as i32)
        .set_visibility_timeout(plan.visibility_timeout_s.map(|s| s as i32))
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send();
    let deadline = Duration::from_secs(u64::from(plan.wait_time_s)) + CALL_SLACK;
    match tokio::time::timeout(deadline, request).await {
        Err(_) => Err(format!("no answer within {deadline:?}")),
        Ok(Err(e)) => Err(DisplayErrorContext(&e).to_string()),
        Ok(Ok(output)) => Ok(output.messages.unwrap_or_default()),
    }
}

/// Stores one workflow row per message in one transaction, then deletes the
/// messages (those whose row existed already too: they were redelivered). A
/// message that cannot be given to its workflow gets a rejected row instead.
async fn handle(
    engine: &Arc<Engine>,
    consumer: &Consumer,
    messages: Vec<aws_sdk_sqs::types::Message>,
) -> crate::Result<()> {
    let plan = &consumer.plan;
    let mut starts = Vec::with_capacity(messages.len());
    let mut receipts = Vec::with_capacity(messages.len());
    for raw in &messages {
        let Some(message) = SqsMessage::from_sdk(&plan.queue_url, raw) else {
            tracing::warn!(queue_url = %plan.queue_url, "exactly: SQS returned a message without an ID or receipt handle; skipped");
            continue;
        };
        let source = serde_json::json!({
            "sqs": { "queue_url": plan.queue_url, "message_id": message.message_id, "group_id": message.group_id() }
        });
        receipts.push(message.receipt_handle.clone());
        let start = match workflow_id(consumer, &message) {
            Ok(id) => {
                let inputs = crate::__private::encode_inputs(plan.workflow.name, &(&message,))?;
                let partition_key = (plan.ordering == Ordering::Group).then(|| {
                    format!("{}:{}", plan.queue_name, safe_key(message.group_id().unwrap_or(&message.message_id)))
                });
                BatchStart {
                    spec: plan.workflow,
                    id,
                    inputs,
                    queue: plan.workflow_queue.clone(),
                    partition_key,
                    source: None,
                }
            }
            Err(reason) => {
                tracing::error!(consumer = %plan.describe, message_id = %message.message_id, reason, "exactly: SQS message rejected; recorded as an ERROR workflow and deleted");
                BatchStart {
                    spec: &rejected::REJECTED,
                    id: format!("sqs:{}:{}", plan.queue_name, message.message_id),
                    inputs: rejected::inputs(plan.workflow.name, &message, &reason),
                    queue: None,
                    partition_key: None,
                    source: None,
                }
            }
        };
        starts.push(BatchStart { source: Some(source.to_string()), ..start });
    }
    if starts.is_empty() {
        return Ok(());
    }
    let describe = plan.describe.clone();
    let reject: Reject = Arc::new(move |start, reason| rejected::refused(&describe, start, reason));
    let inserted = extending_visibility(consumer, &receipts, ingest::record(engine, &starts, &reject)).await?;
    let new = inserted.iter().filter(|i| **i).count();
    tracing::debug!(queue_url = %plan.queue_url, new, redelivered = inserted.len() - new, "exactly: stored a batch of SQS messages");
    delete(consumer, &receipts).await;
    Ok(())
}

/// `sqs:{queue-name}:{message-id}`, or `sqs:{queue-name}:{key}` with a key function;
/// or why the message cannot be given to its workflow: the key function panicked
/// or returned nothing (the message is then recorded as rejected).
fn workflow_id(consumer: &Consumer, message: &SqsMessage) -> Result<String, String> {
    let plan = &consumer.plan;
    let Some(key_fn) = &plan.key else {
        return Ok(format!("sqs:{}:{}", plan.queue_name, message.message_id));
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| key_fn(message))) {
        // A key PostgreSQL would refuse in an ID (too long, or with NUL) is hashed.
        Ok(key) if !key.is_empty() => Ok(format!("sqs:{}:{}", plan.queue_name, safe_key(&key))),
        Ok(_) => Err(format!(
            "the key function of {} returned an empty key for SQS message `{}`; it was not given to its workflow",
            plan.describe, message.message_id
        )),
        Err(panic) => {
            let what = panic_message(&*panic);
            Err(format!(
                "the key function of {} panicked on SQS message `{}` ({what}); it was not given to its workflow",
                plan.describe, message.message_id
            ))
        }
    }
}

/// Runs `store`, meanwhile pushing the messages' visibility timeout forward every
/// half period, so that no other receiver gets them while their rows are written.
async fn extending_visibility<T>(consumer: &Consumer, receipts: &[String], store: impl Future<Output = T>) -> T {
    let visibility = consumer.visibility;
    if visibility.is_zero() {
        return store.await;
    }
    let period = (visibility / 2).max(Duration::from_millis(500));
    let extend = async {
        loop {
            tokio::time::sleep(period).await;
            change_visibility(consumer, receipts, visibility).await;
        }
    };
    tokio::select! {
        out = store => out,
        _ = extend => unreachable!("the extension loop never ends"),
    }
}

async fn change_visibility(consumer: &Consumer, receipts: &[String], visibility: Duration) {
    let url = &consumer.plan.queue_url;
    let entries = receipts.iter().enumerate().map(|(i, receipt)| {
        ChangeMessageVisibilityBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(receipt)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .build()
            .expect("id and receipt handle are set")
    });
    let request =
        consumer.client.change_message_visibility_batch().queue_url(url).set_entries(Some(entries.collect())).send();
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(Ok(output)) if output.failed.is_empty() => {
            tracing::info!(queue_url = %url, messages = receipts.len(), ?visibility, "exactly: storing SQS messages takes long; extended their visibility");
        }
        Ok(Ok(output)) => {
            tracing::warn!(queue_url = %url, failed = output.failed.len(), "exactly: could not extend the visibility of some SQS messages");
        }
        Ok(Err(e)) => {
            tracing::warn!(queue_url = %url, error = %DisplayErrorContext(&e), "exactly: could not extend the visibility of SQS messages");
        }
        Err(_) => tracing::warn!(queue_url = %url, "exactly: extending the visibility of SQS messages timed out"),
    }
}

/// Deletes the messages in one call, retrying those that failed for a reason not
/// of the request's making.
async fn delete(consumer: &Consumer, receipts: &[String]) {
    let url = &consumer.plan.queue_url;
    let mut pending: Vec<usize> = (0..receipts.len()).collect();
    let mut delay = MIN_BACKOFF;
    for attempt in 1..=DELETE_ATTEMPTS {
        let entries = pending.iter().map(|&i| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(&receipts[i])
                .build()
                .expect("id and receipt handle are set")
        });
        let request = consumer.client.delete_message_batch().queue_url(url).set_entries(Some(entries.collect())).send();
        match tokio::time::timeout(CALL_TIMEOUT, request).await {
            Ok(Ok(output)) => {
                let mut retry = HashSet::new();
                for failed in &output.failed {
                    if failed.sender_fault {
                        tracing::warn!(queue_url = %url, code = %failed.code, message = ?failed.message, "exactly: SQS refused to delete a message; it comes back after its visibility timeout and is recognized as done");
                    } else {
                        retry.insert(failed.id.clone());
                    }
                }
                pending.retain(|i| retry.contains(&i.to_string()));
            }
            Ok(Err(e)) => {
                tracing::warn!(queue_url = %url, attempt, error = %DisplayErrorContext(&e), "exactly: could not delete SQS messages; retrying");
            }
            Err(_) => tracing::warn!(queue_url = %url, attempt, "exactly: deleting SQS messages timed out; retrying"),
        }
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
    tracing::warn!(queue_url = %url, undeleted = pending.len(), "exactly: gave up deleting SQS messages; they come back after their visibility timeout and are recognized as done");
}

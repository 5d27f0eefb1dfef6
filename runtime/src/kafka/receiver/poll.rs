//! The receiver loop of one consumer, on a thread of its own.
//!
//! Why a `BaseConsumer` on a dedicated thread rather than a `StreamConsumer` on the
//! async executor: librdkafka runs the rebalance callback, and so the synchronous
//! commit of stored offsets on revoke, on the thread that polls; the commit and
//! leaving the group at shutdown block, and block for long while the broker is
//! down. On a thread of its own, none of that stalls a tokio worker, and shutdown
//! can stop waiting for a wedged close without leaving a task behind on the executor.
//!
//! One round: poll up to `batch_size` messages; insert the batch's workflow rows
//! (one transaction, `ON CONFLICT DO NOTHING`); when that takes long (the database
//! is slow or away), pause the assignment and poll the paused consumer while
//! waiting, which keeps its group membership and serves rebalances; only once the
//! insert has returned, store the offsets; resume if paused. librdkafka commits
//! stored offsets in the background, on revoke (see `context`) and at shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::batch::{self, Target};
use super::rejected;
use super::context::{self, Context};
use crate::error::{Error, Result};
use crate::ingest::{self, Reject};
use crate::kafka::KafkaMessage;
use crate::supervise::{Probe, ReceiverState};
use crate::workflow::engine::{BatchStart, Engine};

/// How long one poll waits for the first message of a batch.
const POLL: Duration = Duration::from_millis(100);
/// How long an insert may take before the receiver pauses its assignment and polls.
const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// How often a receiver waiting for its insert polls its paused consumer.
const SERVE_EVENTS: Duration = Duration::from_millis(100);
/// How often a receiver held back by `max_running` looks again.
const ROOM_CHECK: Duration = Duration::from_millis(5);
/// How long a stopping receiver still waits for its in-flight insert.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The longest pause between retries of a failed insert.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// How long an insert may take before the receiver reports waiting for the database.
const WAITING_AFTER: Duration = Duration::from_secs(5);
/// How long closing a consumer that failed may take before it is left to finish alone.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// The same Kafka error is logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How the runtime stops a receiver.
#[derive(Default)]
pub(crate) struct Control {
    stop_requested: OnceLock<Instant>,
}

impl Control {
    pub fn request_stop(&self) {
        let _ = self.stop_requested.set(Instant::now());
    }

    pub fn stopping(&self) -> bool {
        self.stop_requested.get().is_some()
    }

    fn grace_over(&self) -> bool {
        self.stop_requested.get().is_some_and(|at| at.elapsed() > STOP_GRACE)
    }

    /// Sleeps for `delay`, or less if a stop is requested meanwhile.
    pub fn sleep(&self, delay: Duration) {
        let until = Instant::now() + delay;
        while !self.stopping() && Instant::now() < until {
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
        }
    }
}

pub(crate) struct Receiver {
    pub consumer: BaseConsumer<Context>,
    pub target: Arc<Target>,
    pub engine: Arc<Engine>,
    pub tasks: tokio::runtime::Handle,
    pub control: Arc<Control>,
    /// Commit after every batch (when the user turned librdkafka's auto-commit off).
    pub commit_each_batch: bool,
    /// The highest offset stored per partition: a redelivered older batch (after a
    /// rebalance) must not move a stored offset back.
    pub stored: HashMap<(String, i32), i64>,
    pub last_error_log: Option<(String, Instant)>,
    /// Whether the assignment is paused (the insert takes long, or `max_running`).
    pub paused: bool,
    /// A fatal error the consumer reported: it delivers nothing more.
    pub fatal: Option<String>,
    /// The receiver's published state.
    pub probe: Arc<Probe>,
}

/// Why [`Receiver::run`] returned.
pub(crate) enum Exit {
    /// Shutdown asked it to stop; the consumer committed and left its group.
    Stopped,
    /// The consumer can consume no more (the reason); it was closed and must be replaced.
    Fatal(String),
}

impl Receiver {
    pub fn run(mut self) -> Exit {
        let name = self.consumer.context().name.clone();
        tracing::info!(consumer = %name, topics = ?self.target.def.topics, "exactly: Kafka receiver started");
        let mut carry = Vec::new();
        while !self.control.stopping() {
            crate::supervise::fault_point("kafka receiver");
            if let Some(reason) = self.fatal_error() {
                // Whatever was stored and not committed is read again and deduplicated.
                close_bounded(self.consumer, &name);
                return Exit::Fatal(reason);
            }
            self.wait_for_room(&mut carry);
            if !self.paused {
                self.probe.set(ReceiverState::Consuming, None);
            }
            let batch = self.collect(&mut carry);
            if batch.is_empty() {
                continue;
            }
            if !self.record(&batch, &mut carry) {
                break; // stopping: the batch is read again after the restart and deduplicated
            }
            self.store(&batch);
            if self.paused {
                self.resume_assignment();
            }
        }
        context::commit(&self.consumer, &name);
        self.consumer.unsubscribe();
        drop(self.consumer); // librdkafka's close: leaves the group
        tracing::info!(consumer = %name, "exactly: Kafka receiver stopped");
        Exit::Stopped
    }

    /// Whether librdkafka has said this consumer will deliver nothing more (a fenced
    /// `group.instance.id`, or any other fatal error), and why.
    fn fatal_error(&mut self) -> Option<String> {
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            return Some(format!("{reason} ({code:?})"));
        }
        self.fatal.take()
    }

    /// While the process runs its most workflows (`max_running`), takes no more
    /// messages: the assignment is paused, the consumer served, until there is room.
    fn wait_for_room(&mut self, carry: &mut Vec<KafkaMessage>) {
        if self.engine.has_room() {
            return;
        }
        self.probe.set(ReceiverState::PausedForRoom, None);
        self.pause_assignment();
        while !self.engine.has_room() && !self.control.stopping() {
            self.poll_paused(carry, ROOM_CHECK);
        }
        self.resume_assignment();
    }

    /// Polls up to a batch (or the room `max_running` leaves): waits a little for the
    /// first message, then takes what is already fetched. `carry` holds messages that
    /// came while the last batch was being recorded; they come first.
    fn collect(&mut self, carry: &mut Vec<KafkaMessage>) -> Vec<KafkaMessage> {
        let mut batch = std::mem::take(carry);
        let mut timeout = if batch.is_empty() { POLL } else { Duration::ZERO };
        // No more than `max_running` allows (unless carried messages are already more).
        let limit = self.target.def.batch_size.min(self.engine.room().max(1));
        while batch.len() < limit {
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => batch.push(KafkaMessage::from_rdkafka(&message)),
                Some(Err(e)) => {
                    self.log_error(&e);
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        self.unpause_new_assignment();
        batch
    }

    /// After a rebalance while not paused: resumes the whole assignment. librdkafka
    /// keeps a partition's pause across a revoke and a new assignment, so a partition
    /// paused during an insert, revoked, and assigned again before the receiver
    /// resumed (it resumes the assignment it has then, which was empty) would stay
    /// paused for good: consumed no more, and no error to show it.
    fn unpause_new_assignment(&mut self) {
        if !self.paused && self.consumer.context().rebalanced.swap(false, AtomicOrdering::SeqCst) {
            self.resume_assignment();
        }
    }

    /// Inserts the batch's rows, retrying until it succeeds. False if the receiver
    /// is stopping and gave up waiting.
    fn record(&mut self, batch: &[KafkaMessage], carry: &mut Vec<KafkaMessage>) -> bool {
        let starts: Arc<[BatchStart]> = batch::rows(&self.target, batch).into();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.insert(&starts, carry) {
                Some(Ok(_)) => return true,
                None | Some(Err(Error::ShuttingDown)) => return false,
                Some(Err(e)) => {
                    self.probe.set(ReceiverState::WaitingForDatabase, Some(&e.to_string()));
                    tracing::warn!(consumer = %self.consumer.context().name, error = %e, retry_in = ?delay,
                        "exactly: could not record a Kafka batch; holding its offsets and retrying");
                    if !self.idle(delay, carry) {
                        return false;
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    /// One attempt at inserting rows, serving the consumer meanwhile. None if the
    /// receiver is stopping and its grace period is over.
    ///
    /// An insert that answers within `PAUSE_AFTER` (the usual case) is just waited
    /// for: librdkafka heartbeats on its own threads. A longer one (a slow or absent
    /// database) pauses the assignment and polls meanwhile, to serve rebalances and
    /// stay within `max.poll.interval.ms`. Pausing costs throughput: librdkafka drops
    /// what it has prefetched for a paused partition and fetches it again on resume.
    fn insert(&mut self, starts: &Arc<[BatchStart]>, carry: &mut Vec<KafkaMessage>) -> Option<Result<Vec<bool>>> {
        let (engine, starts, target) = (self.engine.clone(), starts.clone(), self.target.clone());
        let reject: Reject = Arc::new(move |start, reason| rejected::refused(&target.def, start, reason));
        let (tx, mut rx) = oneshot::channel();
        self.tasks.spawn(async move {
            let _ = tx.send(ingest::record(&engine, &starts, &reject).await);
        });
        let started = Instant::now();
        loop {
            let wait = if self.paused { SERVE_EVENTS } else { PAUSE_AFTER };
            let waited = self.tasks.block_on(async { tokio::time::timeout(wait, &mut rx).await });
            match waited {
                Ok(Ok(result)) => return Some(result),
                Ok(Err(_)) => return Some(Err(Error::ShuttingDown)),
                Err(_) => {}
            }
            if self.control.grace_over() {
                tracing::warn!(consumer = %self.consumer.context().name, "exactly: stopping before a Kafka batch was recorded; its messages will be read again");
                return None;
            }
            if started.elapsed() > WAITING_AFTER {
                self.probe.set(ReceiverState::WaitingForDatabase, Some("recording a batch of workflow rows takes long (is the database reachable?)"));
            }
            if !self.paused {
                self.pause_assignment();
            }
            self.poll_paused(carry, Duration::ZERO);
        }
    }

    /// Waits `delay` while serving the paused consumer. False if the stop grace is over.
    fn idle(&mut self, delay: Duration, carry: &mut Vec<KafkaMessage>) -> bool {
        if !self.paused {
            self.pause_assignment();
        }
        let until = Instant::now() + delay;
        loop {
            if self.control.grace_over() {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            self.poll_paused(carry, left.min(SERVE_EVENTS));
        }
    }

    /// Polls while the assignment is paused, for group membership and rebalances. A
    /// message can still arrive from a partition assigned since the pause: it is kept
    /// for the next batch and its partition paused too.
    fn poll_paused(&mut self, carry: &mut Vec<KafkaMessage>, timeout: Duration) {
        match self.consumer.poll(timeout) {
            Some(Ok(message)) => {
                let message = KafkaMessage::from_rdkafka(&message);
                let mut partition = TopicPartitionList::new();
                partition.add_partition(message.topic(), message.partition());
                if let Err(e) = self.consumer.pause(&partition) {
                    tracing::debug!(error = %e, "exactly: could not pause a newly assigned Kafka partition");
                }
                carry.push(message);
            }
            Some(Err(e)) => self.log_error(&e),
            None => {}
        }
        if self.consumer.context().rebalanced.load(AtomicOrdering::SeqCst) {
            self.pause_assignment();
        }
    }

    fn pause_assignment(&mut self) {
        self.paused = true;
        self.consumer.context().rebalanced.store(false, AtomicOrdering::SeqCst);
        match self.consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => {
                if let Err(e) = self.consumer.pause(&assignment) {
                    tracing::debug!(error = %e, "exactly: could not pause the Kafka assignment");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "exactly: could not read the Kafka assignment"),
        }
    }

    fn resume_assignment(&mut self) {
        self.paused = false;
        match self.consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => {
                if let Err(e) = self.consumer.resume(&assignment) {
                    tracing::warn!(error = %e, "exactly: could not resume the Kafka assignment");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "exactly: could not read the Kafka assignment"),
        }
    }

    /// Stores, per partition, the offset after the batch's last message: every
    /// message up to it has its committed workflow row.
    fn store(&mut self, batch: &[KafkaMessage]) {
        let mut last: HashMap<(&str, i32), i64> = HashMap::new();
        for message in batch {
            let offset = last.entry((message.topic(), message.partition())).or_insert(message.offset());
            *offset = (*offset).max(message.offset());
        }
        let mut next = TopicPartitionList::new();
        for ((topic, partition), offset) in last {
            if self.stored.get(&(topic.to_owned(), partition)).is_some_and(|stored| *stored >= offset) {
                continue;
            }
            // `store_offset` stores `offset + 1`, the next message to read.
            match self.consumer.store_offset(topic, partition, offset) {
                Ok(()) => {
                    self.stored.insert((topic.to_owned(), partition), offset);
                    let _ = next.add_partition_offset(topic, partition, Offset::Offset(offset + 1));
                }
                // Revoked meanwhile: its next owner reads it again and finds the rows.
                Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {}
                Err(e) => tracing::warn!(consumer = %self.consumer.context().name, error = %e, topic, partition,
                    "exactly: could not store a Kafka offset; the messages will be read again and deduplicated"),
            }
        }
        if self.commit_each_batch
            && next.count() > 0
            && let Err(e) = self.consumer.commit(&next, CommitMode::Async)
        {
            tracing::debug!(error = %e, "exactly: could not commit Kafka offsets");
        }
    }

    fn log_error(&mut self, e: &KafkaError) {
        match e {
            // Only with `enable.partition.eof`: the end of a partition is no error.
            KafkaError::PartitionEOF(_) => return,
            KafkaError::MessageConsumptionFatal(_) => {
                tracing::error!(consumer = %self.consumer.context().name, error = %e,
                    "exactly: fatal Kafka consumer error: this consumer receives nothing more; it is closed and created again");
                self.fatal = Some(e.to_string());
                return;
            }
            _ => {}
        }
        let text = e.to_string();
        let now = Instant::now();
        let repeated = self.last_error_log.as_ref().is_some_and(|(last, at)| *last == text && now - *at < ERROR_LOG_INTERVAL);
        if repeated {
            tracing::debug!(consumer = %self.consumer.context().name, error = %text, "exactly: Kafka consumer error");
        } else {
            tracing::warn!(consumer = %self.consumer.context().name, error = %text, "exactly: Kafka consumer error (librdkafka reconnects by itself)");
            self.last_error_log = Some((text, now));
        }
    }
}

/// Closes a consumer on a thread of its own, waiting for at most `CLOSE_WAIT`: the
/// close of a consumer in a fatal state, or while the broker is away, can block for
/// long, and its replacement must not wait for it.
fn close_bounded(consumer: BaseConsumer<Context>, name: &str) {
    let (done, closed) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("exactly-kafka-close".into()).spawn(move || {
        drop(consumer);
        let _ = done.send(());
    });
    if spawned.is_ok() && closed.recv_timeout(CLOSE_WAIT).is_err() {
        tracing::warn!(consumer = %name, "exactly: closing a failed Kafka consumer takes long; its replacement starts meanwhile");
    }
}

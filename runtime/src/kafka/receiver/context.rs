//! The librdkafka callbacks of a receiver: its logs go to `tracing`, and stored
//! offsets are committed when partitions are revoked, so the next owner of a
//! partition starts after every message whose workflow row is already committed.

use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Shared by the receiver thread and librdkafka's callbacks (which run on that
/// thread, inside `poll`).
pub(crate) struct Context {
    /// Names the consumer in logs.
    pub name: String,
    /// Set after every rebalance: a receiver waiting on a paused assignment pauses
    /// the new one too.
    pub rebalanced: AtomicBool,
}

impl Context {
    pub fn new(name: String) -> Self {
        Context { name, rebalanced: AtomicBool::new(false) }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let consumer = &self.name;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(%consumer, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(%consumer, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(%consumer, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(%consumer, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(consumer = %self.name, %error, "exactly: Kafka client error: {reason}");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Runs on the receiver's own thread, so a synchronous commit blocks no one else.
            commit(consumer, &self.name);
            tracing::info!(consumer = %self.name, partitions = partitions.count(), "exactly: Kafka partitions revoked; stored offsets committed");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(consumer = %self.name, partitions = partitions.count(), "exactly: Kafka partitions assigned");
        }
        self.rebalanced.store(true, Ordering::SeqCst);
    }
}

/// Commits the stored offsets synchronously. Nothing stored is no error.
pub(crate) fn commit(consumer: &BaseConsumer<Context>, name: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(consumer = %name, error = %e, "exactly: could not commit Kafka offsets; the messages after the last committed offset will be read again and deduplicated"),
    }
}

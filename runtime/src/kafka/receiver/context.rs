//! The librdkafka callbacks of a receiver: its logs go to `tracing`, and stored
//! offsets are committed when partitions are revoked, so the next owner of a
//! partition starts after every message whose workflow row is already committed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::{Error, Result};

/// Shared by the receiver thread and librdkafka's callbacks (which run on that
/// thread, inside `poll`).
pub(crate) struct Context {
    /// Names the consumer in logs.
    pub name: String,
    /// Set after every rebalance: a receiver waiting on a paused assignment pauses
    /// the new one too.
    pub rebalanced: AtomicBool,
    /// librdkafka's last error-level log line: the reason behind an error code.
    last_error: Mutex<Option<String>>,
}

impl Context {
    pub fn new(name: String) -> Self {
        Context { name, rebalanced: AtomicBool::new(false), last_error: Mutex::new(None) }
    }
}

/// How long launch waits for the brokers to answer before it lets the receiver retry alone.
const CHECK_BROKERS: Duration = Duration::from_secs(10);

/// Fails when the brokers refuse this client (a wrong password, a certificate it
/// does not trust, a mechanism the broker does not offer): retrying cannot help, and
/// a receiver that would retry forever looks healthy while it consumes nothing.
/// Brokers that cannot be reached now are no error: the receiver retries with them.
/// Must run before `subscribe`, so that no message is polled here.
pub(crate) fn check_brokers(consumer: &BaseConsumer<Context>, client: &str) -> Result<()> {
    let deadline = Instant::now() + CHECK_BROKERS;
    while Instant::now() < deadline {
        if consumer.fetch_metadata(None, Duration::from_millis(250)).is_ok() {
            return Ok(());
        }
        while let Some(result) = consumer.poll(Duration::ZERO) {
            let Err(e) = result else { continue };
            match e.rdkafka_error_code() {
                Some(code @ (RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)) => {
                    let reason = consumer.context().last_error.lock().expect("context poisoned").take();
                    let reason = reason.unwrap_or_else(|| format!("{code:?}"));
                    let fix = if code == RDKafkaErrorCode::SSL {
                        "check `ssl.ca.location` (the CA that signed the brokers' certificates) and the brokers' address"
                    } else {
                        "check `sasl.mechanism`, `sasl.username` and `sasl.password`"
                    };
                    return Err(Error::Config(format!("the Kafka brokers refuse {client}: {reason}; {fix}")));
                }
                Some(RDKafkaErrorCode::AllBrokersDown) => {
                    tracing::warn!(consumer = %consumer.context().name, "exactly: no Kafka broker answers at launch; the receiver keeps trying");
                    return Ok(());
                }
                _ => {}
            }
        }
    }
    tracing::warn!(consumer = %consumer.context().name, "exactly: the Kafka brokers did not answer within {CHECK_BROKERS:?} at launch; the receiver keeps trying");
    Ok(())
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let consumer = &self.name;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                *self.last_error.lock().expect("context poisoned") = Some(message.to_owned());
                tracing::error!(%consumer, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(%consumer, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(%consumer, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(%consumer, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        *self.last_error.lock().expect("context poisoned") = Some(reason.to_owned());
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

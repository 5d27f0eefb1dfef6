//! Kafka: messages become durable workflows exactly once.
//!
//! A `#[kafka_consumer(..)]` above a `#[workflow]` (or [`register_kafka_consumer`])
//! makes the runtime consume topics in a consumer group. For every poll batch it
//! inserts one workflow row per message in one transaction, each under the ID
//! `kafka:{group}:{topic}:{partition}:{offset}`, and stores the offsets only after
//! that transaction has committed. A crash anywhere loses nothing: unstored messages
//! are read again and find their rows. The workflow receives
//! `(topic: String, partition: i32, message: KafkaMessage)`.
//!
//! ```text
//! #[kafka_consumer("orders", ordering = "key")]
//! #[workflow]
//! async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
//!     let order: Order = message.json()?;
//!     exactly::kafka::send("receipts", &order.id, &charge(&order).await?).await?;
//!     Ok(())
//! }
//! ```
//!
//! Settings: [`KafkaSettings`] (environment `KAFKA_BOOTSTRAP_SERVERS` and
//! `EXACTLY_KAFKA_<PROPERTY>`), per consumer `config`. Messages over the size limit
//! are recorded as rejected: a row in ERROR under the message's workflow ID, for the
//! internal workflow `exactly::kafka::rejected`, with the coordinates and the reason.

mod consumer;
mod message;
mod receiver;
mod send;
mod settings;

pub use consumer::{
    ConfigFn, DEFAULT_BATCH_SIZE, IntoTopics, KafkaConsumerOptions, KafkaConsumerRegistration, KafkaConsumerSpec,
    MAX_BATCH_SIZE, Ordering, register_kafka_consumer,
};
pub use message::{KafkaHeader, KafkaMessage, KafkaTimestamp, TimestampKind};
pub use rdkafka::{self, ClientConfig};
pub use send::{Delivery, Record, STEP_ID_HEADER, WORKFLOW_ID_HEADER, send, send_record};
pub use settings::{BOOTSTRAP_SERVERS_VAR, DEFAULT_SIZE_LIMIT, KafkaSettings, PROPERTY_PREFIX, SIZE_LIMIT_VAR};

pub(crate) use receiver::launch;

/// The workflow ID of a message consumed by `group`: `kafka:{group}:{topic}:{partition}:{offset}`.
pub fn workflow_id(group: &str, message: &KafkaMessage) -> String {
    receiver::workflow_id(group, message)
}

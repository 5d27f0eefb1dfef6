//! # exactly
//!
//! Kafka and SQS messages processed exactly once, as durable workflows whose status
//! and step outputs are checkpointed in PostgreSQL.
//!
//! ```no_run
//! use exactly::{step, workflow};
//!
//! #[step(retries = 3)]
//! async fn charge(order_id: &str, cents: u64) -> exactly::Result<String> {
//!     Ok(format!("receipt for {order_id}: {cents}"))
//! }
//!
//! #[workflow]
//! async fn process(order_id: String, cents: u64) -> exactly::Result<String> {
//!     let receipt = charge(&order_id, cents).await?; // checkpointed: replayed, not re-run, on recovery
//!     Ok(receipt)
//! }
//!
//! #[tokio::main]
//! async fn main() -> exactly::Result<()> {
//!     let runtime = exactly::runtime::launch().await?; // DATABASE_URL from the environment
//!     // The ID is the idempotency key: a second start with it runs nothing.
//!     let receipt = process("o-1".into(), 1250).with_id("order-o-1").await?;
//!     println!("{receipt}");
//!     runtime.shutdown().await
//! }
//! ```
//!
//! See the README for the guarantees and the configuration.

pub use exactly_macros::{step, workflow};
/// Without the `kafka` feature, using it is a compile error that names the feature.
pub use exactly_macros::kafka_consumer;
#[cfg(feature = "kafka")]
pub use exactly_runtime::kafka::{KafkaMessage, register_kafka_consumer};

/// Apache Kafka: the message type, consumers' options, settings and the send helper.
#[cfg(feature = "kafka")]
pub mod kafka {
    pub use exactly_runtime::kafka::*;
}
/// Without the `sqs` feature, using it is a compile error that names the feature.
pub use exactly_macros::sqs_consumer;
#[cfg(feature = "sqs")]
pub use exactly_runtime::sqs::{SqsMessage, register_sqs_consumer};

/// Amazon SQS: the message type, consumers' options and receivers, the send helpers.
#[cfg(feature = "sqs")]
pub mod sqs {
    pub use exactly_runtime::sqs::*;
}
pub use exactly_runtime::{
    Error, Health, PartRestarts, Queue, RateLimit, ReceiverHealth, ReceiverState, Result, Runtime, RuntimeBuilder, StartOptions, WorkflowCall, WorkflowHandle, WorkflowState,
    WorkflowStatus, queue, run_step, run_step_with, step_id, workflow_id,
};

/// Launching and configuring the runtime.
pub mod runtime {
    pub use exactly_runtime::runtime::{Runtime, RuntimeBuilder, launch};
}

/// The step options type, for [`run_step_with`].
pub use exactly_runtime::registry::StepSpec;

#[doc(hidden)]
pub mod __private {
    pub use exactly_runtime::__private::*;
}

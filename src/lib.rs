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
pub use exactly_runtime::{
    Error, Queue, RateLimit, Result, Runtime, RuntimeBuilder, StartOptions, WorkflowCall, WorkflowHandle, WorkflowState,
    WorkflowStatus, queue, run_step, run_step_with, workflow_id,
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

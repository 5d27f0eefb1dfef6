//! The engine behind [`exactly`](https://docs.rs/exactly): durable workflows whose
//! status and step outputs are checkpointed in PostgreSQL.
//!
//! Users depend on the `exactly` crate, which re-exports this crate's API together
//! with the attribute macros.

#![warn(missing_docs)]

mod checks;
mod error;
#[cfg(any(feature = "kafka", feature = "sqs"))]
mod ingest;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod queue;
pub mod registry;
pub mod runtime;
#[cfg(feature = "sqs")]
pub mod sqs;
mod store;
pub mod supervise;
mod workflow;

pub use error::{Error, Result};
pub use queue::{Queue, RateLimit};
pub use runtime::{Runtime, RuntimeBuilder, launch};
pub use store::{WorkflowState, WorkflowStatus};
pub use supervise::{Health, PartRestarts, ReceiverHealth, ReceiverState};
pub use workflow::call::{StartOptions, WorkflowCall, WorkflowHandle};
pub use workflow::context::{step_id, workflow_id};
pub use workflow::step::{run_step, run_step_with};

/// Items the macro expansions use. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use futures_util::future::BoxFuture;
    pub use inventory;
    pub use serde;
    pub use serde_json;

    pub use crate::checks::*;
    pub use crate::queue::QueueRegistration;
    pub use crate::registry::{Location, Outcome, StepRegistration, StepSpec, WorkflowRegistration, WorkflowSpec};
    #[cfg(feature = "kafka")]
    pub use crate::kafka::{
        ClientConfig as KafkaClientConfig, KafkaConsumerRegistration, KafkaConsumerSpec, KafkaMessage,
        Ordering as KafkaOrdering,
    };
    #[cfg(feature = "sqs")]
    pub use crate::sqs::checks::*;
    #[cfg(feature = "sqs")]
    pub use crate::sqs::{
        Ordering as SqsOrdering, SqsConsumerRegistration, SqsConsumerSpec, SqsMessage, StaticQueueUrl, aws_sdk_sqs,
    };

    pub use crate::supervise::inject_panic;

    use crate::error::{Error, Result};

    /// Encodes a workflow's arguments (a tuple of references) as its JSON inputs.
    pub fn encode_inputs<T: serde::Serialize>(workflow: &str, args: &T) -> Result<String> {
        serde_json::to_string(args).map_err(|source| Error::Serialization {
            action: "encode",
            what: format!("the inputs of workflow `{workflow}`"),
            source,
        })
    }

    /// Decodes a workflow's JSON inputs into its argument tuple.
    pub fn decode_inputs<T: serde::de::DeserializeOwned>(workflow: &str, inputs: &str) -> std::result::Result<T, String> {
        serde_json::from_str(inputs).map_err(|e| format!("could not decode the inputs of workflow `{workflow}`: {e}"))
    }

    /// Turns what a workflow body returned into what the engine records.
    pub fn encode_outcome<T: serde::Serialize, E: std::fmt::Display>(
        workflow: &str,
        result: std::result::Result<T, E>,
    ) -> Outcome {
        match result {
            Ok(value) => serde_json::to_string(&value)
                .map_err(|e| format!("could not encode the output of workflow `{workflow}`: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Declares a durable queue, registered for every runtime of this program.
///
/// ```
/// use std::time::Duration;
///
/// exactly_runtime::queue!(
///     /// Payments: at most 3 at once across all processes, 10 per second.
///     pub static PAYMENTS = "payments",
///     concurrency = 3,
///     rate_limit = (10, Duration::from_secs(1)),
/// );
/// ```
///
/// Options: `concurrency` (all processes together), `worker_concurrency` (per
/// process), `rate_limit = (starts, period)` (all processes together),
/// `partition_concurrency` (per partition key). A repeated option fails to compile.
/// Enqueue with `my_workflow(..).on_queue(&PAYMENTS)`.
#[macro_export]
macro_rules! queue {
    ($(#[$meta:meta])* $vis:vis static $ident:ident = $name:literal $(, $key:ident = $value:expr)* $(,)?) => {
        $(#[$meta])*
        $vis static $ident: $crate::Queue = $crate::Queue::new($name)$(.$key($value))*.declared_at(file!(), line!());
        $crate::__private::inventory::submit! { $crate::__private::QueueRegistration(&$ident) }
    };
}

//! The one error type of the runtime.

use std::time::Duration;

/// A `Result` whose error is [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `exactly`.
///
/// Workflows and steps may return their own error type `E` as long as
/// `E: From<exactly::Error> + Display`; the runtime turns its own failures (a
/// database outage during start, a replayed step error) into `E` through that
/// conversion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime's configuration is invalid; the message names the setting.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// What the macros registered does not fit together (found at launch).
    #[error("invalid registration: {0}")]
    Registration(String),

    /// A database operation failed; `context` says which.
    #[error("database error while {context}: {source}")]
    Database {
        /// What the runtime was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A value could not be turned into JSON, or JSON back into a value.
    #[error("could not {action} {what}: {source}")]
    Serialization {
        /// `encode` or `decode`.
        action: &'static str,
        /// What was being (de)serialized, e.g. "the inputs of workflow `x`".
        what: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },

    /// No runtime is running in this process: call `exactly::runtime::launch()` first.
    #[error("no exactly runtime is running: call `exactly::runtime::launch()` (or `Runtime::builder().launch()`) before starting workflows")]
    NotLaunched,

    /// The runtime is shutting down and accepts no new work.
    #[error("the exactly runtime is shutting down")]
    ShuttingDown,

    /// A workflow ID is already taken by a workflow of another name.
    #[error("workflow ID `{id}` already belongs to workflow `{existing}`, not `{requested}`")]
    IdConflict {
        /// The workflow ID.
        id: String,
        /// The name of the workflow that owns it.
        existing: String,
        /// The name of the workflow that was started with it.
        requested: String,
    },

    /// A workflow's recorded steps do not match the code that replays them.
    #[error(
        "workflow `{workflow_id}` is not deterministic: step {step_id} was recorded as `{recorded}` but the code now runs `{current}`; a workflow must call the same steps in the same order on every execution"
    )]
    NonDeterministic {
        /// The workflow ID.
        workflow_id: String,
        /// The position of the step within the workflow.
        step_id: i32,
        /// The step name in the record.
        recorded: String,
        /// The step name the code calls now.
        current: String,
    },

    /// A step failed (after its retries). On replay, a recorded step failure comes
    /// back as this variant.
    #[error("step `{step}` failed: {message}")]
    StepFailed {
        /// The step name.
        step: String,
        /// The failure as it was recorded.
        message: String,
    },

    /// A workflow ended in ERROR; `message` is the recorded error.
    #[error("workflow `{id}` failed: {message}")]
    WorkflowFailed {
        /// The workflow ID.
        id: String,
        /// The recorded error.
        message: String,
    },

    /// A workflow ended without a result: cancelled, timed out, or given up after
    /// too many recovery attempts.
    #[error("workflow `{id}` ended as {status}: {message}")]
    WorkflowNotCompleted {
        /// The workflow ID.
        id: String,
        /// Its final status.
        status: crate::WorkflowState,
        /// The recorded reason.
        message: String,
    },

    /// A workflow start names a queue that is not declared.
    #[error("queue `{queue}` is not declared (declared: {declared}); declare it with `exactly::queue!` or `Runtime::builder().queue(..)`")]
    UnknownQueue {
        /// The queue named by the start.
        queue: String,
        /// The queues that exist.
        declared: String,
    },

    /// A deduplication ID is held by another workflow still ENQUEUED or PENDING.
    #[error("deduplication ID `{deduplication_id}` on queue `{queue}` is held by workflow `{holder}` until it finishes")]
    Deduplicated {
        /// The queue.
        queue: String,
        /// The deduplication ID.
        deduplication_id: String,
        /// The workflow that holds it.
        holder: String,
    },

    /// No workflow with this ID exists.
    #[error("no workflow with ID `{0}` exists")]
    NotFound(String),

    /// A workflow ID names a workflow that this program does not register.
    #[error("workflow `{name}` is not registered in this program (is its crate linked?)")]
    UnknownWorkflow {
        /// The recorded name.
        name: String,
    },

    /// Waiting for something took longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// This execution of the workflow no longer owns it: its executor was declared
    /// dead (it was paused or cut off past the executor timeout) and another one took
    /// the workflow over. Nothing it wrote after that landed; it stops.
    #[error("workflow `{id}` was taken over by another execution (this executor was declared dead or the workflow was claimed again); this execution stops and its write was discarded")]
    Fenced {
        /// The workflow.
        id: String,
    },

    /// A part of the runtime stopped and could not be restarted; the runtime was shut
    /// down. Exit the process so that its manager restarts it.
    #[error("the exactly runtime failed: {0}")]
    Failed(String),

    /// A user error, created with [`Error::msg`].
    #[error("{0}")]
    Message(String),
}

impl Error {
    /// An error carrying only a message; handy inside workflows and steps.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        Error::Message(message.to_string())
    }

    pub(crate) fn db(context: impl Into<String>, source: sqlx::Error) -> Self {
        Error::Database { context: context.into(), source }
    }
}

//! Starting workflows: [`WorkflowCall`] (what calling a `#[workflow]` fn returns),
//! [`StartOptions`] and [`WorkflowHandle`].

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::registry::WorkflowSpec;
use crate::store::{Outcome, WorkflowState, WorkflowStatus};
use crate::workflow::engine::Engine;

/// How to start a workflow. Every field is optional.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StartOptions {
    /// The workflow ID: the idempotency key. Starting an ID that exists never runs the
    /// workflow again; it returns a handle to the existing one. Default: a random UUID,
    /// or inside a workflow a deterministic child ID.
    pub id: Option<String>,
    /// Time allowed from the start to completion; an overrun ends the workflow as
    /// CANCELLED. The deadline is recorded, so it holds across recoveries. For a
    /// queued workflow it runs from the moment it is dispatched.
    pub timeout: Option<Duration>,
    /// Enqueue on this durable queue instead of starting at once.
    pub queue: Option<String>,
    /// Priority on the queue: lower runs first (default 0).
    pub priority: i32,
    /// The partition key, for queues with `partition_concurrency`.
    pub partition_key: Option<String>,
    /// While a workflow with this deduplication ID is ENQUEUED or PENDING on the
    /// queue, another enqueue with it fails with [`Error::Deduplicated`].
    pub deduplication_id: Option<String>,
}

impl StartOptions {
    /// Options with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the workflow ID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the queue (by name).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the priority on the queue (lower runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the partition key.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Sets the deduplication ID.
    pub fn deduplication_id(mut self, id: impl Into<String>) -> Self {
        self.deduplication_id = Some(id.into());
        self
    }
}

/// A call of a `#[workflow]` function: the workflow, its encoded inputs and how to
/// start it.
///
/// `.await` it to start the workflow and wait for its result, or call
/// [`start`](Self::start) to get a [`WorkflowHandle`] without waiting. `R` is the
/// workflow function's declared return type.
#[must_use = "a workflow call does nothing until it is awaited or started"]
pub struct WorkflowCall<R> {
    spec: &'static WorkflowSpec,
    inputs: Result<String>,
    options: StartOptions,
    _output: PhantomData<fn() -> R>,
}

impl<R> WorkflowCall<R> {
    #[doc(hidden)]
    pub fn new(spec: &'static WorkflowSpec, inputs: Result<String>) -> Self {
        WorkflowCall { spec, inputs, options: StartOptions::default(), _output: PhantomData }
    }

    /// Uses `id` as the workflow ID (the idempotency key).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.options.id = Some(id.into());
        self
    }

    /// Ends the workflow as CANCELLED if it has not completed within `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Enqueues the workflow on `queue` instead of starting it at once; the
    /// queue's dispatcher starts it within the queue's limits.
    pub fn on_queue(self, queue: &crate::Queue) -> Self {
        self.with_queue(queue.name)
    }

    /// Enqueues the workflow on the queue named `queue`.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.options.queue = Some(queue.into());
        self
    }

    /// The priority on its queue: lower runs first (default 0).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }

    /// The partition key on its queue (for `partition_concurrency`).
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.options.partition_key = Some(key.into());
        self
    }

    /// A deduplication ID on its queue: enqueuing a second workflow with it while
    /// the first is ENQUEUED or PENDING fails with [`Error::Deduplicated`].
    pub fn with_deduplication_id(mut self, id: impl Into<String>) -> Self {
        self.options.deduplication_id = Some(id.into());
        self
    }

    /// Replaces all start options.
    pub fn with_options(mut self, options: StartOptions) -> Self {
        self.options = options;
        self
    }

    /// The durable name of the workflow being called.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// Records the workflow (durably) and starts it, unless a workflow with this ID
    /// exists already; either way returns a handle to the workflow with this ID.
    pub async fn start(self) -> Result<WorkflowHandle<R>> {
        let engine = Engine::current()?;
        let inputs = self.inputs?;
        let started = engine.start(self.spec, inputs, self.options).await?;
        Ok(WorkflowHandle { engine, id: started.id, local: started.completion, _output: PhantomData })
    }
}

impl<T, E> IntoFuture for WorkflowCall<std::result::Result<T, E>>
where
    T: DeserializeOwned + Send + 'static,
    E: From<Error> + Send + 'static,
{
    type Output = std::result::Result<T, E>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.start().await?.result().await })
    }
}

/// A handle to a workflow started in this process or any other: read its status or
/// wait for its result.
pub struct WorkflowHandle<R> {
    engine: Arc<Engine>,
    id: String,
    local: Option<tokio::sync::oneshot::Receiver<Outcome>>,
    _output: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for WorkflowHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowHandle").field("id", &self.id).finish()
    }
}

impl<R> WorkflowHandle<R> {
    pub(crate) fn new(engine: Arc<Engine>, id: String) -> Self {
        WorkflowHandle { engine, id, local: None, _output: PhantomData }
    }

    /// The workflow ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The workflow's current row.
    pub async fn status(&self) -> Result<WorkflowStatus> {
        self.engine.store.status(&self.id).await?.ok_or_else(|| Error::NotFound(self.id.clone()))
    }

    async fn outcome(self) -> Result<Outcome> {
        match self.local {
            Some(rx) => match rx.await {
                Ok(outcome) => Ok(outcome),
                // Its task here ended without an outcome (shutdown, or the workflow
                // was handed to another executor): wait for it through the database.
                Err(_) => self.engine.wait_for_outcome(&self.id).await,
            },
            None => self.engine.wait_for_outcome(&self.id).await,
        }
    }
}

impl<T, E> WorkflowHandle<std::result::Result<T, E>>
where
    T: DeserializeOwned,
    E: From<Error>,
{
    /// Waits until the workflow has ended and returns its result: the recorded output,
    /// or its recorded error as [`Error::WorkflowFailed`] (or
    /// [`Error::WorkflowNotCompleted`]) converted into `E`.
    pub async fn result(self) -> std::result::Result<T, E> {
        let id = self.id.clone();
        let outcome = self.outcome().await?;
        match outcome.state {
            WorkflowState::Success => {
                let json = outcome.output.as_deref().unwrap_or("null");
                serde_json::from_str(json).map_err(|source| {
                    E::from(Error::Serialization {
                        action: "decode",
                        what: format!("the output of workflow `{id}`"),
                        source,
                    })
                })
            }
            WorkflowState::Error => Err(E::from(Error::WorkflowFailed { id, message: outcome.error_message() })),
            state => Err(E::from(Error::WorkflowNotCompleted { id, status: state, message: outcome.error_message() })),
        }
    }
}

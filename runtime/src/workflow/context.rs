//! The task-local context of a running workflow: its ID, its step counter and the
//! steps recorded by earlier executions, which are replayed instead of re-run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::store::{Owner, StepRecord};
use crate::workflow::engine::Engine;

tokio::task_local! {
    static CONTEXT: Arc<WorkflowContext>;
    /// The step whose body runs on this task.
    static STEP: i32;
}

pub(crate) struct WorkflowContext {
    pub engine: Arc<Engine>,
    pub id: String,
    /// The execution this task is: its writes land only while it owns the row.
    pub owner: Owner,
    next_step: AtomicI32,
    recorded: Mutex<HashMap<i32, StepRecord>>,
    /// Set when a write found the workflow taken over: the task ends.
    fenced: Notify,
}

impl WorkflowContext {
    pub fn new(engine: Arc<Engine>, id: String, owner: Owner, recorded: HashMap<i32, StepRecord>) -> Self {
        WorkflowContext {
            engine,
            id,
            owner,
            next_step: AtomicI32::new(0),
            recorded: Mutex::new(recorded),
            fenced: Notify::new(),
        }
    }

    /// Ends this execution where it stands: another one owns the workflow now.
    pub fn fence(&self) {
        tracing::warn!(workflow_id = %self.id, executor = %self.owner.executor, attempt = self.owner.attempt,
            "exactly: this execution was fenced (the workflow was taken over by another executor); it stops here and its write was discarded");
        self.fenced.notify_one();
    }

    /// Completes once [`fence`](Self::fence) was called.
    pub async fn fenced(&self) {
        self.fenced.notified().await
    }

    /// Runs `fut` as the body of this workflow.
    pub async fn scope<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        CONTEXT.scope(self, fut).await
    }

    /// The ID of the next operation (step or child workflow). Workflows are
    /// deterministic, so the same operation gets the same ID on every execution.
    pub fn next_step(&self) -> i32 {
        self.next_step.fetch_add(1, Ordering::Relaxed)
    }

    /// The record an earlier execution left for this step, if any.
    pub fn take_recorded(&self, step_id: i32) -> Option<StepRecord> {
        self.recorded.lock().expect("step records poisoned").remove(&step_id)
    }
}

/// The context of the workflow running on this task, if any.
pub(crate) fn current() -> Option<Arc<WorkflowContext>> {
    CONTEXT.try_with(Arc::clone).ok()
}

/// The ID of the workflow running on this task, or `None` outside a workflow.
pub fn workflow_id() -> Option<String> {
    CONTEXT.try_with(|ctx| ctx.id.clone()).ok()
}

/// Runs `fut`, the body of step `step_id`, so that it can read its step ID.
pub(crate) async fn in_step<F: Future>(step_id: i32, fut: F) -> F::Output {
    STEP.scope(step_id, fut).await
}

/// The ID of the step whose body runs on this task, or `None` outside a step.
///
/// With [`workflow_id`] it names the step for good: the same step has the same
/// `(workflow ID, step ID)` in every execution of its workflow, so together they make
/// an idempotency key for the systems a step calls (a payment API, a FIFO queue's
/// deduplication ID, a header a downstream consumer deduplicates on), which lets
/// them drop the repeat of a step that was in flight at a crash.
pub fn step_id() -> Option<i32> {
    STEP.try_with(|id| *id).ok()
}

//! The engine: starts workflows, runs them on tokio tasks, records their outcomes,
//! recovers PENDING work at launch, and shuts down gracefully.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, oneshot, watch};

use crate::error::{Error, Result};
use crate::queue::{INTERNAL_QUEUE, Queue};
use crate::registry::{Registry, WorkflowSpec};
use crate::supervise::{Supervisor, panic_message};
use crate::store::{
    Claimed, Finish, NewWorkflow, Outcome, Owner, PendingWorkflow, Since, StepRecord, Store, WorkflowState, error_json, holds_nul,
    refuse_nul,
};
use crate::workflow::call::StartOptions;
use crate::workflow::context::{self, WorkflowContext};
use crate::workflow::lease::Lease;

/// The engine of the runtime launched in this process, used by workflow calls made
/// outside any workflow.
static CURRENT: RwLock<Option<Arc<Engine>>> = RwLock::new(None);

/// Where recovery stands: the last workflow ID its pass claimed, and whether the pass
/// is one from the start (which skips the workflows running here).
#[derive(Debug, Default)]
pub(crate) struct RecoveryCursor {
    after: String,
    from_start: bool,
}

/// How many PENDING workflows recovery claims and starts at a time.
const RECOVERY_BATCH: i64 = 200;
/// Recovery starts no batch while this many workflows run in the process.
const RECOVERY_IN_FLIGHT: usize = 1_000;

/// How long shutdown waits for the database pool's connections to come back.
const POOL_CLOSE: Duration = Duration::from_secs(2);

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub executor_id: String,
    pub app_version: String,
    pub max_recovery_attempts: u32,
    /// Receivers and the dispatcher take no work while this many workflows run here.
    pub max_running: usize,
}

pub(crate) struct Engine {
    pub store: Store,
    pub registry: Registry,
    /// The names in `registry`: the dispatcher claims only workflows it can run.
    pub runnable: Vec<&'static str>,
    pub config: EngineConfig,
    /// The declared queues, by name.
    pub queues: HashMap<&'static str, Queue>,
    /// This process's running workflows per queue (for `worker_concurrency`).
    queue_running: Mutex<HashMap<String, u32>>,
    /// Wakes the dispatcher when a queued workflow of this process ends, or when
    /// work was handed back to a queue; `due_queues` says which queues to look at.
    dispatch_wakeup: Notify,
    due_queues: Mutex<HashSet<String>>,
    /// Claimed workflows that could not be started nor handed back to their queue
    /// yet (the database was unreachable); the dispatcher retries.
    unstarted: Mutex<Vec<String>>,
    /// The tokio runtime the engine was launched on: workflows run there, whichever
    /// runtime their caller is on.
    tasks: tokio::runtime::Handle,
    /// Callers waiting for workflows that run in this process.
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Outcome>>>>,
    /// Workflow tasks alive, and how many of them are parked by shutdown.
    running: AtomicUsize,
    parked: AtomicUsize,
    shutting_down: AtomicBool,
    /// Bumped to end every workflow task where it stands: when shutdown stops
    /// waiting, or when this executor learns it was declared dead and its work
    /// was handed to others.
    generation: watch::Sender<u64>,
    /// The workflow tasks alive in this process: workflow ID -> the generation the
    /// task started in. Recovery after a takeover skips IDs already running anew.
    live: Mutex<HashMap<String, u64>>,
    /// What the receivers registered to run first at shutdown (stop polling, commit).
    before_shutdown: Mutex<Vec<BoxFuture<'static, ()>>>,
    /// Restarts the runtime's parts that stop, reports their health.
    pub supervisor: Arc<Supervisor>,
    /// Whether this executor may start steps (a recent heartbeat found it alive).
    pub lease: Lease,
}

/// One message's workflow, for [`Engine::start_batch`].
#[derive(Debug, Clone)]
#[cfg_attr(not(any(feature = "kafka", feature = "sqs")), allow(dead_code))] // used by the receivers
pub(crate) struct BatchStart {
    pub spec: &'static WorkflowSpec,
    /// Derived from the message (e.g. `kafka:{group}:{topic}:{partition}:{offset}`).
    pub id: String,
    /// The workflow's JSON inputs.
    pub inputs: String,
    /// Enqueue here instead of running at once.
    pub queue: Option<String>,
    /// For queues with partition concurrency (ordering by partition or key).
    pub partition_key: Option<String>,
    /// Where the message came from (JSON), for operators.
    pub source: Option<String>,
}

/// The result of [`Engine::start`].
pub(crate) struct Started {
    pub id: String,
    /// Completes with the outcome when this call inserted (and so runs) the workflow.
    pub completion: Option<oneshot::Receiver<Outcome>>,
}

impl Engine {
    pub fn new(
        store: Store,
        registry: Registry,
        queues: HashMap<&'static str, Queue>,
        config: EngineConfig,
        supervisor: Arc<Supervisor>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            runnable: registry.names(),
            registry,
            config,
            queues,
            queue_running: Mutex::new(HashMap::new()),
            dispatch_wakeup: Notify::new(),
            due_queues: Mutex::new(HashSet::new()),
            unstarted: Mutex::new(Vec::new()),
            tasks: tokio::runtime::Handle::current(),
            waiters: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            generation: watch::Sender::new(0),
            live: Mutex::new(HashMap::new()),
            before_shutdown: Mutex::new(Vec::new()),
            supervisor,
            lease: Lease::new(),
        })
    }

    /// The engine of the current workflow, or else the one launched in this process.
    pub fn current() -> Result<Arc<Engine>> {
        if let Some(ctx) = context::current() {
            return Ok(ctx.engine.clone());
        }
        CURRENT.read().expect("engine lock poisoned").clone().ok_or(Error::NotLaunched)
    }

    /// Makes this the engine used outside workflows.
    pub fn install(self: &Arc<Self>) -> Result<()> {
        let mut current = CURRENT.write().expect("engine lock poisoned");
        if current.as_ref().is_some_and(|e| !e.shutting_down.load(Ordering::SeqCst)) {
            return Err(Error::Config(
                "an exactly runtime is already running in this process; shut it down before launching another".into(),
            ));
        }
        *current = Some(self.clone());
        Ok(())
    }

    /// Records a workflow and runs it, unless its ID exists already.
    pub async fn start(self: &Arc<Self>, spec: &'static WorkflowSpec, inputs: String, options: StartOptions) -> Result<Started> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        let id = match options.id {
            Some(id) => id,
            // A child's ID follows from its parent's, so a replayed parent finds it.
            None => match context::current() {
                Some(parent) => format!("{}-{}", parent.id, parent.next_step()),
                None => uuid::Uuid::new_v4().to_string(),
            },
        };
        let timeout = options.timeout;
        refuse_nul(&inputs, || format!("the inputs of workflow `{}` (ID `{id}`)", spec.name))?;
        if let Some(queue) = &options.queue {
            if !self.queues.contains_key(queue.as_str()) {
                return Err(Error::UnknownQueue { queue: queue.clone(), declared: self.queue_names() });
            }
        }
        let queued = options.queue.is_some();
        let row = NewWorkflow {
            id: id.clone(),
            name: spec.name.to_owned(),
            status: if queued { WorkflowState::Enqueued } else { WorkflowState::Pending }.as_str(),
            inputs: inputs.clone(),
            executor_id: (!queued).then(|| self.config.executor_id.clone()),
            app_version: self.config.app_version.clone(),
            timeout_ms: timeout.map(|t| t.as_millis().min(i64::MAX as u128) as i64),
            source: None,
            queue: options.queue.clone(),
            priority: options.priority,
            partition_key: options.partition_key.clone(),
            deduplication_id: options.deduplication_id.clone(),
        };
        let inserted = loop {
            match self.store.writer.insert(row.clone()).await {
                Ok(inserted) => break inserted,
                Err(e) if is_deduplication_conflict(&e) => {
                    let (queue, dedup) = (row.queue.clone().unwrap_or_default(), row.deduplication_id.clone().unwrap_or_default());
                    if let Some(holder) = self.store.deduplication_holder(&queue, &dedup).await? {
                        return Err(Error::Deduplicated { queue, deduplication_id: dedup, holder });
                    }
                    // The holder finished between the insert and the lookup: the ID is free again.
                }
                Err(e) => return Err(e),
            }
        };
        if inserted && queued {
            return Ok(Started { id, completion: None });
        }
        if inserted {
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().expect("waiters poisoned").entry(id.clone()).or_default().push(tx);
            // A new PENDING row: its first execution (`recovery_attempts` = 1).
            self.spawn(spec, id.clone(), 1, inputs, HashMap::new(), timeout, None);
            return Ok(Started { id, completion: Some(rx) });
        }
        match self.store.workflow_name(&id).await? {
            Some(existing) if existing != spec.name => {
                Err(Error::IdConflict { id, existing, requested: spec.name.to_owned() })
            }
            _ => Ok(Started { id, completion: None }),
        }
    }

    /// Starts one workflow per message, all rows committed in one transaction
    /// (`ON CONFLICT DO NOTHING`): when this returns, every message has its durable
    /// row, so the receiver may acknowledge them. Returns, per start, whether this
    /// call inserted the row (false: a redelivery of a message already recorded).
    /// Inserted rows not on a queue start running here at once.
    #[cfg_attr(not(any(feature = "kafka", feature = "sqs")), allow(dead_code))] // used by the receivers
    pub async fn start_batch(self: &Arc<Self>, starts: &[BatchStart]) -> Result<Vec<bool>> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        for start in starts {
            if let Some(queue) = &start.queue {
                if !self.queues.contains_key(queue.as_str()) {
                    return Err(Error::UnknownQueue { queue: queue.clone(), declared: self.queue_names() });
                }
            }
        }
        let rows = starts
            .iter()
            .map(|start| NewWorkflow {
                id: start.id.clone(),
                name: start.spec.name.to_owned(),
                status: if start.queue.is_some() { WorkflowState::Enqueued } else { WorkflowState::Pending }.as_str(),
                inputs: start.inputs.clone(),
                executor_id: start.queue.is_none().then(|| self.config.executor_id.clone()),
                app_version: self.config.app_version.clone(),
                timeout_ms: None,
                source: start.source.clone(),
                queue: start.queue.clone(),
                priority: 0,
                partition_key: start.partition_key.clone(),
                deduplication_id: None,
            })
            .collect();
        let inserted = self.store.writer.insert_many(rows).await?;
        for (start, inserted) in starts.iter().zip(&inserted) {
            if *inserted && start.queue.is_none() {
                self.spawn(start.spec, start.id.clone(), 1, start.inputs.clone(), HashMap::new(), None, None);
            }
        }
        Ok(inserted)
    }

    fn queue_names(&self) -> String {
        let mut declared: Vec<_> = self.queues.keys().filter(|q| **q != INTERNAL_QUEUE).copied().collect();
        declared.sort();
        declared.join(", ")
    }

    /// Waits until the workflow `id` (run here or by any other process) has ended.
    pub async fn wait_for_outcome(&self, id: &str) -> Result<Outcome> {
        let (tx, mut rx) = oneshot::channel();
        self.waiters.lock().expect("waiters poisoned").entry(id.to_owned()).or_default().push(tx);
        let result = async {
            // Another process may run it: poll the row, but wake at once when it ends here.
            let mut poll = Duration::from_millis(50);
            loop {
                if let Some(outcome) = self.store.outcome(id).await? {
                    return Ok(outcome);
                }
                tokio::select! {
                    outcome = &mut rx => if let Ok(outcome) = outcome { return Ok(outcome) },
                    _ = tokio::time::sleep(poll) => {}
                }
                poll = (poll * 2).min(Duration::from_secs(1));
            }
        }
        .await;
        if let Some(waiting) = self.waiters.lock().expect("waiters poisoned").get_mut(id) {
            waiting.retain(|tx| !tx.is_closed());
        }
        result
    }

    fn notify(&self, id: &str, outcome: Outcome) {
        let waiting = self.waiters.lock().expect("waiters poisoned").remove(id);
        for tx in waiting.into_iter().flatten() {
            let _ = tx.send(outcome.clone());
        }
    }

    /// Runs a workflow on its own task and records how it ended, unless a task of
    /// the current generation runs it already.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        self: &Arc<Self>,
        spec: &'static WorkflowSpec,
        id: String,
        attempt: i32,
        inputs: String,
        recorded: HashMap<i32, StepRecord>,
        timeout: Option<Duration>,
        queue: Option<String>,
    ) {
        let mut generation = self.generation.subscribe();
        let started_in = *generation.borrow_and_update();
        {
            let mut live = self.live.lock().expect("live tasks poisoned");
            if live.get(&id) == Some(&started_in) {
                return; // a task of this generation runs it already
            }
            live.insert(id.clone(), started_in);
        }
        let engine = self.clone();
        let owner = Owner { executor: self.config.executor_id.clone(), attempt };
        let ctx = Arc::new(WorkflowContext::new(engine.clone(), id.clone(), owner.clone(), recorded));
        self.running.fetch_add(1, Ordering::SeqCst);
        if let Some(queue) = &queue {
            *self.queue_running.lock().expect("queue counts poisoned").entry(queue.clone()).or_default() += 1;
        }
        self.tasks.spawn(async move {
            let _running = Counted(&engine.running);
            let _live = Live { engine: &engine, id: &id, generation: started_in };
            let _queued = queue.map(|queue| QueueSlot { engine: &engine, queue });
            let body = ctx.clone().scope(AssertUnwindSafe((spec.invoke)(inputs)).catch_unwind());
            let ended = tokio::select! {
                ended = with_timeout(timeout, body) => ended,
                // Shutdown gave up waiting, or the work was handed to another executor:
                // the row is recovered later (by this executor or by that one).
                _ = generation.wait_for(|g| *g != started_in) => return,
                // A write found the workflow taken over: another execution owns it.
                _ = ctx.fenced() => return,
            };
            let (state, output, error) = match ended {
                Some(Ok(Ok(output))) if holds_nul(&output) => {
                    let message = format!("the output of workflow `{id}` contains the character U+0000, which PostgreSQL cannot store in JSONB; it was not recorded");
                    (WorkflowState::Error, None, Some(error_json(&message)))
                }
                Some(Ok(Ok(output))) => (WorkflowState::Success, Some(output), None),
                Some(Ok(Err(message))) => (WorkflowState::Error, None, Some(error_json(&message))),
                Some(Err(panic)) => {
                    let message = panic_message(&*panic);
                    tracing::error!(workflow_id = %id, %message, "exactly: workflow panicked");
                    (WorkflowState::Error, None, Some(error_json(&format!("workflow panicked: {message}"))))
                }
                None => {
                    let message = format!("workflow timed out after {:?}", timeout.unwrap_or_default());
                    (WorkflowState::Cancelled, None, Some(error_json(&message)))
                }
            };
            let finish =
                Finish { id: id.clone(), status: state.as_str(), output: output.clone(), error: error.clone(), owner };
            match engine.store.writer.finish(finish).await {
                Ok(()) => {}
                Err(e @ Error::Fenced { .. }) => {
                    tracing::warn!(workflow_id = %id, error = %e, "exactly: the outcome was not recorded: another execution owns the workflow");
                    return;
                }
                Err(e) => {
                    tracing::error!(workflow_id = %id, error = %e, "exactly: could not record the outcome; the workflow stays PENDING and will be recovered");
                    return;
                }
            }
            engine.notify(&id, Outcome { state, output, error });
        });
    }

    /// Resumes this executor's PENDING workflows, a batch at a time and no faster
    /// than `max_running` allows, while the process heartbeats and consumes. A
    /// workflow whose executions have been started more than `1 +
    /// max_recovery_attempts` times is given up as MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    /// its inputs kept. A first pass goes through them in ID order; then passes from
    /// the start, skipping what runs here, until one finds nothing (a row another
    /// statement held while the first pass went by).
    pub async fn recover(self: &Arc<Self>, since: Since, cursor: &mut RecoveryCursor) -> Result<usize> {
        let RecoveryCursor { after, from_start } = cursor;
        let mut resumed = 0;
        loop {
            // Paced: a few batches in flight at a time, so that thousands of
            // recovered workflows do not crowd out the heartbeat and the receivers.
            while (self.room() == 0 || self.running.load(Ordering::SeqCst) >= RECOVERY_IN_FLIGHT)
                && !self.is_shutting_down()
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if self.is_shutting_down() {
                return Ok(resumed);
            }
            // The first pass needs no exclusions: what it started lies behind its cursor.
            let except = if *from_start { self.running_now() } else { Vec::new() };
            let limit = RECOVERY_BATCH.min(self.room() as i64).max(1);
            let batch = self.store.claim_pending(&self.config.executor_id, since, &except, after, limit).await?;
            match batch.iter().map(|(w, _)| w.id.clone()).max() {
                Some(last) => *after = last,
                None if *from_start && after.is_empty() => return Ok(resumed),
                None => {
                    (*after, *from_start) = (String::new(), true);
                    continue;
                }
            }
            resumed += self.resume(batch).await?;
        }
    }

    /// Runs [`recover`](Self::recover) until it completes, retrying through database
    /// outages; logs what it resumed.
    pub async fn recover_in_background(self: Arc<Self>, since: Since) {
        let mut delay = Duration::from_millis(100);
        // Kept across retries: a retry goes on from where the failed try was, and never
        // claims again (and so fences) a workflow that try started.
        let mut cursor = RecoveryCursor::default();
        loop {
            match self.recover(since, &mut cursor).await {
                Ok(0) => return,
                Ok(resumed) => return tracing::info!(resumed, "exactly: recovered PENDING workflows"),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "exactly: recovering PENDING workflows failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The IDs of the workflows running in this process's current generation.
    fn running_now(&self) -> Vec<String> {
        let generation = *self.generation.borrow();
        let live = self.live.lock().expect("live tasks poisoned");
        live.iter().filter(|(_, g)| **g == generation).map(|(id, _)| id.clone()).collect()
    }

    /// Called when this executor learns that another one declared it dead and put
    /// its PENDING workflows back on their queues. Every task running here ends (its
    /// workflow may already run elsewhere); then the workflows that are PENDING for
    /// this executor again (its dispatcher claimed them back before it learned) run
    /// anew, since no task runs them any more. Workflows started here after the end
    /// keep running.
    pub async fn recover_after_takeover(self: &Arc<Self>) -> Result<usize> {
        let since = self.store.now().await?;
        self.end_all_workflows();
        // Every pass skips what runs in the new generation.
        self.recover(since, &mut RecoveryCursor { after: String::new(), from_start: true }).await
    }

    async fn resume(self: &Arc<Self>, pending: Vec<(PendingWorkflow, i32)>) -> Result<usize> {
        let ids: Vec<String> = pending.iter().map(|(w, _)| w.id.clone()).collect();
        let mut steps = self.store.steps_of(&ids).await?;
        let mut resumed = 0;
        for (workflow, attempts) in pending {
            let Some(spec) = self.registry.get(&workflow.name) else {
                // Left PENDING here, it would hold its queue's slots for good.
                tracing::warn!(workflow_id = %workflow.id, name = %workflow.name, "exactly: cannot recover a workflow this program does not register; handing it back to its queue (the internal queue if it had none) for an executor that does");
                self.hand_back(vec![workflow.id]).await;
                continue;
            };
            if self.give_up_if_exhausted(spec, &workflow, attempts).await? {
                continue;
            }
            let recorded = steps.remove(&workflow.id).unwrap_or_default();
            let timeout = workflow.remaining_ms.map(|ms| Duration::from_millis(ms.max(0) as u64));
            tracing::debug!(workflow_id = %workflow.id, attempt = attempts, steps = recorded.len(), "exactly: recovering workflow");
            self.spawn(spec, workflow.id, attempts, workflow.inputs, recorded, timeout, workflow.queue);
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Ends a workflow as MAX_RECOVERY_ATTEMPTS_EXCEEDED, its inputs kept, if its
    /// executions have been started more than `1 + max_recovery_attempts` times
    /// (by any executors: recovery at launch and claims from a queue both count).
    /// Returns whether it did.
    async fn give_up_if_exhausted(&self, spec: &WorkflowSpec, workflow: &PendingWorkflow, attempts: i32) -> Result<bool> {
        let max = spec.max_recovery_attempts.unwrap_or(self.config.max_recovery_attempts);
        if attempts as i64 <= max as i64 + 1 {
            return Ok(false);
        }
        let message = format!(
            "workflow `{}` was started {} times without completing (more than 1 + max_recovery_attempts = {}); its inputs are kept for inspection",
            workflow.id,
            attempts - 1,
            max
        );
        tracing::error!(workflow_id = %workflow.id, "exactly: {message}");
        let finish = Finish {
            id: workflow.id.clone(),
            status: WorkflowState::MaxRecoveryAttemptsExceeded.as_str(),
            output: None,
            error: Some(error_json(&message)),
            owner: Owner { executor: self.config.executor_id.clone(), attempt: attempts },
        };
        self.store.writer.finish(finish).await?;
        Ok(true)
    }

    /// Registers work to run at the start of shutdown, before workflows drain (a
    /// receiver stops polling and commits what it acknowledged).
    #[cfg_attr(not(any(feature = "kafka", feature = "sqs")), allow(dead_code))] // used by the receivers
    pub fn before_shutdown(&self, stop: BoxFuture<'static, ()>) {
        self.before_shutdown.lock().expect("shutdown hooks poisoned").push(stop);
    }

    /// Tells the dispatcher that `queue` may have claimable work.
    pub fn wake_dispatcher(&self, queue: &str) {
        self.due_queues.lock().expect("due queues poisoned").insert(queue.to_owned());
        self.dispatch_wakeup.notify_one();
    }

    /// The queues named by [`wake_dispatcher`](Self::wake_dispatcher) since the last call.
    pub fn take_due_queues(&self) -> HashSet<String> {
        std::mem::take(&mut *self.due_queues.lock().expect("due queues poisoned"))
    }

    /// Waits for [`wake_dispatcher`](Self::wake_dispatcher).
    pub async fn dispatch_woken(&self) {
        self.dispatch_wakeup.notified().await
    }

    /// Ends every workflow task of this process where it stands.
    pub fn end_all_workflows(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// How many more workflows of `queue` this process may run now.
    pub fn local_slots(&self, queue: &Queue) -> u32 {
        let running = self.queue_running.lock().expect("queue counts poisoned").get(queue.name).copied().unwrap_or(0);
        queue.worker_concurrency.map_or(u32::MAX, |limit| limit.saturating_sub(running))
    }

    /// Whether receivers may start more workflows now (fewer than `max_running` run).
    #[cfg_attr(not(any(feature = "kafka", feature = "sqs")), allow(dead_code))] // used by the receivers
    pub fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// How many more workflows receivers and the dispatcher may start now.
    pub fn room(&self) -> usize {
        self.config.max_running.saturating_sub(self.running.load(Ordering::SeqCst))
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs workflows the dispatcher claimed from a queue. If one cannot be started,
    /// it and those after it go back to their queue rather than stay PENDING for
    /// this live executor (holding their queue's slots) until its next launch.
    pub async fn run_claimed(self: &Arc<Self>, claimed: Vec<Claimed>) -> Result<()> {
        let mut claimed = claimed.into_iter();
        while let Some(Claimed { workflow, attempts }) = claimed.next() {
            let id = workflow.id.clone();
            if let Err(e) = self.run_one_claimed(workflow, attempts).await {
                self.hand_back(std::iter::once(id).chain(claimed.map(|c| c.workflow.id)).collect()).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn run_one_claimed(self: &Arc<Self>, workflow: PendingWorkflow, attempts: i32) -> Result<()> {
        let Some(spec) = self.registry.get(&workflow.name) else {
            // The claim takes only the names in `runnable`; this is a safety net.
            tracing::warn!(workflow_id = %workflow.id, name = %workflow.name, "exactly: claimed a workflow this program does not register; handing it back to its queue for an executor that does");
            self.hand_back(vec![workflow.id]).await;
            return Ok(());
        };
        if self.give_up_if_exhausted(spec, &workflow, attempts).await? {
            return Ok(());
        }
        // Only a workflow that ran before (and was handed back) has records.
        let recorded = if attempts > 1 { self.store.steps(&workflow.id).await? } else { HashMap::new() };
        let timeout = workflow.remaining_ms.map(|ms| Duration::from_millis(ms.max(0) as u64));
        self.spawn(spec, workflow.id, attempts, workflow.inputs, recorded, timeout, workflow.queue);
        Ok(())
    }

    /// Puts claimed workflows that were not started back on their queues; those
    /// that cannot be put back now are kept for [`hand_back_unstarted`](Self::hand_back_unstarted).
    async fn hand_back(&self, ids: Vec<String>) {
        if let Err(e) = self.store.release(&self.config.executor_id, &ids).await {
            tracing::warn!(error = %e, workflows = ids.len(), "exactly: could not hand claimed workflows back to their queue; retrying");
            self.unstarted.lock().expect("unstarted poisoned").extend(ids);
        }
    }

    /// Retries handing back the claimed workflows that [`run_claimed`](Self::run_claimed)
    /// could neither start nor put back on their queue.
    pub async fn hand_back_unstarted(&self) -> Result<()> {
        let ids = std::mem::take(&mut *self.unstarted.lock().expect("unstarted poisoned"));
        if ids.is_empty() {
            return Ok(());
        }
        self.store.release(&self.config.executor_id, &ids).await.inspect_err(|_| {
            self.unstarted.lock().expect("unstarted poisoned").extend(ids.iter().cloned());
        })
    }

    /// Called before a step runs: once shutdown has begun, no new step starts; the
    /// workflow waits here until shutdown ends its task, and is recovered later.
    pub async fn park_if_shutting_down(&self) {
        if self.shutting_down.load(Ordering::SeqCst) {
            self.parked.fetch_add(1, Ordering::SeqCst);
            let _parked = Counted(&self.parked);
            std::future::pending::<()>().await;
        }
    }

    /// Stops accepting work, lets running steps finish (at most `timeout`), then
    /// ends every workflow task where it stands and closes the database pool.
    pub async fn shutdown(self: &Arc<Self>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.supervisor.stop();
        // Receivers stop first, so no new message arrives while workflows drain.
        let receivers = std::mem::take(&mut *self.before_shutdown.lock().expect("shutdown hooks poisoned"));
        if tokio::time::timeout(timeout, futures_util::future::join_all(receivers)).await.is_err() {
            tracing::warn!("exactly: receivers did not stop within the shutdown timeout");
        }
        self.shutting_down.store(true, Ordering::SeqCst);
        while self.running.load(Ordering::SeqCst) > self.parked.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let unfinished = self.running.load(Ordering::SeqCst);
        if unfinished > 0 {
            tracing::info!(unfinished, "exactly: shutting down; unfinished workflows stay PENDING and resume at the next launch");
        }
        self.end_all_workflows();
        // The tasks end at their next poll; give them a moment so the pool closes cleanly.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        {
            let mut current = CURRENT.write().expect("engine lock poisoned");
            if current.as_ref().is_some_and(|e| Arc::ptr_eq(e, self)) {
                *current = None;
            }
        }
        // Closing waits for every connection to come back; one held by a write that
        // never answers (a lock held elsewhere, a server gone silent) would hold the
        // shutdown for good. Its transaction rolls back when the connection drops.
        if tokio::time::timeout(POOL_CLOSE, self.store.pool().close()).await.is_err() {
            tracing::warn!(waited = ?POOL_CLOSE, "exactly: a database write did not return; shutting down without it (it rolls back)");
        }
    }
}

/// A running queued workflow: frees its per-process slot and wakes the dispatcher
/// when it ends, however it ends.
struct QueueSlot<'a> {
    engine: &'a Engine,
    queue: String,
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.engine.queue_running.lock().expect("queue counts poisoned").get_mut(&self.queue) {
            *n = n.saturating_sub(1);
        }
        self.engine.wake_dispatcher(&self.queue);
    }
}

fn is_deduplication_conflict(e: &Error) -> bool {
    matches!(e, Error::Database { source: sqlx::Error::Database(db), .. }
        if db.constraint() == Some("workflow_status_deduplication"))
}

/// Removes a workflow task from [`Engine::live`] when it ends, unless a newer task
/// of the same workflow took its place.
struct Live<'a> {
    engine: &'a Engine,
    id: &'a str,
    generation: u64,
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        let mut live = self.engine.live.lock().expect("live tasks poisoned");
        if live.get(self.id) == Some(&self.generation) {
            live.remove(self.id);
        }
    }
}

/// Decrements its counter when dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn with_timeout<F: Future>(timeout: Option<Duration>, fut: F) -> Option<F::Output> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, fut).await.ok(),
        None => Some(fut.await),
    }
}


//! The systems under test. Each one runs the same workloads against its own database.
//!
//! A new system implements [`System`]; a new workload adds a method here (with a
//! default that reports it as unsupported, so systems can catch up one at a time) and a
//! module under `workloads/`.

use std::future::Future;
use std::pin::Pin;

use crate::Error;

pub mod dbos;
pub mod exactly;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A future that need not be `Send` (`exactly::Runtime::shutdown`'s is not).
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A queue of the `queue` workload.
#[derive(Clone, Debug)]
pub struct QueueVariant {
    /// How the report names this system on this queue: `exactly`, `dbos`, `dbos-1ms`.
    pub label: &'static str,
    /// The queue's name.
    pub queue: &'static str,
    /// Its settings that matter to the numbers, for the report.
    pub describe: String,
}

/// A launched system, ready to run workloads.
pub trait System: Send + Sync + 'static {
    /// The name in the table: `exactly` or `dbos`.
    fn name(&self) -> &'static str;

    /// Its settings that matter to the numbers (pool size, polling...), for the report.
    fn describe(&self) -> String;

    /// The schema-qualified table of workflow rows with a `status` column, for the checks.
    fn status_table(&self) -> &'static str;

    /// Starts one workflow of one step with input `i` and waits for its result, which
    /// is `2 * i`. The future must not borrow `self`, so that it can be spawned.
    fn one_step(&self, i: u64) -> BoxFuture<'static, Result<u64, Error>>;

    /// The queues the `queue` workload runs on in this system, the default one first.
    /// Each is unlimited; a variant after the first differs in a setting of the
    /// system's own (dbos: a lower polling interval).
    fn queues(&self) -> Vec<QueueVariant>;

    /// Prepares a queue variant before its runs (dbos: registers the queue and lets its
    /// worker settle at its polling interval). Not called for the first variant.
    fn open_queue(&self, _queue: &'static str) -> LocalBoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Undoes [`open_queue`](Self::open_queue) after the variant's runs.
    fn close_queue(&self, _queue: &'static str) -> LocalBoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Enqueues a one-step workflow with input `i` and ID `id` on `queue`, as the
    /// application would; resolves once its row is durably ENQUEUED (committed). The
    /// future must not borrow `self`.
    fn enqueue(&self, queue: &'static str, id: String, i: u64) -> BoxFuture<'static, Result<(), Error>>;

    /// The output of the ended workflow `id` (a check after the timing, never timed).
    fn output(&self, id: String) -> BoxFuture<'static, Result<u64, Error>>;

    /// Stops the system and closes its connections.
    fn shutdown(&self) -> LocalBoxFuture<'static, Result<(), Error>>;
}

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

    /// Stops the system and closes its connections.
    fn shutdown(&self) -> LocalBoxFuture<'static, Result<(), Error>>;
}

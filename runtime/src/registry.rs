//! What the attribute macros register through `inventory`, and its validation at launch.
//!
//! `#[workflow]` emits a `static WorkflowSpec` and submits a [`WorkflowRegistration`]
//! pointing at it; `#[step]` does the same with [`StepSpec`]. Nothing here is called
//! by users directly.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::error::{Error, Result};

/// What a workflow body returns to the engine: the output as JSON text, or the
/// error message to record.
pub type Outcome = std::result::Result<String, String>;

/// A registered workflow: its durable name and how to run it from its recorded inputs.
#[derive(Debug)]
pub struct WorkflowSpec {
    /// The durable name recorded with every workflow row. Renaming it orphans rows.
    pub name: &'static str,
    /// Where the workflow is declared, for error messages.
    pub location: Location,
    /// Overrides the runtime-wide limit on recovery attempts.
    pub max_recovery_attempts: Option<u32>,
    /// Decodes the JSON inputs and runs the body. Fresh starts and recoveries both
    /// go through here, so a workflow always runs from what was recorded.
    pub invoke: fn(String) -> BoxFuture<'static, Outcome>,
}

/// A registered step: its name and retry policy.
#[derive(Debug)]
pub struct StepSpec {
    /// The name recorded with the step's output, checked on replay.
    pub name: &'static str,
    /// Where the step is declared.
    pub location: Location,
    /// How many times to retry after the first failure.
    pub retries: u32,
    /// Delay before the first retry.
    pub backoff: Duration,
    /// Factor applied to the delay after each retry.
    pub backoff_factor: f64,
    /// Upper bound on the delay between retries.
    pub max_backoff: Duration,
}

impl StepSpec {
    /// The step options used by [`run_step`](crate::run_step) when none are given.
    pub const fn named(name: &'static str) -> StepSpec {
        StepSpec {
            name,
            location: Location { file: "", line: 0 },
            retries: 0,
            backoff: Duration::from_millis(100),
            backoff_factor: 2.0,
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// A source location (`file!()`, `line!()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: &'static str,
    /// The line.
    pub line: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Submitted by `#[workflow]`.
pub struct WorkflowRegistration(pub &'static WorkflowSpec);
inventory::collect!(WorkflowRegistration);

/// Submitted by `#[step]`.
pub struct StepRegistration(pub &'static StepSpec);
inventory::collect!(StepRegistration);

/// The validated set of workflows a runtime can run, by durable name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    workflows: HashMap<&'static str, &'static WorkflowSpec>,
}

impl Registry {
    /// Collects everything the macros submitted in this program.
    pub(crate) fn collect() -> Result<Registry> {
        Registry::build(
            inventory::iter::<WorkflowRegistration>.into_iter().map(|r| r.0),
            inventory::iter::<StepRegistration>.into_iter().map(|r| r.0),
        )
    }

    /// Indexes the workflows by name and fails on the first name used twice (by a
    /// workflow or by a step), naming both places.
    pub(crate) fn build(
        workflows: impl IntoIterator<Item = &'static WorkflowSpec>,
        step_specs: impl IntoIterator<Item = &'static StepSpec>,
    ) -> Result<Registry> {
        let mut registry = Registry::default();
        for spec in workflows {
            if let Some(first) = registry.workflows.insert(spec.name, spec) {
                return Err(Error::Registration(format!(
                    "two workflows are named `{}`: one at {}, one at {}; workflow names are durable keys and must be unique (rename one with #[workflow(name = \"..\")])",
                    spec.name, first.location, spec.location
                )));
            }
        }
        let mut steps: HashMap<&'static str, &'static StepSpec> = HashMap::new();
        for spec in step_specs {
            if let Some(first) = steps.insert(spec.name, spec) {
                return Err(Error::Registration(format!(
                    "two steps are named `{}`: one at {}, one at {}; step names are checked when a workflow is replayed and must be unique (rename one with #[step(name = \"..\")])",
                    spec.name, first.location, spec.location
                )));
            }
        }
        Ok(registry)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'static WorkflowSpec> {
        self.workflows.get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.workflows.len()
    }
}

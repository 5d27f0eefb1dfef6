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

/// The body of the receivers' internal `rejected` workflows (a message that cannot be
/// given to its workflow): ends at once as ERROR with the reason its inputs record.
#[cfg(any(feature = "kafka", feature = "sqs"))]
pub(crate) fn reject_with_recorded_reason(inputs: String) -> BoxFuture<'static, Outcome> {
    Box::pin(async move {
        let reason = serde_json::from_str::<serde_json::Value>(&inputs)
            .ok()
            .and_then(|v| v[0]["reason"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("rejected message: {inputs}"));
        Err(reason)
    })
}

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

    /// The durable names of the registered workflows.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.workflows.keys().copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.workflows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke(_: String) -> BoxFuture<'static, Outcome> {
        Box::pin(async { Ok("null".to_owned()) })
    }

    static A: WorkflowSpec =
        WorkflowSpec { name: "app::a", location: Location { file: "src/a.rs", line: 3 }, max_recovery_attempts: None, invoke };
    static A_AGAIN: WorkflowSpec =
        WorkflowSpec { name: "app::a", location: Location { file: "src/b.rs", line: 9 }, max_recovery_attempts: None, invoke };
    static B: WorkflowSpec =
        WorkflowSpec { name: "app::b", location: Location { file: "src/b.rs", line: 1 }, max_recovery_attempts: None, invoke };
    static S1: StepSpec = StepSpec { location: Location { file: "src/s.rs", line: 1 }, ..StepSpec::named("app::s") };
    static S2: StepSpec = StepSpec { location: Location { file: "src/t.rs", line: 2 }, ..StepSpec::named("app::s") };

    #[test]
    fn distinct_names_are_indexed() {
        let registry = Registry::build([&A, &B], [&S1]).unwrap();
        assert_eq!(registry.len(), 2);
        assert!(std::ptr::eq(registry.get("app::b").unwrap(), &B));
        assert!(registry.get("app::c").is_none());
    }

    #[test]
    fn a_workflow_name_used_twice_fails_naming_both_places() {
        let err = Registry::build([&A, &B, &A_AGAIN], []).unwrap_err().to_string();
        assert!(err.contains("two workflows are named `app::a`"), "{err}");
        assert!(err.contains("src/a.rs:3") && err.contains("src/b.rs:9"), "{err}");
    }

    #[test]
    fn a_step_name_used_twice_fails_naming_both_places() {
        let err = Registry::build([&A], [&S1, &S2]).unwrap_err().to_string();
        assert!(err.contains("two steps are named `app::s`"), "{err}");
        assert!(err.contains("src/s.rs:1") && err.contains("src/t.rs:2"), "{err}");
    }
}

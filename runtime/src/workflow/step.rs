//! Steps: run a side effect at least once, record its outcome exactly once, and
//! replay the record instead of running it again on recovery.

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::registry::StepSpec;
use crate::store::{StepRecord, error_json, error_message, refuse_nul};
use crate::workflow::context;

/// Runs `f` as a checkpointed step named `name`, without retries.
///
/// The closure form of `#[step]`, for code that is not worth its own function:
///
/// ```no_run
/// # async fn f() -> exactly_runtime::Result<()> {
/// let total: u64 = exactly_runtime::run_step("sum", || async { Ok::<_, exactly_runtime::Error>(40 + 2) }).await?;
/// # Ok(()) }
/// ```
pub async fn run_step<T, E, F, Fut>(name: &'static str, f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Serialize + DeserializeOwned,
    E: Display + From<Error>,
{
    run_step_with(&StepSpec::named(name), f).await
}

/// Runs `f` as a checkpointed step with the name and retry policy of `spec`.
///
/// Inside a workflow: if an earlier execution recorded this step, its output (or
/// error) is returned and `f` is not called. Otherwise `f` runs, is retried on error
/// as `spec` says, and its outcome is made durable before this returns. Outside a
/// workflow, `f` simply runs with its retries. The body can read its step ID with
/// [`step_id`](crate::step_id).
pub async fn run_step_with<T, E, F, Fut>(spec: &StepSpec, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Serialize + DeserializeOwned,
    E: Display + From<Error>,
{
    let Some(ctx) = context::current() else {
        return with_retries(spec, &mut f).await;
    };
    let step_id = ctx.next_step();
    if let Some(record) = ctx.take_recorded(step_id) {
        return replay(&ctx.id, spec.name, record);
    }
    ctx.engine.park_if_shutting_down().await;
    // A paused executor starts no step until a heartbeat says it still owns its work.
    ctx.engine.lease.wait_valid(&ctx.id).await;
    let result = context::in_step(step_id, with_retries(spec, &mut f)).await;
    let (output, error, result) = match result {
        Ok(value) => {
            let json = serde_json::to_string(&value).map_err(|source| Error::Serialization {
                action: "encode",
                what: format!("the output of step `{}`", spec.name),
                source,
            })?;
            // Not storable: the step's error is recorded instead, and returned.
            match refuse_nul(&json, || format!("the output of step `{}`", spec.name)) {
                Ok(()) => (Some(json), None, Ok(value)),
                Err(e) => (None, Some(error_json(&e.to_string())), Err(E::from(e))),
            }
        }
        Err(e) => (None, Some(error_json(&e.to_string())), Err(e)),
    };
    let record = StepRecord { workflow_id: ctx.id.clone(), step_id, name: spec.name.to_owned(), output, error };
    match ctx.engine.store.writer.step(record, ctx.owner.clone()).await {
        Ok(()) => result,
        Err(e @ Error::Fenced { .. }) => {
            ctx.fence();
            // The task ends at its next await; should the body still run, it gets this.
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn replay<T: DeserializeOwned, E: From<Error>>(workflow_id: &str, name: &str, record: StepRecord) -> Result<T, E> {
    if record.name != name {
        return Err(Error::NonDeterministic {
            workflow_id: workflow_id.to_owned(),
            step_id: record.step_id,
            recorded: record.name,
            current: name.to_owned(),
        }
        .into());
    }
    if let Some(json) = record.error {
        return Err(Error::StepFailed { step: record.name, message: error_message(&json) }.into());
    }
    let json = record.output.as_deref().unwrap_or("null");
    serde_json::from_str(json).map_err(|source| {
        Error::Serialization { action: "decode", what: format!("the recorded output of step `{name}`"), source }
            .into()
    })
}

async fn with_retries<T, E, F, Fut>(spec: &StepSpec, f: &mut F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let mut delay = spec.backoff;
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < spec.retries => {
                attempt += 1;
                tracing::warn!(step = spec.name, attempt, of = spec.retries, error = %e, retry_in = ?delay, "exactly: step failed; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.mul_f64(spec.backoff_factor).min(spec.max_backoff);
            }
            Err(e) => return Err(e),
        }
    }
}

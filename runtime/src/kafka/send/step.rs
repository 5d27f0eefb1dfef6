//! The send step: `run_step_with`'s checkpoint and replay, except that the body
//! learns its own step ID, which goes into the message's headers.
//!
//! Kept in step with `workflow/step.rs` (same record, same replay rules). The
//! engine's closure form does not pass the step ID it allocates; once it offers a
//! variant that does, this file reduces to a call of it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::store::{StepRecord, error_json, error_message};
use crate::workflow::context;

/// Runs `f` as a checkpointed step named `name`. `f` gets `(workflow ID, step ID)`
/// inside a workflow and `None` outside one.
pub(super) async fn durable<T, F, Fut>(name: &'static str, f: F) -> Result<T>
where
    F: FnOnce(Option<(String, i32)>) -> Fut,
    Fut: Future<Output = Result<T>>,
    T: Serialize + DeserializeOwned,
{
    let Some(ctx) = context::current() else {
        return f(None).await;
    };
    let step_id = ctx.next_step();
    if let Some(record) = ctx.take_recorded(step_id) {
        return replay(&ctx.id, name, record);
    }
    ctx.engine.park_if_shutting_down().await;
    let result = f(Some((ctx.id.clone(), step_id))).await;
    let (output, error) = match &result {
        Ok(value) => {
            let json = serde_json::to_string(value).map_err(|source| Error::Serialization {
                action: "encode",
                what: format!("the output of step `{name}`"),
                source,
            })?;
            (Some(json), None)
        }
        Err(e) => (None, Some(error_json(&e.to_string()))),
    };
    let record = StepRecord { workflow_id: ctx.id.clone(), step_id, name: name.to_owned(), output, error };
    ctx.engine.store.writer.step(record).await?;
    result
}

fn replay<T: DeserializeOwned>(workflow_id: &str, name: &str, record: StepRecord) -> Result<T> {
    if record.name != name {
        return Err(Error::NonDeterministic {
            workflow_id: workflow_id.to_owned(),
            step_id: record.step_id,
            recorded: record.name,
            current: name.to_owned(),
        });
    }
    if let Some(json) = record.error {
        return Err(Error::StepFailed { step: record.name, message: error_message(&json) });
    }
    serde_json::from_str(record.output.as_deref().unwrap_or("null")).map_err(|source| Error::Serialization {
        action: "decode",
        what: format!("the recorded output of step `{name}`"),
        source,
    })
}

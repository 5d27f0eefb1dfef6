//! Messages that cannot be given to their workflow (the key function panicked or
//! returned an empty key) are not left on the queue to come back forever: each gets
//! a row under `sqs:{queue-name}:{message-id}`, for the internal workflow
//! `exactly::sqs::rejected`, which ends at once as ERROR with the reason. The row
//! keeps the whole message (with its coordinates in the source), so an operator can
//! inspect it and send it again; the message is deleted once the row is durable, and
//! a redelivery meanwhile finds the row and is deduplicated like any other.

use super::message::SqsMessage;
use crate::workflow::engine::BatchStart;
use crate::registry::{Location, WorkflowRegistration, WorkflowSpec, reject_with_recorded_reason};

/// The durable name of the internal workflow of rejected messages.
pub(crate) const NAME: &str = "exactly::sqs::rejected";

pub(crate) static REJECTED: WorkflowSpec = WorkflowSpec {
    name: NAME,
    location: Location { file: file!(), line: line!() },
    max_recovery_attempts: None,
    invoke: reject_with_recorded_reason,
};
inventory::submit! { WorkflowRegistration(&REJECTED) }

/// The inputs of a rejected message's row: the consumer's workflow, the reason and
/// the message itself.
pub(crate) fn inputs(workflow: &str, message: &SqsMessage, reason: &str) -> String {
    let record = serde_json::json!({ "workflow": workflow, "reason": reason, "message": message });
    serde_json::Value::Array(vec![record]).to_string()
}

/// The rejected row of a message whose row PostgreSQL refused: the message as it
/// was recorded for its workflow, and the reason, under the same ID.
pub(crate) fn refused(consumer: &str, start: &BatchStart, reason: &str) -> BatchStart {
    let message = serde_json::from_str::<serde_json::Value>(&start.inputs).map(|inputs| inputs[0].clone()).unwrap_or_default();
    let record = serde_json::json!({ "workflow": start.spec.name, "consumer": consumer, "reason": reason, "message": message });
    BatchStart {
        spec: &REJECTED,
        id: start.id.clone(),
        inputs: serde_json::Value::Array(vec![record]).to_string(),
        queue: None,
        partition_key: None,
        source: start.source.clone(),
    }
}

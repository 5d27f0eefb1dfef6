//! Messages that cannot be given to their workflow (over the size limit, or whose
//! row PostgreSQL refuses) are not
//! skipped: each gets a row under its own workflow ID, for the internal workflow
//! `exactly::kafka::rejected`, which ends at once as ERROR with the reason. The row
//! keeps the coordinates (inputs and source), so an operator can find the message
//! in Kafka; a redelivery finds the row and is deduplicated like any other.

use crate::kafka::KafkaMessage;
use crate::kafka::consumer::ConsumerDef;
use crate::workflow::engine::BatchStart;
use crate::registry::{Location, WorkflowRegistration, WorkflowSpec, reject_with_recorded_reason};

/// The durable name of the internal workflow of rejected messages.
pub(crate) const NAME: &str = "exactly::kafka::rejected";

/// Keys longer than this are not copied into the record (their size is).
const MAX_RECORDED_KEY: usize = 1024;

pub(crate) static REJECTED: WorkflowSpec = WorkflowSpec {
    name: NAME,
    location: Location { file: file!(), line: line!() },
    max_recovery_attempts: None,
    invoke: reject_with_recorded_reason,
};
inventory::submit! { WorkflowRegistration(&REJECTED) }

pub(crate) fn row(def: &ConsumerDef, message: &KafkaMessage, id: String, source: String, reason: String) -> BatchStart {
    // jsonb holds no U+0000, so NULs are replaced.
    let key = message.key().filter(|k| k.len() <= MAX_RECORDED_KEY).map(|k| String::from_utf8_lossy(k).replace('\0', "\u{fffd}"));
    let record = serde_json::json!({
        "workflow": def.workflow,
        "group": def.group,
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": key,
        "key_bytes": message.key().map_or(0, <[u8]>::len),
        "payload_bytes": message.payload().map_or(0, <[u8]>::len),
        "timestamp": message.timestamp(),
        "reason": reason,
    });
    BatchStart {
        spec: &REJECTED,
        id,
        inputs: serde_json::Value::Array(vec![record]).to_string(),
        queue: None,
        partition_key: None,
        source: Some(source),
    }
}

/// The rejected row of a message whose row PostgreSQL refused: its coordinates
/// (from the row's source) and the reason, under the message's own ID.
pub(crate) fn refused(def: &ConsumerDef, start: &BatchStart, reason: &str) -> BatchStart {
    let source: serde_json::Value = start.source.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let mut record = source["kafka"].as_object().cloned().unwrap_or_default();
    record.insert("workflow".into(), def.workflow.clone().into());
    record.insert("reason".into(), reason.into());
    BatchStart {
        spec: &REJECTED,
        id: start.id.clone(),
        inputs: serde_json::Value::Array(vec![record.into()]).to_string(),
        queue: None,
        partition_key: None,
        source: start.source.clone(),
    }
}

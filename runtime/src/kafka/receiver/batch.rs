//! From polled messages to workflow rows: the workflow ID, inputs, queue and
//! partition key of each message, and rejected messages recorded as such.

use crate::kafka::KafkaMessage;
use crate::kafka::consumer::{ConsumerDef, Ordering};
use crate::registry::WorkflowSpec;
use crate::workflow::engine::BatchStart;

use super::rejected;
use crate::ingest::safe_key;

/// The queue of ordered consumers that name none: one workflow at a time per
/// partition key. Registered for every program built with the `kafka` feature.
pub(crate) static ORDERED_QUEUE: crate::Queue =
    crate::Queue::new("_exactly_kafka_ordered").partition_concurrency(1).declared_at(file!(), line!());
inventory::submit! { crate::queue::QueueRegistration(&ORDERED_QUEUE) }

/// A consumer as its receiver runs it.
pub(crate) struct Target {
    pub def: ConsumerDef,
    pub spec: &'static WorkflowSpec,
    pub size_limit: usize,
}

/// The workflow ID of a message: the deduplication key, stable forever.
pub(crate) fn workflow_id(group: &str, message: &KafkaMessage) -> String {
    format!("kafka:{group}:{}:{}:{}", message.topic(), message.partition(), message.offset())
}

/// The rows of a poll batch, in message order: one transaction inserts them all,
/// and the insert order (the rows' `seq`) is the order in which ordered consumers'
/// queues run them.
pub(crate) fn rows(target: &Target, messages: &[KafkaMessage]) -> Vec<BatchStart> {
    messages.iter().map(|m| row(target, m)).collect()
}

fn row(target: &Target, message: &KafkaMessage) -> BatchStart {
    let def = &target.def;
    let id = workflow_id(&def.group, message);
    let source = serde_json::json!({
        "kafka": {
            "group": def.group,
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
        }
    })
    .to_string();
    let size = message.size();
    if size > target.size_limit {
        let reason = format!(
            "Kafka message {} is {size} bytes (key, payload and headers), over the limit of {} bytes (EXACTLY_KAFKA_MESSAGE_SIZE_LIMIT); it was not given to workflow `{}`",
            message.coordinates(),
            target.size_limit,
            def.workflow
        );
        return rejected::row(def, message, id, source, reason);
    }
    let args = (message.topic(), message.partition(), message);
    let inputs = match crate::__private::encode_inputs(target.spec.name, &args) {
        Ok(inputs) => inputs,
        Err(e) => return rejected::row(def, message, id, source, e.to_string()),
    };
    let (queue, partition_key) = match def.ordering {
        Ordering::None => (def.queue.clone(), None),
        Ordering::Partition => (Some(ordered_queue(def)), Some(partition_key(def, message))),
        Ordering::Key => {
            let key = match message.key() {
                Some(key) => format!("kafka:{}:{}:key:{}", def.group, message.topic(), safe_key(&key_text(key))),
                None => partition_key(def, message),
            };
            (Some(ordered_queue(def)), Some(key))
        }
    };
    BatchStart { spec: target.spec, id, inputs, queue, partition_key, source: Some(source) }
}

fn ordered_queue(def: &ConsumerDef) -> String {
    def.queue.clone().unwrap_or_else(|| ORDERED_QUEUE.name.to_owned())
}

fn partition_key(def: &ConsumerDef, message: &KafkaMessage) -> String {
    format!("kafka:{}:{}:{}", def.group, message.topic(), message.partition())
}

/// A key as text: itself if it is UTF-8, else its bytes in hex.
fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) => text.to_owned(),
        Err(_) => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Location, Outcome};
    use futures_util::future::BoxFuture;

    fn invoke(_: String) -> BoxFuture<'static, Outcome> {
        Box::pin(async { Ok("null".to_owned()) })
    }

    static W: WorkflowSpec =
        WorkflowSpec { name: "app::w", location: Location { file: "src/w.rs", line: 1 }, max_recovery_attempts: None, invoke };

    fn target(ordering: Ordering, size_limit: usize) -> Target {
        Target {
            def: ConsumerDef {
                workflow: "app::w".into(),
                    topics: vec!["orders".into()],
                group: "g".into(),
                queue: None,
                ordering,
                config: None,
                batch_size: 10,
                location: Location { file: "src/main.rs", line: 1 },
                attribute: true,
            },
            spec: &W,
            size_limit,
        }
    }

    fn message(partition: i32, offset: i64, key: &str) -> KafkaMessage {
        KafkaMessage::new("orders", partition, offset, format!("m{offset}")).with_key(key)
    }

    #[test]
    fn a_message_becomes_a_row_with_its_id_inputs_and_source() {
        let rows = rows(&target(Ordering::None, 100), &[message(2, 7, "k")]);
        let row = &rows[0];
        assert_eq!(row.id, "kafka:g:orders:2:7");
        let inputs: serde_json::Value = serde_json::from_str(&row.inputs).unwrap();
        assert_eq!(inputs[0], "orders");
        assert_eq!(inputs[1], 2);
        assert_eq!(inputs[2]["payload"], "m7");
        assert_eq!(inputs[2]["key"], "k");
        let source = row.source.as_deref().unwrap();
        assert!(source.contains(r#""group":"g""#) && source.contains(r#""offset":7"#), "{source}");
        assert_eq!((row.queue.as_deref(), row.partition_key.as_deref()), (None, None));
    }

    #[test]
    fn ordered_rows_go_on_the_ordered_queue_keyed_by_partition_or_key_in_message_order() {
        let batch = [message(0, 1, "a"), message(0, 2, "b"), message(0, 3, "a"), message(1, 1, "a")];
        let ids = |rows: &[BatchStart]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let keys = |rows: &[BatchStart]| rows.iter().map(|r| r.partition_key.clone().unwrap()).collect::<Vec<_>>();
        let by_partition = rows(&target(Ordering::Partition, 100), &batch);
        assert_eq!(ids(&by_partition), ["kafka:g:orders:0:1", "kafka:g:orders:0:2", "kafka:g:orders:0:3", "kafka:g:orders:1:1"]);
        assert_eq!(keys(&by_partition), ["kafka:g:orders:0", "kafka:g:orders:0", "kafka:g:orders:0", "kafka:g:orders:1"]);
        assert!(by_partition.iter().all(|r| r.queue.as_deref() == Some("_exactly_kafka_ordered")));
        let by_key = rows(&target(Ordering::Key, 100), &batch);
        assert_eq!(ids(&by_key), ids(&by_partition));
        assert_eq!(keys(&by_key)[..2], ["kafka:g:orders:key:a", "kafka:g:orders:key:b"]);
    }

    #[test]
    fn keys_postgres_would_refuse_become_hashed_partition_keys() {
        let long = KafkaMessage::new("orders", 0, 1, "m").with_key(vec![0xab; 4096]);
        let nul = KafkaMessage::new("orders", 0, 2, "m").with_key(&b"a\0b"[..]);
        let rows = rows(&target(Ordering::Key, 1 << 20), &[long.clone(), nul, long]);
        let keys: Vec<&str> = rows.iter().map(|r| r.partition_key.as_deref().unwrap()).collect();
        assert!(keys.iter().all(|k| k.len() < 200 && !k.contains('\0') && k.contains(":key:sha256:")), "{keys:?}");
        assert_eq!(keys[0], keys[2], "one key, one partition key");
        assert_ne!(keys[0], keys[1]);
    }

    #[test]
    fn a_message_over_the_size_limit_is_recorded_as_rejected() {
        let rows = rows(&target(Ordering::Partition, 4), &[message(0, 9, "key")]);
        let row = &rows[0];
        assert_eq!(row.id, "kafka:g:orders:0:9", "the message's own ID, so a redelivery finds it");
        assert_eq!(row.spec.name, rejected::NAME);
        assert_eq!(row.queue, None);
        let inputs: serde_json::Value = serde_json::from_str(&row.inputs).unwrap();
        assert_eq!(inputs[0]["offset"], 9);
        assert!(inputs[0]["reason"].as_str().unwrap().contains("over the limit of 4 bytes"), "{inputs}");
    }
}

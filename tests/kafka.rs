//! Kafka consumers against the real broker and PostgreSQL, in one runtime shared by
//! the tests of this binary: every topic form, programmatic registration, two
//! groups, partition and key ordering, a queue's concurrency limit, the send helper,
//! failing workflows and rejected messages, and registration errors.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exactly::kafka::{ClientConfig, KafkaConsumerOptions};
use exactly::{KafkaMessage, kafka_consumer, register_kafka_consumer, workflow};
use kafka_common::{count, numbered, produce, wait_until, workflows};

const WAIT: Duration = Duration::from_secs(60);

const TOPICS: &[(&str, i32)] = &[
    ("exactly-test-literal", 1),
    ("exactly-test-regex-a", 1),
    ("exactly-test-regex-b", 2),
    ("exactly-test-regex-c", 1),
    ("exactly-test-list-x", 1),
    ("exactly-test-list-re-1", 1),
    ("exactly-test-groups", 2),
    ("exactly-test-by-partition", 3),
    ("exactly-test-by-key", 1),
    ("exactly-test-queue", 2),
    ("exactly-test-send-in", 1),
    ("exactly-test-send-out", 1),
    ("exactly-test-errors", 1),
];

/// The consumers' groups: their default (the workflow's durable name) or their own.
const GROUPS: &[&str] = &[
    "kafka::literal",
    "kafka::regex",
    "kafka::list",
    "exactly-test-group-1",
    "exactly-test-group-2",
    "kafka::by_partition",
    "kafka::by_key",
    "kafka::on_queue",
    "kafka::send_in",
    "kafka::send_out",
    "kafka::errors",
];

fn shared() -> &'static common::Shared {
    kafka_common::shared("exactly_test_kafka", TOPICS, GROUPS, |builder| {
        builder.kafka(kafka_common::settings().message_size_limit(1000))
    })
}

/// What the workflows saw, in the order they saw it.
#[derive(Debug, Clone)]
struct Seen {
    consumer: &'static str,
    topic: String,
    partition: i32,
    message: KafkaMessage,
    /// True when the workflow began, false when it ended.
    start: bool,
}

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

fn saw(consumer: &'static str, topic: &str, partition: i32, message: &KafkaMessage, start: bool) {
    let seen = Seen { consumer, topic: topic.to_owned(), partition, message: message.clone(), start };
    SEEN.lock().unwrap().push(seen);
}

fn seen(consumer: &str) -> Vec<Seen> {
    SEEN.lock().unwrap().iter().filter(|s| s.consumer == consumer && s.start).cloned().collect()
}

/// The `n` of a numbered message.
fn n(message: &KafkaMessage) -> exactly::Result<u64> {
    let value: serde_json::Value = message.json()?;
    value["n"].as_u64().ok_or_else(|| exactly::Error::msg("no n"))
}

#[kafka_consumer("exactly-test-literal")]
#[workflow]
async fn literal(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    saw("literal", &topic, partition, &message, true);
    n(&message)
}

#[kafka_consumer("^exactly-test-regex-[ab]$")]
#[workflow]
async fn regex(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    saw("regex", &topic, partition, &message, true);
    n(&message)
}

#[kafka_consumer(["exactly-test-list-x", "^exactly-test-list-re-.*"])]
#[workflow]
async fn list(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    saw("list", &topic, partition, &message, true);
    n(&message)
}

/// Produces `n` numbered messages to `topic` and waits until the consumer with
/// workflow-ID prefix `prefix` has completed them; returns their coordinates.
async fn produce_and_wait(topic: &str, tag: &str, n: usize, prefix: &str) -> Vec<(i32, i64)> {
    let pool = &shared().pool();
    let before = count(pool, prefix, "SUCCESS").await;
    let sent = produce(topic, &numbered(tag, n, 3)).await;
    wait_until(WAIT, &format!("{n} workflows of {prefix}"), || async { count(pool, prefix, "SUCCESS").await >= before + n })
        .await;
    sent
}

#[tokio::test]
async fn a_literal_topic_gives_each_message_one_workflow_with_a_readable_input() {
    let pool = &shared().pool();
    let prefix = "kafka:kafka::literal:exactly-test-literal:";
    let sent = produce_and_wait("exactly-test-literal", "literal", 5, prefix).await;
    let ids: Vec<String> = workflows(pool, prefix).await.into_iter().map(|(id, _)| id).collect();
    let mut expected: Vec<String> = sent.iter().map(|(p, o)| format!("{prefix}{p}:{o}")).collect();
    expected.sort();
    assert_eq!(ids, expected, "one workflow per message, named by group, topic, partition and offset");

    let (inputs, source, output): (serde_json::Value, serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT inputs, source, output FROM exactly.workflow_status WHERE workflow_id = $1",
    )
    .bind(format!("{prefix}0:{}", sent[2].1))
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(inputs[0], "exactly-test-literal");
    assert_eq!(inputs[1], 0);
    assert_eq!(inputs[2]["key"], "k2", "the key is stored as text");
    assert_eq!(inputs[2]["payload"], r#"{"n":2,"tag":"literal"}"#, "the payload is stored as text");
    assert_eq!(inputs[2]["offset"], sent[2].1);
    assert_eq!(inputs[2]["timestamp"]["type"], "create");
    assert_eq!(source["kafka"]["group"], "kafka::literal");
    assert_eq!(output, 2);
    let message = seen("literal").into_iter().find(|s| s.message.offset() == sent[2].1).unwrap().message;
    assert_eq!((message.key_str(), message.topic(), message.partition()), (Some("k2"), "exactly-test-literal", 0));
}

#[tokio::test]
async fn a_regular_expression_consumes_every_matching_topic_and_no_other() {
    let pool = &shared().pool();
    produce("exactly-test-regex-c", &numbered("not-matched", 3, 1)).await;
    produce("exactly-test-regex-a", &numbered("regex-a", 4, 2)).await;
    produce("exactly-test-regex-b", &numbered("regex-b", 6, 3)).await;
    wait_until(WAIT, "10 regex workflows", || async { count(pool, "kafka:kafka::regex:", "SUCCESS").await >= 10 }).await;
    let all = workflows(pool, "kafka:kafka::regex:").await;
    assert_eq!(all.iter().filter(|(id, _)| id.contains(":exactly-test-regex-a:")).count(), 4);
    assert_eq!(all.iter().filter(|(id, _)| id.contains(":exactly-test-regex-b:")).count(), 6);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!seen("regex").iter().any(|s| s.topic == "exactly-test-regex-c"), "`-c` does not match the pattern");
    assert_eq!(workflows(pool, "kafka:kafka::regex:").await.len(), 10);
}

#[tokio::test]
async fn a_list_mixes_names_and_expressions() {
    let pool = &shared().pool();
    produce("exactly-test-list-x", &numbered("list-x", 3, 1)).await;
    produce("exactly-test-list-re-1", &numbered("list-re", 2, 1)).await;
    wait_until(WAIT, "5 list workflows", || async { count(pool, "kafka:kafka::list:", "SUCCESS").await >= 5 }).await;
    let all = workflows(pool, "kafka:kafka::list:").await;
    assert_eq!(all.iter().filter(|(id, _)| id.contains(":exactly-test-list-x:")).count(), 3);
    assert_eq!(all.iter().filter(|(id, _)| id.contains(":exactly-test-list-re-1:")).count(), 2);
}

#[kafka_consumer("exactly-test-groups", group = "exactly-test-group-1")]
#[workflow]
async fn group_one(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    saw("group_one", &topic, partition, &message, true);
    n(&message)
}

#[kafka_consumer("exactly-test-groups", group = "exactly-test-group-2")]
#[workflow]
async fn group_two(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    saw("group_two", &topic, partition, &message, true);
    n(&message)
}

#[tokio::test]
async fn two_groups_each_receive_every_message() {
    let pool = &shared().pool();
    let sent = produce("exactly-test-groups", &numbered("groups", 20, 7)).await;
    for group in ["exactly-test-group-1", "exactly-test-group-2"] {
        let prefix = format!("kafka:{group}:exactly-test-groups:");
        wait_until(WAIT, group, || async { count(pool, &prefix, "SUCCESS").await >= 20 }).await;
        let ids: Vec<String> = workflows(pool, &prefix).await.into_iter().map(|(id, _)| id).collect();
        let mut expected: Vec<String> = sent.iter().map(|(p, o)| format!("{prefix}{p}:{o}")).collect();
        expected.sort();
        assert_eq!(ids, expected, "{group}");
    }
    assert_eq!(seen("group_one").len(), 20);
    assert_eq!(seen("group_two").len(), 20);
}

/// Runs a little while, recording its start and end, so that overlaps would show.
async fn ordered_body(consumer: &'static str, topic: &str, partition: i32, message: &KafkaMessage) -> exactly::Result<u64> {
    saw(consumer, topic, partition, message, true);
    tokio::time::sleep(Duration::from_millis(5 + (message.offset() as u64 * 7) % 25)).await;
    saw(consumer, topic, partition, message, false);
    n(message)
}

#[kafka_consumer("exactly-test-by-partition", ordering = "partition", batch_size = 50)]
#[workflow]
async fn by_partition(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    ordered_body("by_partition", &topic, partition, &message).await
}

#[kafka_consumer("exactly-test-by-key", ordering = "key")]
#[workflow]
async fn by_key(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    ordered_body("by_key", &topic, partition, &message).await
}

/// Checks that, per `group_of` value, workflows ran one at a time in offset order;
/// returns the largest number that ran at once overall.
fn assert_serial_per(consumer: &str, group_of: impl Fn(&Seen) -> String) -> usize {
    let events: Vec<Seen> = SEEN.lock().unwrap().iter().filter(|s| s.consumer == consumer).cloned().collect();
    let mut per: BTreeMap<String, Vec<&Seen>> = BTreeMap::new();
    for event in &events {
        per.entry(group_of(event)).or_default().push(event);
    }
    for (group, events) in per {
        let mut last_offset = -1;
        for pair in events.chunks(2) {
            let [start, end] = pair else { panic!("{consumer} {group}: a workflow did not end") };
            assert!(start.start && !end.start, "{consumer} {group}: two workflows overlapped: {events:#?}");
            assert_eq!(start.message.offset(), end.message.offset(), "{consumer} {group}: overlap");
            assert!(start.message.offset() > last_offset, "{consumer} {group}: out of offset order");
            last_offset = start.message.offset();
        }
    }
    let (mut running, mut most) = (0usize, 0usize);
    for event in &events {
        if event.start {
            running += 1;
            most = most.max(running);
        } else {
            running -= 1;
        }
    }
    most
}

#[tokio::test]
async fn partition_ordering_runs_one_workflow_at_a_time_per_partition_in_offset_order() {
    let sent = produce("exactly-test-by-partition", &numbered("by-partition", 45, 9)).await;
    assert!(sent.iter().any(|(p, _)| *p == 2), "the keys spread over the partitions");
    let pool = &shared().pool();
    wait_until(WAIT, "45 ordered workflows", || async {
        count(pool, "kafka:kafka::by_partition:", "SUCCESS").await >= 45
    })
    .await;
    let most = assert_serial_per("by_partition", |s| s.partition.to_string());
    assert!(most >= 2, "partitions run side by side (at most {most} ran at once)");
}

#[tokio::test]
async fn key_ordering_runs_one_workflow_at_a_time_per_key_in_offset_order() {
    produce("exactly-test-by-key", &numbered("by-key", 30, 3)).await;
    let pool = &shared().pool();
    wait_until(WAIT, "30 key-ordered workflows", || async { count(pool, "kafka:kafka::by_key:", "SUCCESS").await >= 30 })
        .await;
    let most = assert_serial_per("by_key", |s| s.message.key_str().unwrap().to_owned());
    assert!(most >= 2, "keys of one partition run side by side (at most {most} ran at once)");
}

exactly::queue!(static LIMITED = "exactly-test-limited", concurrency = 2);

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_RUNNING: AtomicUsize = AtomicUsize::new(0);

#[kafka_consumer("exactly-test-queue", queue = "exactly-test-limited", batch_size = 5)]
#[workflow]
async fn on_queue(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_RUNNING.fetch_max(now, Ordering::SeqCst);
    saw("on_queue", &topic, partition, &message, true);
    tokio::time::sleep(Duration::from_millis(60)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    n(&message)
}

#[tokio::test]
async fn a_consumer_on_a_queue_keeps_to_its_concurrency_limit() {
    let pool = &shared().pool();
    let prefix = "kafka:kafka::on_queue:exactly-test-queue:";
    produce_and_wait("exactly-test-queue", "queue", 12, prefix).await;
    assert_eq!(MOST_RUNNING.load(Ordering::SeqCst), 2, "the queue's concurrency is 2");
    let queues: Vec<Option<String>> =
        sqlx::query_scalar("SELECT queue_name FROM exactly.workflow_status WHERE starts_with(workflow_id, $1)")
            .bind(prefix)
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(queues.iter().all(|q| q.as_deref() == Some("exactly-test-limited")), "{queues:?}");
}

#[kafka_consumer("exactly-test-send-in")]
#[workflow]
async fn send_in(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<i64> {
    let n = n(&message)?;
    let _ = (topic, partition);
    let delivery = exactly::kafka::send("exactly-test-send-out", &format!("reply-{n}"), &serde_json::json!({ "n": n })).await?;
    Ok(delivery.offset)
}

#[kafka_consumer("exactly-test-send-out")]
#[workflow]
async fn send_out(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    saw("send_out", &topic, partition, &message, true);
    n(&message)
}

#[tokio::test]
async fn send_is_a_durable_step_whose_message_names_the_workflow_and_step() {
    let pool = &shared().pool();
    let sent = produce("exactly-test-send-in", &numbered("send", 3, 3)).await;
    wait_until(WAIT, "3 replies", || async { count(pool, "kafka:kafka::send_out:", "SUCCESS").await >= 3 }).await;
    let replies = seen("send_out");
    assert_eq!(replies.len(), 3, "one message per sending workflow");
    for (i, (partition, offset)) in sent.iter().enumerate() {
        let sender = format!("kafka:kafka::send_in:exactly-test-send-in:{partition}:{offset}");
        let reply = replies.iter().find(|r| r.message.key_str() == Some(&format!("reply-{i}"))).expect("the reply");
        assert_eq!(reply.message.header("exactly-workflow-id"), Some(sender.as_bytes()));
        assert_eq!(reply.message.header("exactly-step-id"), Some(&b"0"[..]));
        let (name, output): (String, serde_json::Value) =
            sqlx::query_as("SELECT name, output FROM exactly.operation_outputs WHERE workflow_id = $1 AND step_id = 0")
                .bind(&sender)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(name, "exactly::kafka::send");
        assert_eq!(output["topic"], "exactly-test-send-out");
        assert_eq!(output["offset"], reply.message.offset(), "the recorded delivery is where the reply is");
    }
}

fn errors_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("fetch.wait.max.ms", "50");
    config
}

#[kafka_consumer("exactly-test-errors", config = errors_config)]
#[workflow]
async fn errors(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<String> {
    let _ = (topic, partition);
    let text = message.text()?;
    if text == "fail" {
        return Err(exactly::Error::msg("this message always fails"));
    }
    Ok(text.to_owned())
}

#[tokio::test]
async fn failures_and_oversized_messages_are_recorded_and_the_consumer_goes_on() {
    let pool = &shared().pool();
    let big = vec![b'x'; 2000];
    let messages = vec![(None, b"first".to_vec()), (None, b"fail".to_vec()), (Some("big".into()), big), (None, b"last".to_vec())];
    let sent = produce("exactly-test-errors", &messages).await;
    let id = |i: usize| format!("kafka:kafka::errors:exactly-test-errors:0:{}", sent[i].1);
    wait_until(WAIT, "the last message's workflow", || async {
        count(pool, "kafka:kafka::errors:", "SUCCESS").await >= 2 && count(pool, "kafka:kafka::errors:", "ERROR").await >= 2
    })
    .await;
    let row = |i: usize| {
        let id = id(i);
        async move {
            let row: (String, String, Option<serde_json::Value>, serde_json::Value) = sqlx::query_as(
                "SELECT name, status, error, inputs FROM exactly.workflow_status WHERE workflow_id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
            row
        }
    };
    let (name, status, error, inputs) = row(1).await;
    assert_eq!((name.as_str(), status.as_str()), ("kafka::errors", "ERROR"));
    assert_eq!(error.unwrap()["message"], "this message always fails");
    assert_eq!(inputs[2]["payload"], "fail", "the input is kept for inspection");
    let (name, status, error, inputs) = row(2).await;
    assert_eq!((name.as_str(), status.as_str()), ("exactly::kafka::rejected", "ERROR"));
    assert!(error.unwrap()["message"].as_str().unwrap().contains("2003 bytes"), "the reason names the size");
    assert_eq!(inputs[0]["topic"], "exactly-test-errors");
    assert_eq!(inputs[0]["offset"], sent[2].1);
    assert_eq!(inputs[0]["workflow"], "kafka::errors");
    assert_eq!(inputs[0]["payload_bytes"], 2000);
    assert_eq!(row(3).await.1, "SUCCESS", "the consumer went on behind them");
}

#[workflow]
async fn programmatic(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    saw("programmatic", &topic, partition, &message, true);
    n(&message)
}

#[tokio::test]
async fn a_consumer_registered_at_run_time_consumes_its_topic() {
    let pool = &shared().pool();
    let topic = kafka_common::unique("exactly-test-runtime");
    let group = kafka_common::unique("exactly-test-runtime-group");
    kafka_common::create_topics(&[(&topic, 2)]).await;
    let sent = produce(&topic, &numbered("runtime", 12, 4)).await;
    register_kafka_consumer(programmatic, [topic.as_str()], KafkaConsumerOptions::new().group(&group).batch_size(5))
        .await
        .unwrap();
    let prefix = format!("kafka:{group}:{topic}:");
    wait_until(WAIT, "12 workflows", || async { count(pool, &prefix, "SUCCESS").await >= 12 }).await;
    let ids: Vec<String> = workflows(pool, &prefix).await.into_iter().map(|(id, _)| id).collect();
    let mut expected: Vec<String> = sent.iter().map(|(p, o)| format!("{prefix}{p}:{o}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn registration_errors_name_the_consumer_and_the_other_side() {
    shared();
    let line = line!() + 1;
    let err = register_kafka_consumer(programmatic, "exactly-test-literal", KafkaConsumerOptions::new().group("kafka::literal"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("share group `kafka::literal`") && err.contains("both read topic `exactly-test-literal`"), "{err}");
    assert!(err.contains("#[kafka_consumer] of workflow `kafka::literal` at tests/kafka.rs:"), "{err}");
    assert!(err.contains(&format!("register_kafka_consumer of workflow `kafka::programmatic` at tests/kafka.rs:{line}")), "{err}");

    let bad = KafkaConsumerOptions::new().group(kafka_common::unique("g")).config(|| {
        let mut config = ClientConfig::new();
        config.set("no.such.property", "1");
        config
    });
    let err = register_kafka_consumer(programmatic, kafka_common::unique("t"), bad).await.unwrap_err().to_string();
    assert!(err.contains("`no.such.property`") && err.contains("the `config` of the register_kafka_consumer"), "{err}");

    let err = register_kafka_consumer(programmatic, "bad topic", KafkaConsumerOptions::new().batch_size(0))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`bad topic` is not a valid Kafka topic name") && err.contains("batch_size is 0"), "{err}");

    let err = register_kafka_consumer(programmatic, kafka_common::unique("t"), KafkaConsumerOptions::new().queue("nope"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("queue `nope`, which is not declared (declared: exactly-test-limited)"), "{err}");
}

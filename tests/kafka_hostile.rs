//! Kafka messages and events that must not stop a partition, against the real
//! broker: a header name that is not UTF-8, keys PostgreSQL would refuse in an
//! index (4 KiB of random bytes, a NUL byte) on a consumer ordered by key, a row the
//! database refuses for its data in the middle of a batch, every compression codec,
//! and a consumer fenced by a second member with its `group.instance.id` (a fatal
//! error in librdkafka: the receiver must create its consumer again). Each odd
//! message is followed by normal ones, and every message must become exactly one
//! workflow.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::time::{Duration, Instant};

use exactly::kafka::rdkafka::bindings as rd;
use exactly::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use exactly::kafka::rdkafka::message::OwnedHeaders;
use exactly::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use exactly::kafka::{ClientConfig, KafkaMessage};
use exactly::{ReceiverState, kafka_consumer, workflow};
use kafka_common::{count, numbered, produce, wait_until, workflows};

const WAIT: Duration = Duration::from_secs(60);

const TOPICS: &[(&str, i32)] = &[
    ("exactly-test-hostile-headers", 1),
    ("exactly-test-hostile-keys", 1),
    ("exactly-test-hostile-refused", 1),
    ("exactly-test-hostile-codecs", 1),
    ("exactly-test-hostile-fenced", 2),
];
const GROUPS: &[&str] = &["hostile::headers", "hostile::keys", "hostile::refused", "hostile::codecs", "hostile::fenced"];

fn shared() -> &'static common::Shared {
    kafka_common::shared("exactly_test_kafka_hostile", TOPICS, GROUPS, |builder| builder)
}

fn n(message: &KafkaMessage) -> exactly::Result<u64> {
    let value: serde_json::Value = message.json()?;
    value["n"].as_u64().ok_or_else(|| exactly::Error::msg("no n"))
}

async fn producer(codec: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_common::bootstrap())
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .create()
        .expect("test producer")
}

async fn send(producer: &FutureProducer, record: FutureRecord<'_, [u8], [u8]>) {
    producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
}

/// Ten normal messages after an odd one.
async fn ten_more(topic: &str, tag: &str) {
    produce(topic, &numbered(tag, 10, 3)).await;
}

#[kafka_consumer("exactly-test-hostile-headers", group = "hostile::headers")]
#[workflow]
async fn headers(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    n(&message)
}

#[tokio::test]
async fn a_header_name_that_is_not_utf8_is_read_and_kept_and_the_partition_goes_on() {
    let pool = &shared().pool();
    let producer = producer("none").await;
    let headers = OwnedHeaders::new();
    // rdkafka's producer API takes header names as `&str`; librdkafka takes bytes.
    // The owned headers are librdkafka's own list (rdkafka borrows it the same way).
    let native = headers.as_borrowed() as *const _ as *mut rd::rd_kafka_headers_t;
    let (name, value) = ([0xff_u8, 0xfe, b'x'], b"v");
    // SAFETY: a live headers list, a name and a value with their lengths.
    let added = unsafe { rd::rd_kafka_header_add(native, name.as_ptr().cast(), 3, value.as_ptr().cast(), 1) };
    assert_eq!(added, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    let payload = br#"{"n":100}"#;
    send(&producer, FutureRecord::to("exactly-test-hostile-headers").payload(&payload[..]).headers(headers)).await;
    ten_more("exactly-test-hostile-headers", "after-header").await;

    let prefix = "kafka:hostile::headers:exactly-test-hostile-headers:";
    wait_until(WAIT, "11 header workflows", || async { count(pool, prefix, "SUCCESS").await >= 11 }).await;
    assert_eq!(workflows(pool, prefix).await.len(), 11, "one workflow per message");
    let inputs: serde_json::Value =
        sqlx::query_scalar("SELECT inputs FROM exactly.workflow_status WHERE workflow_id = $1 || '0:0'")
            .bind(prefix)
            .fetch_one(pool)
            .await
            .unwrap();
    let header = &inputs[2]["headers"][0];
    assert_eq!(header["key"], "\u{fffd}\u{fffd}x", "the name as text, invalid bytes replaced");
    assert_eq!(header["raw_key"], serde_json::json!({"base64": "//54"}), "and its exact bytes");
    assert_eq!(header["value"], "v");
}

#[kafka_consumer("exactly-test-hostile-keys", group = "hostile::keys", ordering = "key")]
#[workflow]
async fn keys(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    Ok(message.key().map_or(0, <[u8]>::len) as u64)
}

#[tokio::test]
async fn keys_postgres_would_refuse_do_not_stop_a_consumer_ordered_by_key() {
    let pool = &shared().pool();
    let producer = producer("none").await;
    // 4 KiB that is not UTF-8 (hex-encoded it would be 8 KiB, over an index entry's limit).
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
    for key in [&random[..], b"a\0b", &random[..]] {
        send(&producer, FutureRecord::to("exactly-test-hostile-keys").key(key).payload(&b"odd"[..])).await;
    }
    ten_more("exactly-test-hostile-keys", "after-keys").await;

    let prefix = "kafka:hostile::keys:exactly-test-hostile-keys:";
    wait_until(WAIT, "13 key workflows", || async { count(pool, prefix, "SUCCESS").await >= 13 }).await;
    assert_eq!(workflows(pool, prefix).await.len(), 13);
    let outputs: Vec<(i64, String)> = sqlx::query_as(
        "SELECT (output::text)::int8, partition_key FROM exactly.workflow_status WHERE starts_with(workflow_id, $1)
         ORDER BY seq LIMIT 3",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(outputs.iter().map(|(len, _)| *len).collect::<Vec<_>>(), [4096, 3, 4096], "each workflow got its whole key");
    assert!(outputs.iter().all(|(_, key)| key.contains(":key:sha256:")), "hashed partition keys: {outputs:?}");
    assert_eq!(outputs[0].1, outputs[2].1, "one key, one partition key: still ordered together");
}

#[kafka_consumer("exactly-test-hostile-refused", group = "hostile::refused", batch_size = 50)]
#[workflow]
async fn refused(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    n(&message)
}

#[tokio::test]
async fn a_row_the_database_refuses_becomes_a_rejected_row_and_the_rest_of_its_batch_goes_through() {
    let pool = &shared().pool();
    // A rule of the database that refuses one message's row for its data (SQLSTATE 23514).
    let added = sqlx::raw_sql(
        "ALTER TABLE exactly.workflow_status ADD CONSTRAINT refuse_marked_rows
             CHECK (inputs IS NULL OR position('REFUSE-ME' in inputs::text) = 0)",
    )
    .execute(pool)
    .await;
    assert!(added.is_ok() || added.unwrap_err().to_string().contains("already exists"));
    let mut messages = numbered("before", 5, 2);
    messages.push((None, br#"{"n":5,"tag":"REFUSE-ME"}"#.to_vec()));
    messages.extend(numbered("after", 5, 2));
    let sent = produce("exactly-test-hostile-refused", &messages).await;

    let prefix = "kafka:hostile::refused:exactly-test-hostile-refused:";
    wait_until(WAIT, "10 workflows and a rejected one", || async {
        count(pool, prefix, "SUCCESS").await == 10 && count(pool, prefix, "ERROR").await == 1
    })
    .await;
    let (name, error, inputs): (String, serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT name, error, inputs FROM exactly.workflow_status WHERE workflow_id = $1")
            .bind(format!("{prefix}0:{}", sent[5].1))
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(name, "exactly::kafka::rejected", "under the message's own ID");
    let error = error.to_string();
    assert!(error.contains("refused") && error.contains("refuse_marked_rows"), "{error}");
    assert_eq!(inputs[0]["offset"], sent[5].1, "the coordinates are kept: {inputs}");
    assert_eq!(inputs[0]["topic"], "exactly-test-hostile-refused");
}

#[kafka_consumer("exactly-test-hostile-codecs", group = "hostile::codecs")]
#[workflow]
async fn codecs(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    n(&message)
}

#[tokio::test]
async fn messages_in_every_compression_codec_each_become_one_workflow() {
    let pool = &shared().pool();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (i, codec) in codecs.iter().enumerate() {
        let producer = producer(codec).await;
        for j in 0..20 {
            let payload = format!(r#"{{"n":{},"codec":"{codec}","pad":"{}"}}"#, i * 100 + j, "x".repeat(200));
            let record = FutureRecord::to("exactly-test-hostile-codecs").payload(payload.as_bytes());
            send(&producer, record).await;
        }
    }
    let prefix = "kafka:hostile::codecs:exactly-test-hostile-codecs:";
    wait_until(WAIT, "100 codec workflows", || async { count(pool, prefix, "SUCCESS").await >= 100 }).await;
    let outputs: Vec<i64> = sqlx::query_scalar(
        "SELECT (output::text)::int8 FROM exactly.workflow_status WHERE starts_with(workflow_id, $1) ORDER BY 1",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .unwrap();
    let expected: Vec<i64> = (0..5).flat_map(|i| (0..20).map(move |j| i * 100 + j)).collect();
    assert_eq!(outputs, expected, "every message of every codec, once");
}

fn fenced_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("group.instance.id", "exactly-test-fenced-member");
    config
}

#[kafka_consumer("exactly-test-hostile-fenced", group = "hostile::fenced", config = fenced_config)]
#[workflow]
async fn fenced(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    n(&message)
}

#[tokio::test]
async fn a_consumer_fenced_by_its_static_member_id_is_created_again_and_loses_nothing() {
    let pool = &shared().pool();
    let prefix = "kafka:hostile::fenced:exactly-test-hostile-fenced:";
    produce("exactly-test-hostile-fenced", &numbered("before", 30, 5)).await;
    wait_until(WAIT, "30 workflows before the fence", || async { count(pool, prefix, "SUCCESS").await >= 30 }).await;

    // A second member with the same `group.instance.id` takes the member's place:
    // the broker fences the receiver's consumer, which librdkafka reports as fatal.
    let intruder: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_common::bootstrap())
        .set("group.id", "hostile::fenced")
        .set("group.instance.id", "exactly-test-fenced-member")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    intruder.subscribe(&["exactly-test-hostile-fenced"]).unwrap();
    let receiver = || {
        let health = shared().runtime.health();
        health.receivers.into_iter().find(|r| r.name.contains("(group hostile::fenced)")).expect("the receiver's health")
    };
    let deadline = Instant::now() + WAIT;
    while !receiver().last_error.is_some_and(|e| e.contains("fatal")) {
        assert!(Instant::now() < deadline, "the receiver never saw the fence: {:?}", receiver());
        // Its messages are not committed (no auto-commit): the receiver reads them again.
        let _ = intruder.poll(Duration::from_millis(100));
    }
    let reason = receiver().last_error.unwrap();
    assert!(reason.to_lowercase().contains("fenced"), "{reason}");
    drop(intruder);

    produce("exactly-test-hostile-fenced", &numbered("after", 30, 5)).await;
    wait_until(WAIT, "60 workflows after the rebuild", || async { count(pool, prefix, "SUCCESS").await >= 60 }).await;
    assert_eq!(workflows(pool, prefix).await.len(), 60, "every message before and after, once");
    assert_eq!(receiver().state, ReceiverState::Consuming, "{:?}", receiver());
    assert!(shared().runtime.health().is_healthy());
}

//! Shared set-up for the Kafka tests: the broker started by `dev/services up`,
//! topics (re)created with the admin client, a producer that sends many messages
//! before awaiting them, and a runtime with Kafka consumers shared by the tests of
//! one binary. Test binaries declare `mod common; mod kafka_common;`.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use exactly::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use exactly::kafka::rdkafka::client::DefaultClientContext;
use exactly::kafka::rdkafka::error::RDKafkaErrorCode;
use exactly::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use exactly::kafka::rdkafka::ClientConfig;
use exactly::kafka::KafkaSettings;

/// The broker: `KAFKA_BOOTSTRAP_SERVERS` (set by `dev/services env`) or the local one.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Runtime settings for the tests: the local broker, quick metadata refreshes, and
/// the shortest session the broker allows, so that the members a killed test process
/// left in its groups are dropped within seconds.
pub fn settings() -> KafkaSettings {
    KafkaSettings::new()
        .bootstrap_servers(bootstrap())
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
}

/// A name unique to this run, for topics and groups of tests that can use one.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

/// Creates topics with these partition counts, waiting out a deletion in progress.
pub async fn create_topics(topics: &[(&str, i32)]) {
    let admin = admin();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<(String, i32)> = topics.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    while !pending.is_empty() {
        let new: Vec<NewTopic> =
            pending.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
        let results = admin.create_topics(&new, &options()).await.expect("create topics");
        let mut retry = Vec::new();
        for (result, topic) in results.into_iter().zip(&pending) {
            match result {
                Ok(_) => {}
                // A topic being deleted still exists for a moment.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if Instant::now() < deadline => retry.push(topic.clone()),
                Err((name, e)) => panic!("cannot create topic {name}: {e}"),
            }
        }
        pending = retry;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Deletes the consumer groups and topics left by an earlier run, then creates the
/// topics afresh: a group's committed offsets would otherwise skip the new messages.
/// A group still has members for a few seconds after its process died (until their
/// session times out); its deletion is retried meanwhile.
pub async fn recreate(topics: &[(&str, i32)], groups: &[&str]) {
    let admin = admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending: Vec<&str> = groups.to_vec();
    while !pending.is_empty() {
        let results = admin.delete_groups(&pending, &options()).await.expect("delete groups");
        let mut retry = Vec::new();
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((group, e)) if Instant::now() < deadline => {
                    let _ = e;
                    retry.push(*pending.iter().find(|g| **g == group).unwrap());
                }
                Err((group, e)) => panic!("cannot delete consumer group {group}: {e}"),
            }
        }
        pending = retry;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let names: Vec<&str> = topics.iter().map(|(t, _)| *t).collect();
    let _ = admin.delete_topics(&names, &options()).await;
    create_topics(topics).await;
}

/// Sends every message before awaiting any (one by one, each send waits for its own
/// request). Returns each message's (partition, offset), in order.
pub async fn produce(topic: &str, messages: &[(Option<String>, Vec<u8>)]) -> Vec<(i32, i64)> {
    static PRODUCER: OnceLock<FutureProducer> = OnceLock::new();
    let producer = PRODUCER.get_or_init(|| {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("test producer")
    });
    // `send_result` enqueues at once; awaiting `send` one by one would send one by one.
    let deliveries: Vec<_> = messages
        .iter()
        .map(|(key, payload)| {
            let mut record = FutureRecord::<str, [u8]>::to(topic).payload(payload.as_slice());
            if let Some(key) = key {
                record = record.key(key.as_str());
            }
            producer.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue for {topic}: {e}"))
        })
        .collect();
    let mut out = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        match delivery.await.expect("producer dropped") {
            Ok(d) => out.push((d.partition, d.offset)),
            Err((e, _)) => panic!("produce to {topic}: {e}"),
        }
    }
    out
}

/// `n` JSON messages `{"n": i, "tag": tag}` keyed `k{i % keys}`.
pub fn numbered(tag: &str, n: usize, keys: usize) -> Vec<(Option<String>, Vec<u8>)> {
    (0..n)
        .map(|i| (Some(format!("k{}", i % keys.max(1))), format!(r#"{{"n":{i},"tag":"{tag}"}}"#).into_bytes()))
        .collect()
}

#[allow(unused_imports)] // not every test binary waits this way
pub use crate::common::wait_until;

/// (workflow ID, status) of the workflows whose ID starts with `prefix`, by ID.
/// Retried for a while on error: a test may read while PostgreSQL restarts.
pub async fn workflows(pool: &sqlx::PgPool, prefix: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = sqlx::query_as(
            "SELECT workflow_id, status FROM exactly.workflow_status WHERE starts_with(workflow_id, $1) ORDER BY workflow_id",
        )
        .bind(prefix)
        .fetch_all(pool)
        .await;
        match rows {
            Ok(rows) => return rows,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reading workflows failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("reading workflows: {e}"),
        }
    }
}

/// How many workflows whose ID starts with `prefix` have ended with `status`.
pub async fn count(pool: &sqlx::PgPool, prefix: &str, status: &str) -> usize {
    workflows(pool, prefix).await.iter().filter(|(_, s)| s == status).count()
}

/// The offsets `group` committed on `topic`, summed over its `partitions`.
pub fn committed(group: &str, topic: &str, partitions: i32) -> i64 {
    use exactly::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use exactly::kafka::rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("group.id", group).create().unwrap();
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(topic, p);
    }
    let sum = {
        let committed = consumer.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
        committed.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum()
    }; // the list is dropped before the consumer (dropping them the other way round can hang)
    drop(consumer);
    sum
}

/// A runtime with Kafka consumers shared by the tests of one binary: its topics and
/// groups are made afresh before it launches.
pub fn shared(
    database: &'static str,
    topics: &'static [(&'static str, i32)],
    groups: &'static [&'static str],
    configure: fn(exactly::RuntimeBuilder) -> exactly::RuntimeBuilder,
) -> &'static crate::common::Shared {
    static SHARED: OnceLock<crate::common::Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        crate::common::launch_shared(database, move |_| recreate(topics, groups), move |b| configure(b.kafka(settings())))
    })
}

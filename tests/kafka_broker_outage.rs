//! A Kafka broker restart in the middle of consuming: librdkafka reconnects, the
//! receiver neither crashes nor wedges, and afterwards every message (before, during
//! and after the outage) has exactly one workflow, each step run once.
//!
//! The only test of its binary (cargo runs test binaries one after another),
//! because it restarts the broker every Kafka test uses, with
//! `dev/services restart kafka`.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use exactly::{KafkaMessage, kafka_consumer, step, workflow};
use kafka_common::{count, numbered, produce, wait_until};

const TOPIC: &str = "exactly-test-broker-outage";

static EXECUTIONS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

#[step]
async fn record(n: u64) -> exactly::Result<u64> {
    let key = exactly::workflow_id().unwrap();
    *EXECUTIONS.lock().unwrap().get_or_insert_with(HashMap::new).entry(key).or_default() += 1;
    Ok(n)
}

#[kafka_consumer("exactly-test-broker-outage", batch_size = 25)]
#[workflow]
async fn through_broker_outage(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    record(message.json::<serde_json::Value>()?["n"].as_u64().unwrap_or_default()).await
}

fn restart_kafka() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/services");
    let status = std::process::Command::new(script).args(["restart", "kafka"]).status().expect("run dev/services");
    assert!(status.success(), "`dev/services restart kafka` failed: this test needs the broker that dev/services started");
}

#[tokio::test]
async fn a_broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let shared = kafka_common::shared(
        "exactly_test_kafka_broker_outage",
        &[(TOPIC, 3)],
        &["kafka_broker_outage::through_broker_outage"],
        |b| b,
    );
    let pool = shared.pool();
    let prefix = "kafka:kafka_broker_outage::through_broker_outage:exactly-test-broker-outage:";
    let mut sent = produce(TOPIC, &numbered("before", 100, 10)).await;
    wait_until(Duration::from_secs(60), "100 workflows", || async { count(&pool, prefix, "SUCCESS").await >= 100 }).await;

    // The broker goes away while the receivers poll; meanwhile a producer queues more.
    let restart = tokio::task::spawn_blocking(restart_kafka);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = tokio::spawn(async { produce(TOPIC, &numbered("during", 50, 10)).await });
    restart.await.unwrap();
    sent.extend(during.await.unwrap());
    sent.extend(produce(TOPIC, &numbered("after", 50, 10)).await);

    wait_until(Duration::from_secs(90), "200 workflows", || async { count(&pool, prefix, "SUCCESS").await >= 200 }).await;
    let rows = kafka_common::workflows(&pool, prefix).await;
    let mut expected: Vec<String> = sent.iter().map(|(p, o)| format!("{prefix}{p}:{o}")).collect();
    expected.sort();
    assert_eq!(rows.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), expected, "one workflow per message");
    let executions = EXECUTIONS.lock().unwrap().clone().unwrap();
    assert!(expected.iter().all(|id| executions.get(id) == Some(&1)), "every step ran once");
}

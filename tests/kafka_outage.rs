//! A PostgreSQL restart in the middle of a Kafka stream: the receiver holds its
//! offsets and retries its batch insert until the database is back, workflows wait
//! on their checkpoints; afterwards every message has exactly one workflow, each
//! completed once, each step run once.
//!
//! The only test of its binary (cargo runs test binaries one after another),
//! because it restarts the server every test uses, with `dev/services restart postgres`.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use exactly::{KafkaMessage, kafka_consumer, step, workflow};
use kafka_common::{count, numbered, produce, wait_until};

const TOPIC: &str = "exactly-test-outage";

static EXECUTIONS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn executed(key: String) {
    *EXECUTIONS.lock().unwrap().get_or_insert_with(HashMap::new).entry(key).or_default() += 1;
}

#[step]
async fn stage(n: u64, name: &'static str) -> exactly::Result<u64> {
    executed(format!("{}/{name}", exactly::workflow_id().unwrap()));
    Ok(n)
}

#[kafka_consumer("exactly-test-outage", batch_size = 20)]
#[workflow]
async fn through_outage(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    let n = message.json::<serde_json::Value>()?["n"].as_u64().unwrap_or_default();
    let a = stage(n, "before").await?;
    tokio::time::sleep(Duration::from_millis(100 + (n % 10) * 30)).await;
    let b = stage(n, "after").await?;
    Ok(a + b)
}


#[tokio::test]
async fn a_database_restart_mid_stream_loses_and_duplicates_nothing() {
    let shared = kafka_common::shared("exactly_test_kafka_outage", &[(TOPIC, 3)], &["kafka_outage::through_outage"], |b| b);
    const N: usize = 300;
    let prefix = "kafka:kafka_outage::through_outage:exactly-test-outage:";
    let messages = numbered("outage", N, 30);
    // A stream: a sixth of the messages every 300 ms, the database restarted meanwhile.
    let producer = tokio::spawn(async move {
        let mut sent = Vec::new();
        for chunk in messages.chunks(N / 6) {
            sent.extend(produce(TOPIC, chunk).await);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    tokio::task::spawn_blocking(|| common::restart_service("postgres")).await.unwrap();
    let sent = producer.await.unwrap();

    let pool = shared.pool();
    wait_until(Duration::from_secs(90), "every workflow", || async { count(&pool, prefix, "SUCCESS").await >= N }).await;
    let rows = kafka_common::workflows(&pool, prefix).await;
    let mut expected: Vec<String> = sent.iter().map(|(p, o)| format!("{prefix}{p}:{o}")).collect();
    expected.sort();
    assert_eq!(rows.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), expected, "one workflow per message");
    let executions = EXECUTIONS.lock().unwrap().clone().unwrap();
    for id in &expected {
        for stage in ["before", "after"] {
            assert_eq!(executions.get(&format!("{id}/{stage}")), Some(&1), "{id}/{stage}");
        }
    }
    let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE starts_with(workflow_id, $1)")
        .bind(prefix)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(checkpoints, 2 * N as i64);
}

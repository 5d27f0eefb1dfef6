//! Graceful shutdown while the Kafka broker is down: a worker process (this test
//! binary run again in a child role) gets SIGTERM with the broker stopped. Its
//! receiver cannot commit or leave the group, yet the process exits, cleanly, within
//! its shutdown timeout. Once the broker is back, a new worker reads the messages
//! whose offsets were never committed again, and deduplicates them: one workflow
//! per message, each step run once.
//!
//! The only test of its binary (cargo runs test binaries one after another),
//! because it stops the broker every Kafka test uses, with `dev/services`.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::process::Child;
use std::time::{Duration, Instant};

use exactly::kafka::{ClientConfig, KafkaConsumerOptions};
use exactly::{KafkaMessage, Runtime, register_kafka_consumer, step, workflow};
use kafka_common::{count, numbered, produce, wait_until};

const WAIT: Duration = Duration::from_secs(90);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("children get {name}"))
}

fn pool() -> &'static sqlx::PgPool {
    common::child_pool()
}

#[step]
async fn note(n: u64) -> exactly::Result<u64> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "note").await;
    Ok(n)
}

#[workflow]
async fn noted(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    note(message.json::<serde_json::Value>()?["n"].as_u64().unwrap_or_default()).await
}

async fn child_main() {
    // No timer commits while the broker is up: the offsets are still uncommitted when
    // the broker goes away, so the shutdown's commit has something to wait for.
    let options = KafkaConsumerOptions::new().group(env("GROUP")).config(|| {
        let mut config = ClientConfig::new();
        config.set("auto.commit.interval.ms", "600000");
        config
    });
    register_kafka_consumer(noted, env("TOPIC"), options).await.unwrap();
    let runtime = Runtime::builder()
        .executor_id("shutdown-worker")
        .kafka(kafka_common::settings())
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .launch()
        .await
        .expect("child launch");
    println!("READY");
    runtime.until_shutdown_signal().await.unwrap();
    println!("STOPPED");
}

fn services(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/services");
    let status = std::process::Command::new(script).args([command, "kafka"]).status().expect("run dev/services");
    assert!(status.success(), "`dev/services {command} kafka` failed: this test needs the broker dev/services runs");
}

/// Brings the broker back however the test ends.
struct BrokerDown;

impl BrokerDown {
    fn stop() -> BrokerDown {
        services("down");
        BrokerDown
    }
}

impl Drop for BrokerDown {
    fn drop(&mut self) {
        services("up");
    }
}

fn worker(url: &str, topic: &str, group: &str) -> Child {
    let envs = [("EXACTLY_DATABASE_URL", url), ("TOPIC", topic), ("GROUP", group)];
    let mut child = common::spawn_child("shutdown_with_the_broker_down_is_bounded_and_loses_nothing", "worker", &envs);
    common::wait_for_marker(&mut child, "READY", WAIT);
    child
}

#[tokio::test]
async fn shutdown_with_the_broker_down_is_bounded_and_loses_nothing() {
    if common::child_role().is_some() {
        return child_main().await;
    }
    let url = common::fresh_database("exactly_test_kafka_shutdown").await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    common::create_side_effects(&db).await;
    let topic = kafka_common::unique("exactly-test-shutdown");
    let group = kafka_common::unique("exactly-test-shutdown-group");
    kafka_common::create_topics(&[(&topic, 2)]).await;
    let prefix = format!("kafka:{group}:{topic}:");

    let mut first = worker(&url, &topic, &group);
    let mut sent = produce(&topic, &numbered("before", 30, 5)).await;
    wait_until(WAIT, "30 workflows", || async { count(&db, &prefix, "SUCCESS").await == 30 }).await;

    let broker = BrokerDown::stop();
    let asked = Instant::now();
    let status = std::process::Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = common::wait_exit(&mut first, WAIT);
    let took = asked.elapsed();
    assert!(exit.success(), "the worker exits cleanly with the broker down: {exit:?}");
    // The shutdown timeout, plus a second for the workflows' tasks and the pool, plus slack.
    assert!(took < SHUTDOWN_TIMEOUT + Duration::from_secs(4), "shutdown took {took:?} with the broker down");
    drop(broker);

    let second = worker(&url, &topic, &group);
    sent.extend(produce(&topic, &numbered("after", 10, 5)).await);
    wait_until(WAIT, "40 workflows", || async { count(&db, &prefix, "SUCCESS").await == 40 }).await;
    let rows = kafka_common::workflows(&db, &prefix).await;
    let mut expected: Vec<String> = sent.iter().map(|(p, o)| format!("{prefix}{p}:{o}")).collect();
    expected.sort();
    assert_eq!(rows.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), expected, "one workflow per message");
    let effects: Vec<i32> = sqlx::query_scalar("SELECT n FROM public.side_effects").fetch_all(&db).await.unwrap();
    assert_eq!(effects.len(), 40);
    assert!(effects.iter().all(|n| *n == 1), "a redelivered message ran its step again");
    let mut second = second;
    let status = std::process::Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(common::wait_exit(&mut second, WAIT).success());
}

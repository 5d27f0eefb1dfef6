//! A receiver that paused its assignment around a slow insert, and lost its
//! partitions in a rebalance meanwhile, consumes them again once they come back.
//!
//! librdkafka keeps a partition's pause across a revoke and a new assignment. A
//! receiver whose insert returns between the two resumes the assignment it has then,
//! which is empty; without more, the partitions assigned next stay paused for good:
//! nothing more is consumed from them, and no error says so. The interleaving is
//! forced here, not waited for by luck:
//!
//! 1. worker A (a child process running exactly's receiver) and member C (a plain
//!    rdkafka consumer in this process) share the topic's partitions;
//! 2. a table lock holds A's insert, so A pauses its assignment;
//! 3. C stops polling and member D joins: A is revoked, and the rebalance waits for
//!    C, which does not answer, so A stays without any assignment;
//! 4. the lock goes: A's insert returns while A has no assignment;
//! 5. C polls again, the rebalance completes; then C and D leave, and A is given
//!    every partition;
//! 6. every message produced afterwards must become a workflow.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use exactly::kafka::ClientConfig;
use exactly::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use exactly::{KafkaMessage, Runtime, step, workflow};
use kafka_common::{count, produce, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 4;
const TEST: &str = "partitions_paused_across_a_rebalance_are_consumed_again";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("children get {name}"))
}

#[step]
async fn record(n: u64) -> exactly::Result<u64> {
    Ok(n)
}

#[workflow]
async fn numbered(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    record(
        message.json::<serde_json::Value>()?["n"]
            .as_u64()
            .unwrap_or_default(),
    )
    .await
}

/// Worker A: exactly's receiver with its defaults, until SIGTERM.
async fn worker_main() {
    let options = exactly::kafka::KafkaConsumerOptions::new().group(env("GROUP"));
    exactly::register_kafka_consumer(numbered, env("TOPIC"), options)
        .await
        .unwrap();
    let runtime = Runtime::builder()
        .kafka(kafka_common::settings())
        .launch()
        .await
        .expect("worker launch");
    println!("READY");
    runtime.until_shutdown_signal().await.unwrap();
}

/// A plain group member on a thread of its own, whose polling the test turns off
/// and on. It commits and stores nothing: what it reads goes back to worker A.
struct Member {
    polling: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    assigned: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn join(group: &str, topic: &str) -> Member {
        let (polling, stop, assigned) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_common::bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("group member");
        consumer.subscribe(&[topic]).unwrap();
        let thread = {
            let (polling, stop, assigned) = (polling.clone(), stop.clone(), assigned.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if polling.load(Ordering::SeqCst) {
                        let _ = consumer.poll(Duration::from_millis(50));
                        assigned.store(
                            consumer.assignment().map_or(0, |a| a.count()),
                            Ordering::SeqCst,
                        );
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                // Leave while polling, so that the leave's own rebalance is served.
                consumer.unsubscribe();
                for _ in 0..20 {
                    let _ = consumer.poll(Duration::from_millis(50));
                }
            })
        };
        Member {
            polling,
            stop,
            assigned,
            thread: Some(thread),
        }
    }

    fn assigned(&self) -> usize {
        self.assigned.load(Ordering::SeqCst)
    }

    fn leave(mut self) {
        self.polling.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
    }
}

/// `n` messages `{"n": i}` numbered from `from`, over 16 keys (all partitions).
fn messages(from: usize, n: usize) -> Vec<(Option<String>, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            (
                Some(format!("key-{}", i % 16)),
                format!(r#"{{"n":{i}}}"#).into_bytes(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_paused_across_a_rebalance_are_consumed_again() {
    if common::child_role().is_some() {
        return worker_main().await;
    }
    let url = common::fresh_database("exactly_test_paused_rebalance").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let topic = kafka_common::unique("exactly-test-paused");
    let group = kafka_common::unique("exactly-test-paused-group");
    kafka_common::create_topics(&[(&topic, PARTITIONS)]).await;
    let prefix = format!("kafka:{group}:{topic}:");

    // 1. Worker A and member C share the partitions.
    let envs = [
        ("EXACTLY_DATABASE_URL", url.as_str()),
        ("TOPIC", topic.as_str()),
        ("GROUP", group.as_str()),
    ];
    let mut worker = common::KillOnDrop(common::spawn_child(TEST, "worker", &envs));
    common::wait_for_marker(&mut worker.0, "READY", WAIT);
    let c = Member::join(&group, &topic);
    wait_until(WAIT, "member C holds half the partitions", || async {
        c.assigned() == 2
    })
    .await;

    // 2. Hold A's inserts; messages arrive; A's insert waits past 500 ms and A pauses.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE exactly.workflow_status IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let first = produce(&topic, &messages(0, 40)).await;
    let partitions: std::collections::HashSet<i32> = first.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        partitions.len(),
        PARTITIONS as usize,
        "the keys must reach every partition"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 3. C stops answering; D joins. A learns of the rebalance at its next heartbeat
    //    (3 s), gives up its partitions and waits, with no assignment, for C.
    c.polling.store(false, Ordering::SeqCst);
    let d = Member::join(&group, &topic);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(d.assigned(), 0, "the rebalance must still wait for C");

    // 4. A's insert returns while A has no assignment.
    lock.commit().await.unwrap();
    wait_until(WAIT, "A recorded its held batch", || async {
        kafka_common::workflows(&pool, &prefix).await.len() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 5. C answers; the rebalance completes; C and D leave: A gets every partition.
    c.polling.store(true, Ordering::SeqCst);
    wait_until(WAIT, "the rebalance completed", || async {
        d.assigned() > 0
    })
    .await;
    c.leave();
    d.leave();

    // 6. Everything, before and after, becomes a workflow.
    produce(&topic, &messages(40, 40)).await;
    wait_until(WAIT, "every message has its SUCCESS workflow", || async {
        count(&pool, &prefix, "SUCCESS").await == 80
    })
    .await;
    assert_eq!(kafka_common::workflows(&pool, &prefix).await.len(), 80);

    let status = std::process::Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(common::wait_exit(&mut worker.0, WAIT).success());
}

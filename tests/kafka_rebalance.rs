//! A consumer group of worker processes (this test binary run again in a child role)
//! whose membership changes while messages flow: a second worker joins (a real
//! rebalance), a worker is killed with SIGKILL and restarted. The parent checks the
//! database and the group's committed offsets:
//!
//! - the revoking worker commits the offsets it stored, on revoke (not only at
//!   shutdown or on the automatic commit timer, which is off here; the receiver's
//!   revoke hook and librdkafka's own commit-before-revoke both do it);
//! - `ordering = "key"` holds across the rebalance and the kill: per key, one
//!   workflow at a time, in offset order;
//! - every message has exactly one workflow, and each completed once.
//!
//! And a worker with `max_running(4)` never runs more than 4 workflows at once,
//! whatever its batch size, and loses nothing for holding back.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::collections::{BTreeMap, HashSet};
use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exactly::kafka::{ClientConfig, KafkaConsumerOptions, Ordering};
use exactly::{KafkaMessage, Runtime, register_kafka_consumer, step, workflow};
use kafka_common::{count, produce, wait_until};

const WAIT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 4;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("children get {name}"))
}

fn pool() -> &'static sqlx::PgPool {
    common::child_pool()
}

fn micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// Works a while and records the run: which key, which message, when, where.
/// A run cut short by a kill records nothing; its rerun does.
#[step]
async fn handle(key: String, n: u64) -> exactly::Result<()> {
    let started = micros();
    tokio::time::sleep(Duration::from_millis(30)).await;
    sqlx::query("INSERT INTO public.runs (workflow_id, key, n, started_us, ended_us, pid) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(exactly::workflow_id().unwrap())
        .bind(key)
        .bind(n as i64)
        .bind(started)
        .bind(micros())
        .bind(std::process::id() as i32)
        .execute(pool())
        .await
        .map_err(exactly::Error::msg)?;
    Ok(())
}

#[workflow]
async fn keyed(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition);
    let key = message.key_str().unwrap_or_default().to_owned();
    let n = message.json::<serde_json::Value>()?["n"].as_u64().unwrap_or_default();
    handle(key, n).await
}

/// The child's part: one worker of the group, until SIGKILL or SIGTERM.
async fn child_main() {
    if common::child_role().as_deref() == Some("bounded") {
        return bounded_main().await;
    }
    let instance = env("INSTANCE");
    let options = KafkaConsumerOptions::new().group(env("GROUP")).ordering(Ordering::Key).batch_size(20).config(move || {
        let mut config = ClientConfig::new();
        // No timer commits: what gets committed is committed on revoke or at shutdown.
        // Static membership: a restarted worker takes its partitions back at once.
        config.set("auto.commit.interval.ms", "600000").set("group.instance.id", &instance);
        config
    });
    register_kafka_consumer(keyed, env("TOPIC"), options).await.unwrap();
    let runtime = Runtime::builder()
        .executor_id(env("INSTANCE"))
        .kafka(kafka_common::settings())
        .shutdown_timeout(Duration::from_secs(10))
        .launch()
        .await
        .expect("child launch");
    println!("READY");
    runtime.until_shutdown_signal().await.unwrap();
}

struct Group {
    url: String,
    pool: sqlx::PgPool,
    topic: String,
    group: String,
}

impl Group {
    async fn new(database: &str) -> Group {
        let url = common::fresh_database(database).await;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE public.runs (workflow_id TEXT NOT NULL, key TEXT NOT NULL, n BIGINT NOT NULL,
                                       started_us BIGINT NOT NULL, ended_us BIGINT NOT NULL, pid INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let topic = kafka_common::unique("exactly-test-rebalance");
        let group = kafka_common::unique("exactly-test-rebalance-group");
        kafka_common::create_topics(&[(&topic, PARTITIONS)]).await;
        Group { url, pool, topic, group }
    }

    fn worker(&self, test: &str, instance: &str) -> Child {
        let envs = [
            ("EXACTLY_DATABASE_URL", self.url.as_str()),
            ("TOPIC", self.topic.as_str()),
            ("GROUP", self.group.as_str()),
            ("INSTANCE", instance),
        ];
        let mut child = common::spawn_child(test, "worker", &envs);
        common::wait_for_marker(&mut child, "READY", WAIT);
        child
    }

    fn prefix(&self) -> String {
        format!("kafka:{}:{}:", self.group, self.topic)
    }

    async fn successes(&self) -> usize {
        count(&self.pool, &self.prefix(), "SUCCESS").await
    }

    /// The group's committed offsets, summed over the partitions.
    fn committed(&self) -> i64 {
        kafka_common::committed(&self.group, &self.topic, PARTITIONS)
    }
}

/// `n` messages `{"n": i}` over `keys` keys, numbered from `from`.
fn messages(from: usize, n: usize, keys: usize) -> Vec<(Option<String>, Vec<u8>)> {
    (from..from + n).map(|i| (Some(format!("key-{}", i % keys)), format!(r#"{{"n":{i}}}"#).into_bytes())).collect()
}

fn stop(mut child: Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(common::wait_exit(&mut child, WAIT).success(), "the worker shuts down cleanly on SIGTERM");
}

#[tokio::test]
async fn a_real_rebalance_commits_on_revoke_and_key_order_survives_it_and_a_kill() {
    let test = "a_real_rebalance_commits_on_revoke_and_key_order_survives_it_and_a_kill";
    if common::child_role().is_some() {
        return child_main().await;
    }
    let group = Group::new("exactly_test_kafka_rebalance").await;
    let mut sent = Vec::new();

    // One worker takes every partition and records 40 messages; nothing is committed.
    let a = group.worker(test, "worker-a");
    sent.extend(produce(&group.topic, &messages(0, 40, 8)).await);
    wait_until(WAIT, "40 workflows", || async { group.successes().await == 40 }).await;
    assert_eq!(group.committed(), 0, "the timer commit is off: nothing committed yet");

    // A second worker joins: the group rebalances, the first revokes its partitions and
    // commits what it stored on the way (it is still running, so this is the revoke).
    let b = group.worker(test, "worker-b");
    wait_until(WAIT, "the offsets committed on revoke", || async { group.committed() == 40 }).await;

    // Messages flow while the group is two workers; then one is killed mid-stream
    // and restarted under its static membership.
    sent.extend(produce(&group.topic, &messages(40, 120, 8)).await);
    wait_until(WAIT, "70 workflows", || async { group.successes().await >= 70 }).await;
    let mut a = a;
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let a = group.worker(test, "worker-a");
    wait_until(WAIT, "160 workflows", || async { group.successes().await == 160 }).await;
    stop(a);
    stop(b);

    // Exactly one workflow per message, each SUCCESS.
    let ids: Vec<(String, String)> = kafka_common::workflows(&group.pool, &group.prefix()).await;
    let expected: HashSet<String> = sent.iter().map(|(p, o)| format!("{}{p}:{o}", group.prefix())).collect();
    assert_eq!(ids.len(), sent.len(), "one workflow per message, no more");
    assert_eq!(ids.iter().map(|(id, _)| id.clone()).collect::<HashSet<_>>(), expected);
    assert!(ids.iter().all(|(_, status)| status == "SUCCESS"));
    assert_eq!(group.committed(), 160, "both workers committed everything at shutdown");

    // Per key: runs never overlap and go in message order (a rerun after the kill
    // may repeat a message, never go back to an earlier one).
    let runs: Vec<(String, i64, i64, i64, i32)> =
        sqlx::query_as("SELECT key, n, started_us, ended_us, pid FROM public.runs ORDER BY started_us")
            .fetch_all(&group.pool)
            .await
            .unwrap();
    let mut by_key: BTreeMap<&str, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for (key, n, started, ended, _) in &runs {
        by_key.entry(key).or_default().push((*n, *started, *ended));
    }
    assert_eq!(by_key.len(), 8);
    for (key, runs) in &by_key {
        for pair in runs.windows(2) {
            let ((n1, _, end1), (n2, start2, _)) = (pair[0], pair[1]);
            assert!(start2 >= end1, "{key}: message {n2} started before message {n1} ended");
            assert!(n2 >= n1, "{key}: message {n2} ran after message {n1}");
        }
        let distinct: HashSet<i64> = runs.iter().map(|r| r.0).collect();
        assert_eq!(distinct.len(), 20, "{key}: every message ran");
    }
    let pids: HashSet<i32> = runs.iter().map(|r| r.4).collect();
    assert!(pids.len() >= 2, "work was shared between the workers: {pids:?}");
}

const MAX_RUNNING: usize = 4;

/// A worker that may run at most `MAX_RUNNING` workflows at once, with a batch size
/// far above it.
async fn bounded_main() {
    let options = KafkaConsumerOptions::new().group(env("GROUP")).batch_size(100);
    register_kafka_consumer(keyed, env("TOPIC"), options).await.unwrap();
    let runtime = Runtime::builder()
        .executor_id("bounded")
        .max_running(MAX_RUNNING)
        .kafka(kafka_common::settings())
        .launch()
        .await
        .expect("child launch");
    println!("READY");
    runtime.until_shutdown_signal().await.unwrap();
}


#[tokio::test]
async fn max_running_holds_the_receiver_back_and_loses_nothing() {
    if common::child_role().is_some() {
        return child_main().await;
    }
    let group = Group::new("exactly_test_kafka_max_running").await;
    // Already in the topic before the worker starts: a poll could take them all.
    let sent = produce(&group.topic, &messages(0, 60, 60)).await;
    let envs = [
        ("EXACTLY_DATABASE_URL", group.url.as_str()),
        ("TOPIC", group.topic.as_str()),
        ("GROUP", group.group.as_str()),
    ];
    let mut worker = common::spawn_child("max_running_holds_the_receiver_back_and_loses_nothing", "bounded", &envs);
    common::wait_for_marker(&mut worker, "READY", WAIT);
    wait_until(WAIT, "60 workflows", || async { group.successes().await == 60 }).await;
    stop(worker);
    assert_eq!(kafka_common::workflows(&group.pool, &group.prefix()).await.len(), sent.len());
    let runs: Vec<(i64, i64)> =
        sqlx::query_as("SELECT started_us, ended_us FROM public.runs").fetch_all(&group.pool).await.unwrap();
    assert_eq!(runs.len(), 60, "every message ran once");
    let most = common::max_overlap(&runs);
    assert!(most <= MAX_RUNNING, "{most} workflows ran at once with max_running {MAX_RUNNING}");
    assert!(most >= 2, "the workflows never ran in parallel (max overlap {most})");
}

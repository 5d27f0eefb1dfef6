//! A worker process consuming Kafka is killed with SIGKILL and restarted (this test
//! binary run again in a child role, consuming a topic unique to the run). The
//! parent checks the database and the group's committed offsets: every message has
//! exactly one workflow, each completed once, and each checkpointed step ran once.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::Duration;

use exactly::kafka::{ClientConfig, KafkaConsumerOptions};
use exactly::{KafkaMessage, Runtime, register_kafka_consumer, step, workflow};
use kafka_common::{count, numbered, produce, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn pool() -> &'static sqlx::PgPool {
    common::child_pool()
}

#[step]
async fn reserve(n: u64) -> exactly::Result<u64> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "reserve").await;
    Ok(n)
}

#[step]
async fn charge(n: u64) -> exactly::Result<u64> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "charge").await;
    Ok(n * 100)
}

#[workflow]
async fn order_flow(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    let n = message.json::<serde_json::Value>()?["n"].as_u64().unwrap_or_default();
    let reserved = reserve(n).await?;
    // Between the steps for a while, so that a kill finds workflows half done.
    tokio::time::sleep(Duration::from_millis(50 + (n % 5) * 40)).await;
    charge(reserved).await
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("children get {name}"))
}

/// The child's part: register the consumer, launch (which recovers the executor's
/// PENDING workflows), then consume until killed or until SIGTERM.
async fn child_main() {
    let commit_ms = env("AUTO_COMMIT_MS");
    let options = KafkaConsumerOptions::new().group(env("GROUP")).batch_size(10).config(move || {
        let mut config = ClientConfig::new();
        // Static membership: the restarted worker takes over its partitions at once,
        // instead of waiting for the killed one's session to time out.
        config.set("group.instance.id", "worker").set("auto.commit.interval.ms", &commit_ms);
        config
    });
    register_kafka_consumer(order_flow, env("TOPIC"), options).await.unwrap();
    let runtime = Runtime::builder()
        .executor_id("kafka-worker")
        .kafka(kafka_common::settings())
        .shutdown_timeout(Duration::from_secs(10))
        // Held back, the receiver leaves messages unrecorded while workflows run, so
        // that a kill finds both (it ingests far faster than the workflows finish).
        .max_running(20)
        .launch()
        .await
        .expect("child launch");
    println!("READY");
    runtime.until_shutdown_signal().await.unwrap();
    println!("STOPPED");
}

struct Run {
    url: String,
    pool: sqlx::PgPool,
    topic: String,
    group: String,
    test: &'static str,
}

impl Run {
    async fn new(test: &'static str, database: &str, partitions: i32) -> Run {
        let url = common::fresh_database(database).await;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        common::create_side_effects(&pool).await;
        let topic = kafka_common::unique("exactly-test-crash");
        let group = kafka_common::unique("exactly-test-crash-group");
        kafka_common::create_topics(&[(&topic, partitions)]).await;
        Run { url, pool, topic, group, test }
    }

    fn worker(&self, auto_commit_ms: &str) -> Child {
        let envs = [
            ("EXACTLY_DATABASE_URL", self.url.as_str()),
            ("TOPIC", self.topic.as_str()),
            ("GROUP", self.group.as_str()),
            ("AUTO_COMMIT_MS", auto_commit_ms),
        ];
        let mut child = common::spawn_child(self.test, "worker", &envs);
        common::wait_for_marker(&mut child, "READY", WAIT);
        child
    }

    fn prefix(&self) -> String {
        format!("kafka:{}:{}:", self.group, self.topic)
    }

    /// The group's committed offsets, summed over the topic's partitions.
    fn committed(&self, partitions: i32) -> i64 {
        kafka_common::committed(&self.group, &self.topic, partitions)
    }

    /// Checks that the workflows of the run are exactly the produced messages, all
    /// SUCCESS with both steps recorded once.
    async fn assert_exactly_once(&self, sent: &[(i32, i64)]) {
        let rows: Vec<(String, String, i32)> = sqlx::query_as(
            "SELECT workflow_id, status, recovery_attempts FROM exactly.workflow_status ORDER BY workflow_id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let ids: HashSet<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
        let expected: HashSet<String> = sent.iter().map(|(p, o)| format!("{}{p}:{o}", self.prefix())).collect();
        assert_eq!(rows.len(), sent.len(), "one workflow per message, no more");
        assert_eq!(ids, expected.iter().map(String::as_str).collect(), "the workflows are the messages");
        assert!(rows.iter().all(|(_, status, _)| status == "SUCCESS"), "every workflow completed");
        let steps: Vec<(String, i64)> =
            sqlx::query_as("SELECT workflow_id, count(*) FROM exactly.operation_outputs GROUP BY workflow_id")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        assert_eq!(steps.len(), sent.len());
        assert!(steps.iter().all(|(_, n)| *n == 2), "each workflow recorded its two steps once");
    }

    async fn side_effects(&self) -> HashMap<(String, String), i32> {
        let rows: Vec<(String, String, i32)> =
            sqlx::query_as("SELECT workflow_id, step, n FROM public.side_effects").fetch_all(&self.pool).await.unwrap();
        rows.into_iter().map(|(id, step, n)| ((id, step), n)).collect()
    }
}

fn stop(mut child: Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = common::wait_exit(&mut child, WAIT);
    assert!(exit.success(), "the worker shuts down cleanly on SIGTERM: {exit:?}");
}

#[tokio::test]
async fn a_restart_with_uncommitted_offsets_duplicates_nothing_and_loses_nothing() {
    if common::child_role().is_some() {
        return child_main().await;
    }
    let run = Run::new("a_restart_with_uncommitted_offsets_duplicates_nothing_and_loses_nothing", "exactly_test_kafka_restart", 2).await;
    // No automatic commit while the first worker lives: all it consumed is uncommitted.
    let mut first = run.worker("600000");
    let mut sent = produce(&run.topic, &numbered("restart", 40, 8)).await;
    wait_until(WAIT, "40 workflows", || async { count(&run.pool, &run.prefix(), "SUCCESS").await == 40 }).await;
    assert_eq!(run.committed(2), 0, "nothing committed yet");
    first.kill().unwrap(); // SIGKILL: no commit on the way out
    first.wait().unwrap();

    let second = run.worker("200");
    sent.extend(produce(&run.topic, &numbered("restart-more", 20, 8)).await);
    wait_until(WAIT, "60 workflows", || async { count(&run.pool, &run.prefix(), "SUCCESS").await == 60 }).await;
    // The second worker read all 60 messages again: the 40 old ones found their rows.
    wait_until(WAIT, "offsets committed after the redelivered messages", || async { run.committed(2) == 60 }).await;
    run.assert_exactly_once(&sent).await;
    let effects = run.side_effects().await;
    assert_eq!(effects.len(), 120);
    assert!(effects.values().all(|n| *n == 1), "no workflow ran again: {effects:?}");
    stop(second);
    assert_eq!(run.committed(2), 60);
}

#[tokio::test]
async fn sigkill_mid_batch_and_mid_workflow_then_restart_completes_each_message_once() {
    if common::child_role().is_some() {
        return child_main().await;
    }
    let run = Run::new("sigkill_mid_batch_and_mid_workflow_then_restart_completes_each_message_once", "exactly_test_kafka_crash", 3).await;
    let mut first = run.worker("200");
    let sent = produce(&run.topic, &numbered("crash", 150, 15)).await;
    wait_until(WAIT, "50 reservations", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM public.side_effects WHERE step = 'reserve'")
            .fetch_one(&run.pool)
            .await
            .unwrap()
            >= 50
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();

    let rows = kafka_common::workflows(&run.pool, &run.prefix()).await;
    let pending = rows.iter().filter(|(_, s)| s == "PENDING").count();
    assert!(pending > 0, "the kill found workflows half done");
    assert!(rows.len() < 150, "the kill found messages not yet recorded ({} of 150 were)", rows.len());
    let checkpointed: HashSet<(String, String)> = sqlx::query_as::<_, (String, String)>(
        "SELECT workflow_id, CASE step_id WHEN 0 THEN 'reserve' ELSE 'charge' END FROM exactly.operation_outputs",
    )
    .fetch_all(&run.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();

    let second = run.worker("200");
    wait_until(WAIT, "150 workflows", || async { count(&run.pool, &run.prefix(), "SUCCESS").await == 150 }).await;
    run.assert_exactly_once(&sent).await;
    let effects = run.side_effects().await;
    assert_eq!(effects.len(), 300, "every step ran");
    for step in &checkpointed {
        assert_eq!(effects[step], 1, "{step:?} was checkpointed before the kill: replayed, not run again");
    }
    // A step in flight at the kill runs again (steps run at least once), at most once more.
    assert!(effects.values().all(|n| *n <= 2), "{effects:?}");
    stop(second);
}

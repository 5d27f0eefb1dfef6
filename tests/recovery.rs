//! Recovery at launch that does not stall the process: 10,000 PENDING workflows of
//! an executor are recovered by its next launch while a Kafka consumer of the same
//! process consumes and its heartbeats stay on time; launch returns at once, and
//! each workflow is claimed once (recovery_attempts 2) and ends SUCCESS once.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::time::{Duration, Instant};

use exactly::{KafkaMessage, Runtime, register_kafka_consumer, step, workflow};
use exactly::kafka::KafkaConsumerOptions;

const PENDING: i64 = 10_000;
const TOPIC: &str = "exactly-test-recovery";
const GROUP: &str = "exactly-test-recovery";

#[step]
async fn record(n: u64) -> exactly::Result<u64> {
    Ok(n)
}

#[workflow]
async fn left_pending(n: u64) -> exactly::Result<u64> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    record(n).await
}

#[workflow]
async fn consumed(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

// A service's runtime: several worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pending_workflows_are_recovered_while_the_process_consumes_and_heartbeats() {
    let url = common::fresh_database("exactly_test_recovery").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    kafka_common::recreate(&[(TOPIC, 2)], &[GROUP]).await;
    // The schema, then the work a crashed executor left.
    Runtime::builder().database_url(&url).executor_id("setup").launch().await.unwrap().shutdown().await.unwrap();
    sqlx::query(
        "INSERT INTO exactly.workflow_status (workflow_id, name, status, inputs, executor_id, app_version, recovery_attempts)
         SELECT 'left-' || lpad(n::text, 5, '0'), 'recovery::left_pending', 'PENDING', jsonb_build_array(n),
                'recovering', '0', 1
         FROM generate_series(1, $1) AS n",
    )
    .bind(PENDING)
    .execute(&pool)
    .await
    .unwrap();

    register_kafka_consumer(consumed, TOPIC, KafkaConsumerOptions::new().group(GROUP)).await.unwrap();
    let began = Instant::now();
    let runtime = Runtime::builder()
        .database_url(&url)
        .executor_id("recovering")
        .kafka(kafka_common::settings())
        .heartbeat_interval(Duration::from_millis(250))
        .launch()
        .await
        .unwrap();
    let launch_took = began.elapsed();
    assert!(launch_took < Duration::from_secs(5), "launch waited for recovery: {launch_took:?}");
    kafka_common::produce(TOPIC, &kafka_common::numbered("during", 200, 5)).await;

    let status = |status: &'static str, prefix: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM exactly.workflow_status WHERE status = $1 AND starts_with(workflow_id, $2)",
            )
            .bind(status)
            .bind(prefix)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // While recovery runs: the heartbeat stays on time, the consumer consumes.
    let mut worst_heartbeat_ms = 0i64;
    let mut consumed_during_recovery = 0;
    loop {
        let age: i64 = sqlx::query_scalar(
            "SELECT (extract(epoch FROM clock_timestamp() - last_heartbeat) * 1000)::int8
             FROM exactly.executors WHERE executor_id = 'recovering'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        worst_heartbeat_ms = worst_heartbeat_ms.max(age);
        let recovered = status("SUCCESS", "left-").await;
        if recovered < PENDING {
            consumed_during_recovery = status("SUCCESS", "kafka:").await;
        } else {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(180), "recovery took over 3 minutes ({recovered} done)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovery_took = began.elapsed();
    kafka_common::wait_until(Duration::from_secs(60), "200 consumed", || async { status("SUCCESS", "kafka:").await == 200 }).await;
    eprintln!(
        "recovery: launch {launch_took:?}, {PENDING} workflows recovered in {recovery_took:?}, worst heartbeat age {worst_heartbeat_ms} ms, {consumed_during_recovery} of 200 messages consumed before recovery ended"
    );
    assert!(worst_heartbeat_ms < 1_500, "a heartbeat every 250 ms; the worst age was {worst_heartbeat_ms} ms");

    let attempts: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT recovery_attempts, count(*) FROM exactly.workflow_status WHERE starts_with(workflow_id, 'left-') GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, [(2, PENDING)], "each claimed by one recovery, once");
    let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE starts_with(workflow_id, 'left-')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(checkpoints, PENDING, "one step each, recorded once");
    runtime.shutdown().await.unwrap();
}

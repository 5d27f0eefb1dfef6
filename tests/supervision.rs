//! Supervision: each long-lived part of the runtime is made to panic (through the
//! test hook `exactly::__private::inject_panic`) while it works, and the test shows
//! what happens: the Kafka receiver, an SQS poller, the dispatcher and the heartbeat
//! are started again and their work goes on (every message one workflow); a
//! checkpoint writer cannot be restarted safely (the callers of the batch it held
//! would never learn whether their writes are durable), so the runtime fails
//! loudly: `until_shutdown_signal` returns an error naming it.
//!
//! One runtime at a time per process: the tests take turns.
#![cfg(all(feature = "kafka", feature = "sqs"))]

mod common;
mod kafka_common;
mod sqs_support;

use std::sync::Mutex;
use std::time::Duration;

use exactly::__private::inject_panic;
use exactly::sqs::SqsConsumerOptions;
use exactly::{Health, KafkaMessage, ReceiverState, Runtime, SqsMessage, kafka_consumer, register_sqs_consumer, workflow};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "exactly-test-supervised";
const GROUP: &str = "exactly-test-supervised";

static ONE_RUNTIME_AT_A_TIME: Mutex<()> = Mutex::new(());

exactly::queue!(static SUPERVISED = "supervised", concurrency = 2);

#[kafka_consumer("exactly-test-supervised", group = "exactly-test-supervised")]
#[workflow]
async fn from_kafka(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[workflow]
async fn from_sqs(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

#[workflow]
async fn queued(n: u32) -> exactly::Result<u32> {
    Ok(n)
}

async fn launch(name: &str) -> (Runtime, sqlx::PgPool) {
    let url = common::fresh_database(name).await;
    let runtime = Runtime::builder()
        .database_url(&url)
        .executor_id(name)
        .kafka(kafka_common::settings())
        .heartbeat_interval(Duration::from_millis(200))
        .executor_timeout(Duration::from_secs(5))
        .launch()
        .await
        .expect("launch");
    (runtime, sqlx::PgPool::connect(&url).await.unwrap())
}

/// Waits until the health report satisfies `check`.
async fn health_until(runtime: &Runtime, what: &str, check: impl Fn(&Health) -> bool) -> Health {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let health = runtime.health();
        if check(&health) {
            return health;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rebuilt_after_panic(health: &Health, kind: &str) -> bool {
    health.receivers.iter().any(|r| {
        r.kind == kind
            && r.state == ReceiverState::Consuming
            && r.last_error.as_deref().is_some_and(|e| e.contains("panicked") && e.contains("injected"))
    })
}

#[tokio::test]
async fn a_kafka_receiver_that_panics_is_started_again_and_loses_nothing() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    kafka_common::recreate(&[(TOPIC, 2)], &[GROUP]).await;
    let (runtime, pool) = launch("exactly_test_supervised_kafka").await;
    let prefix = format!("kafka:{GROUP}:{TOPIC}:");
    kafka_common::produce(TOPIC, &kafka_common::numbered("before", 20, 3)).await;
    kafka_common::wait_until(WAIT, "20 workflows", || async { kafka_common::count(&pool, &prefix, "SUCCESS").await >= 20 }).await;

    inject_panic("kafka receiver");
    let health = health_until(&runtime, "the receiver restarted", |h| rebuilt_after_panic(h, "kafka")).await;
    assert!(health.is_healthy(), "{health:?}");
    kafka_common::produce(TOPIC, &kafka_common::numbered("after", 20, 3)).await;
    kafka_common::wait_until(WAIT, "40 workflows", || async { kafka_common::count(&pool, &prefix, "SUCCESS").await >= 40 }).await;
    assert_eq!(kafka_common::workflows(&pool, &prefix).await.len(), 40, "every message once, before and after");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_sqs_poller_that_panics_is_started_again_and_loses_nothing() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let client = sqs_support::client();
    let queue = sqs_support::unique("supervised");
    let url = sqs_support::create_queue(&client, &queue, 5).await;
    register_sqs_consumer(from_sqs, SqsConsumerOptions::new().queue_url(&url).client(client.clone()).wait_time_s(1).pollers(2));
    let (runtime, pool) = launch("exactly_test_supervised_sqs").await;
    let name = queue.as_str();
    for i in 0..10 {
        sqs_support::send(&client, &url, &format!("before-{i}"), None).await;
    }
    kafka_common::wait_until(WAIT, "10 workflows", || async { sqs_support::count(&pool, name, "SUCCESS").await >= 10 }).await;

    inject_panic("sqs poller");
    health_until(&runtime, "a poller restarted", |h| rebuilt_after_panic(h, "sqs")).await;
    for i in 0..10 {
        sqs_support::send(&client, &url, &format!("after-{i}"), None).await;
    }
    kafka_common::wait_until(WAIT, "20 workflows", || async { sqs_support::count(&pool, name, "SUCCESS").await >= 20 }).await;
    assert_eq!(sqs_support::workflows(&pool, name).await.len(), 20, "every message once");
    kafka_common::wait_until(WAIT, "the queue drained", || async { sqs_support::messages_left(&client, &url).await == 0 }).await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_dispatcher_and_the_heartbeat_are_started_again_after_a_panic() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (runtime, pool) = launch("exactly_test_supervised_engine").await;
    let beat = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (extract(epoch from last_heartbeat) * 1000)::int8 FROM exactly.executors WHERE executor_id = 'exactly_test_supervised_engine'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    inject_panic("heartbeat");
    // Past the panic and the restart's pause, the heartbeat moves on again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = beat().await;
    kafka_common::wait_until(WAIT, "a new heartbeat", || async { beat().await > first }).await;
    let restarted = |part: &str| {
        runtime.health().restarts.iter().any(|r| r.part == part && r.count == 1 && r.last_reason.contains("injected"))
    };
    assert!(restarted("heartbeat"), "{:?}", runtime.health());

    inject_panic("dispatcher");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut handles = Vec::new();
    for n in 0..10u32 {
        handles.push(queued(n).with_id(format!("queued-{n}")).on_queue(&SUPERVISED).start().await.unwrap());
    }
    for (n, handle) in handles.into_iter().enumerate() {
        assert_eq!(tokio::time::timeout(WAIT, handle.result()).await.expect("ran within a minute").unwrap(), n as u32);
    }
    assert!(restarted("dispatcher"), "{:?}", runtime.health());
    assert!(runtime.health().is_healthy());
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_checkpoint_writer_that_panics_fails_the_runtime_loudly() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (runtime, _pool) = launch("exactly_test_supervised_writer").await;
    let waiting = tokio::spawn(runtime.clone().until_shutdown_signal());
    inject_panic("checkpoint writer");
    // Any write reaches a writer: this start's row.
    let _ = tokio::time::timeout(Duration::from_secs(5), queued(1).with_id("after-writer-panic").start()).await;
    let ended = tokio::time::timeout(WAIT, waiting).await.expect("until_shutdown_signal returned").unwrap();
    let err = ended.expect_err("the runtime failed").to_string();
    assert!(err.contains("checkpoint writer") && err.contains("panicked"), "{err}");
    let health = runtime.health();
    assert!(!health.is_healthy() && health.failure.is_some_and(|f| f.contains("checkpoint writer")));
}

//! SQS receivers across launches, each test with a runtime of its own (one at a
//! time: a process runs one runtime): launch validation errors, a server that is
//! unreachable at launch or goes away mid-stream (a private moto server, started
//! and killed here), storing that takes long (the messages stay hidden from other
//! receivers, for the consumer's own visibility timeout when it sets one), deletes
//! that fail, and bounded shutdown.

mod common;
mod sqs_support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use exactly::sqs::{Ordering, SqsConsumerOptions, SqsReceiver};
use exactly::{Runtime, SqsMessage, workflow};
use sqs_support::{
    Moto, Requests, assert_hidden, client, client_for, create_queue, free_port, held_inserts, messages_left, send,
    unique, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);

/// One runtime at a time in this process.
static ONE_RUNTIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static EXECUTIONS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn executions(body: &str) -> u32 {
    EXECUTIONS.lock().unwrap().as_ref().and_then(|e| e.get(body).copied()).unwrap_or(0)
}

#[workflow]
async fn on_job(message: SqsMessage) -> exactly::Result<()> {
    *EXECUTIONS.lock().unwrap().get_or_insert_with(HashMap::new).entry(message.body).or_default() += 1;
    Ok(())
}

fn builder(url: &str) -> exactly::RuntimeBuilder {
    Runtime::builder().database_url(url).executor_id("sqs-lifecycle").shutdown_timeout(Duration::from_secs(5))
}

fn consumer(options: SqsConsumerOptions) -> SqsReceiver {
    SqsReceiver::new().consumer(on_job, options.wait_time_s(1))
}

async fn launch_error(builder: exactly::RuntimeBuilder) -> String {
    match builder.launch().await {
        Ok(runtime) => {
            runtime.shutdown().await.unwrap();
            panic!("launch should have failed");
        }
        Err(e) => e.to_string(),
    }
}

async fn finished(url: &str, name: &str) -> usize {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM exactly.workflow_status WHERE workflow_id LIKE $1 AND status = 'SUCCESS'",
    )
    .bind(format!("sqs:{name}:%"))
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    n as usize
}

#[tokio::test]
async fn launch_fails_with_a_clear_error_and_a_corrected_launch_follows() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_launch").await;
    let endpoint = sqs_support::endpoint();

    let missing = format!("{endpoint}/000000000000/{}", unique("missing"));
    let err = launch_error(builder(&url).sqs_receiver(consumer(SqsConsumerOptions::new().queue_url(&missing)))).await;
    assert!(err.contains(&format!("SQS queue {missing} does not exist")), "{err}");
    assert!(err.contains("SQS consumer `sqs_lifecycle::on_job` (tests/sqs_lifecycle.rs:"), "{err}");

    // Nothing listens on the port: unreachable at launch.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let unreachable = format!("{closed}/000000000000/jobs");
    let started = Instant::now();
    let err =
        launch_error(builder(&url).sqs_receiver(consumer(
            SqsConsumerOptions::new().queue_url(&unreachable).client(client_for(&closed, None)),
        )))
        .await;
    assert!(err.contains(&format!("SQS queue {unreachable} cannot be reached")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

    let err = launch_error(
        builder(&url)
            .sqs_receiver(consumer(SqsConsumerOptions::new().queue_url_env("EXACTLY_TEST_SURELY_UNSET_QUEUE_URL"))),
    )
    .await;
    assert!(err.contains("environment variable EXACTLY_TEST_SURELY_UNSET_QUEUE_URL, which is not set"), "{err}");

    let standard = create_queue(&client(), &unique("launch"), 30).await;
    let err = launch_error(
        builder(&url).sqs_receiver(consumer(SqsConsumerOptions::new().queue_url(&standard).workflow_queue("nope"))),
    )
    .await;
    assert!(err.contains("enqueues its workflows on queue `nope`, which is not declared"), "{err}");
    let err = launch_error(
        builder(&url).sqs_receiver(consumer(SqsConsumerOptions::new().queue_url(&standard).ordering(Ordering::Group))),
    )
    .await;
    assert!(err.contains("has `ordering = group`, but") && err.contains("is a standard queue"), "{err}");
    let err =
        launch_error(builder(&url).sqs_receiver(SqsReceiver::new()).sqs_receiver(consumer(SqsConsumerOptions::new())))
            .await;
    assert!(err.contains("the default SQS receiver is configured twice"), "{err}");

    // Each failed launch shut its runtime down: a corrected one starts.
    let runtime =
        builder(&url).sqs_receiver(consumer(SqsConsumerOptions::new().queue_url(&standard))).launch().await.unwrap();
    send(&client(), &standard, "after-failures", None).await;
    wait_until(WAIT, "the message is processed", || async { executions("after-failures") == 1 }).await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_that_goes_away_mid_stream_is_waited_for_and_shutdown_stays_bounded() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_server_outage").await;
    let port = free_port();
    let mut moto = Moto::start(port).await;
    let sqs = client_for(&moto.endpoint(), None);
    let name = unique("flaky");
    let queue_url = create_queue(&sqs, &name, 30).await;
    let runtime = builder(&url)
        .sqs_receiver(
            SqsReceiver::new()
                .client(sqs.clone())
                .consumer(on_job, SqsConsumerOptions::new().queue_url(&queue_url).wait_time_s(1)),
        )
        .launch()
        .await
        .unwrap();
    for i in 0..5 {
        send(&sqs, &queue_url, &format!("before-{i}"), None).await;
    }
    wait_until(WAIT, "the first messages are processed", || async { finished(&url, &name).await == 5 }).await;

    // The server dies (and forgets its queues, as moto keeps them in memory).
    moto.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut moto = Moto::start(port).await;
    assert_eq!(create_queue(&sqs, &name, 30).await, queue_url, "the same queue again");
    for i in 0..5 {
        send(&sqs, &queue_url, &format!("after-{i}"), None).await;
    }
    wait_until(WAIT, "the receiver resumed", || async { finished(&url, &name).await == 10 }).await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(&sqs, &queue_url).await == 0 }).await;
    for prefix in ["before", "after"] {
        for i in 0..5 {
            assert_eq!(executions(&format!("{prefix}-{i}")), 1, "{prefix}-{i}");
        }
    }

    // Shutdown while the server is gone again: the receiver stops without waiting for it.
    moto.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    runtime.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
}

/// Holds the consumer's insert with a table lock while `body` is sent, checks from a
/// second client that the message stays hidden for `hidden`, runs `while_held`,
/// then lets the insert through and waits until the message ran once and the queue
/// is empty.
async fn store_held_while_hidden(
    url: &str,
    sqs: &exactly::sqs::aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    hidden: Duration,
    while_held: impl FnOnce(),
) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE exactly.workflow_status IN SHARE MODE").execute(&mut *lock).await.unwrap();
    send(sqs, queue_url, body, None).await;
    wait_until(WAIT, "the consumer's insert waits for the lock", || async { held_inserts(&pool).await > 0 }).await;
    assert_hidden(&client(), queue_url, hidden).await;
    while_held();
    lock.commit().await.unwrap();
    wait_until(WAIT, "the message is processed", || async { executions(body) == 1 }).await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(sqs, queue_url).await == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_that_takes_long_extends_the_messages_visibility() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_slow_store").await;
    let requests = Requests::default();
    let sqs = client_for(&sqs_support::endpoint(), Some(requests.clone()));
    let name = unique("slow-store");
    let queue_url = create_queue(&sqs, &name, 2).await;
    let runtime = builder(&url)
        .sqs_receiver(consumer(SqsConsumerOptions::new().queue_url(&queue_url).client(sqs.clone())))
        .launch()
        .await
        .unwrap();
    // Twice the queue's 2 s: without the extensions another receiver would get it.
    store_held_while_hidden(&url, &sqs, &queue_url, "slow-store", Duration::from_secs(4), || {
        assert_eq!(executions("slow-store"), 0, "the insert waits for the lock");
    })
    .await;
    assert!(requests.count("ChangeMessageVisibilityBatch") >= 2, "{requests:?}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_s_own_visibility_timeout_overrides_the_queue_s() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_visibility").await;
    let requests = Requests::default();
    let sqs = client_for(&sqs_support::endpoint(), Some(requests.clone()));
    let name = unique("visibility");
    // The queue hides a received message for 1 s; the consumer asks for 30 s.
    let queue_url = create_queue(&sqs, &name, 1).await;
    let runtime = builder(&url)
        .sqs_receiver(consumer(
            SqsConsumerOptions::new().queue_url(&queue_url).client(sqs.clone()).visibility_timeout_s(30),
        ))
        .launch()
        .await
        .unwrap();
    // With the queue's 1 s the message would be visible again (or be extended every
    // half second); with the consumer's 30 s it stays hidden, with no extension yet.
    store_held_while_hidden(&url, &sqs, &queue_url, "long-visibility", Duration::from_secs(3), || {
        assert_eq!(requests.count("ChangeMessageVisibilityBatch"), 0, "30 s need no extension within 3 s");
    })
    .await;
    runtime.shutdown().await.unwrap();
}

/// Fails the first `n` delete calls of a client, as a network error would.
#[derive(Debug)]
struct FailDeletes(std::sync::atomic::AtomicUsize);

impl exactly::sqs::aws_sdk_sqs::config::Intercept for FailDeletes {
    fn name(&self) -> &'static str {
        "FailDeletes"
    }

    fn read_before_execution(
        &self,
        context: &exactly::sqs::aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut exactly::sqs::aws_sdk_sqs::config::ConfigBag,
    ) -> Result<(), exactly::sqs::aws_sdk_sqs::error::BoxError> {
        use exactly::sqs::aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchInput;
        use std::sync::atomic::Ordering::SeqCst;
        if context.input().downcast_ref::<DeleteMessageBatchInput>().is_some()
            && self.0.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err("injected delete failure".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn failed_deletes_are_retried_and_the_workflow_runs_once() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_deletes").await;
    let requests = Requests::default();
    let base = client_for(&sqs_support::endpoint(), Some(requests.clone()));
    let failing = exactly::sqs::aws_sdk_sqs::Client::from_conf(
        base.config().to_builder().interceptor(FailDeletes(std::sync::atomic::AtomicUsize::new(2))).build(),
    );
    let name = unique("deletes");
    let queue_url = create_queue(&base, &name, 30).await;
    let runtime = builder(&url)
        .sqs_receiver(consumer(SqsConsumerOptions::new().queue_url(&queue_url).client(failing)))
        .launch()
        .await
        .unwrap();
    send(&base, &queue_url, "delete-me", None).await;
    wait_until(WAIT, "the message is deleted", || async { messages_left(&base, &queue_url).await == 0 }).await;
    assert_eq!(executions("delete-me"), 1);
    assert_eq!(requests.count("DeleteMessageBatch"), 3, "two failed attempts, then the one that deleted");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn pollers_receive_at_once_and_each_message_still_runs_once() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_pollers").await;
    let requests = Requests::default();
    let counted = client_for(&sqs_support::endpoint(), Some(requests.clone()));
    let name = unique("pollers");
    let queue_url = create_queue(&counted, &name, 30).await;
    let options = SqsConsumerOptions::new().queue_url(&queue_url).client(counted.clone()).wait_time_s(3).pollers(3);
    let runtime = builder(&url).sqs_receiver(SqsReceiver::new().consumer(on_job, options)).launch().await.unwrap();
    // Three long polls wait on the empty queue at once (one poller: one receive in 3 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(requests.count("ReceiveMessage"), 3, "one waiting receive per poller");

    for i in 0..30 {
        send(&counted, &queue_url, &format!("polled-{i}"), None).await;
    }
    wait_until(WAIT, "every message ran", || async { (0..30).all(|i| executions(&format!("polled-{i}")) == 1) }).await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(&counted, &queue_url).await == 0 }).await;
    assert!((0..30).all(|i| executions(&format!("polled-{i}")) == 1), "a message ran twice");
    assert_eq!(finished(&url, &name).await, 30);
    runtime.shutdown().await.unwrap();
}

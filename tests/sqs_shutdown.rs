//! Graceful shutdown of an SQS consumer: a worker process (this test binary run
//! again in a child role) with the default 20 s long polling gets SIGTERM (1) while
//! it waits in a long poll on an empty queue: it exits at once, not after the poll;
//! (2) while a received batch is being stored (the insert held behind a table
//! lock): it exits within its stopping grace, deleting nothing it did not store,
//! also when the lock outlasts the worker (the engine gives up the held connection
//! after 2 s and the abandoned insert rolls back). A relaunched worker then gives
//! every message exactly one workflow whose step ran once, and empties the queue.

mod common;
mod sqs_support;

use std::process::Child;
use std::time::{Duration, Instant};

use common::KillOnDrop;
use exactly::sqs::{SqsConsumerOptions, SqsReceiver};
use exactly::{Runtime, SqsMessage, register_sqs_consumer, step, workflow};
use sqs_support::{
    client, count, create_queue, held_inserts, messages_left, send, unique, wait_until, workflows,
};

const TEST: &str = "sigterm_mid_long_poll_and_mid_store_exits_promptly_and_loses_nothing";
const WAIT: Duration = Duration::from_secs(60);
/// Longer than the receiver's own grace for a batch being stored (5 s), so that the
/// bounds below measure the receiver, not this timeout.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[step]
async fn note(body: &str) -> exactly::Result<()> {
    common::side_effect(common::child_pool(), &exactly::workflow_id().unwrap(), body).await;
    Ok(())
}

#[workflow]
async fn on_shutdown_job(message: SqsMessage) -> exactly::Result<()> {
    note(message.text()).await
}

async fn worker_main() {
    let queue_url = std::env::var("SQS_SHUTDOWN_QUEUE_URL").expect("children get the queue URL");
    // No wait_time_s: the default 20 s long polling.
    register_sqs_consumer(on_shutdown_job, SqsConsumerOptions::new().queue_url(queue_url));
    let runtime = Runtime::builder()
        .executor_id("sqs-shutdown-worker")
        .sqs_receiver(SqsReceiver::new().client(client()))
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .launch()
        .await
        .expect("worker launch");
    println!("READY");
    runtime.until_shutdown_signal().await.unwrap();
}

fn worker(test: &str, env: &[(&str, &str)]) -> KillOnDrop {
    let mut child = common::spawn_child(test, "worker", env);
    common::wait_for_marker(&mut child, "READY", WAIT);
    KillOnDrop(child)
}

/// SIGTERM, then how long the child took to exit (it must exit cleanly).
async fn terminate(child: &mut Child) -> Duration {
    sqs_support::terminate(child);
    let asked = Instant::now();
    let pid = child.id();
    let status = tokio::task::block_in_place(|| common::wait_exit(child, WAIT));
    assert!(status.success(), "worker {pid} exits cleanly on SIGTERM: {status:?}");
    asked.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_long_poll_and_mid_store_exits_promptly_and_loses_nothing() {
    if common::child_role().is_some() {
        return worker_main().await;
    }
    let url = common::fresh_database("exactly_test_sqs_shutdown").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    common::create_side_effects(&pool).await;
    let sqs = client();
    let name = unique("shutdown");
    // A short visibility timeout: what the killed worker leaves comes back soon.
    let queue_url = create_queue(&sqs, &name, 2).await;
    let env = [("EXACTLY_DATABASE_URL", url.as_str()), ("SQS_SHUTDOWN_QUEUE_URL", queue_url.as_str())];
    let mut sent = Vec::new();

    // (1) SIGTERM while the receiver waits in a 20 s long poll on an empty queue.
    let mut first = worker(TEST, &env);
    for i in 0..5 {
        sent.push(send(&sqs, &queue_url, &format!("before-{i}"), None).await);
    }
    wait_until(WAIT, "5 workflows", || async { count(&pool, &name, "SUCCESS").await == 5 }).await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(&sqs, &queue_url).await == 0 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // into the next long poll
    let took = terminate(&mut first.0).await;
    assert!(took < Duration::from_secs(3), "shutdown waited for the long poll: {took:?}");

    // (2) SIGTERM while a received batch waits to be stored. The lock is released
    // 6 s later, past the receiver's grace; the test below holds it past the exit.
    let mut second = worker(TEST, &env);
    let took = sigterm_mid_store(&mut second.0, &pool, &sqs, &queue_url, &mut sent, Duration::from_secs(6)).await;
    assert!(took < Duration::from_secs(9), "shutdown with a batch mid-store took {took:?}");

    // A relaunched worker receives the held messages again; new ones flow too.
    let mut third = worker(TEST, &env);
    for i in 0..5 {
        sent.push(send(&sqs, &queue_url, &format!("after-{i}"), None).await);
    }
    each_message_ran_once(&pool, &sqs, &queue_url, &sent).await;
    let took = terminate(&mut third.0).await;
    assert!(took < Duration::from_secs(3), "idle shutdown took {took:?}");
}

/// Waits until every message `sent` (by ID) has its SUCCESS workflow and the queue
/// is empty; then checks one workflow per message and each step run once.
async fn each_message_ran_once(
    pool: &sqlx::PgPool,
    sqs: &exactly::sqs::aws_sdk_sqs::Client,
    queue_url: &str,
    sent: &[String],
) {
    let name = queue_url.rsplit('/').next().unwrap();
    wait_until(WAIT, "every message's workflow succeeded", || async {
        count(pool, name, "SUCCESS").await == sent.len()
    })
    .await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(sqs, queue_url).await == 0 }).await;
    let mut expected: Vec<String> = sent.iter().map(|id| format!("sqs:{name}:{id}")).collect();
    expected.sort();
    let rows = workflows(pool, name).await;
    assert_eq!(rows.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), expected, "one workflow per message");
    let effects: Vec<(String, i32)> =
        sqlx::query_as("SELECT step, n FROM public.side_effects ORDER BY step").fetch_all(pool).await.unwrap();
    assert_eq!(effects.len(), sent.len(), "{effects:?}");
    assert!(effects.iter().all(|(_, n)| *n == 1), "a step ran twice: {effects:?}");
}

/// Holds inserts into the workflow table, sends 8 messages, and sends SIGTERM to
/// `worker` once its insert of them waits for the lock; releases the lock after
/// `hold` from then. Returns how long the worker took to exit. Its receiver stops
/// within its grace, having deleted and run nothing; the messages stay on the queue.
async fn sigterm_mid_store(
    worker: &mut Child,
    pool: &sqlx::PgPool,
    sqs: &exactly::sqs::aws_sdk_sqs::Client,
    queue_url: &str,
    sent: &mut Vec<String>,
    hold: Duration,
) -> Duration {
    let name = queue_url.rsplit('/').next().unwrap();
    let done_before = count(pool, name, "SUCCESS").await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE exactly.workflow_status IN SHARE MODE").execute(&mut *lock).await.unwrap();
    for i in 0..8 {
        sent.push(send(sqs, queue_url, &format!("held-{i}"), None).await);
    }
    wait_until(WAIT, "the worker's insert waits for the lock", || async { held_inserts(pool).await > 0 }).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        lock.rollback().await.unwrap();
    });
    let took = terminate(worker).await;
    release.await.unwrap();
    assert!(messages_left(sqs, queue_url).await >= 1, "the held messages were not deleted");
    // The dead worker's insert may still be queued in its server process: let it end.
    wait_until(WAIT, "no insert waits any more", || async { held_inserts(pool).await == 0 }).await;
    assert_eq!(count(pool, name, "SUCCESS").await, done_before, "nothing of the held batch ran");
    took
}

const HELD_TEST: &str = "sigterm_with_an_insert_held_by_the_database_exits_within_the_grace";

/// The bound with the insert held for good (until long after the worker is gone):
/// the receiver stops within its 5 s grace, and the engine's shutdown closes the
/// pool without waiting for the writer's held connection (at most 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_insert_held_by_the_database_exits_within_the_grace() {
    if common::child_role().is_some() {
        return worker_main().await;
    }
    let url = common::fresh_database("exactly_test_sqs_shutdown_held").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    common::create_side_effects(&pool).await;
    let sqs = client();
    let name = unique("shutdown-held");
    let queue_url = create_queue(&sqs, &name, 2).await;
    let env = [("EXACTLY_DATABASE_URL", url.as_str()), ("SQS_SHUTDOWN_QUEUE_URL", queue_url.as_str())];
    let mut sent = Vec::new();
    let mut first = worker(HELD_TEST, &env);
    let took = sigterm_mid_store(&mut first.0, &pool, &sqs, &queue_url, &mut sent, Duration::from_secs(15)).await;
    assert!(workflows(&pool, &name).await.is_empty(), "the abandoned insert rolled back");
    assert!(took < Duration::from_secs(9), "shutdown with an insert held by the database took {took:?}");

    let mut second = worker(HELD_TEST, &env);
    each_message_ran_once(&pool, &sqs, &queue_url, &sent).await;
    terminate(&mut second.0).await;
}

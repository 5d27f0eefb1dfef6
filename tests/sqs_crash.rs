//! Workers killed with SIGKILL, then replaced: (1) between storing a message's
//! workflow row and deleting the message: the message comes back after its (short)
//! visibility timeout, the next worker finds the row, deletes the message and runs
//! nothing a second time; (2) after a FIFO send reached SQS and before its checkpoint
//! was written: the recovered workflow sends again and SQS drops the repeat.
//! Workers are this test binary run again as child processes.

mod common;
mod sqs_support;

use std::time::Duration;

use exactly::sqs::aws_sdk_sqs::Client;
use exactly::sqs::aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef;
use exactly::sqs::aws_sdk_sqs::config::{ConfigBag, Intercept};
use exactly::sqs::aws_sdk_sqs::error::BoxError;
use exactly::sqs::aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchInput;
use exactly::{Runtime, SqsMessage, sqs_consumer, step, workflow};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
const TEST: &str = "a_worker_killed_between_insert_and_delete_runs_no_second_workflow";

fn pool() -> &'static sqlx::PgPool {
    common::child_pool()
}

/// In the first worker, holds every delete (printing a marker) until the process
/// is killed: the process dies after its rows are stored and before any delete.
#[derive(Debug)]
struct HoldDeletes;

impl Intercept for HoldDeletes {
    fn name(&self) -> &'static str {
        "HoldDeletes"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.input().downcast_ref::<DeleteMessageBatchInput>().is_some() {
            println!("BEFORE_DELETE");
            // Off the worker thread's queue, so that the workflow task goes on.
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_secs(3600)));
        }
        Ok(())
    }
}

fn worker_client() -> Client {
    let client = sqs_support::client();
    if std::env::var("HOLD_DELETES").is_err() {
        return client;
    }
    Client::from_conf(client.config().to_builder().interceptor(HoldDeletes).build())
}

#[step]
async fn record(body: &str) -> exactly::Result<()> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), body).await;
    Ok(())
}

#[sqs_consumer(queue_url = env("SQS_CRASH_QUEUE_URL"), client = worker_client, visibility_timeout_s = 2, wait_time_s = 1)]
#[workflow]
async fn on_crash_job(message: SqsMessage) -> exactly::Result<()> {
    record(message.text()).await
}

async fn worker() {
    let _runtime = Runtime::builder().executor_id("sqs-worker").launch().await.expect("worker launch");
    println!("LAUNCHED");
    // Runs until the parent kills it.
    std::future::pending::<()>().await;
}

#[workflow]
async fn fifo_sender(queue_url: String) -> exactly::Result<Vec<String>> {
    // The same content twice, as two steps: both must arrive.
    let first = exactly::sqs::send_fifo(&queue_url, "invoice-7", "customer-1").await?;
    let second = exactly::sqs::send_fifo(&queue_url, "invoice-7", "customer-1").await?;
    Ok(vec![first, second])
}

/// Starts the sender once the parent says so (after it has blocked checkpoints), or
/// (after a crash) waits for the recovered one.
async fn sender(role: &str) {
    let runtime = Runtime::builder().executor_id("sqs-sender").launch().await.expect("sender launch");
    let id = "fifo-sender-1";
    if role == "sender" {
        println!("LAUNCHED");
        let go = std::env::var("GO_FILE").unwrap();
        while !std::path::Path::new(&go).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let queue_url = std::env::var("SQS_FIFO_URL").unwrap();
        let _ = fifo_sender(queue_url).with_id(id).await;
        return;
    }
    let sent: Vec<String> = runtime.result(id).await.unwrap();
    println!("RESULT {}", sent.len());
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_insert_and_delete_runs_no_second_workflow() {
    match common::child_role().as_deref() {
        Some("worker") => return worker().await,
        Some(role) => return sender(role).await,
        None => {}
    }
    let url = common::fresh_database("exactly_test_sqs_crash").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    common::create_side_effects(&pool).await;
    let client = sqs_support::client();
    let queue_url = sqs_support::create_queue(&client, &sqs_support::unique("crash"), 2).await;
    let name = queue_url.rsplit('/').next().unwrap().to_owned();
    let message_id = sqs_support::send(&client, &queue_url, "charge-1", None).await;
    let workflow_id = format!("sqs:{name}:{message_id}");
    let env = [("EXACTLY_DATABASE_URL", url.as_str()), ("SQS_CRASH_QUEUE_URL", queue_url.as_str())];

    // The first worker stores the row, runs the workflow, and dies before deleting.
    let mut first_env = env.to_vec();
    first_env.push(("HOLD_DELETES", "1"));
    let mut first = common::KillOnDrop(common::spawn_child(TEST, "worker", &first_env));
    common::wait_for_marker(&mut first.0, "BEFORE_DELETE", CHILD_TIMEOUT);
    sqs_support::wait_until(CHILD_TIMEOUT, "the first worker's workflow finished", || async {
        status(&pool, &workflow_id).await.as_deref() == Some("SUCCESS")
    })
    .await;
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    assert_eq!(sqs_support::messages_left(&client, &queue_url).await, 1, "the message was not deleted");
    assert_eq!(common::side_effect_count(&pool, &workflow_id, "charge-1").await, 1);

    // The second worker receives it again after the visibility timeout, finds the
    // row and deletes the message.
    let mut second = common::KillOnDrop(common::spawn_child(TEST, "worker", &env));
    common::wait_for_marker(&mut second.0, "LAUNCHED", CHILD_TIMEOUT);
    sqs_support::wait_until(CHILD_TIMEOUT, "the redelivered message is deleted", || async {
        sqs_support::messages_left(&client, &queue_url).await == 0
    })
    .await;
    drop(second);

    let rows: Vec<(String, String, i32, serde_json::Value)> = sqlx::query_as(
        "SELECT workflow_id, status, recovery_attempts, inputs FROM exactly.workflow_status WHERE workflow_id LIKE $1",
    )
    .bind(format!("sqs:{name}:%"))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "one workflow for the message: {rows:?}");
    let (id, state, attempts, inputs) = &rows[0];
    assert_eq!((id.as_str(), state.as_str(), *attempts), (workflow_id.as_str(), "SUCCESS", 1));
    assert_eq!(inputs[0]["attributes"]["ApproximateReceiveCount"], "1", "the row keeps the first delivery");
    assert_eq!(common::side_effect_count(&pool, &workflow_id, "charge-1").await, 1, "the step ran again");
}

async fn status(pool: &sqlx::PgPool, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM exactly.workflow_status WHERE workflow_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

const SEND_TEST: &str = "a_fifo_send_repeated_after_a_crash_is_dropped_by_sqs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_send_repeated_after_a_crash_is_dropped_by_sqs() {
    match common::child_role().as_deref() {
        Some("worker") => return worker().await,
        Some(role) => return sender(role).await,
        None => {}
    }
    let url = common::fresh_database("exactly_test_sqs_fifo_send").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let client = sqs_support::client();
    let fifo = sqs_support::create_queue(&client, &sqs_support::unique("sends.fifo"), 30).await;
    let unused = sqs_support::create_queue(&client, &sqs_support::unique("unused"), 30).await;
    let go = std::env::temp_dir().join(sqs_support::unique("go"));
    let go_path = go.to_str().unwrap().to_owned();
    let env = [
        ("EXACTLY_DATABASE_URL", url.as_str()),
        ("SQS_CRASH_QUEUE_URL", unused.as_str()), // for this binary's consumer
        ("SQS_FIFO_URL", fifo.as_str()),
        ("GO_FILE", go_path.as_str()),
    ];

    let mut first = common::KillOnDrop(common::spawn_child(SEND_TEST, "sender", &env));
    common::wait_for_marker(&mut first.0, "LAUNCHED", CHILD_TIMEOUT);
    // Checkpoints wait behind this lock: the first send reaches SQS, its record does not.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE exactly.operation_outputs IN SHARE MODE").execute(&mut *lock).await.unwrap();
    std::fs::write(&go, "go").unwrap();
    sqs_support::wait_until(CHILD_TIMEOUT, "the first send reached SQS", || async {
        sqs_support::messages_left(&client, &fifo).await == 1
    })
    .await;
    first.0.kill().unwrap(); // SIGKILL, with the send's checkpoint unwritten
    first.0.wait().unwrap();
    lock.rollback().await.unwrap();
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs").fetch_one(&pool).await.unwrap();
    assert_eq!(recorded, 0, "the send was not checkpointed");

    // The restarted worker recovers the workflow, which sends again: SQS drops it.
    let mut second = common::KillOnDrop(common::spawn_child(SEND_TEST, "resume", &env));
    common::wait_for_marker(&mut second.0, "RESULT 2", CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut second.0, CHILD_TIMEOUT).success());
    let _ = std::fs::remove_file(&go);
    assert_eq!(drain(&client, &fifo).await, ["invoice-7", "invoice-7"], "step 0's repeat was dropped, step 1 arrived");
    let steps: Vec<(i32, String)> =
        sqlx::query_as("SELECT step_id, name FROM exactly.operation_outputs WHERE workflow_id = 'fifo-sender-1' ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(steps, [(0, exactly::sqs::SEND_STEP_NAME.to_owned()), (1, exactly::sqs::SEND_STEP_NAME.to_owned())]);

    // Outside a workflow a send simply sends, with a fresh deduplication ID each time.
    for _ in 0..2 {
        exactly::sqs::send_fifo(&fifo, "loose", "customer-1").await.unwrap();
    }
    assert_eq!(drain(&client, &fifo).await, ["loose", "loose"]);
}

/// Receives and deletes everything the queue holds.
async fn drain(sqs: &Client, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let output =
            sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            bodies.push(message.body.unwrap_or_default());
            sqs.delete_message().queue_url(queue_url).receipt_handle(message.receipt_handle.unwrap()).send().await.unwrap();
        }
    }
}

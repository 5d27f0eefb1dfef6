//! A PostgreSQL restart while an SQS consumer receives a stream of messages: the
//! receiver waits for the database (deleting nothing it has not stored), then goes
//! on; every message ends as one finished workflow whose step ran once.
//!
//! The only test of its binary (cargo runs test binaries one after another),
//! because it restarts the server every test uses, with `dev/services restart postgres`.

mod common;
mod sqs_support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use exactly::sqs::SqsReceiver;
use exactly::{Runtime, SqsMessage, sqs_consumer, step, workflow};

const MESSAGES: usize = 60;

static EXECUTIONS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

#[step]
async fn handle(body: &str) -> exactly::Result<()> {
    *EXECUTIONS.lock().unwrap().get_or_insert_with(HashMap::new).entry(body.to_owned()).or_default() += 1;
    Ok(())
}

#[sqs_consumer(wait_time_s = 1, visibility_timeout_s = 3)]
#[workflow]
async fn on_outage_job(message: SqsMessage) -> exactly::Result<()> {
    handle(message.text()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_stream_delays_messages_but_loses_and_repeats_none() {
    let url = common::fresh_database("exactly_test_sqs_outage").await;
    let client = sqs_support::client();
    let queue_url = sqs_support::create_queue(&client, &sqs_support::unique("outage"), 3).await;
    let runtime = Runtime::builder()
        .database_url(&url)
        .executor_id("sqs-outage")
        .sqs_receiver(SqsReceiver::new().queue_url(&queue_url))
        .launch()
        .await
        .unwrap();

    let sender = {
        let (client, queue_url) = (client.clone(), queue_url.clone());
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                sqs_support::send(&client, &queue_url, &format!("job-{i}"), None).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    tokio::task::spawn_blocking(|| common::restart_service("postgres")).await.unwrap();
    sender.await.unwrap();

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let name = queue_url.rsplit('/').next().unwrap();
    sqs_support::wait_until(Duration::from_secs(60), "every message's workflow finished", || async {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM exactly.workflow_status WHERE workflow_id LIKE $1 AND status = 'SUCCESS'",
        )
        .bind(format!("sqs:{name}:%"))
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        done as usize == MESSAGES
    })
    .await;
    sqs_support::wait_until(Duration::from_secs(30), "the queue is empty", || async {
        sqs_support::messages_left(&client, &queue_url).await == 0
    })
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE workflow_id LIKE $1")
        .bind(format!("sqs:{name}:%"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows as usize, MESSAGES, "one workflow per message");
    let executions = EXECUTIONS.lock().unwrap().clone().unwrap_or_default();
    for i in 0..MESSAGES {
        assert_eq!(executions.get(&format!("job-{i}")), Some(&1), "job-{i}");
    }
    runtime.shutdown().await.unwrap();
}

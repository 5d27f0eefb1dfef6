//! What can go wrong between an SQS queue and its workflows, against moto and
//! PostgreSQL, each test with a runtime of its own (one at a time): the insert of a
//! batch fails for good (a trigger refuses it), the SQS server becomes unreachable
//! mid-stream (a TCP front that drops connections), a body that is not the JSON the
//! workflow expects, and messages the key function cannot name.

mod common;
mod sqs_support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use exactly::sqs::{SqsConsumerOptions, SqsReceiver};
use exactly::{Runtime, SqsMessage, WorkflowState, step, workflow};
use serde::Deserialize;
use sqs_support::{
    Requests, SqsFront, client, client_for, count, create_queue, messages_left, send, unique, wait_until, workflows,
};

const WAIT: Duration = Duration::from_secs(60);

/// One runtime at a time in this process.
static ONE_RUNTIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many times each body's step ran in this process.
static EXECUTIONS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn executions(body: &str) -> u32 {
    EXECUTIONS.lock().unwrap().as_ref().and_then(|e| e.get(body).copied()).unwrap_or(0)
}

#[step]
async fn handle(body: &str) -> exactly::Result<()> {
    *EXECUTIONS.lock().unwrap().get_or_insert_with(HashMap::new).entry(body.to_owned()).or_default() += 1;
    Ok(())
}

#[workflow]
async fn on_failure_job(message: SqsMessage) -> exactly::Result<()> {
    handle(message.text()).await
}

#[derive(Deserialize)]
struct Job {
    id: u32,
}

#[workflow]
async fn on_typed_job(message: SqsMessage) -> exactly::Result<u32> {
    let job: Job = message.json()?;
    handle(message.text()).await?;
    Ok(job.id)
}

/// Names each message by its body, but cannot name `panic` or `empty`.
fn picky_key(message: &SqsMessage) -> String {
    match message.text() {
        "panic" => panic!("no key for this one"),
        "empty" => String::new(),
        body => format!("key-{body}"),
    }
}

async fn launch(url: &str, receiver: SqsReceiver) -> Runtime {
    Runtime::builder()
        .database_url(url)
        .executor_id("sqs-failures")
        .shutdown_timeout(Duration::from_secs(5))
        .sqs_receiver(receiver)
        .launch()
        .await
        .expect("launch")
}

/// The workflow IDs of these message IDs, sorted.
fn ids(name: &str, message_ids: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = message_ids.iter().map(|id| format!("sqs:{name}:{id}")).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_insert_fails_for_good_is_not_deleted_and_comes_back_once_the_fault_is_cured() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_insert_fails").await;
    let requests = Requests::default();
    let sqs = client_for(&sqs_support::endpoint(), Some(requests.clone()));
    let name = unique("refused");
    // A short visibility timeout, so that refused messages come back quickly.
    let queue_url = create_queue(&sqs, &name, 1).await;
    let runtime = launch(
        &url,
        SqsReceiver::new()
            .client(sqs.clone())
            .consumer(on_failure_job, SqsConsumerOptions::new().queue_url(&queue_url).wait_time_s(1)),
    )
    .await;
    let pool = runtime.pool();
    // Not a transient error (which the writer retries forever): the trigger refuses
    // this queue's rows, and counts its refusals in a sequence, which no rollback undoes.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SEQUENCE public.refusals;
         CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF starts_with(NEW.workflow_id, 'sqs:{name}:') THEN
                 PERFORM nextval('public.refusals');
                 RAISE EXCEPTION 'refused by the test';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON exactly.workflow_status
             FOR EACH ROW EXECUTE FUNCTION public.refuse();"
    )))
    .execute(pool)
    .await
    .unwrap();
    let refusals = || async {
        sqlx::query_scalar::<_, i64>("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.refusals")
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send(&sqs, &queue_url, &format!("refused-{i}"), None).await);
    }
    // Each message is received, refused, received again after its visibility timeout...
    wait_until(WAIT, "the messages were refused repeatedly", || async { refusals().await >= 6 }).await;
    assert!(workflows(pool, &name).await.is_empty(), "no row was stored");
    assert_eq!(requests.count("DeleteMessageBatch"), 0, "nothing was deleted");
    assert_eq!(messages_left(&sqs, &queue_url).await, 3, "the messages are still on the queue");

    // The fault is cured: every message gets its one workflow, and the queue drains.
    sqlx::raw_sql("DROP TRIGGER refuse ON exactly.workflow_status").execute(pool).await.unwrap();
    wait_until(WAIT, "3 workflows", || async { count(pool, &name, "SUCCESS").await == 3 }).await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(&sqs, &queue_url).await == 0 }).await;
    let rows = workflows(pool, &name).await;
    assert_eq!(rows.into_iter().map(|(id, _)| id).collect::<Vec<_>>(), ids(&name, &sent), "one workflow per message");
    for i in 0..3 {
        assert_eq!(executions(&format!("refused-{i}")), 1, "refused-{i}");
    }
    let receives: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT inputs->0->'attributes'->'ApproximateReceiveCount' FROM exactly.workflow_status WHERE starts_with(workflow_id, $1)")
            .bind(format!("sqs:{name}:"))
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(
        receives.iter().all(|n| n.as_str().and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 1)),
        "each row comes from a redelivery: {receives:?}"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_server_unreachable_mid_stream_delays_messages_but_loses_and_repeats_none() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_unreachable").await;
    let direct = client();
    let endpoint = sqs_support::endpoint();
    let front = SqsFront::start(endpoint.trim_start_matches("http://").to_owned()).await;
    let name = unique("partitioned");
    let queue_url = create_queue(&direct, &name, 2).await;
    // The consumer reaches moto only through the front; the default 20 s long polling.
    let runtime = launch(
        &url,
        SqsReceiver::new()
            .client(client_for(&front.endpoint(), None))
            .consumer(on_failure_job, SqsConsumerOptions::new().queue_url(&queue_url)),
    )
    .await;
    let pool = runtime.pool();
    let sender = {
        let (direct, queue_url) = (direct.clone(), queue_url.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..40 {
                sent.push(send(&direct, &queue_url, &format!("stream-{i}"), None).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    front.cut();
    let done_at_cut = count(pool, &name, "SUCCESS").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let done_while_cut = count(pool, &name, "SUCCESS").await;
    front.restore();
    let mut sent = sender.await.unwrap();
    assert!(done_at_cut > 0, "messages flowed before the cut");
    assert!(done_while_cut <= done_at_cut + 10, "no batch got through the cut: {done_at_cut} -> {done_while_cut}");
    assert!(front.refused.load(std::sync::atomic::Ordering::SeqCst) > 0, "the receiver tried while cut");

    // The same receiver goes on, without a restart.
    sent.push(send(&direct, &queue_url, "after-the-cut", None).await);
    let total = sent.len();
    wait_until(WAIT, "every message's workflow succeeded", || async { count(pool, &name, "SUCCESS").await == total })
        .await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(&direct, &queue_url).await == 0 }).await;
    let rows = workflows(pool, &name).await;
    assert_eq!(rows.into_iter().map(|(id, _)| id).collect::<Vec<_>>(), ids(&name, &sent), "one workflow per message");
    for i in 0..40 {
        assert_eq!(executions(&format!("stream-{i}")), 1, "stream-{i}");
    }
    assert_eq!(executions("after-the-cut"), 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_the_expected_json_ends_as_error_is_deleted_and_the_consumer_goes_on() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_bad_body").await;
    let sqs = client();
    let name = unique("typed");
    let queue_url = create_queue(&sqs, &name, 1).await;
    let runtime = launch(
        &url,
        SqsReceiver::new()
            .client(sqs.clone())
            .consumer(on_typed_job, SqsConsumerOptions::new().queue_url(&queue_url).wait_time_s(1)),
    )
    .await;
    let pool = runtime.pool();
    let bad = send(&sqs, &queue_url, "not json", None).await;
    let wrong = send(&sqs, &queue_url, r#"{"name": "no id"}"#, None).await;
    let good = send(&sqs, &queue_url, r#"{"id": 7}"#, None).await;
    wait_until(WAIT, "3 workflows ended", || async {
        count(pool, &name, "SUCCESS").await + count(pool, &name, "ERROR").await == 3
    })
    .await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(&sqs, &queue_url).await == 0 }).await;
    for (id, body) in [(&bad, "not json"), (&wrong, r#"{"name": "no id"}"#)] {
        let status = runtime.status(&format!("sqs:{name}:{id}")).await.unwrap().unwrap();
        assert_eq!(status.state, WorkflowState::Error, "{body}");
        let error = status.error.unwrap_or_default();
        assert!(error.contains(&format!("the body of SQS message `{id}`")), "{error}");
        let inputs: serde_json::Value = serde_json::from_str(&status.inputs).unwrap();
        assert_eq!(inputs[0]["body"], body, "the input is kept");
        assert_eq!(executions(body), 0);
    }
    assert_eq!(runtime.result::<u32>(&format!("sqs:{name}:{good}")).await.unwrap(), 7);
    // Deleted, not redelivered: after more than the visibility timeout, still 3 rows, 1 run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(workflows(pool, &name).await.len(), 3);
    assert_eq!(messages_left(&sqs, &queue_url).await, 0);
    assert_eq!(executions(r#"{"id": 7}"#), 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_key_function_cannot_name_is_recorded_as_rejected_and_deleted() {
    let _one = ONE_RUNTIME.lock().await;
    let url = common::fresh_database("exactly_test_sqs_rejected").await;
    let sqs = client();
    let name = unique("picky");
    let queue_url = create_queue(&sqs, &name, 1).await;
    let runtime = launch(
        &url,
        SqsReceiver::new()
            .client(sqs.clone())
            .consumer(on_failure_job, SqsConsumerOptions::new().queue_url(&queue_url).key(picky_key).wait_time_s(1)),
    )
    .await;
    let pool = runtime.pool();
    let panics = send(&sqs, &queue_url, "panic", None).await;
    let empty = send(&sqs, &queue_url, "empty", None).await;
    send(&sqs, &queue_url, "fine", None).await;
    wait_until(WAIT, "3 workflows ended", || async {
        count(pool, &name, "SUCCESS").await + count(pool, &name, "ERROR").await == 3
    })
    .await;
    wait_until(WAIT, "the queue is empty", || async { messages_left(&sqs, &queue_url).await == 0 }).await;
    assert_eq!(executions("fine"), 1);
    assert_eq!(count(pool, &name, "SUCCESS").await, 1);
    for (id, body, reason) in [(&panics, "panic", "panicked"), (&empty, "empty", "returned an empty key")] {
        let workflow_id = format!("sqs:{name}:{id}");
        let (workflow, status, error, inputs, source): (
            String,
            String,
            serde_json::Value,
            serde_json::Value,
            serde_json::Value,
        ) = sqlx::query_as(
            "SELECT name, status, error, inputs, source FROM exactly.workflow_status WHERE workflow_id = $1",
        )
        .bind(&workflow_id)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!((workflow.as_str(), status.as_str()), ("exactly::sqs::rejected", "ERROR"), "{body}");
        let error = error.as_str().map_or_else(|| error.to_string(), str::to_owned);
        assert!(error.contains(reason) && error.contains(&format!("SQS message `{id}`")), "{error}");
        assert!(error.contains("sqs_failures::on_failure_job"), "the error names the consumer: {error}");
        assert_eq!(inputs[0]["message"]["body"], body, "the message is kept");
        assert_eq!(inputs[0]["message"]["message_id"], id.as_str());
        assert_eq!(inputs[0]["workflow"], "sqs_failures::on_failure_job");
        assert_eq!(source["sqs"]["message_id"], id.as_str());
        assert_eq!(executions(body), 0);
    }
    // Deleted, not redelivered: after more than the visibility timeout, still 3 rows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(workflows(pool, &name).await.len(), 3);
    assert_eq!(messages_left(&sqs, &queue_url).await, 0);
    runtime.shutdown().await.unwrap();
}

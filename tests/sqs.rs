//! SQS consumers against the real SQS-API server (moto, started by `dev/services`)
//! and PostgreSQL, all on one runtime shared by this binary's tests: standard and
//! FIFO queues, `group` ordering, key functions, receiver defaults and overrides
//! (client factory, client fn), failing workflows and the durable send helper.
//! Every queue has a name unique to the run.

mod common;
mod sqs_support;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use exactly::sqs::aws_sdk_sqs::Client;
use exactly::sqs::{MessageAttribute, SqsConsumerOptions, SqsReceiver};
use exactly::{Runtime, SqsMessage, WorkflowState, register_sqs_consumer, sqs_consumer, workflow};
use serde::{Deserialize, Serialize};
use sqs_support::{
    Counter, Requests, client, client_for, create_queue, endpoint, messages_left, send, unique, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);

exactly::queue!(static SLOW = "sqs_test_slow");
exactly::queue!(static OTHER = "sqs_test_other");

struct Urls {
    standard: String,
    fifo: String,
    group: String,
    keyed: String,
    factory: String,
    overridden: String,
    failing: String,
    forward: String,
    sink: String,
}

struct Shared {
    runtime: Runtime,
    client: Client,
    urls: Urls,
    factory_requests: Requests,
    override_requests: Requests,
}

static FACTORY_CALLS: Counter = Counter::new();
static KEYED_CLIENT_CALLS: Counter = Counter::new();
static KEYED_REQUESTS: OnceLock<Requests> = OnceLock::new();

/// The runtime of this binary, launched once on a thread of its own so that it
/// outlives each test's tokio runtime.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| common::on_own_runtime(launch))
}

async fn launch() -> Shared {
    let url = common::fresh_database("exactly_test_sqs").await;
    let client = client();
    let queue = |name: String| {
        let client = client.clone();
        async move { create_queue(&client, &unique(&name), 30).await }
    };
    let urls = Urls {
        standard: queue("standard".into()).await,
        fifo: queue("fifo.fifo".into()).await,
        group: queue("group.fifo".into()).await,
        keyed: queue("keyed".into()).await,
        factory: queue("factory".into()).await,
        overridden: queue("overridden".into()).await,
        failing: queue("failing".into()).await,
        forward: queue("forward".into()).await,
        sink: queue("sink".into()).await,
    };
    let factory_requests = Requests::default();
    let override_requests = Requests::default();
    KEYED_REQUESTS.set(Requests::default()).unwrap();
    register_sqs_consumer(on_failing, SqsConsumerOptions::new().queue_url(&urls.failing).wait_time_s(1));
    let factory = {
        let requests = factory_requests.clone();
        SqsReceiver::named("factory")
            .client_factory(move || {
                let requests = requests.clone();
                async move {
                    FACTORY_CALLS.bump();
                    client_for(&endpoint(), Some(requests))
                }
            })
            .queue_url(&urls.factory)
            .key(|m| format!("f-{}", m.body))
            .workflow_queue(SLOW.name)
            .consumer(
                on_override,
                SqsConsumerOptions::new()
                    .queue_url(&urls.overridden)
                    .client(client_for(&endpoint(), Some(override_requests.clone())))
                    .key(|m| format!("o-{}", m.body))
                    .workflow_queue(OTHER.name),
            )
    };
    let runtime = Runtime::builder()
        .database_url(&url)
        .executor_id("sqs-tests")
        .sqs_receiver(SqsReceiver::new().consumer(on_forward, SqsConsumerOptions::new().queue_url(&urls.forward)))
        .sqs_receiver(SqsReceiver::named("standard").queue_url(&urls.standard))
        .sqs_receiver(SqsReceiver::named("fifo").queue_url(&urls.fifo))
        .sqs_receiver(SqsReceiver::named("group").queue_url(&urls.group))
        .sqs_receiver(SqsReceiver::named("keyed").queue_url(&urls.keyed))
        .sqs_receiver(SqsReceiver::named("sink").queue_url(&urls.sink))
        .sqs_receiver(factory)
        .launch()
        .await
        .expect("launch the shared runtime with its SQS consumers");
    Shared { runtime, client, urls, factory_requests, override_requests }
}

/// Each consumer workflow's executions in this process: (workflow ID, message).
static SEEN: Mutex<Vec<(String, SqsMessage)>> = Mutex::new(Vec::new());

fn seen(message: &SqsMessage) {
    SEEN.lock().unwrap().push((exactly::workflow_id().unwrap(), message.clone()));
}

fn executions(id: &str) -> usize {
    SEEN.lock().unwrap().iter().filter(|(seen, _)| seen == id).count()
}

fn seen_message(id: &str) -> Option<SqsMessage> {
    SEEN.lock().unwrap().iter().find(|(seen, _)| seen == id).map(|(_, m)| m.clone())
}

#[sqs_consumer(receiver = "standard", wait_time_s = 5)]
#[workflow]
async fn on_standard(message: SqsMessage) -> exactly::Result<String> {
    seen(&message);
    Ok(message.body)
}

#[sqs_consumer(receiver = "fifo", batch_size = 10)]
#[workflow]
async fn on_fifo(message: SqsMessage) -> exactly::Result<()> {
    seen(&message);
    Ok(())
}

/// (group, sequence number, start, end) of each `group`-ordered execution.
static GROUP_RUNS: Mutex<Vec<(String, u32, Instant, Instant)>> = Mutex::new(Vec::new());

#[sqs_consumer(receiver = "group", ordering = "group")]
#[workflow]
async fn on_group(message: SqsMessage) -> exactly::Result<()> {
    let start = Instant::now();
    let (group, seq) = message.body.split_once(':').unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    GROUP_RUNS.lock().unwrap().push((group.to_owned(), seq.parse().unwrap(), start, Instant::now()));
    Ok(())
}

fn body_key(message: &SqsMessage) -> String {
    format!("k-{}", message.body)
}

fn keyed_client() -> Client {
    KEYED_CLIENT_CALLS.bump();
    client_for(&endpoint(), KEYED_REQUESTS.get().cloned())
}

#[sqs_consumer(receiver = "keyed", key = body_key, client = keyed_client)]
#[workflow]
async fn on_keyed(message: SqsMessage) -> exactly::Result<()> {
    seen(&message);
    Ok(())
}

#[sqs_consumer(receiver = "factory")]
#[workflow]
async fn on_factory(message: SqsMessage) -> exactly::Result<()> {
    seen(&message);
    Ok(())
}

/// Registered on the "factory" receiver with its own settings.
#[workflow]
async fn on_override(message: SqsMessage) -> exactly::Result<()> {
    seen(&message);
    Ok(())
}

/// Registered with `register_sqs_consumer`.
#[workflow]
async fn on_failing(message: SqsMessage) -> exactly::Result<()> {
    seen(&message);
    if message.text() == "bad" {
        return Err(exactly::Error::msg(format!("cannot handle {}", message.message_id)));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Forward {
    to: String,
    text: String,
}

/// Registered on the default receiver; sends with the durable send helper.
#[workflow]
async fn on_forward(message: SqsMessage) -> exactly::Result<String> {
    let forward: Forward = message.json()?;
    exactly::sqs::send(forward.to, format!("fwd:{}", forward.text)).await
}

#[sqs_consumer(receiver = "sink")]
#[workflow]
async fn on_sink(message: SqsMessage) -> exactly::Result<()> {
    seen(&message);
    Ok(())
}

/// (workflow ID, status, queue, partition key) of the workflows of queue `name`.
async fn rows(pool: &sqlx::PgPool, name: &str) -> Vec<(String, String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT workflow_id, status, queue_name, partition_key FROM workflow_status
         WHERE workflow_id LIKE $1 ORDER BY created_at",
    )
    .bind(format!("sqs:{name}:%"))
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn finished(pool: &sqlx::PgPool, name: &str, n: usize) -> bool {
    let rows = rows(pool, name).await;
    rows.len() >= n && rows.iter().all(|(_, status, ..)| status == "SUCCESS" || status == "ERROR")
}

fn name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[test]
fn standard_queue_messages_each_start_one_workflow_and_are_deleted() {
    common::block_on(async {
        let s = shared();
        let (url, pool) = (&s.urls.standard, s.runtime.pool());
        let name = name_of(url);
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(send(&s.client, url, &format!("plain {i}"), None).await);
        }
        let rich = s
            .client
            .send_message()
            .queue_url(url)
            .message_body("héllo ✓ {\"n\": 1}")
            .message_attributes("kind", MessageAttribute::string("job").to_sdk().unwrap())
            .message_attributes("cents", MessageAttribute::number(1250).to_sdk().unwrap())
            .message_attributes("raw", MessageAttribute::binary(vec![0u8, 159, 255]).to_sdk().unwrap())
            .send()
            .await
            .unwrap()
            .message_id
            .unwrap();
        ids.push(rich.clone());
        wait_until(WAIT, "21 workflows finished", || finished(pool, name, 21)).await;
        wait_until(WAIT, "the queue is empty", || async { messages_left(&s.client, url).await == 0 }).await;

        let rows = rows(pool, name).await;
        assert_eq!(rows.len(), 21);
        for id in &ids {
            let workflow_id = format!("sqs:{name}:{id}");
            assert_eq!(executions(&workflow_id), 1, "{workflow_id}");
            let status = s.runtime.status(&workflow_id).await.unwrap().unwrap();
            assert_eq!(status.state, WorkflowState::Success);
        }
        let workflow_id = format!("sqs:{name}:{rich}");
        let message = seen_message(&workflow_id).unwrap();
        assert_eq!(message.text(), "héllo ✓ {\"n\": 1}");
        assert_eq!(
            (message.queue_url.as_str(), message.message_id.as_str(), message.queue_name()),
            (url.as_str(), rich.as_str(), name)
        );
        assert_eq!(message.receive_count(), Some(1));
        assert!(message.attribute("SentTimestamp").is_some(), "{:?}", message.attributes);
        assert_eq!(message.message_attribute("kind"), Some(&MessageAttribute::string("job")));
        assert_eq!(message.message_attribute("cents"), Some(&MessageAttribute::number(1250)));
        assert_eq!(message.message_attribute("raw"), Some(&MessageAttribute::binary(vec![0u8, 159, 255])));
        // The recorded input is `[message]`, and the row names its source.
        let (inputs, source): (serde_json::Value, serde_json::Value) =
            sqlx::query_as("SELECT inputs, source FROM workflow_status WHERE workflow_id = $1")
                .bind(&workflow_id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(inputs, serde_json::json!([message]));
        assert_eq!(source["sqs"]["queue_url"], url.as_str());
        assert_eq!(source["sqs"]["message_id"], rich.as_str());
        assert_eq!(s.runtime.result::<String>(&workflow_id).await.unwrap(), "héllo ✓ {\"n\": 1}");
    })
}

#[test]
fn fifo_queue_messages_each_start_one_workflow() {
    common::block_on(async {
        let s = shared();
        let (url, pool) = (&s.urls.fifo, s.runtime.pool());
        let name = name_of(url);
        let mut ids = Vec::new();
        for i in 0..12 {
            ids.push(send(&s.client, url, &format!("m{i}"), Some(&format!("g{}", i % 3))).await);
        }
        wait_until(WAIT, "12 workflows finished", || finished(pool, name, 12)).await;
        wait_until(WAIT, "the queue is empty", || async { messages_left(&s.client, url).await == 0 }).await;
        for id in &ids {
            let workflow_id = format!("sqs:{name}:{id}");
            assert_eq!(executions(&workflow_id), 1, "{workflow_id}");
        }
        let rows = rows(pool, name).await;
        assert_eq!(rows.len(), 12);
        assert!(
            rows.iter().all(|(_, _, queue, key)| queue.is_none() && key.is_none()),
            "ordering none starts at once: {rows:?}"
        );
        let message = seen_message(&format!("sqs:{name}:{}", ids[4])).unwrap();
        assert_eq!(message.group_id(), Some("g1"));
    })
}

#[test]
fn group_ordering_runs_each_group_one_at_a_time_in_order() {
    common::block_on(async {
        let s = shared();
        let (url, pool) = (&s.urls.group, s.runtime.pool());
        let name = name_of(url);
        const GROUPS: u32 = 3;
        const PER_GROUP: u32 = 8;
        for seq in 0..PER_GROUP {
            for group in 0..GROUPS {
                send(&s.client, url, &format!("g{group}:{seq}"), Some(&format!("g{group}"))).await;
            }
        }
        let total = (GROUPS * PER_GROUP) as usize;
        wait_until(WAIT, "the group-ordered workflows finished", || finished(pool, name, total)).await;
        wait_until(WAIT, "the queue is empty", || async { messages_left(&s.client, url).await == 0 }).await;

        let runs = GROUP_RUNS.lock().unwrap().clone();
        assert_eq!(runs.len(), total);
        let mut by_group: HashMap<String, Vec<(u32, Instant, Instant)>> = HashMap::new();
        for (group, seq, start, end) in runs {
            by_group.entry(group).or_default().push((seq, start, end));
        }
        for (group, mut runs) in by_group {
            runs.sort_by_key(|(_, start, _)| *start);
            let order: Vec<u32> = runs.iter().map(|(seq, ..)| *seq).collect();
            assert_eq!(order, (0..PER_GROUP).collect::<Vec<_>>(), "group {group} ran out of order");
            for pair in runs.windows(2) {
                assert!(pair[1].1 >= pair[0].2, "group {group}: {} started before {} ended", pair[1].0, pair[0].0);
            }
        }
        for (id, _, queue, key) in rows(pool, name).await {
            assert_eq!(queue.as_deref(), Some("_exactly_sqs_group"), "{id}");
            assert!(key.as_deref().is_some_and(|k| k.starts_with(&format!("{name}:g"))), "{id}: {key:?}");
        }
    })
}

#[test]
fn the_same_content_sent_twice_with_a_key_function_starts_one_workflow() {
    common::block_on(async {
        let s = shared();
        let (url, pool) = (&s.urls.keyed, s.runtime.pool());
        let name = name_of(url);
        send(&s.client, url, "order-42", None).await;
        send(&s.client, url, "order-42", None).await;
        send(&s.client, url, "order-43", None).await;
        wait_until(WAIT, "the queue is empty", || async { messages_left(&s.client, url).await == 0 }).await;
        wait_until(WAIT, "2 keyed workflows finished", || finished(pool, name, 2)).await;
        // A duplicate that arrives after its twin finished is deleted too; give it a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ids: Vec<String> = rows(pool, name).await.into_iter().map(|r| r.0).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(
            ids.contains(&format!("sqs:{name}:k-order-42")) && ids.contains(&format!("sqs:{name}:k-order-43")),
            "{ids:?}"
        );
        assert_eq!(executions(&format!("sqs:{name}:k-order-42")), 1);
        // `client = keyed_client` built the client that did the work, once.
        assert_eq!(KEYED_CLIENT_CALLS.get(), 1);
        let requests = KEYED_REQUESTS.get().unwrap();
        assert_eq!(requests.count("GetQueueAttributes"), 1, "the launch check");
        assert!(requests.count("ReceiveMessage") >= 1 && requests.count("DeleteMessageBatch") >= 1);
    })
}

#[test]
fn receiver_defaults_apply_and_a_consumer_s_own_settings_override_them() {
    common::block_on(async {
        let s = shared();
        let pool = s.runtime.pool();
        let (factory, overridden) = (name_of(&s.urls.factory), name_of(&s.urls.overridden));
        for body in ["a", "b", "c"] {
            send(&s.client, &s.urls.factory, body, None).await;
            send(&s.client, &s.urls.overridden, body, None).await;
        }
        wait_until(WAIT, "the factory receiver's workflows finished", || finished(pool, factory, 3)).await;
        wait_until(WAIT, "the overriding consumer's workflows finished", || finished(pool, overridden, 3)).await;
        for body in ["a", "b", "c"] {
            // The receiver's key function and workflow queue...
            let row = rows(pool, factory).await.into_iter().find(|r| r.0 == format!("sqs:{factory}:f-{body}"));
            assert_eq!(row.map(|r| r.2), Some(Some("sqs_test_slow".to_owned())), "{body}");
            // ...and the consumer's own, which win.
            let row = rows(pool, overridden).await.into_iter().find(|r| r.0 == format!("sqs:{overridden}:o-{body}"));
            assert_eq!(row.map(|r| r.2), Some(Some("sqs_test_other".to_owned())), "{body}");
        }
        // The factory was called once, at launch, and its client served only its consumer.
        assert_eq!(FACTORY_CALLS.get(), 1);
        for requests in [&s.factory_requests, &s.override_requests] {
            assert_eq!(requests.count("GetQueueAttributes"), 1, "one launch check each");
            assert!(requests.count("ReceiveMessage") >= 1 && requests.count("DeleteMessageBatch") >= 1);
        }
    })
}

#[test]
fn a_failing_workflow_ends_as_error_with_its_input_kept_and_the_consumer_goes_on() {
    common::block_on(async {
        let s = shared();
        let (url, pool) = (&s.urls.failing, s.runtime.pool());
        let name = name_of(url);
        let bad = send(&s.client, url, "bad", None).await;
        let good = send(&s.client, url, "good", None).await;
        wait_until(WAIT, "both workflows finished", || finished(pool, name, 2)).await;
        wait_until(WAIT, "the queue is empty", || async { messages_left(&s.client, url).await == 0 }).await;
        let status = s.runtime.status(&format!("sqs:{name}:{bad}")).await.unwrap().unwrap();
        assert_eq!(status.state, WorkflowState::Error);
        assert!(status.error.as_deref().unwrap_or_default().contains(&format!("cannot handle {bad}")), "{status:?}");
        let inputs: serde_json::Value = serde_json::from_str(&status.inputs).unwrap();
        assert_eq!(inputs[0]["body"], "bad");
        let status = s.runtime.status(&format!("sqs:{name}:{good}")).await.unwrap().unwrap();
        assert_eq!(status.state, WorkflowState::Success);
    })
}

#[test]
fn a_workflow_sends_with_the_durable_send_helper() {
    common::block_on(async {
        let s = shared();
        let pool = s.runtime.pool();
        let forward = serde_json::json!({ "to": s.urls.sink, "text": "hello" }).to_string();
        let id = send(&s.client, &s.urls.forward, &forward, None).await;
        let workflow_id = format!("sqs:{}:{id}", name_of(&s.urls.forward));
        wait_until(WAIT, "the forwarding workflow exists", || async {
            s.runtime.status(&workflow_id).await.unwrap().is_some()
        })
        .await;
        let sent: String = s.runtime.result(&workflow_id).await.unwrap();
        let sink = name_of(&s.urls.sink);
        let sink_id = format!("sqs:{sink}:{sent}");
        wait_until(WAIT, "the sink consumer got the forwarded message", || async { executions(&sink_id) == 1 }).await;
        assert_eq!(seen_message(&sink_id).unwrap().text(), "fwd:hello");
        let (name, output): (String, serde_json::Value) =
            sqlx::query_as("SELECT name, output FROM operation_outputs WHERE workflow_id = $1 AND step_id = 0")
                .bind(&workflow_id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(name, exactly::sqs::SEND_STEP_NAME);
        assert_eq!(output, serde_json::json!(sent), "the send is checkpointed with the message ID");
    })
}

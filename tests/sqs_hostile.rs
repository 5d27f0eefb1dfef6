//! SQS messages that must not stop a queue, against moto and PostgreSQL, on one
//! runtime shared by this binary's tests: keys PostgreSQL would refuse in an ID (4,096
//! characters, a NUL character) from a key function, the long one twice, and a row
//! the database refuses for its data in the middle of a batch. Each odd message is
//! sent with normal ones; every message must end as exactly one workflow (or one
//! rejected row), be deleted from its queue, and leave every poller consuming.
//!
//! Not tested here: a FIFO message group ID of 128 characters (SQS's longest). Under
//! `ordering = "group"` it goes into a partition key `{queue}:{group}`, at most
//! 80 + 1 + 128 bytes, which is under the 256 bytes kept unhashed and far under what
//! an index entry holds; and it goes into no ID.

mod common;
mod sqs_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use exactly::sqs::aws_sdk_sqs::config::interceptors::AfterDeserializationInterceptorContextRef;
use exactly::sqs::aws_sdk_sqs::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use exactly::sqs::aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use exactly::sqs::aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use exactly::sqs::aws_sdk_sqs::{self, Client};
use exactly::sqs::{SqsConsumerOptions, SqsReceiver};
use exactly::{ReceiverState, Runtime, SqsMessage, workflow};
use sqs_support::{client, create_queue, endpoint, unique, wait_until};
use tokio::sync::OnceCell;

const WAIT: Duration = Duration::from_secs(60);
/// Pollers of each consumer (the default).
const POLLERS: usize = 4;
/// The constraint that refuses marked rows (see the refused-row test).
const CONSTRAINT: &str = "refuse_marked_rows_sqs";

struct Shared {
    runtime: Runtime,
    client: Client,
    keyed: String,
    refusable: String,
    plain: String,
    /// The bodies of each non-empty receive of the refusable queue's consumer.
    receives: Receives,
}

/// The runtime of this binary, launched once on a thread of its own so that it
/// outlives each test's tokio runtime.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| common::on_own_runtime(launch))
}

async fn launch() -> Shared {
    let url = common::fresh_database("exactly_test_sqs_hostile").await;
    let client = client();
    let keyed = create_queue(&client, &unique("hostile-keys"), 30).await;
    let refusable = create_queue(&client, &unique("hostile-refused"), 30).await;
    let plain = create_queue(&client, &unique("hostile-nul"), 30).await;
    let receives = Receives::default();
    let runtime = Runtime::builder()
        .database_url(&url)
        .executor_id("sqs-hostile")
        .sqs_receiver(
            SqsReceiver::new()
                .client(client.clone())
                // Short long-polls: every poller reports on its state each second.
                .consumer(on_key, SqsConsumerOptions::new().queue_url(&keyed).key(body_key).wait_time_s(1))
                .consumer(
                    on_refusable,
                    SqsConsumerOptions::new()
                        .queue_url(&refusable)
                        .client(receiving_client(receives.clone()))
                        .batch_size(10)
                        .wait_time_s(1),
                )
                .consumer(on_plain, SqsConsumerOptions::new().queue_url(&plain).wait_time_s(1)),
        )
        .launch()
        .await
        .expect("launch the shared runtime with its SQS consumers");
    Shared { runtime, client, keyed, refusable, plain, receives }
}

/// Records the bodies of every non-empty `ReceiveMessage` answer.
#[derive(Debug, Clone, Default)]
struct Receives(Arc<Mutex<Vec<Vec<String>>>>);

impl Receives {
    fn all(&self) -> Vec<Vec<String>> {
        self.0.lock().unwrap().clone()
    }
}

impl Intercept for Receives {
    fn name(&self) -> &'static str {
        "ReceiveRecorder"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_sqs::error::BoxError> {
        if let Ok(output) = context.output_or_error()
            && let Some(output) = output.downcast_ref::<ReceiveMessageOutput>()
        {
            let bodies: Vec<String> = output.messages().iter().filter_map(|m| m.body.clone()).collect();
            if !bodies.is_empty() {
                self.0.lock().unwrap().push(bodies);
            }
        }
        Ok(())
    }
}

/// A client of the `dev/services` server that records what it receives.
fn receiving_client(receives: Receives) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint())
        .http_client(exactly::sqs::http_client())
        .interceptor(receives);
    Client::from_conf(config.build())
}

/// How many times each workflow ran in this process, by workflow ID.
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn ran() {
    let id = exactly::workflow_id().unwrap();
    *RUNS.lock().unwrap().get_or_insert_with(HashMap::new).entry(id).or_default() += 1;
}

fn runs(id: &str) -> u32 {
    RUNS.lock().unwrap().as_ref().and_then(|r| r.get(id).copied()).unwrap_or(0)
}

fn name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// Waiting plus in flight plus delayed: whatever the queue still holds.
async fn held(client: &Client, url: &str) -> usize {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let attributes = output.attributes.unwrap_or_default();
    attributes.values().map(|v| v.parse::<usize>().unwrap()).sum()
}

/// (workflow ID, workflow name, status) of the workflows of queue `name`.
async fn rows(pool: &sqlx::PgPool, name: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT workflow_id, name, status FROM exactly.workflow_status WHERE starts_with(workflow_id, $1)",
    )
    .bind(format!("sqs:{name}:"))
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The workflow IDs of `rows`, sorted by their bytes.
fn ids(rows: &[(String, String, String)]) -> Vec<String> {
    let mut ids: Vec<String> = rows.iter().map(|(id, ..)| id.clone()).collect();
    ids.sort();
    ids
}

async fn count(pool: &sqlx::PgPool, name: &str, status: &str) -> usize {
    rows(pool, name).await.iter().filter(|(_, _, s)| s == status).count()
}

/// The key is the body's `key`.
fn body_key(message: &SqsMessage) -> String {
    let body: serde_json::Value = serde_json::from_str(message.text()).unwrap_or_default();
    body["key"].as_str().unwrap_or_default().to_owned()
}

/// Returns the length of its key in characters: the workflow got the whole key.
#[workflow]
async fn on_key(message: SqsMessage) -> exactly::Result<u64> {
    ran();
    Ok(body_key(&message).chars().count() as u64)
}

fn long_key() -> String {
    (0..4096u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect()
}

/// What was sent to the keyed queue: (message ID, key) in sending order.
async fn keyed_sent() -> &'static Vec<(String, String)> {
    static SENT: OnceCell<Vec<(String, String)>> = OnceCell::const_new();
    SENT.get_or_init(|| async {
        let s = shared();
        let mut keys = vec![long_key(), "a\u{0}b".to_owned(), long_key()];
        keys.extend((0..10).map(|i| format!("normal-{i}")));
        let mut sent = Vec::new();
        for (n, key) in keys.into_iter().enumerate() {
            // The key travels JSON-escaped: a body SQS accepts (no NUL in it).
            let body = serde_json::json!({ "key": key, "n": n }).to_string();
            sent.push((sqs_support::send(&s.client, &s.keyed, &body, None).await, key));
        }
        sent
    })
    .await
}

/// Sends the keyed messages (once per process) and waits until all are handled.
async fn keyed_done() -> &'static Vec<(String, String)> {
    let s = shared();
    let (pool, name) = (s.runtime.pool(), name_of(&s.keyed));
    let sent = keyed_sent().await;
    wait_until(WAIT, "12 keyed workflows succeeded", || async { count(pool, name, "SUCCESS").await == 12 }).await;
    wait_until(WAIT, "the keyed queue is empty", || async { held(&s.client, &s.keyed).await == 0 }).await;
    sent
}

/// `sqs:{name}:sha256:{hex}` of `key`, computed by PostgreSQL.
async fn hashed_id(pool: &sqlx::PgPool, name: &str, key: &str) -> String {
    sqlx::query_scalar("SELECT $1 || 'sha256:' || encode(sha256($2), 'hex')")
        .bind(format!("sqs:{name}:"))
        .bind(key.as_bytes())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[test]
fn keys_postgres_would_refuse_in_an_id_are_hashed_and_an_equal_key_still_starts_one_workflow() {
    common::block_on(async {
        let s = shared();
        let (pool, name) = (s.runtime.pool(), name_of(&s.keyed));
        let sent = keyed_done().await;
        let (long, nul) = (long_key(), "a\u{0}b");

        let long_id = hashed_id(pool, name, &long).await;
        let nul_id = hashed_id(pool, name, nul).await;
        let mut expected: Vec<String> = (0..10).map(|i| format!("sqs:{name}:normal-{i}")).collect();
        expected.extend([long_id.clone(), nul_id.clone()]);
        expected.sort();
        let found = rows(pool, name).await;
        assert_eq!(ids(&found), expected, "one workflow per key");
        assert!(found.iter().all(|(_, _, status)| status == "SUCCESS"), "{found:?}");
        for id in [&long_id, &nul_id] {
            let hex = id.strip_prefix(&format!("sqs:{name}:sha256:")).unwrap();
            assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
        }
        assert_ne!(long_id, nul_id);
        for id in &expected {
            assert_eq!(runs(id), 1, "{id} ran once");
        }

        // Each workflow got its whole key; the long key's two messages, one workflow.
        assert_eq!(s.runtime.result::<u64>(&long_id).await.unwrap(), 4096);
        assert_eq!(s.runtime.result::<u64>(&nul_id).await.unwrap(), 3);
        assert_eq!(s.runtime.result::<u64>(&format!("sqs:{name}:normal-9")).await.unwrap(), 8);
        let (inputs, source): (serde_json::Value, serde_json::Value) =
            sqlx::query_as("SELECT inputs, source FROM exactly.workflow_status WHERE workflow_id = $1")
                .bind(&long_id)
                .fetch_one(pool)
                .await
                .unwrap();
        let (first, second) = (&sent[0].0, &sent[2].0);
        let message_id = inputs[0]["message_id"].as_str().unwrap();
        assert!(message_id == first || message_id == second, "{inputs}");
        assert_eq!(source["sqs"]["message_id"], message_id, "the source names the recorded message");
        let body: serde_json::Value = serde_json::from_str(inputs[0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["key"], long.as_str(), "the message is kept whole");

        // Deleted, every one: still 12 workflows, nothing left on the queue.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(rows(pool, name).await.len(), 12);
        assert_eq!(held(&s.client, &s.keyed).await, 0);
        assert_pollers_consuming("sqs_hostile::on_key").await;
    })
}

/// Returns the body's `n`.
#[workflow]
async fn on_refusable(message: SqsMessage) -> exactly::Result<u64> {
    ran();
    let body: serde_json::Value = message.json()?;
    body["n"].as_u64().ok_or_else(|| exactly::Error::msg("no n"))
}

/// The message IDs sent to the refusable queue, in order; the sixth is marked.
async fn refusable_sent() -> &'static Vec<String> {
    static SENT: OnceCell<Vec<String>> = OnceCell::const_new();
    SENT.get_or_init(|| async {
        let s = shared();
        // A rule of the database that refuses one message's row for its data (SQLSTATE
        // 23514). It refuses the rejected row that keeps the message too: then the
        // message is kept as base64.
        let added = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE exactly.workflow_status ADD CONSTRAINT {CONSTRAINT}
                 CHECK (inputs IS NULL OR position('REFUSE-ME' in inputs::text) = 0)"
        )))
        .execute(s.runtime.pool())
        .await;
        assert!(added.is_ok() || added.unwrap_err().to_string().contains("already exists"));
        let bodies: Vec<String> = (0..11)
            .map(|n| match n {
                5 => serde_json::json!({ "n": n, "tag": "REFUSE-ME" }).to_string(),
                n => serde_json::json!({ "n": n }).to_string(),
            })
            .collect();
        // Delayed alike, so that they become visible together and one receive takes
        // the first 10 (a long poll would otherwise return as soon as the first came).
        let mut sent = Vec::new();
        for chunk in bodies.chunks(10) {
            let entries = chunk.iter().enumerate().map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .delay_seconds(2)
                    .build()
                    .unwrap()
            });
            let output = s
                .client
                .send_message_batch()
                .queue_url(&s.refusable)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .unwrap();
            assert!(output.failed.is_empty(), "{:?}", output.failed);
            let mut ok = output.successful;
            ok.sort_by_key(|entry| entry.id.parse::<usize>().unwrap());
            sent.extend(ok.into_iter().map(|entry| entry.message_id));
        }
        sent
    })
    .await
}

/// Sends the refusable messages (once per process) and waits until all are handled.
async fn refusable_done() -> &'static Vec<String> {
    let s = shared();
    let (pool, name) = (s.runtime.pool(), name_of(&s.refusable));
    let sent = refusable_sent().await;
    wait_until(WAIT, "10 workflows and a rejected one", || async {
        count(pool, name, "SUCCESS").await == 10 && count(pool, name, "ERROR").await == 1
    })
    .await;
    wait_until(WAIT, "the refusable queue is empty", || async { held(&s.client, &s.refusable).await == 0 }).await;
    sent
}

#[test]
fn a_row_the_database_refuses_becomes_a_rejected_row_and_the_rest_of_its_batch_goes_through() {
    common::block_on(async {
        let s = shared();
        let (pool, name) = (s.runtime.pool(), name_of(&s.refusable));
        let sent = refusable_done().await;
        let refused = format!("sqs:{name}:{}", sent[5]);

        let found = rows(pool, name).await;
        let mut expected: Vec<String> = sent.iter().map(|id| format!("sqs:{name}:{id}")).collect();
        expected.sort();
        assert_eq!(ids(&found), expected, "one row per message");
        for (id, workflow, status) in &found {
            if *id == refused {
                let row = (workflow.as_str(), status.as_str());
                assert_eq!(row, ("exactly::sqs::rejected", "ERROR"), "under the message's own ID");
                assert_eq!(runs(id), 0, "the refused message's workflow never ran");
            } else {
                assert_eq!((workflow.as_str(), status.as_str()), ("sqs_hostile::on_refusable", "SUCCESS"), "{id}");
                assert_eq!(runs(id), 1, "{id} ran once");
            }
        }
        for (n, id) in sent.iter().enumerate().filter(|(n, _)| *n != 5) {
            assert_eq!(s.runtime.result::<u64>(&format!("sqs:{name}:{id}")).await.unwrap(), n as u64);
        }

        let (error, inputs, source): (serde_json::Value, serde_json::Value, serde_json::Value) =
            sqlx::query_as("SELECT error, inputs, source FROM exactly.workflow_status WHERE workflow_id = $1")
                .bind(&refused)
                .fetch_one(pool)
                .await
                .unwrap();
        let error = error.to_string();
        assert!(error.contains("refused") && error.contains(CONSTRAINT), "{error}");
        assert_eq!(inputs[0]["workflow"], "sqs_hostile::on_refusable", "{inputs}");
        // The rule refuses the message as text in the rejected row too: it is kept as base64.
        let kept: String = sqlx::query_scalar(
            "SELECT convert_from(decode(inputs->0->>'inputs_base64', 'base64'), 'UTF8')
             FROM exactly.workflow_status WHERE workflow_id = $1",
        )
        .bind(&refused)
        .fetch_one(pool)
        .await
        .unwrap();
        let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(kept[0]["message_id"], sent[5].as_str(), "the message is kept: {kept}");
        assert!(kept[0]["body"].as_str().unwrap().contains("REFUSE-ME"), "whole: {kept}");
        assert_eq!(source["sqs"]["message_id"], sent[5].as_str());

        // The marked message came in one receive with others, and only once: its
        // batch was split, not retried.
        let receives = s.receives.all();
        let with_marked: Vec<&Vec<String>> =
            receives.iter().filter(|r| r.iter().any(|body| body.contains("REFUSE-ME"))).collect();
        assert_eq!(with_marked.len(), 1, "received once: {receives:?}");
        assert!(with_marked[0].len() > 1, "received with others: {receives:?}");
        assert_eq!(receives.iter().map(Vec::len).sum::<usize>(), 11, "each message received once: {receives:?}");
        assert_eq!(held(&s.client, &s.refusable).await, 0);
        assert_pollers_consuming("sqs_hostile::on_refusable").await;
    })
}

#[workflow]
async fn on_plain(message: SqsMessage) -> exactly::Result<String> {
    Ok(message.text().to_owned())
}

#[test]
fn a_body_with_a_nul_character_is_kept_as_base64_in_a_rejected_row_and_the_queue_goes_on() {
    // AWS refuses such a body, but an SQS-API server may take it (moto does), and
    // PostgreSQL's JSONB cannot hold U+0000 as text.
    common::block_on(async {
        let s = shared();
        let (pool, name) = (s.runtime.pool(), name_of(&s.plain));
        let nul = sqs_support::send(&s.client, &s.plain, "before\u{0}after", None).await;
        for i in 0..3 {
            sqs_support::send(&s.client, &s.plain, &format!("plain-{i}"), None).await;
        }
        wait_until(WAIT, "3 workflows and a rejected one", || async {
            count(pool, name, "SUCCESS").await == 3 && count(pool, name, "ERROR").await == 1
        })
        .await;
        wait_until(WAIT, "the queue is empty", || async { held(&s.client, &s.plain).await == 0 }).await;
        let (workflow, error, kept): (String, serde_json::Value, String) = sqlx::query_as(
            "SELECT name, error, convert_from(decode(inputs->0->>'inputs_base64', 'base64'), 'UTF8')
             FROM exactly.workflow_status WHERE workflow_id = $1",
        )
        .bind(format!("sqs:{name}:{nul}"))
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(workflow, "exactly::sqs::rejected");
        assert!(error.to_string().contains("refused"), "{error}");
        let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(kept[0]["body"], "before\u{0}after", "the body, byte for byte: {kept}");
        assert_eq!(rows(pool, name).await.len(), 4, "one row per message");
    })
}

/// The health of each SQS poller of `workflow`'s consumer, once all are consuming.
async fn assert_pollers_consuming(workflow: &str) {
    let s = shared();
    let pollers = || {
        let health = s.runtime.health();
        health
            .receivers
            .into_iter()
            .filter(|r| r.kind == "sqs" && r.name.contains(&format!("`{workflow}`")))
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, "every poller is consuming", || async {
        pollers().iter().all(|r| r.state == ReceiverState::Consuming)
    })
    .await;
    let mut pollers = pollers();
    pollers.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(pollers.len(), POLLERS, "{pollers:?}");
    for (i, poller) in pollers.iter().enumerate() {
        assert!(poller.name.ends_with(&format!("(poller {})", i + 1)), "{poller:?}");
        assert_eq!(poller.last_error, None, "no poller ever waited: {poller:?}");
    }
}

#[test]
fn after_the_hostile_messages_every_sqs_poller_is_consuming_and_none_ever_waited() {
    common::block_on(async {
        keyed_done().await;
        refusable_done().await;
        assert_pollers_consuming("sqs_hostile::on_key").await;
        assert_pollers_consuming("sqs_hostile::on_refusable").await;
        let health = shared().runtime.health();
        let sqs: Vec<_> = health.receivers.iter().filter(|r| r.kind == "sqs").collect();
        assert_eq!(sqs.len(), 3 * POLLERS, "three consumers: {health:?}");
        assert!(health.is_ready(), "{health:?}");
    })
}

//! Shared by the SQS test binaries: clients of the SQS-API server that `dev/services`
//! starts (moto, on `AWS_ENDPOINT_URL_SQS`), queues with names unique to each run,
//! request-counting clients, a private moto server, and polling helpers.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exactly::sqs::aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef;
use exactly::sqs::aws_sdk_sqs::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region};
use exactly::sqs::aws_sdk_sqs::types::QueueAttributeName;
use exactly::sqs::aws_sdk_sqs::{self, Client};

/// The SQS endpoint of `dev/services` (or `AWS_ENDPOINT_URL_SQS`).
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_SQS").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// A name no other test or run uses (`.fifo` kept at the end).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let (stem, fifo) = prefix.strip_suffix(".fifo").map_or((prefix, ""), |stem| (stem, ".fifo"));
    format!("{stem}-{}-{nanos:09}{fifo}", std::process::id())
}

/// A client of `endpoint`, counting its requests by operation in `counter`.
pub fn client_for(endpoint: &str, counter: Option<Requests>) -> Client {
    let mut config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        .http_client(exactly::sqs::http_client());
    if let Some(counter) = counter {
        config = config.interceptor(counter);
    }
    Client::from_conf(config.build())
}

/// A client of the `dev/services` server.
pub fn client() -> Client {
    client_for(&endpoint(), None)
}

/// Counts the requests a client makes, by operation name.
#[derive(Debug, Clone, Default)]
pub struct Requests(Arc<std::sync::Mutex<HashMap<String, usize>>>);

impl Requests {
    pub fn count(&self, operation: &str) -> usize {
        self.0.lock().unwrap().get(operation).copied().unwrap_or(0)
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_sqs::error::BoxError> {
        use aws_sdk_sqs::operation as op;
        let input = context.input();
        let operation = if input.downcast_ref::<op::receive_message::ReceiveMessageInput>().is_some() {
            "ReceiveMessage"
        } else if input.downcast_ref::<op::delete_message_batch::DeleteMessageBatchInput>().is_some() {
            "DeleteMessageBatch"
        } else if input.downcast_ref::<op::get_queue_attributes::GetQueueAttributesInput>().is_some() {
            "GetQueueAttributes"
        } else if input.downcast_ref::<op::send_message::SendMessageInput>().is_some() {
            "SendMessage"
        } else if input
            .downcast_ref::<op::change_message_visibility_batch::ChangeMessageVisibilityBatchInput>()
            .is_some()
        {
            "ChangeMessageVisibilityBatch"
        } else {
            "other"
        };
        *self.0.lock().unwrap().entry(operation.to_owned()).or_default() += 1;
        Ok(())
    }
}

/// Creates a queue (FIFO if `name` ends in `.fifo`) and returns its URL.
pub async fn create_queue(client: &Client, name: &str, visibility_timeout_s: u32) -> String {
    let mut request = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_timeout_s.to_string());
    if name.ends_with(".fifo") {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let output =
        request.send().await.unwrap_or_else(|e| panic!("create queue {name}: {e:?} (is `dev/services up` running?)"));
    output.queue_url.unwrap()
}

/// Sends `body`; to a FIFO queue with `group` and a random deduplication ID.
pub async fn send(client: &Client, url: &str, body: &str, group: Option<&str>) -> String {
    let mut request = client.send_message().queue_url(url).message_body(body);
    if let Some(group) = group {
        request = request.message_group_id(group).message_deduplication_id(unique("d"));
    }
    request.send().await.unwrap().message_id.unwrap()
}

/// Messages waiting plus messages in flight.
pub async fn messages_left(client: &Client, url: &str) -> usize {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attributes = output.attributes.unwrap_or_default();
    ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        .iter()
        .map(|name| attributes.get(&QueueAttributeName::from(*name)).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0))
        .sum()
}

#[allow(unused_imports)] // not every test binary waits this way
pub use crate::common::wait_until;

/// A port nothing listens on (bound and released at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A moto server of this test's own, so that a test may stop it without
/// disturbing the others. Killed when dropped.
pub struct Moto {
    pub port: u16,
    child: Option<Child>,
}

impl Moto {
    /// Starts moto from the virtualenv that `dev/services` installs, on `port`.
    pub async fn start(port: u16) -> Moto {
        let binary = concat!(env!("CARGO_MANIFEST_DIR"), "/.dev/moto/venv/bin/moto_server");
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary} (run `dev/services up` first): {e}"));
        let moto = Moto { port, child: Some(child) };
        let url = moto.endpoint();
        wait_until(Duration::from_secs(30), "the private moto server answers", || {
            let url = url.clone();
            async move { tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await.is_ok() }
        })
        .await;
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): its queues and messages are gone with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}


/// Counts calls of something in tests.
#[derive(Debug, Default)]
pub struct Counter(AtomicUsize);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicUsize::new(0))
    }

    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// (workflow ID, status) of every workflow of queue `name`, by ID.
pub async fn workflows(pool: &sqlx::PgPool, name: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT workflow_id, status FROM exactly.workflow_status WHERE starts_with(workflow_id, $1) ORDER BY workflow_id",
    )
    .bind(format!("sqs:{name}:"))
    .fetch_all(pool)
    .await
    .unwrap()
}

/// How many workflows of queue `name` are in `status`.
pub async fn count(pool: &sqlx::PgPool, name: &str, status: &str) -> usize {
    workflows(pool, name).await.iter().filter(|(_, s)| s == status).count()
}

/// Asks a child process to shut down, as a service manager does (SIGTERM).
pub fn terminate(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -TERM {}", child.id());
}

/// A TCP front between SQS clients and the SQS-API server at `upstream`
/// (`host:port`): while cut, it refuses nothing but drops every connection it
/// accepts and the ones it forwards, as a network partition or a restarting load
/// balancer does; restored, it forwards again. moto keeps its queues meanwhile,
/// which restarting moto itself would lose.
pub struct SqsFront {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    /// Bumped on each cut, so forwarding tasks of earlier connections end.
    epoch: Arc<AtomicUsize>,
    /// Connections accepted while cut (and dropped).
    pub refused: Arc<AtomicUsize>,
}

impl SqsFront {
    pub async fn start(upstream: String) -> SqsFront {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let front = SqsFront {
            port,
            cut: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            epoch: Arc::new(AtomicUsize::new(0)),
            refused: Arc::new(AtomicUsize::new(0)),
        };
        let (cut, epoch, refused) = (front.cut.clone(), front.epoch.clone(), front.refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                if cut.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let (upstream, epoch) = (upstream.clone(), epoch.clone());
                tokio::spawn(async move {
                    let mine = epoch.load(Ordering::SeqCst);
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let forward = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let cut_off = async {
                        while epoch.load(Ordering::SeqCst) == mine {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = forward => {}
                        _ = cut_off => {} // both sockets dropped mid-request
                    }
                });
            }
        });
        front
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops the open connections and every new one until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Connections waiting for a lock on the workflow table: a receiver's insert held
/// mid-store by a test's `LOCK TABLE exactly.workflow_status`.
pub async fn held_inserts(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'exactly.workflow_status'::regclass",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Receives from `url` with a plain client every 200 ms for `period`, and panics if
/// anything arrives: what a consumer holds in flight stays hidden from the others.
pub async fn assert_hidden(client: &Client, url: &str, period: Duration) {
    let until = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < until {
        let output = client.receive_message().queue_url(url).max_number_of_messages(10).send().await.unwrap();
        let got = output.messages.unwrap_or_default();
        assert!(got.is_empty(), "another receiver got {} message(s) the consumer holds in flight: {got:?}", got.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

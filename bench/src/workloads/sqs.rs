//! The SQS workloads, against the local SQS-API server: N messages already on a
//! queue, consumed by each system's consumer in a process of its own until every
//! workflow is SUCCESS (polled in the system's database); and the server's own
//! ceiling, plain receive/delete loops (batches of 10) with no database at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use exactly::sqs::aws_sdk_sqs::Client;
use exactly::sqs::aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use tokio::task::JoinSet;

use crate::Error;
use crate::db::{self, Watch};
use crate::peers::Contender;
use crate::process::{self, Consumer};

#[derive(Debug, Clone)]
pub struct Options {
    pub admin_url: String,
    /// N, the messages of a run.
    pub messages: u64,
    /// Bytes of each body.
    pub payload: usize,
    /// The ceiling's concurrent receive/delete loops.
    pub loops: usize,
    pub poll: Duration,
    pub give_up: Duration,
}

/// How many SendMessageBatch calls are in flight while a queue is filled.
const SENDERS: usize = 8;
const RESOLUTION: u32 = 200;

/// One system's run.
#[derive(Debug, Clone)]
pub struct SqsRun {
    /// From READY until every workflow is SUCCESS.
    pub e2e: Duration,
    pub rss: Option<u64>,
    pub probes: u32,
    pub probe_mean: Duration,
}

fn sdk<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    format!("{}", exactly::sqs::aws_sdk_sqs::error::DisplayErrorContext(e)).into()
}

/// The SQS-API server the workload talks to, as the AWS SDKs of the harness and of
/// every consumer find it in the environment (dev/bench sets ElasticMQ's).
pub fn endpoint() -> String {
    ["AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|url| !url.trim().is_empty()))
        .unwrap_or_else(|| "the AWS default endpoint".to_owned())
}

pub async fn client() -> Result<Client, Error> {
    Ok(exactly::sqs::default_client().await?)
}

/// Creates a fresh queue named `name` and puts N messages on it (SendMessageBatch, 10
/// a call, several calls at once). Returns its URL.
pub async fn fill(client: &Client, name: &str, o: &Options) -> Result<String, Error> {
    let url = client.create_queue().queue_name(name).send().await.map_err(sdk)?.queue_url.ok_or("create_queue: no URL")?;
    let next = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    for _ in 0..SENDERS {
        let (client, url, next, n, size) = (client.clone(), url.clone(), next.clone(), o.messages, o.payload);
        senders.spawn(async move {
            loop {
                let first = next.fetch_add(10, Ordering::SeqCst);
                if first >= n {
                    return Ok::<(), Error>(());
                }
                let mut batch = client.send_message_batch().queue_url(&url);
                for i in first..(first + 10).min(n) {
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(format!("{i:0>size$}"))
                        .build()
                        .map_err(sdk)?;
                    batch = batch.entries(entry);
                }
                let sent = batch.send().await.map_err(sdk)?;
                if !sent.failed.is_empty() {
                    return Err(format!("send_message_batch: {} failed", sent.failed.len()).into());
                }
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done??;
    }
    Ok(url)
}

/// One system: its consumer on the queue (filled beforehand), from READY until all
/// N workflows are SUCCESS.
pub async fn run(c: &Contender, o: &Options, queue_url: &str) -> Result<SqsRun, Error> {
    let url = db::recreate(&o.admin_url, c.database).await?;
    let (program, args) = c.command(&[("database-url", &url), ("queue-url", queue_url)])?;
    let name = queue_url.rsplit('/').next().unwrap_or("queue");
    let log = process::log_dir().join(format!("{}-{name}.log", c.label));
    let mut consumer = Consumer::start(c.label, &program, &args, &log).await?;
    let started = Instant::now();
    let mut watch = Watch::connect(&url).await?;
    // Only SUCCESS is polled: the gated count is cheap while work is in flight,
    // where counting every row (ingest) cost the busy server a full count per probe.
    let e2e = poll_until(&mut watch, &mut consumer, &c.sql.success, started, o, "SUCCESS rows").await?;
    let rss = consumer.peak_rss();
    let (probes, probe_mean) = (watch.queries, watch.mean());
    watch.close().await?;
    consumer.stop().await?;
    Ok(SqsRun { e2e, rss, probes, probe_mean })
}

async fn poll_until(
    watch: &mut Watch,
    consumer: &mut Consumer,
    sql: &str,
    started: Instant,
    o: &Options,
    what: &str,
) -> Result<Duration, Error> {
    loop {
        let n = watch.count(sql).await?;
        let now = Instant::now();
        if n >= o.messages as i64 {
            return Ok(now - started);
        }
        if now - started > o.give_up {
            return Err(super::GaveUp { done: n.max(0) as u64, want: o.messages, after: now - started, what: what.to_owned() }.into());
        }
        if let Some(status) = consumer.exited() {
            return Err(format!("consumer exited ({status}) at {n} of {} {what}", o.messages).into());
        }
        tokio::time::sleep(o.poll.max((now - started) / RESOLUTION)).await;
    }
}

/// The server's ceiling: `loops` concurrent loops of ReceiveMessage (10, 1 s long
/// polling) and DeleteMessageBatch, until the N messages are deleted. The time is
/// that of the delete that reached N: the other loops may then still be in a long
/// poll on the empty queue, up to 1 s that is not the server's throughput (with a fast
/// server it was a good part of the measured time).
pub async fn ceiling(client: &Client, queue_url: &str, o: &Options, loops: usize) -> Result<Duration, Error> {
    let deleted = Arc::new(AtomicU64::new(0));
    let last_delete = Arc::new(std::sync::OnceLock::new());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..loops.max(1) {
        let (client, url, deleted, last_delete, n, give_up) =
            (client.clone(), queue_url.to_owned(), deleted.clone(), last_delete.clone(), o.messages, o.give_up);
        tasks.spawn(async move {
            while deleted.load(Ordering::SeqCst) < n {
                if started.elapsed() > give_up {
                    return Err::<(), Error>(format!("gave up: {} of {n} deleted", deleted.load(Ordering::SeqCst)).into());
                }
                let received = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .map_err(sdk)?;
                let messages = received.messages.unwrap_or_default();
                if messages.is_empty() {
                    continue;
                }
                let mut batch = client.delete_message_batch().queue_url(&url);
                for (k, m) in messages.iter().enumerate() {
                    let entry = DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{k}"))
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .map_err(sdk)?;
                    batch = batch.entries(entry);
                }
                let result = batch.send().await.map_err(sdk)?;
                let count = result.successful.len() as u64;
                if deleted.fetch_add(count, Ordering::SeqCst) + count >= n {
                    let _ = last_delete.set(started.elapsed());
                }
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(last_delete.get().copied().unwrap_or_else(|| started.elapsed()))
}

/// Deletes a queue (after its run; errors ignored).
pub async fn delete(client: &Client, queue_url: &str) {
    let _ = client.delete_queue().queue_url(queue_url).send().await;
}

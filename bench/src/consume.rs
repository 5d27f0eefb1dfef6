//! `exactly-bench consume ..`: the consumers that the Kafka and SQS workloads run in
//! processes of their own, so that each one's peak memory is its own (see
//! [`process`](crate::process)). Not in `--help`: the harness starts them.
//!
//! - `consume kafka --database-url U --bootstrap B --topic T --group G`: `exactly`
//!   as an application uses it: a `#[workflow]` of one step, consuming the topic
//!   through `register_kafka_consumer` (the topic is known only at run time) with the
//!   receiver's defaults. With `--queue bench.messages`, the consumer's `queue`
//!   option sends the workflows through that durable queue (declared without limits);
//!   with `--queue bench.held`, through a queue of concurrency 1 (a diagnostic: the
//!   receiver's path with almost no workflow running meanwhile).
//! - `consume sqs --database-url U --queue-url Q`: the same workflow shape for SQS,
//!   through `register_sqs_consumer`, with the receiver's defaults (batches of 10,
//!   20 s long polling), the client from the environment (`AWS_ENDPOINT_URL_SQS`).
//! - `consume kafka-count --bootstrap B --topic T --group G --expect N`: the ceiling
//!   of consuming: a plain rdkafka `BaseConsumer` that only counts messages and
//!   prints `DONE` at the N-th.
//!
//! Each prints `READY` once it consumes and runs until SIGTERM or SIGINT.

use exactly::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use exactly::kafka::{ClientConfig, KafkaConsumerOptions, KafkaSettings};
use exactly::sqs::SqsConsumerOptions;
use exactly::{KafkaMessage, Runtime, SqsMessage};

use crate::Error;

/// The step: trivial work, the payload's length times two (as in the DBOS peers).
#[exactly::step(name = "bench.double_length")]
async fn double_length(n: u64) -> exactly::Result<u64> {
    Ok(n * 2)
}

/// One workflow per Kafka message, one step.
#[exactly::workflow(name = "bench.kafka_message")]
async fn kafka_message(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    double_length(message.payload().map_or(0, <[u8]>::len) as u64).await
}

/// One workflow per SQS message, one step.
#[exactly::workflow(name = "bench.sqs_message")]
async fn sqs_message(message: SqsMessage) -> exactly::Result<u64> {
    double_length(message.body.len() as u64).await
}

/// The workflow names, for the harness's queries.
pub const KAFKA_WORKFLOW: &str = "bench.kafka_message";
pub const SQS_WORKFLOW: &str = "bench.sqs_message";
/// The unlimited queue of `consume kafka --queue`.
pub const BENCH_QUEUE: &str = "bench.messages";
/// The queue of concurrency 1 of `consume kafka --queue bench.held` (a diagnostic).
pub const HELD_QUEUE: &str = "bench.held";

#[derive(Default)]
struct Options {
    database_url: Option<String>,
    bootstrap: Option<String>,
    topic: Option<String>,
    group: Option<String>,
    queue_url: Option<String>,
    queue: Option<String>,
    expect: Option<u64>,
    /// kafka-count: pause the assignment for this long after every 500 messages
    /// (what exactly's receiver does while it inserts a batch), to see what pausing costs.
    pause_ms: Option<u64>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, Error> {
    let mut o = Options::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--database-url" => o.database_url = Some(value()?),
            "--bootstrap" => o.bootstrap = Some(value()?),
            "--topic" => o.topic = Some(value()?),
            "--group" => o.group = Some(value()?),
            "--queue-url" => o.queue_url = Some(value()?),
            "--queue" => o.queue = Some(value()?),
            "--expect" => o.expect = Some(value()?.parse()?),
            "--pause-ms" => o.pause_ms = Some(value()?.parse()?),
            other => return Err(format!("consume: unknown argument `{other}`").into()),
        }
    }
    Ok(o)
}

fn need<'a>(value: &'a Option<String>, flag: &str) -> Result<&'a str, Error> {
    value.as_deref().ok_or_else(|| format!("consume: {flag} is required").into())
}

/// Runs `consume WHAT ..` (the arguments after `consume`).
pub async fn main(mut args: impl Iterator<Item = String>) -> Result<(), Error> {
    let what = args.next().ok_or("consume: kafka | sqs | kafka-count")?;
    let o = parse(args)?;
    match what.as_str() {
        "kafka" => {
            let mut builder = Runtime::builder()
                .database_url(need(&o.database_url, "--database-url")?)
                .schema("exactly")
                .kafka(KafkaSettings::new().bootstrap_servers(need(&o.bootstrap, "--bootstrap")?));
            let mut options = KafkaConsumerOptions::new().group(need(&o.group, "--group")?);
            match o.queue.as_deref() {
                Some(BENCH_QUEUE) => {
                    builder = builder.queue(exactly::Queue::new(BENCH_QUEUE));
                    options = options.queue(BENCH_QUEUE);
                }
                Some(HELD_QUEUE) => {
                    builder = builder.queue(exactly::Queue::new(HELD_QUEUE).concurrency(1));
                    options = options.queue(HELD_QUEUE);
                }
                Some(other) => return Err(format!("consume: --queue {other}: {BENCH_QUEUE} or {HELD_QUEUE}").into()),
                None => {}
            }
            let runtime = builder.launch().await?;
            exactly::register_kafka_consumer(kafka_message, [need(&o.topic, "--topic")?], options).await?;
            println!("READY");
            runtime.until_shutdown_signal().await?;
        }
        "sqs" => {
            exactly::register_sqs_consumer(sqs_message, SqsConsumerOptions::new().queue_url(need(&o.queue_url, "--queue-url")?));
            let runtime = Runtime::builder().database_url(need(&o.database_url, "--database-url")?).schema("exactly").launch().await?;
            println!("READY");
            runtime.until_shutdown_signal().await?;
        }
        "migrate" => {
            // exactly's schema, by its migrations (for the batched-insert ceiling).
            let runtime = Runtime::builder().database_url(need(&o.database_url, "--database-url")?).schema("exactly").launch().await?;
            runtime.shutdown().await?;
        }
        "kafka-count" => {
            let expect = o.expect.ok_or("consume: --expect is required")?;
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", need(&o.bootstrap, "--bootstrap")?)
                .set("group.id", need(&o.group, "--group")?)
                .set("auto.offset.reset", "earliest")
                .create()?;
            consumer.subscribe(&[need(&o.topic, "--topic")?])?;
            println!("READY");
            // The counting loop on a thread of its own; the main task waits for the signal.
            let pause = o.pause_ms.map(std::time::Duration::from_millis);
            std::thread::spawn(move || {
                let mut count = 0u64;
                loop {
                    match consumer.poll(std::time::Duration::from_millis(100)) {
                        Some(Ok(_)) => {
                            count += 1;
                            if count == expect {
                                println!("DONE");
                            }
                            if let Some(pause) = pause.filter(|_| count % 500 == 0)
                                && let Ok(assignment) = consumer.assignment()
                            {
                                let _ = consumer.pause(&assignment);
                                std::thread::sleep(pause);
                                let _ = consumer.resume(&assignment);
                            }
                        }
                        Some(Err(e)) => eprintln!("kafka-count: {e}"),
                        None => {}
                    }
                }
            });
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        other => return Err(format!("consume: unknown consumer `{other}` (kafka, sqs, kafka-count)").into()),
    }
    Ok(())
}

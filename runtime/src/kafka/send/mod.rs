//! Producing from a workflow: [`send`] and [`send_record`] are durable steps through
//! one shared idempotent producer. Each message carries the workflow ID and step ID
//! in its headers, so a downstream consumer can drop the rare repeat (a send in
//! flight at a crash runs again on recovery).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::settings::{self, Resolved};
use crate::error::{Error, Result};

/// The header that carries the ID of the sending workflow.
pub const WORKFLOW_ID_HEADER: &str = "exactly-workflow-id";
/// The header that carries the ID of the sending step within its workflow.
pub const STEP_ID_HEADER: &str = "exactly-step-id";

/// The durable name of the send step.
const STEP_NAME: &str = "exactly::kafka::send";

/// Where a sent message was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The message's offset in the partition.
    pub offset: i64,
}

/// A message to produce with [`send_record`]: raw bytes, an optional key and
/// headers of your own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// A message to `topic`, with no key and no payload yet.
    pub fn to(topic: impl Into<String>) -> Self {
        Record { topic: topic.into(), ..Record::default() }
    }

    /// Sets the key (which chooses the partition).
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
}

/// Sends `value`, encoded as JSON, to `topic` with `key`, as a durable step.
///
/// Inside a workflow the send is checkpointed: once it has been delivered, a
/// recovered workflow gets the recorded [`Delivery`] back instead of sending again.
/// The message carries the headers `exactly-workflow-id` and `exactly-step-id`.
/// Outside a workflow it is a plain send.
///
/// ```no_run
/// # use exactly_runtime as exactly;
/// # #[derive(serde::Serialize)] struct Receipt { id: String }
/// # async fn f(receipt: Receipt) -> exactly::Result<()> {
/// exactly::kafka::send("receipts", &receipt.id, &receipt).await?;
/// # Ok(()) }
/// ```
pub async fn send<K, V>(topic: &str, key: &K, value: &V) -> Result<Delivery>
where
    K: AsRef<[u8]> + ?Sized,
    V: Serialize + ?Sized,
{
    let payload = serde_json::to_vec(value).map_err(|source| Error::Serialization {
        action: "encode",
        what: format!("a message for Kafka topic `{topic}`"),
        source,
    })?;
    send_record(Record::to(topic).key(key.as_ref()).payload(payload)).await
}

/// Sends a [`Record`] as a durable step; see [`send`].
pub async fn send_record(record: Record) -> Result<Delivery> {
    crate::run_step(STEP_NAME, || produce(&record)).await
}

/// Produces one message through the shared producer and waits for its delivery.
/// Inside a step it carries the step's workflow ID and step ID.
async fn produce(record: &Record) -> Result<Delivery> {
    let producer = producer()?;
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 2);
    for (key, value) in &record.headers {
        headers = headers.insert(Header { key, value: Some(value) });
    }
    if let (Some(workflow_id), Some(step_id)) = (crate::workflow_id(), crate::step_id()) {
        let step_id = step_id.to_string();
        headers = headers.insert(Header { key: WORKFLOW_ID_HEADER, value: Some(&workflow_id) });
        headers = headers.insert(Header { key: STEP_ID_HEADER, value: Some(&step_id) });
    }
    let mut future = FutureRecord::<[u8], [u8]>::to(&record.topic).headers(headers);
    if let Some(key) = &record.key {
        future = future.key(key.as_slice());
    }
    if let Some(payload) = &record.payload {
        future = future.payload(payload.as_slice());
    }
    match producer.send(future, Duration::from_secs(30)).await {
        Ok(delivery) => Ok(Delivery { topic: record.topic.clone(), partition: delivery.partition, offset: delivery.offset }),
        Err((e, _)) => Err(Error::msg(format!("could not send a message to Kafka topic `{}`: {e}", record.topic))),
    }
}

/// The settings of the running runtime, and the producer made from them at first use.
struct Shared {
    settings: Option<Arc<Resolved>>,
    producer: Option<Arc<FutureProducer>>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared { settings: None, producer: None });

/// Called at launch: later sends use these settings.
pub(crate) fn configure(settings: &Arc<Resolved>) {
    let mut shared = SHARED.lock().expect("kafka producer poisoned");
    shared.settings = Some(settings.clone());
    retire(shared.producer.take());
}

/// Called at shutdown.
pub(crate) fn reset() {
    let mut shared = SHARED.lock().expect("kafka producer poisoned");
    shared.settings = None;
    retire(shared.producer.take());
}

/// Drops a producer off the executor: librdkafka's destroy waits for messages in flight.
fn retire(producer: Option<Arc<FutureProducer>>) {
    if let Some(producer) = producer {
        std::thread::spawn(move || drop(producer));
    }
}

fn producer() -> Result<Arc<FutureProducer>> {
    let mut shared = SHARED.lock().expect("kafka producer poisoned");
    if let Some(producer) = &shared.producer {
        return Ok(producer.clone());
    }
    let Some(settings) = shared.settings.clone() else {
        return Err(Error::NotLaunched);
    };
    if !settings.has_bootstrap_servers() {
        return Err(Error::Config(format!(
            "exactly::kafka::send has no Kafka brokers: set {} or Runtime::builder().kafka(KafkaSettings::new().bootstrap_servers(..))",
            settings::BOOTSTRAP_SERVERS_VAR
        )));
    }
    let (mut config, sources) = settings.client_config();
    // Idempotence: librdkafka's own retries never write a message twice.
    config.set("enable.idempotence", "true");
    let producer: FutureProducer =
        config.create().map_err(|e| settings::config_error(e, &sources, "the producer of exactly::kafka::send"))?;
    let producer = Arc::new(producer);
    shared.producer = Some(producer.clone());
    Ok(producer)
}

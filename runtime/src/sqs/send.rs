//! Sending to SQS from a workflow, as a durable step: the message ID SQS returns is
//! checkpointed, so a recovered workflow does not send again. Only a send in flight
//! at a crash is repeated; for FIFO queues its `MessageDeduplicationId` is derived
//! from the workflow ID and the step ID, so SQS drops the repeat itself.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;

use crate::error::{Error, Result};

use super::client::{ClientSource, default_client};
use super::message::{MessageAttribute, queue_name};

/// The name under which sends are checkpointed.
pub const STEP_NAME: &str = "exactly::sqs::send";

/// Sends `body` to the standard queue at `queue_url` as a durable step; returns the
/// message ID. Inside a workflow, a recovered execution returns the recorded ID
/// instead of sending again.
pub async fn send(queue_url: impl Into<String>, body: impl Into<String>) -> Result<String> {
    OutgoingMessage::new(queue_url, body).send().await
}

/// Sends `body` to the FIFO queue at `queue_url` in message group `group_id`, as a
/// durable step. A send repeated after a crash carries the same deduplication ID,
/// so SQS drops it (within its five-minute deduplication window).
pub async fn send_fifo(
    queue_url: impl Into<String>,
    body: impl Into<String>,
    group_id: impl Into<String>,
) -> Result<String> {
    OutgoingMessage::new(queue_url, body).group_id(group_id).send().await
}

/// A message to send, with the options of [`send`] and [`send_fifo`] and more.
///
/// ```no_run
/// # async fn f() -> exactly_runtime::Result<()> {
/// use exactly_runtime::sqs::{MessageAttribute, OutgoingMessage};
/// let id = OutgoingMessage::new("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo", "{}")
///     .group_id("customer-7")
///     .attribute("kind", MessageAttribute::string("invoice"))
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    queue_url: String,
    body: String,
    group_id: Option<String>,
    deduplication_id: Option<String>,
    delay_seconds: Option<u32>,
    attributes: BTreeMap<String, MessageAttribute>,
    client: Option<Client>,
}

impl OutgoingMessage {
    /// A message with `body` for the queue at `queue_url`.
    pub fn new(queue_url: impl Into<String>, body: impl Into<String>) -> Self {
        OutgoingMessage {
            queue_url: queue_url.into(),
            body: body.into(),
            group_id: None,
            deduplication_id: None,
            delay_seconds: None,
            attributes: BTreeMap::new(),
            client: None,
        }
    }

    /// The FIFO message group (required by FIFO queues).
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Replaces the deduplication ID derived from the workflow and step IDs.
    pub fn deduplication_id(mut self, id: impl Into<String>) -> Self {
        self.deduplication_id = Some(id.into());
        self
    }

    /// Delays delivery (standard queues; FIFO queues only have a queue-wide delay).
    pub fn delay_seconds(mut self, seconds: u32) -> Self {
        self.delay_seconds = Some(seconds);
        self
    }

    /// Attaches a message attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: MessageAttribute) -> Self {
        self.attributes.insert(name.into(), value);
        self
    }

    /// Sends with this client instead of the default receiver's (or the standard
    /// AWS configuration chain's).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Sends the message as a durable step (outside a workflow: simply sends it).
    pub async fn send(self) -> Result<String> {
        crate::run_step(STEP_NAME, || self.clone().deliver()).await
    }

    /// One SendMessage call. In a step, a FIFO message's deduplication ID is derived
    /// from the workflow ID and the step ID.
    async fn deliver(self) -> Result<String> {
        let derived = crate::workflow_id().zip(crate::step_id()).map(|(workflow, step)| deduplication_id(&workflow, step));
        let fifo = queue_name(&self.queue_url).is_some_and(|name| name.ends_with(".fifo"));
        if fifo && self.group_id.is_none() {
            return Err(Error::msg(format!(
                "{} is a FIFO queue: give the message a group (`exactly::sqs::send_fifo` or `OutgoingMessage::group_id`)",
                self.queue_url
            )));
        }
        // Outside a workflow there is no step to derive from: every send is new.
        let deduplication_id = fifo.then(|| {
            self.deduplication_id.clone().or(derived).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
        });
        let client = match self.client.clone() {
            Some(client) => client,
            None => send_client().await?,
        };
        let mut request = client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(self.body)
            .set_message_group_id(self.group_id)
            .set_message_deduplication_id(deduplication_id)
            .set_delay_seconds(self.delay_seconds.map(|s| s as i32));
        for (name, value) in &self.attributes {
            request = request.message_attributes(name, value.to_sdk()?);
        }
        let output = request.send().await.map_err(|e| {
            Error::msg(format!("could not send a message to SQS queue {}: {}", self.queue_url, DisplayErrorContext(&e)))
        })?;
        Ok(output.message_id.unwrap_or_default())
    }
}

/// `{workflow-id}:{step-id}` when SQS accepts it as a deduplication ID (at most 128
/// printable ASCII characters), else a 128-bit hash of it.
pub(crate) fn deduplication_id(workflow_id: &str, step_id: i32) -> String {
    let readable = format!("{workflow_id}:{step_id}");
    if readable.len() <= 128 && readable.bytes().all(|b| (33..=126).contains(&b)) {
        return readable;
    }
    let fnv = |seed: u64| {
        readable.bytes().fold(seed, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
    };
    format!("h:{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

/// Where sends without their own client get one: the default receiver's client
/// source, set at each launch, else the standard chain; built once per launch.
static SEND_SOURCE: Mutex<(Option<ClientSource>, Option<Client>)> = Mutex::new((None, None));

pub(crate) fn configure(source: Option<ClientSource>) {
    *SEND_SOURCE.lock().expect("SQS send client poisoned") = (source, None);
}

async fn send_client() -> Result<Client> {
    let source = {
        let guard = SEND_SOURCE.lock().expect("SQS send client poisoned");
        if let Some(client) = &guard.1 {
            return Ok(client.clone());
        }
        guard.0.clone()
    };
    let client = match source {
        Some(source) => source.get().await,
        None => default_client().await?,
    };
    SEND_SOURCE.lock().expect("SQS send client poisoned").1 = Some(client.clone());
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deduplication_ids_are_readable_when_sqs_accepts_them() {
        assert_eq!(deduplication_id("sqs:jobs:m-1", 3), "sqs:jobs:m-1:3");
        assert_ne!(deduplication_id("sqs:jobs:m-1", 3), deduplication_id("sqs:jobs:m-1", 4));
    }

    #[test]
    fn long_or_unprintable_ids_are_hashed_stably() {
        let long = "x".repeat(200);
        let id = deduplication_id(&long, 1);
        assert_eq!(id.len(), 34);
        assert_eq!(id, deduplication_id(&long, 1));
        assert_ne!(id, deduplication_id(&long, 2));
        assert!(deduplication_id("order 7", 0).starts_with("h:"), "a space is not allowed");
    }
}

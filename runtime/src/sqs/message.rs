//! [`SqsMessage`]: one received message as its workflow sees it. It is the
//! workflow's recorded input, so it is plain serde data, readable with `psql`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A message received from an SQS queue: the one argument of an
/// `#[sqs_consumer]` workflow, recorded as its input.
///
/// ```
/// # use exactly_runtime::sqs::SqsMessage;
/// #[derive(serde::Deserialize)]
/// struct Job { id: u64 }
///
/// let message = SqsMessage::new("http://127.0.0.1:4566/000000000000/jobs", "m-1", r#"{"id": 7}"#);
/// let job: Job = message.json()?;
/// assert_eq!(job.id, 7);
/// assert_eq!(message.text(), r#"{"id": 7}"#);
/// # Ok::<(), exactly_runtime::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SqsMessage {
    /// The URL of the queue it was received from.
    pub queue_url: String,
    /// The ID SQS gave the message when it was sent.
    pub message_id: String,
    /// The receipt handle of the delivery that started the workflow. The receiver
    /// deletes the message itself; a workflow has no use for it once it runs.
    pub receipt_handle: String,
    /// The body, as sent.
    pub body: String,
    /// The system attributes (`SentTimestamp`, `ApproximateReceiveCount`,
    /// `MessageGroupId`, ...), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The message attributes the sender attached, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub message_attributes: BTreeMap<String, MessageAttribute>,
}

impl SqsMessage {
    /// A message with the given queue URL, ID and body and no attributes (for tests
    /// and for starting a consumer workflow by hand).
    pub fn new(queue_url: impl Into<String>, message_id: impl Into<String>, body: impl Into<String>) -> Self {
        SqsMessage {
            queue_url: queue_url.into(),
            message_id: message_id.into(),
            receipt_handle: String::new(),
            body: body.into(),
            attributes: BTreeMap::new(),
            message_attributes: BTreeMap::new(),
        }
    }

    /// Adds a system attribute (e.g. `MessageGroupId`).
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Adds a message attribute.
    pub fn with_message_attribute(mut self, name: impl Into<String>, value: MessageAttribute) -> Self {
        self.message_attributes.insert(name.into(), value);
        self
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        &self.body
    }

    /// The body decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|source| Error::Serialization {
            action: "decode",
            what: format!("the body of SQS message `{}` as JSON", self.message_id),
            source,
        })
    }

    /// A system attribute by name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// A message attribute by name.
    pub fn message_attribute(&self, name: &str) -> Option<&MessageAttribute> {
        self.message_attributes.get(name)
    }

    /// The FIFO message group, if the message has one.
    pub fn group_id(&self) -> Option<&str> {
        self.attribute("MessageGroupId")
    }

    /// How many times SQS had handed the message out when it was received.
    pub fn receive_count(&self) -> Option<u32> {
        self.attribute("ApproximateReceiveCount")?.parse().ok()
    }

    /// The queue's name: the last segment of its URL.
    pub fn queue_name(&self) -> &str {
        queue_name(&self.queue_url).unwrap_or(&self.queue_url)
    }

    /// The message as received from the SDK; `None` if it lacks an ID or a receipt
    /// handle (SQS always sends both).
    pub(crate) fn from_sdk(queue_url: &str, message: &aws_sdk_sqs::types::Message) -> Option<SqsMessage> {
        let attributes = message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect();
        let message_attributes = message
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), MessageAttribute::from_sdk(value)))
            .collect();
        Some(SqsMessage {
            queue_url: queue_url.to_owned(),
            message_id: message.message_id()?.to_owned(),
            receipt_handle: message.receipt_handle()?.to_owned(),
            body: message.body().unwrap_or_default().to_owned(),
            attributes,
            message_attributes,
        })
    }
}

/// The last path segment of a queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
pub(crate) fn queue_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let (_host, path) = path.split_once('/')?;
    path.rsplit('/').find(|segment| !segment.is_empty())
}

/// A message attribute: a typed value the sender attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageAttribute {
    /// `String`, `Number` or `Binary`, optionally with a custom suffix (`Number.int`).
    pub data_type: String,
    /// The value of a `String` or `Number` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// The value of a `Binary` attribute (recorded as base64).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "base64_bytes")]
    pub binary_value: Option<Vec<u8>>,
}

impl MessageAttribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        MessageAttribute { data_type: "String".into(), string_value: Some(value.into()), binary_value: None }
    }

    /// A `Number` attribute.
    pub fn number(value: impl std::fmt::Display) -> Self {
        MessageAttribute { data_type: "Number".into(), string_value: Some(value.to_string()), binary_value: None }
    }

    /// A `Binary` attribute.
    pub fn binary(value: impl Into<Vec<u8>>) -> Self {
        MessageAttribute { data_type: "Binary".into(), string_value: None, binary_value: Some(value.into()) }
    }

    /// The same attribute with a custom type suffix, e.g. `Number.cents`.
    pub fn with_custom_type(mut self, suffix: &str) -> Self {
        let base = self.data_type.split('.').next().unwrap_or_default().to_owned();
        self.data_type = format!("{base}.{suffix}");
        self
    }

    fn from_sdk(value: &aws_sdk_sqs::types::MessageAttributeValue) -> Self {
        MessageAttribute {
            data_type: value.data_type().to_owned(),
            string_value: value.string_value().map(str::to_owned),
            binary_value: value.binary_value().map(|blob| blob.as_ref().to_vec()),
        }
    }

    /// The attribute as the SDK's type, for sending with the SDK directly.
    pub fn to_sdk(&self) -> Result<aws_sdk_sqs::types::MessageAttributeValue> {
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type(&self.data_type)
            .set_string_value(self.string_value.clone())
            .set_binary_value(self.binary_value.clone().map(aws_sdk_sqs::primitives::Blob::new))
            .build()
            .map_err(|e| Error::msg(format!("invalid SQS message attribute: {e}")))
    }
}

/// Binary values as base64 text, so that an operator reads them in `psql`.
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
        base64::engine::general_purpose::STANDARD.decode(text).map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_come_from_the_last_path_segment() {
        assert_eq!(queue_name("https://sqs.us-east-1.amazonaws.com/123456789012/jobs"), Some("jobs"));
        assert_eq!(queue_name("http://127.0.0.1:4566/000000000000/orders.fifo"), Some("orders.fifo"));
        assert_eq!(queue_name("http://127.0.0.1:4566/000000000000/jobs/"), Some("jobs"));
        assert_eq!(queue_name("http://127.0.0.1:4566"), None);
        assert_eq!(queue_name("http://127.0.0.1:4566/"), None);
    }

    #[test]
    fn a_message_round_trips_through_its_recorded_json() {
        let message = SqsMessage::new("http://h/1/q", "m-1", "héllo ✓")
            .with_attribute("MessageGroupId", "g-1")
            .with_attribute("ApproximateReceiveCount", "3")
            .with_message_attribute("kind", MessageAttribute::string("job"))
            .with_message_attribute("cents", MessageAttribute::number(1250).with_custom_type("cents"))
            .with_message_attribute("raw", MessageAttribute::binary(vec![0u8, 1, 254, 255]));
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["message_attributes"]["raw"]["binary_value"], "AAH+/w==");
        assert_eq!(json["message_attributes"]["cents"]["data_type"], "Number.cents");
        let back: SqsMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, message);
        assert_eq!(back.group_id(), Some("g-1"));
        assert_eq!(back.receive_count(), Some(3));
        assert_eq!(back.queue_name(), "q");
    }

    #[test]
    fn json_decoding_errors_name_the_message() {
        let err = SqsMessage::new("http://h/1/q", "m-9", "not json").json::<u32>().unwrap_err().to_string();
        assert!(err.contains("the body of SQS message `m-9`"), "{err}");
    }
}

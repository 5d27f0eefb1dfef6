//! [`KafkaMessage`]: what a Kafka consumer workflow receives, recorded as its input.

mod bytes;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A Kafka message as a `#[kafka_consumer]` workflow receives it: its coordinates,
/// key, payload, headers and timestamp.
///
/// It is recorded in PostgreSQL as part of the workflow's inputs, in a form an
/// operator can read: byte fields that are UTF-8 text appear as text, others as
/// `{"base64": ".."}`, for example
///
/// ```json
/// {"topic": "orders", "partition": 2, "offset": 1041, "key": "o-17",
///  "payload": "{\"id\":\"o-17\",\"cents\":1250}",
///  "headers": [{"key": "trace", "value": "a1b2"}],
///  "timestamp": {"type": "create", "ms": 1767225600000}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaMessage {
    topic: String,
    partition: i32,
    offset: i64,
    #[serde(with = "bytes::optional", default)]
    key: Option<Vec<u8>>,
    #[serde(with = "bytes::optional", default)]
    payload: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<KafkaHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<KafkaTimestamp>,
}

/// A message header. Kafka allows a key to repeat; headers keep their order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaHeader {
    /// The header's name. A name that is not UTF-8 appears here with U+FFFD for its
    /// invalid bytes, and exactly as sent in [`raw_key`](Self::raw_key).
    pub key: String,
    /// The name's bytes, only when they are not UTF-8 (Kafka does not forbid it).
    #[serde(with = "bytes::optional", default, skip_serializing_if = "Option::is_none")]
    pub raw_key: Option<Vec<u8>>,
    /// Its value; `None` for a header sent with a null value.
    #[serde(with = "bytes::optional", default)]
    pub value: Option<Vec<u8>>,
}

/// When a message was created (by its producer) or appended to the log (by the broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaTimestamp {
    /// Which clock the timestamp comes from.
    #[serde(rename = "type")]
    pub kind: TimestampKind,
    /// Milliseconds since the Unix epoch.
    pub ms: i64,
}

/// The kind of a [`KafkaTimestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampKind {
    /// Set by the producer when it created the message.
    Create,
    /// Set by the broker when it appended the message to the log.
    LogAppend,
}

impl KafkaMessage {
    /// A message with the given coordinates and payload, no key, headers or timestamp
    /// (for tests and for calling a consumer workflow directly).
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64, payload: impl Into<Vec<u8>>) -> Self {
        KafkaMessage {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            payload: Some(payload.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(KafkaHeader { key: key.into(), raw_key: None, value: Some(value.into()) });
        self
    }

    /// The topic the message was read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Its offset in the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The key, if the message has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The key as UTF-8 text, if the message has a key and it is text.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|key| std::str::from_utf8(key).ok())
    }

    /// The payload, or `None` for a tombstone (a message with a null value).
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// The headers, in the order they were sent.
    pub fn headers(&self) -> &[KafkaHeader] {
        &self.headers
    }

    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.key == key).and_then(|h| h.value.as_deref())
    }

    /// The message's timestamp, if the broker reported one.
    pub fn timestamp(&self) -> Option<KafkaTimestamp> {
        self.timestamp
    }

    /// Decodes the payload as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(self.payload.as_deref().unwrap_or(b"null")).map_err(|source| Error::Serialization {
            action: "decode",
            what: format!("the payload of Kafka message {} as JSON", self.coordinates()),
            source,
        })
    }

    /// The payload as UTF-8 text (empty for a tombstone).
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.payload.as_deref().unwrap_or_default()).map_err(|e| {
            Error::msg(format!("the payload of Kafka message {} is not UTF-8 text: {e}", self.coordinates()))
        })
    }

    /// `topic/partition@offset`, for messages.
    pub fn coordinates(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }

    /// How many bytes the key, payload and headers take, checked against the size limit.
    pub(crate) fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len)).sum();
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len) + headers
    }

    /// Copies a message out of librdkafka's buffers.
    pub(crate) fn from_rdkafka(message: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        use rdkafka::Message as _;
        let headers = read_headers(message);
        let timestamp = match message.timestamp() {
            rdkafka::Timestamp::CreateTime(ms) if ms >= 0 => Some(KafkaTimestamp { kind: TimestampKind::Create, ms }),
            rdkafka::Timestamp::LogAppendTime(ms) if ms >= 0 => {
                Some(KafkaTimestamp { kind: TimestampKind::LogAppend, ms })
            }
            _ => None,
        };
        KafkaMessage {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp,
        }
    }
}

/// Every header of a message, read through librdkafka itself: rdkafka's own reader
/// panics on a header name that is not UTF-8, and one such message would kill the
/// receiver.
fn read_headers(message: &rdkafka::message::BorrowedMessage<'_>) -> Vec<KafkaHeader> {
    use rdkafka::bindings as rd;
    let mut headers = Vec::new();
    let mut native: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: the message pointer is valid while `message` is borrowed, and so are the
    // headers it owns; names are NUL-terminated, values `size` bytes long (or null).
    unsafe {
        if rd::rd_kafka_message_headers(message.ptr(), &mut native) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || native.is_null()
        {
            return headers;
        }
        for idx in 0..rd::rd_kafka_header_cnt(native) {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            if rd::rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || name.is_null()
            {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(name).to_bytes();
            let value = (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
            headers.push(header(name, value));
        }
    }
    headers
}

/// A header from the bytes of its name.
fn header(name: &[u8], value: Option<Vec<u8>>) -> KafkaHeader {
    match std::str::from_utf8(name) {
        Ok(key) => KafkaHeader { key: key.to_owned(), raw_key: None, value },
        Err(_) => KafkaHeader { key: String::from_utf8_lossy(name).into_owned(), raw_key: Some(name.to_vec()), value },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_stored_as_text_and_binary_as_base64() {
        let message = KafkaMessage::new("orders", 2, 41, &br#"{"id":"o-1"}"#[..])
            .with_key("o-1")
            .with_header("trace", vec![0xff, 0x00]);
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "topic": "orders", "partition": 2, "offset": 41, "key": "o-1",
                "payload": "{\"id\":\"o-1\"}",
                "headers": [{"key": "trace", "value": {"base64": "/wA="}}],
            })
        );
        assert_eq!(serde_json::from_value::<KafkaMessage>(json).unwrap(), message);
    }

    #[test]
    fn a_header_name_that_is_not_utf8_is_kept_as_bytes() {
        let mut message = KafkaMessage::new("t", 0, 0, "p");
        message.headers.push(header(&[0xff, b'a'], Some(b"v".to_vec())));
        message.headers.push(header(b"ok", None));
        assert_eq!(message.headers[0].key, "\u{fffd}a");
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["headers"][0]["raw_key"], serde_json::json!({"base64": "/2E="}));
        assert!(json["headers"][1].get("raw_key").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<KafkaMessage>(json).unwrap(), message);
    }

    #[test]
    fn nul_bytes_and_tombstones_round_trip() {
        // jsonb cannot hold U+0000 in a string, so text with NUL goes as base64.
        let message = KafkaMessage::new("t", 0, 0, &b"a\0b"[..]);
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["payload"], serde_json::json!({"base64": "YQBi"}));
        assert_eq!(serde_json::from_value::<KafkaMessage>(json).unwrap(), message);
        let mut tombstone = KafkaMessage::new("t", 0, 1, Vec::new());
        tombstone.payload = None;
        let json = serde_json::to_string(&tombstone).unwrap();
        assert!(json.contains("\"payload\":null"), "{json}");
        assert_eq!(serde_json::from_str::<KafkaMessage>(&json).unwrap(), tombstone);
        assert_eq!(tombstone.text().unwrap(), "");
    }

    #[test]
    fn helpers_decode_the_payload() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Order {
            id: String,
        }
        let message = KafkaMessage::new("orders", 0, 7, &br#"{"id":"o-9"}"#[..]).with_key("k");
        assert_eq!(message.json::<Order>().unwrap(), Order { id: "o-9".into() });
        assert_eq!(message.text().unwrap(), r#"{"id":"o-9"}"#);
        assert_eq!(message.key_str(), Some("k"));
        let err = KafkaMessage::new("orders", 0, 8, &b"nope"[..]).json::<Order>().unwrap_err().to_string();
        assert!(err.contains("orders/0@8"), "{err}");
        let err = KafkaMessage::new("orders", 1, 9, vec![0xff]).text().unwrap_err().to_string();
        assert!(err.contains("orders/1@9") && err.contains("UTF-8"), "{err}");
    }
}

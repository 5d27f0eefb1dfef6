//! The JSON form of a message's byte fields (key, payload, header values), as
//! recorded in a workflow's inputs: the text itself when the bytes are UTF-8 that
//! PostgreSQL's `jsonb` can hold (no NUL), else `{"base64": ".."}`; `null` when absent.
//! An operator reads the common case, text, directly with `psql`; every byte
//! sequence round-trips exactly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Form<'a> {
    Text(std::borrow::Cow<'a, str>),
    Binary { base64: String },
}

fn form(bytes: &[u8]) -> Form<'_> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Form::Text(text.into()),
        _ => Form::Binary { base64: STANDARD.encode(bytes) },
    }
}

fn from_form<E: serde::de::Error>(form: Form<'_>) -> Result<Vec<u8>, E> {
    match form {
        Form::Text(text) => Ok(text.into_owned().into_bytes()),
        Form::Binary { base64 } => {
            STANDARD.decode(base64).map_err(|e| E::custom(format!("invalid base64 in a Kafka message field: {e}")))
        }
    }
}

/// `serde(with)` for `Option<Vec<u8>>`.
pub(crate) mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        bytes.as_deref().map(form).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<Form>::deserialize(deserializer)?.map(from_form).transpose()
    }
}

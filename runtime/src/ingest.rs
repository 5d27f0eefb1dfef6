//! From a receiver's batch to durable workflow rows, whatever the messages hold.
//!
//! No message may stop a partition or a queue. A value taken from a message that
//! goes into an ID or an indexed column is made safe first ([`safe_key`]). And if
//! PostgreSQL still refuses a batch for its data (a data exception, a constraint or
//! a size limit; not an outage, which the writer waits out, nor a fault such as a
//! trigger that raises, which holds the batch until it is cured), the batch is
//! split until the refused messages are alone; each of them becomes a rejected row
//! under its own ID, with the database's reason (and the message, as base64 if the
//! database refuses it as text), and the others go through in their order.

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::workflow::engine::{BatchStart, Engine};

/// The longest key kept as it is in an ID or a partition key; longer ones are hashed.
/// (A B-tree index entry holds at most about 2,700 bytes.)
pub(crate) const MAX_KEY_BYTES: usize = 256;

/// A key as it can go into a workflow ID or a partition key: itself when it is at
/// most [`MAX_KEY_BYTES`] and holds no NUL (which PostgreSQL text refuses), else
/// `sha256:` and the hex SHA-256 of its bytes, so that equal keys still map to the
/// same value and distinct keys to distinct ones.
pub(crate) fn safe_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES && !key.contains('\0') {
        return Cow::Borrowed(key);
    }
    Cow::Owned(hashed(key.as_bytes()))
}

/// `sha256:{hex}` of `bytes`.
pub(crate) fn hashed(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Builds the rejected row of a start the database refused, given the reason.
pub(crate) type Reject = Arc<dyn Fn(&BatchStart, &str) -> BatchStart + Send + Sync>;

/// Inserts the rows of a batch in one transaction, like [`Engine::start_batch`];
/// if the database refuses the batch for its data, isolates the refused rows (see
/// the module docs). Returns, per start, whether this call inserted its row. An
/// error is one to retry the whole batch on (shutdown, or the rejected row of a
/// refused start was refused too).
pub(crate) fn record<'a>(engine: &'a Arc<Engine>, starts: &'a [BatchStart], reject: &'a Reject) -> BoxFuture<'a, Result<Vec<bool>>> {
    Box::pin(async move {
        let error = match engine.start_batch(starts).await {
            Ok(inserted) => return Ok(inserted),
            Err(e) if refused_data(&e) => e,
            Err(e) => return Err(e),
        };
        if let [start] = starts {
            let reason = format!("PostgreSQL refused the workflow row of this message: {error}");
            tracing::error!(workflow_id = %start.id, %reason, "exactly: message rejected; recorded as an ERROR workflow");
            let rejected = reject(start, &reason);
            return match engine.start_batch(std::slice::from_ref(&rejected)).await {
                // The rejected row holds the message as recorded, which may be what
                // was refused (a NUL in an SQS body): then the recorded inputs go as
                // base64, which any database takes.
                Err(e) if refused_data(&e) => engine.start_batch(&[opaque(rejected, start, &reason)]).await,
                inserted => inserted,
            };
        }
        // Halves, one after the other: the rows keep their order (ordered consumers run them in it).
        let (first, second) = starts.split_at(starts.len() / 2);
        let mut inserted = record(engine, first, reject).await?;
        inserted.extend(record(engine, second, reject).await?);
        Ok(inserted)
    })
}

/// A rejected row whose record keeps the refused start's inputs as base64.
fn opaque(rejected: BatchStart, start: &BatchStart, reason: &str) -> BatchStart {
    use base64::Engine as _;
    let record = serde_json::json!({
        "workflow": start.spec.name,
        "reason": reason,
        "inputs_base64": base64::engine::general_purpose::STANDARD.encode(&start.inputs),
    });
    BatchStart { inputs: serde_json::Value::Array(vec![record]).to_string(), ..rejected }
}

/// A write the database refused for what it holds: a data exception (SQLSTATE class
/// 22, e.g. a NUL in text), an integrity constraint (23) or a limit such as an index
/// entry's size (54). Any other failure (a trigger that raises, a missing table) is
/// no reason to give up on a message: the batch is held and retried until it is
/// cured. (The writer retries connection failures itself.)
fn refused_data(e: &Error) -> bool {
    let Error::Database { source: sqlx::Error::Database(db), .. } = e else { return false };
    db.code().is_some_and(|code| ["22", "23", "54"].iter().any(|class| code.starts_with(class)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_stay_and_long_or_nul_keys_are_hashed_distinctly() {
        assert_eq!(safe_key("order-17"), "order-17");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let hashed_long = safe_key(&long);
        assert!(hashed_long.starts_with("sha256:") && hashed_long.len() == 71, "{hashed_long}");
        assert_eq!(safe_key(&long), hashed_long, "the same key maps to the same value");
        assert_ne!(safe_key(&"k".repeat(MAX_KEY_BYTES + 2)), hashed_long);
        let nul = safe_key("a\0b");
        assert!(nul.starts_with("sha256:") && !nul.contains('\0'), "{nul}");
        assert_ne!(nul, safe_key("a\0c"));
        assert_eq!(safe_key(&"k".repeat(MAX_KEY_BYTES)).len(), MAX_KEY_BYTES);
    }
}

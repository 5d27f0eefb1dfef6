//! Amazon SQS: each received message becomes exactly one durable workflow.
//!
//! A consumer is a `#[workflow]` taking one [`SqsMessage`], declared with
//! `#[sqs_consumer(queue_url = ..)]` or [`register_sqs_consumer`]. At launch the
//! runtime checks every consumer's queue and starts one receive loop per consumer:
//! long-poll up to 10 messages, insert their workflow rows in one transaction
//! (`ON CONFLICT DO NOTHING`), and only then delete them in one call. The workflow
//! ID is `sqs:{queue-name}:{message-id}`, or `sqs:{queue-name}:{key}` with a key
//! function, so a redelivered message finds its row and starts nothing. A message
//! the key function cannot name (it panics or returns an empty key) is recorded as
//! rejected: an ERROR row for the internal workflow `exactly::sqs::rejected` under
//! `sqs:{queue-name}:{message-id}`, keeping the message and the reason; then it is
//! deleted like the others.
//!
//! Settings come from three levels: the consumer's own arguments, else its
//! receiver's defaults ([`SqsReceiver`], given to the runtime builder), else the
//! built-in defaults (client from the standard AWS configuration chain, 20 s long
//! polling, batches of 10, the queue's visibility timeout).
//!
//! [`send`], [`send_fifo`] and [`OutgoingMessage`] send from a workflow as a
//! durable step.

mod client;
mod consumer;
mod launch;
mod message;
mod poll;
mod receiver;
mod rejected;
mod send;

pub use client::{ClientFactory, default_client, http_client};
pub use consumer::{
    KeyFn, Ordering, QueueUrl, SqsConsumerOptions, SqsConsumerRegistration, SqsConsumerSpec, StaticQueueUrl,
    register_sqs_consumer,
};
pub use message::{MessageAttribute, SqsMessage};
pub use receiver::{SqsReceiver, SqsSettings};
pub use send::{OutgoingMessage, STEP_NAME as SEND_STEP_NAME, send, send_fifo};

pub(crate) use launch::start;

#[cfg(test)]
mod tests;

/// The SDK, for building clients and reading its types.
pub use aws_sdk_sqs;

use crate::queue::{Queue, QueueRegistration};

/// The queue behind `ordering = group` when the consumer names no workflow queue:
/// one workflow at a time per partition, the partition being `{queue}:{group}`.
pub(crate) static GROUP_QUEUE: Queue = Queue::new("_exactly_sqs_group").partition_concurrency(1);
inventory::submit! { QueueRegistration(&GROUP_QUEUE) }

/// Compile-time checks behind `#[sqs_consumer]`; each trait's message says what
/// the attribute needs and how to fix it.
#[doc(hidden)]
pub mod checks {
    use super::SqsMessage;

    /// The parameter type of an `#[sqs_consumer]` workflow.
    #[diagnostic::on_unimplemented(
        message = "an `#[sqs_consumer]` workflow takes one `exactly::SqsMessage`, not `{Self}`",
        label = "the received message is passed here",
        note = "each received message starts the workflow with the message as its only argument, recorded as its input: declare it as `message: exactly::SqsMessage` and decode the body inside with `message.json::<T>()` or `message.text()`"
    )]
    pub trait SqsConsumerMessage {}

    impl SqsConsumerMessage for SqsMessage {}

    /// Checks the parameter type.
    pub fn sqs_consumer_message<T: SqsConsumerMessage>() {}

    /// A `key = path` function.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the key function of an SQS consumer",
        label = "must be a `fn(&SqsMessage) -> String`",
        note = "the key function names the message for deduplication: messages with equal keys start one workflow, `sqs:{{queue-name}}:{{key}}`; write `fn key(message: &exactly::SqsMessage) -> String`"
    )]
    pub trait SqsKeyFn: Fn(&SqsMessage) -> String {}

    #[diagnostic::do_not_recommend]
    impl<F: Fn(&SqsMessage) -> String> SqsKeyFn for F {}

    /// Calls a checked key function.
    pub fn sqs_key<F: SqsKeyFn>(key: F, message: &SqsMessage) -> String {
        key(message)
    }

    /// A `client = path` function.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot build the client of an SQS consumer",
        label = "must be a `fn() -> aws_sdk_sqs::Client`",
        note = "the function is called once at launch to build the consumer's client; write `fn client() -> exactly::sqs::aws_sdk_sqs::Client`, or set an async client factory on the runtime builder's `SqsReceiver`"
    )]
    pub trait SqsClientFn: Fn() -> aws_sdk_sqs::Client {}

    #[diagnostic::do_not_recommend]
    impl<F: Fn() -> aws_sdk_sqs::Client> SqsClientFn for F {}

    /// Calls a checked client function.
    pub fn sqs_client<F: SqsClientFn>(client: F) -> aws_sdk_sqs::Client {
        client()
    }
}

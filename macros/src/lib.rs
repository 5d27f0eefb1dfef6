//! Attribute macros of [`exactly`](https://docs.rs/exactly): `#[workflow]` and `#[step]`.
//!
//! Use them through the `exactly` crate, which re-exports them together with the
//! runtime their expansions call. Each entry point delegates to a module that works
//! on `proc_macro2`, so the expansions are unit-tested as token strings.
//!
//! - `attr`: the `key = value` arguments of both attributes.
//! - `signature`: what both attributes require of the function they annotate.
//! - `workflow`, `step`: the expansions.
//! - `error`: collects every error so that one compile reports all of them.
//!
//! Trait-bound checks (an argument that cannot be recorded, an error type without
//! `From<exactly::Error>`) are emitted as calls spanned on the offending type; their
//! messages live on the marker traits in `exactly_runtime::__private` (`checks.rs`).

use proc_macro::TokenStream;

mod attr;
#[cfg_attr(not(any(feature = "kafka", feature = "sqs")), allow(dead_code))]
mod consumer;
mod error;
mod kafka_consumer;
mod signature;
mod sqs_consumer;
mod step;
mod workflow;

#[cfg(test)]
mod tests;

/// Turns an `async fn` returning `Result<T, E>` into a durable workflow.
///
/// The function keeps its name and visibility, but calling it no longer runs the body:
/// it returns an [`exactly::WorkflowCall`], which starts the workflow when awaited (and
/// waits for its result) or with `.with_id(..).start()` (returning a handle). The
/// arguments are recorded as JSON, so they must be owned, serializable values; the
/// body runs from the recorded arguments, on this executor or, after a crash, on the
/// one that recovers it.
///
/// Options: `name = "durable-name"` (default: `module_path!()::fn_name`; the name is
/// the durable key of the recorded workflows, so renaming the function without
/// fixing the name orphans them), `max_recovery_attempts = 5`.
///
/// [`exactly::WorkflowCall`]: https://docs.rs/exactly/latest/exactly/struct.WorkflowCall.html
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    workflow::expand(args.into(), item.into()).into()
}

/// Makes an `async fn` returning `Result<T, E>` a checkpointed step.
///
/// The function keeps its signature. Inside a workflow, its outcome (output or error)
/// is recorded when it completes, and when the workflow is recovered the record is
/// returned instead of running the body again. Outside a workflow it simply runs.
///
/// Options: `name = ".."` (default `module_path!()::fn_name`; checked on replay),
/// `retries = 3` (default 0), `backoff_ms = 100`, `backoff_factor = 2.0`,
/// `max_backoff_ms = 60000`. With `retries > 0` every argument must be `Clone`, since
/// each attempt gets its arguments anew.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    step::expand(args.into(), item.into()).into()
}

/// Registers a `#[workflow]` as the consumer of an Amazon SQS queue: each received
/// message starts the workflow exactly once, with the message as its argument.
///
/// Write it above `#[workflow]`, on an `async fn` taking one `exactly::SqsMessage`:
///
/// ```ignore
/// #[sqs_consumer(queue_url = env("JOBS_QUEUE_URL"))]
/// #[workflow]
/// async fn on_job(message: SqsMessage) -> exactly::Result<()> { Ok(()) }
/// ```
///
/// Options (each one left out comes from the consumer's receiver, see
/// `exactly::sqs::SqsReceiver`): `queue_url = ".."` or `env("VAR")`, `key = path`
/// (a `fn(&SqsMessage) -> String`: the workflow ID becomes `sqs:{queue-name}:{key}`
/// instead of `sqs:{queue-name}:{message-id}`), `workflow_queue = ".."`,
/// `client = path` (a `fn() -> aws_sdk_sqs::Client`), `receiver = ".."`,
/// `ordering = "group" | "none"`, `wait_time_s = 0..=20`, `batch_size = 1..=10`,
/// `visibility_timeout_s = 0..=43200`, `pollers = 1..=64` (receive loops at once,
/// default 4). Needs the `sqs` feature (on by default).
#[proc_macro_attribute]
pub fn sqs_consumer(args: TokenStream, item: TokenStream) -> TokenStream {
    if cfg!(feature = "sqs") { sqs_consumer::expand(args.into(), item.into()) } else { sqs_consumer::disabled(item.into()) }
        .into()
}

/// Registers a `#[workflow]` as the consumer of Kafka topics: each message starts
/// the workflow exactly once, under the ID `kafka:{group}:{topic}:{partition}:{offset}`.
///
/// Write it above `#[workflow]`, on an `async fn` taking the topic, the partition
/// and the message:
///
/// ```ignore
/// #[kafka_consumer("orders")]
/// #[workflow]
/// async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> { Ok(()) }
/// ```
///
/// Topics first: a name (`"orders"`), a regular expression starting with `^`
/// (`"^orders-.*"`), or a list of both (`["orders", "^returns-.*"]`). Options:
/// `group = ".."` (default: the workflow's durable name), `queue = ".."` (a declared
/// durable queue), `ordering = "partition" | "key" | "none"` (one workflow at a time
/// per partition or per key, in offset order; default none), `config = path` (a
/// `fn() -> exactly::kafka::ClientConfig` of librdkafka settings over the runtime's),
/// `batch_size = 1..=10000` (messages recorded per transaction, default 500). Needs
/// the `kafka` feature (on by default).
#[proc_macro_attribute]
pub fn kafka_consumer(args: TokenStream, item: TokenStream) -> TokenStream {
    if cfg!(feature = "kafka") { kafka_consumer::expand(args.into(), item.into()) } else { kafka_consumer::disabled(item.into()) }
        .into()
}

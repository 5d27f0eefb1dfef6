//! Kafka consumers: what `#[kafka_consumer]` registers through `inventory`, the
//! programmatic [`register_kafka_consumer`], and the resolved form both become.

pub(crate) mod validate;

use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;

use crate::error::Result;
use crate::registry::{Location, WorkflowSpec};
use crate::workflow::call::WorkflowCall;

use super::KafkaMessage;

/// The default number of messages polled and recorded in one transaction.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// The largest batch allowed.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// In which order a consumer's workflows run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Ordering {
    /// As fast as they come (default): workflows of one partition may overlap.
    #[default]
    None,
    /// One at a time per partition, in offset order, across every process.
    Partition,
    /// One at a time per message key (per topic), in offset order; messages without
    /// a key are ordered by partition.
    Key,
}

impl Ordering {
    /// The attribute's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::None => "none",
            Ordering::Partition => "partition",
            Ordering::Key => "key",
        }
    }
}

/// What `#[kafka_consumer(..)]` registers for the `#[workflow]` below it.
#[derive(Debug)]
pub struct KafkaConsumerSpec {
    /// The workflow each message starts.
    pub workflow: &'static WorkflowSpec,
    /// Topic names and regular expressions (starting with `^`).
    pub topics: &'static [&'static str],
    /// The consumer group; default: the workflow's durable name.
    pub group: Option<&'static str>,
    /// The durable queue the workflows are enqueued on.
    pub queue: Option<&'static str>,
    /// The order in which the workflows run.
    pub ordering: Ordering,
    /// librdkafka properties of this consumer, over the runtime-wide ones.
    pub config: Option<fn() -> ClientConfig>,
    /// Messages per poll batch; default [`DEFAULT_BATCH_SIZE`].
    pub batch_size: Option<u32>,
    /// Where the attribute is.
    pub location: Location,
}

/// Submitted by `#[kafka_consumer]`.
pub struct KafkaConsumerRegistration(pub &'static KafkaConsumerSpec);
inventory::collect!(KafkaConsumerRegistration);

/// A function returning librdkafka properties for one consumer.
pub type ConfigFn = Arc<dyn Fn() -> ClientConfig + Send + Sync>;

/// The options of [`register_kafka_consumer`]; the same as the attribute's.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct KafkaConsumerOptions {
    /// The consumer group; default: the workflow's durable name.
    pub group: Option<String>,
    /// Enqueue the workflows on this durable queue.
    pub queue: Option<String>,
    /// The order in which the workflows run.
    pub ordering: Ordering,
    /// librdkafka properties of this consumer, over the runtime-wide ones.
    pub config: Option<ConfigFn>,
    /// Messages per poll batch.
    pub batch_size: Option<usize>,
}

impl std::fmt::Debug for KafkaConsumerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumerOptions")
            .field("group", &self.group)
            .field("queue", &self.queue)
            .field("ordering", &self.ordering)
            .field("config", &self.config.as_ref().map(|_| ".."))
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl KafkaConsumerOptions {
    /// Options with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the consumer group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Enqueues the workflows on the durable queue named `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the ordering.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Sets librdkafka properties for this consumer, over the runtime-wide ones.
    pub fn config(mut self, config: impl Fn() -> ClientConfig + Send + Sync + 'static) -> Self {
        self.config = Some(Arc::new(config));
        self
    }

    /// Sets the number of messages polled and recorded per transaction.
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = Some(size);
        self
    }
}

/// Topic names and regular expressions (`^...`) for [`register_kafka_consumer`].
pub trait IntoTopics {
    /// The topics, in order.
    fn into_topics(self) -> Vec<String>;
}

impl IntoTopics for &str {
    fn into_topics(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl IntoTopics for String {
    fn into_topics(self) -> Vec<String> {
        vec![self]
    }
}

impl<T: AsRef<str>> IntoTopics for Vec<T> {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

impl<T: AsRef<str>> IntoTopics for &[T] {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

impl<T: AsRef<str>, const N: usize> IntoTopics for [T; N] {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

/// A consumer, from the attribute or from [`register_kafka_consumer`].
#[derive(Clone)]
pub(crate) struct ConsumerDef {
    /// The workflow's durable name.
    pub workflow: String,
    pub topics: Vec<String>,
    pub group: String,
    pub queue: Option<String>,
    pub ordering: Ordering,
    pub config: Option<ConfigFn>,
    pub batch_size: usize,
    pub location: Location,
    /// From the attribute (true) or `register_kafka_consumer`.
    pub attribute: bool,
}

impl ConsumerDef {
    pub fn from_spec(spec: &'static KafkaConsumerSpec) -> Self {
        ConsumerDef {
            workflow: spec.workflow.name.to_owned(),
            topics: spec.topics.iter().map(|t| (*t).to_owned()).collect(),
            group: spec.group.unwrap_or(spec.workflow.name).to_owned(),
            queue: spec.queue.map(str::to_owned),
            ordering: spec.ordering,
            config: spec.config.map(|f| Arc::new(f) as ConfigFn),
            batch_size: spec.batch_size.map_or(DEFAULT_BATCH_SIZE, |n| n as usize),
            location: spec.location,
            attribute: true,
        }
    }

    /// Names the consumer in error messages.
    pub fn describe(&self) -> String {
        let form = if self.attribute { "#[kafka_consumer]" } else { "register_kafka_consumer" };
        format!("the {form} of workflow `{}` at {} (group `{}`)", self.workflow, self.location, self.group)
    }
}

/// Consumers registered with [`register_kafka_consumer`] in this process.
static REGISTERED: Mutex<Vec<ConsumerDef>> = Mutex::new(Vec::new());

/// Every consumer of this program: the attributes' and the registered ones.
pub(crate) fn collect() -> Vec<ConsumerDef> {
    let mut defs: Vec<ConsumerDef> =
        inventory::iter::<KafkaConsumerRegistration>.into_iter().map(|r| ConsumerDef::from_spec(r.0)).collect();
    defs.extend(REGISTERED.lock().expect("registered consumers poisoned").iter().cloned());
    defs
}

/// Consumes `topics` into `workflow`, like `#[kafka_consumer]` but for topics known
/// only at run time. `workflow` is the `#[workflow]` function itself, whose
/// parameters must be `(topic: String, partition: i32, message: KafkaMessage)`.
///
/// Before launch, the consumer is kept for [`launch`](crate::launch), which
/// validates it with the others and starts it. After launch, it is validated and
/// started at once, and an invalid one is an error here.
///
/// ```no_run
/// # use exactly_runtime as exactly;
/// # fn on_event(topic: String, partition: i32, message: exactly::kafka::KafkaMessage) -> exactly::WorkflowCall<exactly::Result<()>> { unimplemented!() }
/// use exactly::kafka::{KafkaConsumerOptions, Ordering, register_kafka_consumer};
///
/// # async fn f() -> exactly::Result<()> {
/// let topic = std::env::var("EVENTS_TOPIC").unwrap();
/// register_kafka_consumer(on_event, [topic], KafkaConsumerOptions::new().ordering(Ordering::Partition)).await?;
/// # Ok(()) }
/// ```
#[track_caller]
pub fn register_kafka_consumer<F, R>(
    workflow: F,
    topics: impl IntoTopics,
    options: KafkaConsumerOptions,
) -> impl Future<Output = Result<()>> + Send
where
    F: Fn(String, i32, KafkaMessage) -> WorkflowCall<R>,
{
    let caller = std::panic::Location::caller();
    // Calling a workflow function only records its arguments; it names the workflow.
    let name = workflow(String::new(), 0, KafkaMessage::new("", 0, 0, Vec::new())).name();
    let def = ConsumerDef {
        workflow: name.to_owned(),
        topics: topics.into_topics(),
        group: options.group.unwrap_or_else(|| name.to_owned()),
        queue: options.queue,
        ordering: options.ordering,
        config: options.config,
        batch_size: options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        location: Location { file: caller.file(), line: caller.line() },
        attribute: false,
    };
    async move {
        validate::check_alone(&def)?;
        super::receiver::register(def.clone()).await?;
        REGISTERED.lock().expect("registered consumers poisoned").push(def);
        Ok(())
    }
}

//! Declaring consumers: the static [`SqsConsumerSpec`] that `#[sqs_consumer]`
//! submits through `inventory`, and [`SqsConsumerOptions`] for
//! [`register_sqs_consumer`] and [`SqsReceiver::consumer`](super::SqsReceiver::consumer).
//! Both become a [`ConsumerDecl`], resolved against the receiver's defaults at launch.

use std::sync::{Arc, Mutex};

use crate::registry::{Location, WorkflowSpec};
use crate::workflow::call::WorkflowCall;

use super::client::ClientSource;
use super::message::SqsMessage;

/// Computes a message's deduplication key (the workflow ID becomes
/// `sqs:{queue-name}:{key}` instead of `sqs:{queue-name}:{message-id}`).
pub type KeyFn = Arc<dyn Fn(&SqsMessage) -> String + Send + Sync>;

/// Where a consumer's queue URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueUrl {
    /// The URL itself.
    Literal(String),
    /// The environment variable holding it, read at launch.
    Env(String),
}

/// In what order a consumer's workflows run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ordering {
    /// As fast as they come: each message's workflow starts once its row is stored.
    #[default]
    None,
    /// One workflow at a time per FIFO message group, in the order SQS delivered the
    /// messages (workflows are enqueued on a queue with partition concurrency 1,
    /// partitioned by queue name and `MessageGroupId`). FIFO queues only.
    Group,
}

/// What `#[sqs_consumer]` registers. Not written by hand: use the attribute, or
/// [`register_sqs_consumer`].
#[derive(Debug)]
pub struct SqsConsumerSpec {
    /// The workflow that each message starts.
    pub workflow: &'static WorkflowSpec,
    /// `queue_url = ".."` or `queue_url = env("VAR")`.
    pub queue_url: Option<StaticQueueUrl>,
    /// `key = path`.
    pub key: Option<fn(&SqsMessage) -> String>,
    /// `workflow_queue = ".."`.
    pub workflow_queue: Option<&'static str>,
    /// `client = path`.
    pub client: Option<fn() -> aws_sdk_sqs::Client>,
    /// `receiver = ".."`.
    pub receiver: Option<&'static str>,
    /// `ordering = "group" | "none"`.
    pub ordering: Option<Ordering>,
    /// `wait_time_s = N`.
    pub wait_time_s: Option<u32>,
    /// `batch_size = N`.
    pub batch_size: Option<u32>,
    /// `visibility_timeout_s = N`.
    pub visibility_timeout_s: Option<u32>,
    /// `pollers = N`.
    pub pollers: Option<u32>,
    /// Where the attribute is written.
    pub location: Location,
}

/// A queue URL fixed at compile time (the `const` form of [`QueueUrl`]).
#[derive(Debug, Clone, Copy)]
pub enum StaticQueueUrl {
    /// The URL itself.
    Literal(&'static str),
    /// The environment variable holding it.
    Env(&'static str),
}

/// Submitted by `#[sqs_consumer]`.
pub struct SqsConsumerRegistration(pub &'static SqsConsumerSpec);
inventory::collect!(SqsConsumerRegistration);

/// A consumer's own settings; each one left unset comes from its receiver's
/// defaults (see [`SqsReceiver`](super::SqsReceiver)).
///
/// ```
/// # use exactly_runtime::sqs::{Ordering, SqsConsumerOptions};
/// let options = SqsConsumerOptions::new()
///     .queue_url_env("JOBS_QUEUE_URL")
///     .key(|message| message.body.clone())
///     .ordering(Ordering::Group)
///     .batch_size(5);
/// # let _ = options;
/// ```
#[derive(Clone, Default)]
pub struct SqsConsumerOptions {
    pub(crate) queue_url: Option<QueueUrl>,
    pub(crate) key: Option<KeyFn>,
    pub(crate) workflow_queue: Option<String>,
    pub(crate) client: Option<ClientSource>,
    pub(crate) receiver: Option<String>,
    pub(crate) ordering: Option<Ordering>,
    pub(crate) wait_time_s: Option<u32>,
    pub(crate) batch_size: Option<u32>,
    pub(crate) visibility_timeout_s: Option<u32>,
    pub(crate) pollers: Option<u32>,
}

impl std::fmt::Debug for SqsConsumerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsConsumerOptions")
            .field("queue_url", &self.queue_url)
            .field("key", &self.key.as_ref().map(|_| "fn"))
            .field("workflow_queue", &self.workflow_queue)
            .field("client", &self.client)
            .field("receiver", &self.receiver)
            .field("ordering", &self.ordering)
            .field("wait_time_s", &self.wait_time_s)
            .field("batch_size", &self.batch_size)
            .field("visibility_timeout_s", &self.visibility_timeout_s)
            .field("pollers", &self.pollers)
            .finish()
    }
}

impl SqsConsumerOptions {
    /// Nothing set: everything comes from the receiver.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue's URL.
    pub fn queue_url(mut self, url: impl Into<String>) -> Self {
        self.queue_url = Some(QueueUrl::Literal(url.into()));
        self
    }

    /// The environment variable that holds the queue's URL, read at launch.
    pub fn queue_url_env(mut self, var: impl Into<String>) -> Self {
        self.queue_url = Some(QueueUrl::Env(var.into()));
        self
    }

    /// The deduplication key of a message, for senders that may send the same
    /// content twice: messages with equal keys start one workflow.
    pub fn key(mut self, key: impl Fn(&SqsMessage) -> String + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Enqueue the workflows on this durable queue instead of starting them at once.
    pub fn workflow_queue(mut self, queue: impl Into<String>) -> Self {
        self.workflow_queue = Some(queue.into());
        self
    }

    /// The client to receive with.
    pub fn client(mut self, client: aws_sdk_sqs::Client) -> Self {
        self.client = Some(ClientSource::Client(client));
        self
    }

    /// Which receiver's defaults apply (default: the unnamed receiver's). A consumer
    /// added with [`SqsReceiver::consumer`](super::SqsReceiver::consumer) belongs to
    /// that receiver, whatever this says.
    pub fn receiver(mut self, name: impl Into<String>) -> Self {
        self.receiver = Some(name.into());
        self
    }

    /// The order in which the workflows run.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = Some(ordering);
        self
    }

    /// How long one receive call waits for messages (long polling), 0 to 20 s;
    /// default 20. With 0, an empty receive is followed by a 1 s pause.
    pub fn wait_time_s(mut self, seconds: u32) -> Self {
        self.wait_time_s = Some(seconds);
        self
    }

    /// How many messages one receive call takes, 1 to 10; default 10. They are
    /// stored in one transaction and deleted in one call.
    pub fn batch_size(mut self, size: u32) -> Self {
        self.batch_size = Some(size);
        self
    }

    /// How long a received message stays hidden from other receivers, 0 to 43200 s;
    /// default: the queue's own setting. Extended while storing takes long.
    pub fn visibility_timeout_s(mut self, seconds: u32) -> Self {
        self.visibility_timeout_s = Some(seconds);
        self
    }

    /// How many receive loops work the queue at once, 1 to 64; default 4. Each
    /// receives, stores and deletes its own batches; several keep the queue busy
    /// while one waits for its insert or its delete.
    pub fn pollers(mut self, pollers: u32) -> Self {
        self.pollers = Some(pollers);
        self
    }
}

/// Which workflow a consumer starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WorkflowRef {
    /// From `#[sqs_consumer]`.
    Spec(&'static WorkflowSpec),
    /// From the programmatic forms: a durable name, looked up at launch.
    Name(&'static str),
}

/// A consumer as declared, before its receiver's defaults are applied.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerDecl {
    pub workflow: WorkflowRef,
    pub location: Location,
    pub options: SqsConsumerOptions,
}

impl ConsumerDecl {
    pub fn from_spec(spec: &'static SqsConsumerSpec) -> Self {
        let options = SqsConsumerOptions {
            queue_url: spec.queue_url.map(|url| match url {
                StaticQueueUrl::Literal(url) => QueueUrl::Literal(url.to_owned()),
                StaticQueueUrl::Env(var) => QueueUrl::Env(var.to_owned()),
            }),
            key: spec.key.map(|key| Arc::new(key) as KeyFn),
            workflow_queue: spec.workflow_queue.map(str::to_owned),
            client: spec.client.map(ClientSource::Fn),
            receiver: spec.receiver.map(str::to_owned),
            ordering: spec.ordering,
            wait_time_s: spec.wait_time_s,
            batch_size: spec.batch_size,
            visibility_timeout_s: spec.visibility_timeout_s,
            pollers: spec.pollers,
        };
        ConsumerDecl { workflow: WorkflowRef::Spec(spec.workflow), location: spec.location, options }
    }

    /// A consumer of `workflow`, a `#[workflow]` fn taking one [`SqsMessage`].
    pub fn from_fn<R>(
        workflow: impl Fn(SqsMessage) -> WorkflowCall<R>,
        options: SqsConsumerOptions,
        caller: &'static std::panic::Location<'static>,
    ) -> Self {
        // Calling the fn only builds the call (its name and encoded inputs); nothing runs.
        let name = workflow(SqsMessage::new("", "", "")).name();
        ConsumerDecl {
            workflow: WorkflowRef::Name(name),
            location: Location { file: caller.file(), line: caller.line() },
            options,
        }
    }

    /// `consumer `name` (file:line)`, for error messages.
    pub fn describe(&self) -> String {
        let name = match self.workflow {
            WorkflowRef::Spec(spec) => spec.name,
            WorkflowRef::Name(name) => name,
        };
        format!("SQS consumer `{name}` ({})", self.location)
    }
}

/// The consumers registered with [`register_sqs_consumer`].
static REGISTERED: Mutex<Vec<ConsumerDecl>> = Mutex::new(Vec::new());

/// Registers `workflow` (a `#[workflow]` fn taking one [`SqsMessage`]) as an SQS
/// consumer: the programmatic form of `#[sqs_consumer]`, for queue URLs known only
/// at run time. Every runtime launched afterwards in this process starts it.
///
/// ```no_run
/// use exactly_runtime::sqs::{SqsConsumerOptions, register_sqs_consumer};
/// # fn on_job(message: exactly_runtime::sqs::SqsMessage) -> exactly_runtime::WorkflowCall<exactly_runtime::Result<()>> { unimplemented!() }
/// let url = std::env::args().nth(1).expect("a queue URL");
/// register_sqs_consumer(on_job, SqsConsumerOptions::new().queue_url(url));
/// ```
#[track_caller]
pub fn register_sqs_consumer<R>(workflow: impl Fn(SqsMessage) -> WorkflowCall<R>, options: SqsConsumerOptions) {
    let decl = ConsumerDecl::from_fn(workflow, options, std::panic::Location::caller());
    REGISTERED.lock().expect("SQS registrations poisoned").push(decl);
}

/// Every consumer declared with the attribute or registered programmatically.
pub(crate) fn declared() -> Vec<ConsumerDecl> {
    let mut all: Vec<ConsumerDecl> =
        inventory::iter::<SqsConsumerRegistration>.into_iter().map(|r| ConsumerDecl::from_spec(r.0)).collect();
    all.extend(REGISTERED.lock().expect("SQS registrations poisoned").iter().cloned());
    all
}

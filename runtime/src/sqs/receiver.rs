//! Receiver-level defaults: [`SqsReceiver`], given to the runtime builder. A
//! consumer takes each setting it leaves unset from its receiver.

use std::sync::Arc;

use futures_util::FutureExt;

use crate::workflow::call::WorkflowCall;

use super::client::ClientSource;
use super::consumer::{ConsumerDecl, KeyFn, QueueUrl, SqsConsumerOptions};
use super::message::SqsMessage;

/// Defaults shared by a group of SQS consumers: client (or client factory), queue
/// URL, key function and workflow queue. Give it to
/// [`RuntimeBuilder::sqs_receiver`](crate::RuntimeBuilder::sqs_receiver).
///
/// [`SqsReceiver::new`] configures the default receiver, whose defaults apply to
/// every consumer that names no receiver; [`SqsReceiver::named`] configures one
/// that consumers select with `receiver = "name"`. Without any receiver, consumers
/// use the client from the standard AWS configuration chain.
///
/// ```no_run
/// # async fn f() -> exactly_runtime::Result<()> {
/// use exactly_runtime::sqs::SqsReceiver;
///
/// let runtime = exactly_runtime::Runtime::builder()
///     .sqs_receiver(SqsReceiver::new().queue_url_env("JOBS_QUEUE_URL"))
///     .sqs_receiver(
///         SqsReceiver::named("reports")
///             .client_factory(|| async { exactly_runtime::sqs::default_client().await.expect("an SQS client") })
///             .workflow_queue("reports"),
///     )
///     .launch()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct SqsReceiver {
    pub(crate) name: Option<String>,
    pub(crate) client: Option<ClientSource>,
    pub(crate) queue_url: Option<QueueUrl>,
    pub(crate) key: Option<KeyFn>,
    pub(crate) workflow_queue: Option<String>,
    pub(crate) consumers: Vec<ConsumerDecl>,
}

impl std::fmt::Debug for SqsReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsReceiver")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("queue_url", &self.queue_url)
            .field("key", &self.key.as_ref().map(|_| "fn"))
            .field("workflow_queue", &self.workflow_queue)
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

impl SqsReceiver {
    /// The default receiver: its settings apply to consumers that name no receiver.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver that consumers select with `receiver = "name"`.
    pub fn named(name: impl Into<String>) -> Self {
        SqsReceiver { name: Some(name.into()), ..Self::default() }
    }

    /// The client its consumers receive with (and the send helpers use, for the
    /// default receiver).
    pub fn client(mut self, client: aws_sdk_sqs::Client) -> Self {
        self.client = Some(ClientSource::Client(client));
        self
    }

    /// Builds the client at launch (called once per launch).
    pub fn client_factory<F, Fut>(mut self, factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = aws_sdk_sqs::Client> + Send + 'static,
    {
        self.client = Some(ClientSource::Factory(Arc::new(move || factory().boxed())));
        self
    }

    /// The default queue URL of its consumers.
    pub fn queue_url(mut self, url: impl Into<String>) -> Self {
        self.queue_url = Some(QueueUrl::Literal(url.into()));
        self
    }

    /// The environment variable holding the default queue URL, read at launch.
    pub fn queue_url_env(mut self, var: impl Into<String>) -> Self {
        self.queue_url = Some(QueueUrl::Env(var.into()));
        self
    }

    /// The default key function of its consumers.
    pub fn key(mut self, key: impl Fn(&SqsMessage) -> String + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// The durable queue its consumers' workflows are enqueued on by default.
    pub fn workflow_queue(mut self, queue: impl Into<String>) -> Self {
        self.workflow_queue = Some(queue.into());
        self
    }

    /// Adds a consumer of this receiver: `workflow` is a `#[workflow]` fn taking one
    /// [`SqsMessage`]; `options` override this receiver's defaults.
    #[track_caller]
    pub fn consumer<R>(
        mut self,
        workflow: impl Fn(SqsMessage) -> WorkflowCall<R>,
        options: SqsConsumerOptions,
    ) -> Self {
        let mut decl = ConsumerDecl::from_fn(workflow, options, std::panic::Location::caller());
        decl.options.receiver = self.name.clone();
        self.consumers.push(decl);
        self
    }
}

/// The SQS part of the runtime builder: the receivers it was given.
#[derive(Debug, Clone, Default)]
pub struct SqsSettings {
    pub(crate) receivers: Vec<SqsReceiver>,
}

impl SqsSettings {
    /// Adds a receiver.
    pub fn add(&mut self, receiver: SqsReceiver) {
        self.receivers.push(receiver);
    }
}

//! Launching the SQS receivers: each declared consumer is resolved against its
//! receiver's defaults and validated (errors name the consumer and the setting),
//! its queue is checked to exist, and one receive loop per consumer starts. Shutdown
//! stops the loops first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::registry::WorkflowSpec;
use crate::workflow::engine::Engine;

use super::client::{ClientSource, default_client};
use super::consumer::{ConsumerDecl, KeyFn, Ordering, QueueUrl, WorkflowRef, declared};
use super::message::queue_name;
use super::receiver::{SqsReceiver, SqsSettings};
use super::{GROUP_QUEUE, poll, send};

/// How long launch waits for a queue to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Defaults of the settings a consumer may leave unset.
const DEFAULT_WAIT_TIME_S: u32 = 20;
const DEFAULT_BATCH_SIZE: u32 = 10;
const DEFAULT_POLLERS: u32 = 4;
const MAX_POLLERS: u32 = 64;

/// A consumer with every setting decided, before its client exists.
pub(crate) struct Plan {
    pub describe: String,
    pub workflow: &'static WorkflowSpec,
    pub queue_url: String,
    pub queue_name: String,
    pub key: Option<KeyFn>,
    pub workflow_queue: Option<String>,
    pub ordering: Ordering,
    /// The consumer's own client, else its receiver's (by index), else the default.
    pub client: PlanClient,
    pub wait_time_s: u32,
    pub batch_size: u32,
    pub visibility_timeout_s: Option<u32>,
    /// Receive loops working the queue at once.
    pub pollers: u32,
}

pub(crate) enum PlanClient {
    Own(ClientSource),
    Receiver(usize),
    Default,
}

/// A consumer ready to run.
pub(crate) struct Consumer {
    pub plan: Plan,
    pub client: Client,
    /// How long a received message stays hidden: the consumer's setting, else the queue's.
    pub visibility: Duration,
}

/// Resolves and validates every declared consumer, checks their queues and starts
/// their receive loops. Does nothing when no consumer is declared.
pub(crate) async fn start(engine: &Arc<Engine>, settings: &SqsSettings) -> Result<()> {
    let mut decls = declared();
    decls.extend(settings.receivers.iter().flat_map(|r| r.consumers.iter().cloned()));
    send::configure(default_receiver(&settings.receivers).and_then(|r| r.client.clone()));
    if decls.is_empty() {
        return Ok(());
    }
    let env = |var: &str| std::env::var(var).ok();
    let plans = plan(&decls, &settings.receivers, &|name| engine.registry.get(name), &engine.queues, &env)?;

    // Each receiver's client is built once, the default one only if needed.
    let mut receiver_clients: HashMap<usize, Client> = HashMap::new();
    let mut default: Option<Client> = None;
    let mut consumers = Vec::with_capacity(plans.len());
    for plan in plans {
        let client = match &plan.client {
            PlanClient::Own(source) => source.get().await,
            PlanClient::Receiver(index) => match receiver_clients.get(index) {
                Some(client) => client.clone(),
                None => {
                    let source =
                        settings.receivers[*index].client.as_ref().expect("planned from a receiver with a client");
                    let client = source.get().await;
                    receiver_clients.insert(*index, client.clone());
                    client
                }
            },
            PlanClient::Default => match &default {
                Some(client) => client.clone(),
                None => {
                    let client = default_client().await?;
                    default = Some(client.clone());
                    client
                }
            },
        };
        consumers.push((plan, client));
    }
    let checks = consumers.into_iter().map(|(plan, client)| async move {
        let visibility = check_queue(&plan, &client).await?;
        Ok::<_, Error>(Consumer { plan, client, visibility })
    });
    let consumers = futures_util::future::try_join_all(checks).await?;

    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        tracing::info!(
            queue_url = %consumer.plan.queue_url,
            workflow = consumer.plan.workflow.name,
            pollers = consumer.plan.pollers,
            "exactly: SQS consumer started"
        );
        let consumer = Arc::new(consumer);
        for i in 0..consumer.plan.pollers {
            let name = format!("{} (poller {})", consumer.plan.describe, i + 1);
            let probe = engine.supervisor.probe("sqs", name);
            tasks.push(tokio::spawn(poll::run(engine.clone(), consumer.clone(), stopped.clone(), probe)));
        }
    }
    engine.before_shutdown(Box::pin(async move {
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
    }));
    Ok(())
}

fn default_receiver(receivers: &[SqsReceiver]) -> Option<&SqsReceiver> {
    receivers.iter().find(|r| r.name.is_none())
}

/// Applies each consumer's receiver defaults and checks everything that needs no
/// server. The first problem fails launch with a message naming the consumer.
pub(crate) fn plan(
    decls: &[ConsumerDecl],
    receivers: &[SqsReceiver],
    workflow: &dyn Fn(&str) -> Option<&'static WorkflowSpec>,
    queues: &HashMap<&'static str, Queue>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Plan>> {
    for (i, receiver) in receivers.iter().enumerate() {
        if receivers[..i].iter().any(|earlier| earlier.name == receiver.name) {
            let which = receiver
                .name
                .as_deref()
                .map_or("the default SQS receiver".to_owned(), |n| format!("SQS receiver `{n}`"));
            return Err(Error::Config(format!(
                "{which} is configured twice on the runtime builder; configure it once"
            )));
        }
    }
    let mut plans: Vec<Plan> = Vec::with_capacity(decls.len());
    for decl in decls {
        let plan = plan_one(decl, receivers, workflow, queues, env)?;
        if let Some(first) = plans.iter().find(|p| p.queue_url == plan.queue_url) {
            return Err(Error::Registration(format!(
                "{} and {} both consume {}; two consumers of one queue would each get a random share of its messages: give the queue one consumer",
                first.describe, plan.describe, plan.queue_url
            )));
        }
        plans.push(plan);
    }
    Ok(plans)
}

fn plan_one(
    decl: &ConsumerDecl,
    receivers: &[SqsReceiver],
    workflow: &dyn Fn(&str) -> Option<&'static WorkflowSpec>,
    queues: &HashMap<&'static str, Queue>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan> {
    let describe = decl.describe();
    let options = &decl.options;
    let (receiver_index, receiver) = match &options.receiver {
        Some(name) => match receivers.iter().position(|r| r.name.as_deref() == Some(name)) {
            Some(index) => (Some(index), Some(&receivers[index])),
            None => {
                let mut named: Vec<_> =
                    receivers.iter().filter_map(|r| r.name.as_deref()).map(|n| format!("`{n}`")).collect();
                named.sort();
                let named = if named.is_empty() { "none".to_owned() } else { named.join(", ") };
                return Err(Error::Registration(format!(
                    "{describe} uses SQS receiver `{name}`, which the runtime builder does not configure (configured: {named}); add `.sqs_receiver(SqsReceiver::named(\"{name}\"))`"
                )));
            }
        },
        None => match receivers.iter().position(|r| r.name.is_none()) {
            Some(index) => (Some(index), Some(&receivers[index])),
            None => (None, None),
        },
    };
    let spec = match decl.workflow {
        WorkflowRef::Spec(spec) => spec,
        WorkflowRef::Name(name) => workflow(name).ok_or_else(|| {
            Error::Registration(format!(
                "{describe} starts workflow `{name}`, which is not registered; is it a `#[workflow]` fn?"
            ))
        })?,
    };
    let url = match options.queue_url.as_ref().or(receiver.and_then(|r| r.queue_url.as_ref())) {
        Some(QueueUrl::Literal(url)) => url.trim().to_owned(),
        Some(QueueUrl::Env(var)) => match env(var) {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => {
                return Err(Error::Config(format!(
                    "{describe} reads its queue URL from the environment variable {var}, which is not set"
                )));
            }
        },
        None => {
            return Err(Error::Config(format!(
                "{describe} has no queue URL: set `queue_url = \"..\"` or `queue_url = env(\"VAR\")` on it, or a queue URL on its receiver (`SqsReceiver::queue_url`)"
            )));
        }
    };
    let name = match queue_name(&url) {
        Some(name) if url.starts_with("https://") || url.starts_with("http://") => name.to_owned(),
        _ => {
            return Err(Error::Config(format!(
                "{describe}: `{url}` is not an SQS queue URL; expected https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE"
            )));
        }
    };
    let ordering = options.ordering.unwrap_or_default();
    let mut workflow_queue = options.workflow_queue.clone().or_else(|| receiver.and_then(|r| r.workflow_queue.clone()));
    if let Some(queue) = &workflow_queue {
        let Some(declared) = queues.get(queue.as_str()) else {
            let mut names: Vec<_> = queues.keys().filter(|q| !q.starts_with('_')).map(|q| format!("`{q}`")).collect();
            names.sort();
            return Err(Error::Registration(format!(
                "{describe} enqueues its workflows on queue `{queue}`, which is not declared (declared: {}); declare it with `exactly::queue!` or `Runtime::builder().queue(..)`",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            )));
        };
        if ordering == Ordering::Group && declared.partition_concurrency != Some(1) {
            return Err(Error::Registration(format!(
                "{describe} has `ordering = group` and enqueues on queue `{queue}` (declared at {}), which needs `partition_concurrency = 1` to run one workflow per message group at a time",
                if declared.location.line == 0 {
                    "the runtime builder".to_owned()
                } else {
                    declared.location.to_string()
                }
            )));
        }
    }
    if ordering == Ordering::Group {
        if !name.ends_with(".fifo") {
            return Err(Error::Config(format!(
                "{describe} has `ordering = group`, but {url} is a standard queue; message groups are ordered in FIFO queues (names ending in `.fifo`)"
            )));
        }
        workflow_queue.get_or_insert_with(|| GROUP_QUEUE.name.to_owned());
    }
    let wait_time_s = options.wait_time_s.unwrap_or(DEFAULT_WAIT_TIME_S);
    let batch_size = options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    let pollers = options.pollers.unwrap_or(DEFAULT_POLLERS);
    // `who` sets the bound: SQS itself, or exactly.
    let range = |what: &str, value: u32, (min, max): (u32, u32), who: &str| {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(Error::Config(format!("{describe}: `{what}` is {value}; {who} allows {min} to {max}")))
        }
    };
    range("wait_time_s", wait_time_s, (0, 20), "SQS")?;
    range("batch_size", batch_size, (1, 10), "SQS")?;
    range("pollers", pollers, (1, MAX_POLLERS), "exactly")?;
    if let Some(visibility) = options.visibility_timeout_s {
        range("visibility_timeout_s", visibility, (0, 43_200), "SQS")?;
    }
    let client = match (&options.client, receiver_index) {
        (Some(source), _) => PlanClient::Own(source.clone()),
        (None, Some(index)) if receivers[index].client.is_some() => PlanClient::Receiver(index),
        _ => PlanClient::Default,
    };
    Ok(Plan {
        describe,
        workflow: spec,
        queue_url: url,
        queue_name: name,
        key: options.key.clone().or_else(|| receiver.and_then(|r| r.key.clone())),
        workflow_queue,
        ordering,
        client,
        wait_time_s,
        batch_size,
        visibility_timeout_s: options.visibility_timeout_s,
        pollers,
    })
}

/// Checks that the queue exists and answers; returns the visibility timeout its
/// messages get.
async fn check_queue(plan: &Plan, client: &Client) -> Result<Duration> {
    let request = client
        .get_queue_attributes()
        .queue_url(&plan.queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send();
    let fail = |what: String| Error::Config(format!("{}: SQS queue {} {what}", plan.describe, plan.queue_url));
    let output = match tokio::time::timeout(CHECK_TIMEOUT, request).await {
        Err(_) => {
            return Err(fail(format!("did not answer within {CHECK_TIMEOUT:?}; is the endpoint right and reachable?")));
        }
        Ok(Err(e)) => {
            if matches!(e.as_service_error(), Some(GetQueueAttributesError::QueueDoesNotExist(_))) {
                return Err(fail("does not exist; create it, or fix the URL".into()));
            }
            return Err(fail(format!("cannot be reached: {}", DisplayErrorContext(&e))));
        }
        Ok(Ok(output)) => output,
    };
    let queue_default = output
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30);
    Ok(Duration::from_secs(plan.visibility_timeout_s.map_or(queue_default, u64::from)))
}

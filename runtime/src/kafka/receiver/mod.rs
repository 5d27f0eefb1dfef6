//! Running the consumers: created and validated at launch (a bad one fails launch),
//! each run by a [`poll::Receiver`] on its own thread, stopped first at shutdown.

mod batch;
mod context;
mod poll;
mod rejected;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::oneshot;

use self::batch::Target;
use self::context::Context;
use self::poll::{Control, Exit, Receiver};
use super::consumer::{self, ConsumerDef, validate};
use super::settings::{self, KafkaSettings, Resolved};
use crate::error::{Error, Result};
use crate::registry::WorkflowSpec;
use crate::supervise::{Probe, ReceiverState, RestartDelay, panic_message};
use crate::workflow::engine::Engine;

pub(crate) use batch::workflow_id;

/// Properties every consumer gets unless the user sets them.
const DEFAULTS: &[(&str, &str)] = &[
    // A new group starts from the oldest message: nothing published before the
    // first launch is skipped.
    ("auto.offset.reset", "earliest"),
    ("enable.auto.commit", "true"),
];

/// The receivers of the runtime launched in this process.
struct Running {
    engine: Weak<Engine>,
    /// The tokio runtime the engine was launched on, where receivers insert.
    tasks: tokio::runtime::Handle,
    settings: Arc<Resolved>,
    defs: Vec<ConsumerDef>,
    receivers: Vec<Stoppable>,
}

struct Stoppable {
    control: Arc<Control>,
    stopped: oneshot::Receiver<()>,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// The launch hook: validates every consumer, creates them all (so that a bad
/// setting fails launch before anything runs), starts them, and registers their
/// stop to run first at shutdown. On error the just-launched engine is shut down.
pub(crate) async fn launch(engine: &Arc<Engine>, builder: Option<&KafkaSettings>) -> Result<()> {
    // Creating a consumer waits for the brokers' first answer: off the async executor.
    let (engine_, builder, tasks) = (engine.clone(), builder.cloned(), tokio::runtime::Handle::current());
    let launched = tokio::task::spawn_blocking(move || try_launch(&engine_, builder.as_ref(), tasks))
        .await
        .unwrap_or_else(|e| Err(Error::msg(format!("launching the Kafka receivers failed: {e}"))));
    match launched {
        Ok(()) => Ok(()),
        Err(e) => {
            engine.shutdown(std::time::Duration::ZERO).await;
            Err(e)
        }
    }
}

fn try_launch(engine: &Arc<Engine>, builder: Option<&KafkaSettings>, tasks: tokio::runtime::Handle) -> Result<()> {
    let settings = Arc::new(Resolved::new(builder)?);
    let defs = consumer::collect();
    let specs = validate::check_all(&defs, &[], &engine.registry, &engine.queues)?;
    // Every consumer is created before any starts, so that a bad one fails launch
    // with nothing running.
    let plans = defs.iter().zip(specs).map(|(def, spec)| plan(engine, &tasks, def, spec, &settings)).collect::<Vec<_>>();
    let firsts = plans.iter().map(|plan| plan.create()).collect::<Result<Vec<_>>>()?;
    crate::kafka::send::configure(&settings);
    let receivers = plans.into_iter().zip(firsts).map(|(plan, first)| start(plan, first)).collect();
    *RUNNING.lock().expect("kafka receivers poisoned") =
        Some(Running { engine: Arc::downgrade(engine), tasks, settings, defs, receivers });
    engine.before_shutdown(stop_all(Arc::downgrade(engine)));
    Ok(())
}

/// Starts a consumer registered after launch (before launch, launch starts it).
pub(crate) async fn register(def: ConsumerDef) -> Result<()> {
    tokio::task::spawn_blocking(move || register_now(def))
        .await
        .unwrap_or_else(|e| Err(Error::msg(format!("registering the Kafka consumer failed: {e}"))))
}

fn register_now(def: ConsumerDef) -> Result<()> {
    let mut running = RUNNING.lock().expect("kafka receivers poisoned");
    let Some(running) = running.as_mut() else { return Ok(()) };
    let Some(engine) = running.engine.upgrade().filter(|e| !e.is_shutting_down()) else { return Ok(()) };
    let specs = validate::check_all(std::slice::from_ref(&def), &running.defs, &engine.registry, &engine.queues)?;
    let plan = plan(&engine, &running.tasks, &def, specs[0], &running.settings);
    let first = plan.create()?;
    running.receivers.push(start(plan, first));
    running.defs.push(def);
    Ok(())
}

/// Stops every receiver of `engine`: each finishes its in-flight insert, stores its
/// offsets, commits and leaves its group. The engine bounds the wait.
fn stop_all(engine: Weak<Engine>) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let receivers = {
            let mut running = RUNNING.lock().expect("kafka receivers poisoned");
            match running.as_ref() {
                Some(r) if r.engine.ptr_eq(&engine) => running.take().map(|r| r.receivers).unwrap_or_default(),
                _ => Vec::new(),
            }
        };
        for receiver in &receivers {
            receiver.control.request_stop();
        }
        futures_util::future::join_all(receivers.into_iter().map(|r| r.stopped)).await;
        crate::kafka::send::reset();
    })
}

/// The librdkafka configuration of one consumer: exactly's defaults, under the
/// runtime-wide settings, under the consumer's own `config`; then what exactly
/// needs (its group, offsets stored only by the receiver).
fn client_config(def: &ConsumerDef, settings: &Resolved) -> Result<(rdkafka::ClientConfig, HashMap<String, String>)> {
    let (mut config, sources) = settings.client_config();
    let mut sources: HashMap<String, String> = sources.into_iter().collect();
    for (key, value) in DEFAULTS {
        if config.get(key).is_none() {
            config.set(*key, *value);
        }
    }
    if let Some(own) = &def.config {
        let own = own();
        for (key, value) in own.config_map() {
            config.set(key, value);
            sources.insert(key.to_owned(), format!("the `config` of {}", def.describe()));
        }
    }
    let source = |key: &str| sources.get(key).cloned().unwrap_or_else(|| "the settings".to_owned());
    if let Some(group) = config.get("group.id").filter(|g| *g != def.group) {
        return Err(Error::Config(format!(
            "{} sets `group.id` = {group:?}, but the consumer's group is `{}`: set the group with the consumer's `group` option instead",
            source("group.id"),
            def.group
        )));
    }
    if let Some(value) = config.get("enable.auto.offset.store").filter(|v| *v != "false") {
        return Err(Error::Config(format!(
            "{} sets `enable.auto.offset.store` = {value:?} for {}: exactly stores each offset itself, only after the message's workflow row is committed; remove the setting",
            source("enable.auto.offset.store"),
            def.describe()
        )));
    }
    if config.get("bootstrap.servers").is_none_or(|s| s.trim().is_empty()) {
        return Err(Error::Config(format!(
            "no Kafka brokers for {}: set {} (e.g. 127.0.0.1:9092), or Runtime::builder().kafka(KafkaSettings::new().bootstrap_servers(..)), or `bootstrap.servers` in the consumer's config",
            def.describe(),
            settings::BOOTSTRAP_SERVERS_VAR
        )));
    }
    config.set("group.id", &def.group);
    config.set("enable.auto.offset.store", "false");
    Ok((config, sources))
}

fn plan(
    engine: &Arc<Engine>,
    tasks: &tokio::runtime::Handle,
    def: &ConsumerDef,
    spec: &'static WorkflowSpec,
    settings: &Arc<Resolved>,
) -> Arc<Plan> {
    let name = format!("{} (group {})", def.workflow, def.group);
    Arc::new(Plan {
        target: Arc::new(Target { def: def.clone(), spec, size_limit: settings.message_size_limit }),
        settings: settings.clone(),
        engine: engine.clone(),
        tasks: tasks.clone(),
        control: Arc::new(Control::default()),
        probe: engine.supervisor.probe("kafka", name.clone()),
        name,
    })
}

/// What it takes to create a consumer again, as often as it must be.
struct Plan {
    name: String,
    target: Arc<Target>,
    settings: Arc<Resolved>,
    engine: Arc<Engine>,
    tasks: tokio::runtime::Handle,
    control: Arc<Control>,
    probe: Arc<Probe>,
}

impl Plan {
    fn create(&self) -> Result<Receiver> {
        let def = &self.target.def;
        let (config, sources) = client_config(def, &self.settings)?;
        let sources = sources.into_iter().collect();
        let consumer: BaseConsumer<Context> = config
            .create_with_context(Context::new(self.name.clone()))
            .map_err(|e| settings::config_error(e, &sources, &def.describe()))?;
        context::check_brokers(&consumer, &def.describe())?;
        let topics: Vec<&str> = def.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::Config(format!("{} cannot subscribe to {topics:?}: {e}", def.describe())))?;
        Ok(Receiver {
            consumer,
            target: self.target.clone(),
            engine: self.engine.clone(),
            tasks: self.tasks.clone(),
            control: self.control.clone(),
            commit_each_batch: config.get("enable.auto.commit") == Some("false"),
            stored: HashMap::new(),
            last_error_log: None,
            paused: false,
            fatal: None,
            probe: self.probe.clone(),
        })
    }
}

/// Runs the receiver on a thread of its own, under supervision: a consumer that
/// reports a fatal error, or a receiver that panics, is closed and created again
/// with backoff. Nothing is lost or run twice across the rebuild: offsets are
/// stored only after their rows are durable, so the new consumer reads again from
/// the last committed offset and the redelivered messages deduplicate.
fn start(plan: Arc<Plan>, first: Receiver) -> Stoppable {
    let control = plan.control.clone();
    let (done, stopped) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("exactly-kafka".into()).spawn(move || {
        let _done = Done(Some(done));
        supervise(&plan, first);
        plan.probe.set(ReceiverState::Stopped, None);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "exactly: cannot start a Kafka receiver thread");
    }
    Stoppable { control, stopped }
}

fn supervise(plan: &Plan, first: Receiver) {
    let mut next = Some(first);
    let mut restart = RestartDelay::new();
    while !plan.control.stopping() {
        let receiver = match next.take().map(Ok).unwrap_or_else(|| plan.create()) {
            Ok(receiver) => receiver,
            Err(e) => {
                plan.probe.set(ReceiverState::Rebuilding, Some(&format!("cannot create the consumer again: {e}")));
                plan.control.sleep(restart.after(Duration::ZERO));
                continue;
            }
        };
        let started = Instant::now();
        let reason = match std::panic::catch_unwind(AssertUnwindSafe(|| receiver.run())) {
            Ok(Exit::Stopped) => return,
            Ok(Exit::Fatal(reason)) => format!("the consumer reported a fatal error: {reason}"),
            Err(panic) => format!("the receiver panicked: {}", panic_message(&*panic)),
        };
        let delay = restart.after(started.elapsed());
        plan.probe.set(ReceiverState::Rebuilding, Some(&reason));
        tracing::error!(consumer = %plan.name, reason, rebuild_in = ?delay, "exactly: Kafka consumer stopped working; creating it again");
        plan.control.sleep(delay);
    }
}

struct Done(Option<oneshot::Sender<()>>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            let _ = done.send(());
        }
    }
}

//! Launching the runtime: configuration (builder or environment), migrations,
//! recovery, and shutdown.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::queue::heartbeat::{self, HeartbeatConfig};
use crate::queue::{self, Queue, dispatch, identity};
use crate::registry::Registry;
use crate::store::{Store, StoreConfig, WorkflowStatus};
use crate::supervise::{self, Health, OnStop, Supervisor};
use crate::workflow::call::WorkflowHandle;
use crate::workflow::engine::{Engine, EngineConfig};

/// Launches the runtime with its configuration from the environment; see
/// [`RuntimeBuilder`] for the variables.
pub async fn launch() -> Result<Runtime> {
    Runtime::builder().launch().await
}

/// A running `exactly` runtime. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown) or [`until_shutdown_signal`](Self::until_shutdown_signal).
#[derive(Clone)]
pub struct Runtime {
    engine: Arc<Engine>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("executor_id", &self.engine.config.executor_id).finish()
    }
}

impl Runtime {
    /// A builder whose unset values come from the environment at launch.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// This process's executor ID.
    pub fn executor_id(&self) -> &str {
        &self.engine.config.executor_id
    }

    /// The database pool (its `search_path` is the runtime's schema).
    pub fn pool(&self) -> &sqlx::PgPool {
        self.engine.store.pool()
    }

    /// A handle to the workflow with this ID, wherever it runs. `R` is the
    /// workflow's return type.
    pub fn handle<R>(&self, id: impl Into<String>) -> WorkflowHandle<R> {
        WorkflowHandle::new(self.engine.clone(), id.into())
    }

    /// The current row of a workflow, if it exists.
    pub async fn status(&self, id: &str) -> Result<Option<WorkflowStatus>> {
        self.engine.store.status(id).await
    }

    /// Waits for a workflow's result by ID, decoding its output as `T`.
    pub async fn result<T: DeserializeOwned>(&self, id: &str) -> Result<T> {
        self.handle::<Result<T>>(id).result().await
    }

    /// Stops taking new work, lets running steps finish (bounded by the shutdown
    /// timeout) and closes the database pool. Unfinished workflows stay PENDING and
    /// resume at the next launch.
    pub async fn shutdown(self) -> Result<()> {
        self.engine.shutdown(self.shutdown_timeout).await;
        Ok(())
    }

    /// Runs until SIGINT or SIGTERM (Ctrl-C elsewhere), then shuts down.
    ///
    /// Returns an error, after shutting down, if a part of the runtime stopped and
    /// could not be restarted (see [`health`](Self::health)): return it from `main`
    /// so that the process exits non-zero and its manager restarts it.
    pub async fn until_shutdown_signal(self) -> Result<()> {
        tokio::select! {
            signal = wait_for_signal() => {
                signal?;
                tracing::info!("exactly: shutdown signal received");
                self.shutdown().await
            }
            failure = self.engine.supervisor.failed() => {
                self.shutdown().await?;
                Err(Error::Failed(failure))
            }
        }
    }

    /// The state of every receiver and whether the runtime has failed, for health
    /// checks: [`Health::is_healthy`] for liveness, [`Health::is_ready`] for readiness.
    pub fn health(&self) -> Health {
        self.engine.supervisor.health()
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind| signal(kind).map_err(|e| Error::Config(format!("cannot listen for signals: {e}")));
    let (mut int, mut term) = (listen(SignalKind::interrupt())?, listen(SignalKind::terminate())?);
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<()> {
    tokio::signal::ctrl_c().await.map_err(|e| Error::Config(format!("cannot listen for Ctrl-C: {e}")))
}

/// Configures and launches a [`Runtime`].
///
/// Every setting left unset is read from the environment at launch:
///
/// | setting | variable | default |
/// |---|---|---|
/// | database URL | `EXACTLY_DATABASE_URL`, else `DATABASE_URL` | required |
/// | schema | `EXACTLY_SCHEMA` | `exactly` |
/// | executor ID | `EXACTLY_EXECUTOR_ID` | the host name |
/// | application version | `EXACTLY_APP_VERSION` | `0` |
/// | max recovery attempts | `EXACTLY_MAX_RECOVERY_ATTEMPTS` | `100` |
/// | shutdown timeout (ms) | `EXACTLY_SHUTDOWN_TIMEOUT_MS` | `10000` |
/// | max running workflows | `EXACTLY_MAX_RUNNING` | `10000` |
/// | database pool size | `EXACTLY_DB_POOL_SIZE` | `20` |
/// | database connect timeout (ms) | `EXACTLY_DB_CONNECT_TIMEOUT_MS` | `10000` |
/// | heartbeat interval (ms) | `EXACTLY_HEARTBEAT_INTERVAL_MS` | `1000` |
/// | executor timeout (ms) | `EXACTLY_EXECUTOR_TIMEOUT_MS` | `10000` |
/// | dispatcher poll interval (ms) | `EXACTLY_DISPATCH_POLL_MS` | `200` |
#[derive(Default, Clone)]
pub struct RuntimeBuilder {
    database_url: Option<String>,
    schema: Option<String>,
    executor_id: Option<String>,
    app_version: Option<String>,
    max_recovery_attempts: Option<u32>,
    max_running: Option<usize>,
    shutdown_timeout: Option<Duration>,
    pool_size: Option<u32>,
    connect_timeout: Option<Duration>,
    recover: Option<bool>,
    queues: Vec<Queue>,
    heartbeat_interval: Option<Duration>,
    executor_timeout: Option<Duration>,
    dispatch_poll_interval: Option<Duration>,
    #[cfg(feature = "sqs")]
    sqs: crate::sqs::SqsSettings,
    #[cfg(feature = "kafka")]
    kafka: Option<crate::kafka::KafkaSettings>,
}

impl RuntimeBuilder {
    /// The PostgreSQL URL, e.g. `postgres://user:pass@127.0.0.1:5432/app`.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// The schema holding the runtime's tables (a plain lower-case identifier).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// This process's executor ID. A restarted process must keep its ID to recover
    /// the workflows it was running.
    pub fn executor_id(mut self, id: impl Into<String>) -> Self {
        self.executor_id = Some(id.into());
        self
    }

    /// The application version recorded with each workflow.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// How many times a PENDING workflow is recovered before it is given up as
    /// MAX_RECOVERY_ATTEMPTS_EXCEEDED (per-workflow `max_recovery_attempts` wins).
    pub fn max_recovery_attempts(mut self, attempts: u32) -> Self {
        self.max_recovery_attempts = Some(attempts);
        self
    }

    /// How many workflows this process runs at once before its Kafka and SQS
    /// receivers stop taking messages and its dispatcher stops claiming from durable
    /// queues (default 10,000; `EXACTLY_MAX_RUNNING`): the work waits in the broker,
    /// the SQS queue or the database, not in memory. Workflows started by calls are
    /// not held back.
    pub fn max_running(mut self, workflows: usize) -> Self {
        self.max_running = Some(workflows);
        self
    }

    /// How long shutdown waits for running steps.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// The maximum number of database connections.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// How long to wait for a database connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Whether launch resumes this executor's PENDING workflows (default: yes).
    pub fn recover(mut self, recover: bool) -> Self {
        self.recover = Some(recover);
        self
    }

    /// Declares a durable queue at run time (beside those declared with
    /// [`queue!`](crate::queue!)).
    pub fn queue(mut self, queue: Queue) -> Self {
        self.queues.push(queue);
        self
    }

    /// How often this executor records that it is alive.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// How long an executor may stay silent before a live one declares it dead and
    /// puts its PENDING workflows back on their queues.
    pub fn executor_timeout(mut self, timeout: Duration) -> Self {
        self.executor_timeout = Some(timeout);
        self
    }

    /// How often the queue dispatcher looks at every queue without being woken
    /// (default 200 ms). It wakes at once on a NOTIFY when work is enqueued and when
    /// one of its own queued workflows ends; the poll picks up slots freed by other
    /// processes and rate-limit windows that moved on.
    pub fn dispatch_poll_interval(mut self, interval: Duration) -> Self {
        self.dispatch_poll_interval = Some(interval);
        self
    }

    /// Adds an SQS receiver: defaults (client or client factory, queue URL, key
    /// function, workflow queue) for the consumers that use it, and consumers of its
    /// own. See [`SqsReceiver`](crate::sqs::SqsReceiver).
    #[cfg(feature = "sqs")]
    pub fn sqs_receiver(mut self, receiver: crate::sqs::SqsReceiver) -> Self {
        self.sqs.add(receiver);
        self
    }

    /// Kafka settings for every consumer and for `kafka::send` (over the
    /// environment's; see [`KafkaSettings`](crate::kafka::KafkaSettings)).
    #[cfg(feature = "kafka")]
    pub fn kafka(mut self, settings: crate::kafka::KafkaSettings) -> Self {
        self.kafka = Some(settings);
        self
    }

    /// Validates the registrations, connects, migrates, recovers this executor's
    /// PENDING workflows and installs the runtime for this process.
    pub async fn launch(self) -> Result<Runtime> {
        let registry = Registry::collect()?;
        let queues = queue::collect(&self.queues)?;
        let (url, url_source) = match self.database_url {
            Some(url) => (url, "the builder's database_url".to_owned()),
            None => env_database_url()?,
        };
        let store_config = StoreConfig {
            url,
            url_source,
            schema: pick(self.schema, "EXACTLY_SCHEMA", "exactly".to_owned())?,
            pool_size: pick(self.pool_size, "EXACTLY_DB_POOL_SIZE", 20)?,
            connect_timeout: pick_ms(self.connect_timeout, "EXACTLY_DB_CONNECT_TIMEOUT_MS", 10_000)?,
            writers: 4,
            max_batch: 1000,
        };
        if store_config.pool_size < 2 {
            return Err(Error::Config("the database pool needs at least 2 connections".into()));
        }
        let config = EngineConfig {
            executor_id: pick(self.executor_id, "EXACTLY_EXECUTOR_ID", identity::default_executor_id())?,
            app_version: pick(self.app_version, "EXACTLY_APP_VERSION", "0".to_owned())?,
            max_recovery_attempts: pick(self.max_recovery_attempts, "EXACTLY_MAX_RECOVERY_ATTEMPTS", 100)?,
            max_running: pick(self.max_running, "EXACTLY_MAX_RUNNING", 10_000)?,
        };
        if config.max_running == 0 {
            return Err(Error::Config("max_running (EXACTLY_MAX_RUNNING) must be at least 1".into()));
        }
        let shutdown_timeout = pick_ms(self.shutdown_timeout, "EXACTLY_SHUTDOWN_TIMEOUT_MS", 10_000)?;
        let heartbeat = HeartbeatConfig {
            interval: pick_ms(self.heartbeat_interval, "EXACTLY_HEARTBEAT_INTERVAL_MS", 1_000)?,
            timeout: pick_ms(self.executor_timeout, "EXACTLY_EXECUTOR_TIMEOUT_MS", 10_000)?,
        };
        if heartbeat.timeout < heartbeat.interval * 2 {
            return Err(Error::Config(format!(
                "the executor timeout ({:?}) must be at least twice the heartbeat interval ({:?}), or live executors are declared dead",
                heartbeat.timeout, heartbeat.interval
            )));
        }
        let dispatch_poll = pick_ms(self.dispatch_poll_interval, "EXACTLY_DISPATCH_POLL_MS", dispatch::POLL.as_millis() as u64)?;
        if dispatch_poll.is_zero() {
            return Err(Error::Config("the dispatcher poll interval (EXACTLY_DISPATCH_POLL_MS) must be positive".into()));
        }
        let supervisor = Supervisor::new();
        let store = Store::connect(&store_config, &supervisor).await?;
        let engine = Engine::new(store, registry, queues, config, supervisor);
        engine.install()?;
        // Alive before recovering, so nobody hands this executor's work away meanwhile.
        // A server restarting now drops the connections: both are tried again for as
        // long as connecting may take (recovery skips what an earlier try started).
        let recover = self.recover.unwrap_or(true);
        engine.lease.set_executor_timeout(heartbeat.timeout);
        let process = identity::this_process();
        let registered = crate::store::while_transient(store_config.connect_timeout, || async {
            identity::check_free(&engine.store, &engine.config.executor_id, heartbeat.timeout).await?;
            let sent = std::time::Instant::now();
            engine.store.heartbeat(&engine.config.executor_id, &engine.config.app_version).await?;
            engine.store.hold_executor(&engine.config.executor_id, &process).await?;
            engine.lease.renew(sent);
            // Recovery takes the executions started before now: those of this
            // executor's previous life.
            engine.store.now().await
        })
        .await;
        let since = match registered {
            Ok(since) => since,
            Err(e) => {
                engine.shutdown(Duration::ZERO).await; // so that a corrected launch may follow
                return Err(e);
            }
        };
        // Both keep nothing that is not in the database: restarted if they stop.
        let beating = engine.clone();
        supervise::spawn(&engine.supervisor, "heartbeat", OnStop::Restart, move || heartbeat::run(beating.clone(), heartbeat));
        let dispatching = engine.clone();
        supervise::spawn(&engine.supervisor, "dispatcher", OnStop::Restart, move || {
            dispatch::run(dispatching.clone(), dispatch_poll)
        });
        #[cfg(feature = "sqs")]
        if let Err(e) = crate::sqs::start(&engine, &self.sqs).await {
            engine.shutdown(Duration::ZERO).await; // so that a corrected launch may follow
            return Err(e);
        }
        #[cfg(feature = "kafka")]
        crate::kafka::launch(&engine, self.kafka.as_ref()).await?; // shuts the engine down on error
        // Recovery runs beside the heartbeat, the dispatcher and the receivers, paced:
        // thousands of PENDING workflows neither hold up launch nor crowd them out.
        if recover {
            let (recovering, supervisor) = (engine.clone(), engine.supervisor.clone());
            tokio::spawn(async move {
                if let Err(panic) = AssertUnwindSafe(recovering.recover_in_background(since)).catch_unwind().await {
                    supervisor.fail("recovery", &format!("panicked: {}", supervise::panic_message(&*panic)));
                }
            });
        }
        tracing::info!(
            executor_id = %engine.config.executor_id,
            workflows = engine.registry.len(),
            schema = %store_config.schema,
            "exactly: runtime launched"
        );
        Ok(Runtime { engine, shutdown_timeout })
    }
}

/// The database URL's password stays out of `Debug`.
impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("RuntimeBuilder");
        out.field("database_url", &self.database_url.as_deref().map(redact_password))
            .field("schema", &self.schema)
            .field("executor_id", &self.executor_id)
            .field("app_version", &self.app_version)
            .field("max_recovery_attempts", &self.max_recovery_attempts)
            .field("max_running", &self.max_running)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("recover", &self.recover)
            .field("queues", &self.queues)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("executor_timeout", &self.executor_timeout)
            .field("dispatch_poll_interval", &self.dispatch_poll_interval);
        #[cfg(feature = "sqs")]
        out.field("sqs", &self.sqs);
        #[cfg(feature = "kafka")]
        out.field("kafka", &self.kafka);
        out.finish()
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`; the
/// `password=` parameter of a query string as `password=***`.
pub(crate) fn redact_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@').map(|i| rest + i)
            && let Some(colon) = out[rest..at].find(':').map(|i| rest + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(start) = out.find("password=").map(|i| i + "password=".len()) {
        let end = out[start..].find('&').map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
    }
    out
}

fn env_database_url() -> Result<(String, String)> {
    for var in ["EXACTLY_DATABASE_URL", "DATABASE_URL"] {
        match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => return Ok((url, var.to_owned())),
            Ok(_) | Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::Config(format!("{var} is not valid UTF-8")));
            }
        }
    }
    Err(Error::Config(
        "no database URL: set EXACTLY_DATABASE_URL or DATABASE_URL (postgres://user:password@host:port/database), or call Runtime::builder().database_url(..)".into(),
    ))
}

/// The builder's value, else the environment variable parsed, else the default.
fn pick<T: std::str::FromStr>(value: Option<T>, var: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    if let Some(value) = value {
        return Ok(value);
    }
    match std::env::var(var) {
        Ok(text) => text.trim().parse().map_err(|e| Error::Config(format!("{var}={text:?} is invalid: {e}"))),
        Err(_) => Ok(default),
    }
}

fn pick_ms(value: Option<Duration>, var: &str, default_ms: u64) -> Result<Duration> {
    match value {
        Some(value) => Ok(value),
        None => pick(None, var, default_ms).map(Duration::from_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_password_stays_out_of_debug() {
        assert_eq!(redact_password("postgres://app:s3cret@db:5432/x?sslmode=require"), "postgres://app:***@db:5432/x?sslmode=require");
        assert_eq!(redact_password("postgres://db/x?user=app&password=s3cret&x=1"), "postgres://db/x?user=app&password=***&x=1");
        assert_eq!(redact_password("postgres://app@db/x"), "postgres://app@db/x");
        let builder = Runtime::builder().database_url("postgres://app:s3cret@db/x");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("s3cret") && shown.contains("app:***@db"), "{shown}");
    }
}

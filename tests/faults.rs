//! The fault-injection harness: a Kafka workload and an SQS workload, each run by
//! worker processes (this test binary run again in a child role), while a seeded
//! schedule of faults hits them: SIGKILL of a worker (restarted after a random
//! delay), a Kafka broker restart, two broker restarts within seconds, a PostgreSQL
//! restart, a partition rebalance (a worker joins the group, then leaves).
//! Afterwards every message is checked: one workflow, SUCCESS, each of its three
//! steps checkpointed once with its side effect recorded once, nothing missing; and
//! a step body ran more than once only where a kill explains it. See RELIABILITY.md.
//!
//! Short mode (the default, part of `dev/test`): a few thousand messages and about
//! twenty faults. Long mode: `EXACTLY_FAULTS=long` (or `dev/faults --long`).
//! `EXACTLY_FAULTS_SEED=N` replays a schedule; `EXACTLY_FAULTS_KINDS=kill,db`
//! limits the fault kinds (kill, broker, broker-twice, db, rebalance);
//! `EXACTLY_FAULTS_SCALE=0.2` scales messages and faults of the mode.
//!
//! The only tests of their binary (cargo runs test binaries one after another),
//! because they restart the servers every test uses with `dev/services restart`.
#![cfg(all(feature = "kafka", feature = "sqs"))]

mod common;
mod kafka_common;
mod sqs_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exactly::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use exactly::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use exactly::kafka::{ClientConfig, KafkaConsumerOptions};
use exactly::sqs::SqsConsumerOptions;
use exactly::sqs::aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use exactly::{KafkaMessage, Runtime, SqsMessage, register_kafka_consumer, register_sqs_consumer, step, workflow};

const KAFKA_TEST: &str = "kafka_workload_under_faults";
const SQS_TEST: &str = "sqs_workload_under_faults";
const STEPS: i64 = 3;
const PARTITIONS: i32 = 6;

// ---------------------------------------------------------------- the workload

/// The workers' pool on the run's database, with its generation. At most
/// `GATE` step bodies use it at once: thousands of workflows waiting on one small
/// sqlx pool through a database restart have left it with no connection and every
/// acquire timing out for good; a pool that times out is replaced.
static POOL: Mutex<Option<(u64, sqlx::PgPool)>> = Mutex::new(None);
static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

fn worker_pool() -> (u64, sqlx::PgPool) {
    let mut pool = POOL.lock().unwrap();
    pool.get_or_insert_with(|| (0, new_pool())).clone()
}

fn new_pool() -> sqlx::PgPool {
    let url = std::env::var("EXACTLY_DATABASE_URL").expect("workers get the database URL");
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy(&url)
        .unwrap()
}

/// Replaces the pool of `generation` (unless another caller already did).
fn renew_pool(generation: u64) {
    let mut pool = POOL.lock().unwrap();
    if pool.as_ref().is_some_and(|(g, _)| *g == generation) {
        *pool = Some((generation + 1, new_pool()));
    }
}

/// One execution of a step body: recorded in `executions` (every execution, under a
/// token of its own), and its side effect in `effects` under the step's idempotency
/// key (workflow ID, step ID), `ON CONFLICT DO NOTHING`. Both in one transaction,
/// retried (with the same token) while the database is away, so that an outage
/// neither fails the step nor counts as a second execution.
async fn effect() -> exactly::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let workflow = exactly::workflow_id().expect("inside a workflow");
    let step = exactly::step_id().expect("inside a step");
    let token = format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut delay = Duration::from_millis(50);
    loop {
        let permit = GATE.acquire().await.expect("the gate is never closed");
        let (generation, pool) = worker_pool();
        let result = record_effect(&pool, &token, &workflow, step).await;
        drop(permit);
        match result {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                if matches!(e, sqlx::Error::PoolTimedOut) {
                    renew_pool(generation);
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(exactly::Error::msg(format!("recording the side effect: {e}"))),
        }
    }
}

async fn record_effect(pool: &sqlx::PgPool, token: &str, workflow: &str, step: i32) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO public.executions (token, workflow_id, step_id, pid) VALUES ($1, $2, $3, $4)
         ON CONFLICT (token) DO NOTHING",
    )
    .bind(token)
    .bind(workflow)
    .bind(step)
    .bind(std::process::id() as i32)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO public.effects (workflow_id, step_id, token) VALUES ($1, $2, $3)
         ON CONFLICT (workflow_id, step_id) DO NOTHING",
    )
    .bind(workflow)
    .bind(step)
    .bind(token)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[step]
async fn reserve(n: u64) -> exactly::Result<u64> {
    effect().await?;
    Ok(n)
}

#[step]
async fn charge(n: u64) -> exactly::Result<u64> {
    effect().await?;
    Ok(n + 1)
}

#[step]
async fn ship(n: u64) -> exactly::Result<u64> {
    effect().await?;
    Ok(n + 1)
}

/// Three steps with short pauses between them, so that a kill finds workflows
/// between steps as well as inside them.
async fn three_steps(n: u64) -> exactly::Result<u64> {
    let pause = Duration::from_millis(2 + (n % 7) * 3);
    let a = reserve(n).await?;
    tokio::time::sleep(pause).await;
    let b = charge(a).await?;
    tokio::time::sleep(pause).await;
    ship(b).await
}

fn number(value: serde_json::Value) -> u64 {
    value["n"].as_u64().unwrap_or_default()
}

#[workflow]
async fn kafka_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    three_steps(number(message.json()?)).await
}

#[workflow]
async fn sqs_order(message: SqsMessage) -> exactly::Result<u64> {
    three_steps(number(message.json()?)).await
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("workers get {name}"))
}

/// A Kafka worker: one member of the group (static membership unless it is the
/// worker that joins and leaves for a rebalance), until SIGKILL or SIGTERM.
async fn kafka_worker() {
    let instance = env("INSTANCE");
    let static_member = env("STATIC") == "1";
    let options = KafkaConsumerOptions::new().group(env("GROUP")).batch_size(100).config(move || {
        let mut config = ClientConfig::new();
        if static_member {
            // A restarted worker takes its partitions back at once.
            config.set("group.instance.id", &instance);
        }
        config
    });
    register_kafka_consumer(kafka_order, env("TOPIC"), options).await.unwrap();
    let runtime = Runtime::builder()
        .executor_id(env("INSTANCE"))
        .kafka(kafka_common::settings())
        .shutdown_timeout(Duration::from_secs(10))
        .launch()
        .await
        .expect("worker launch");
    println!("READY");
    tokio::spawn(watch_health(runtime.clone()));
    runtime.until_shutdown_signal().await.unwrap();
}

/// Tells the harness (on stdout, `HEALTH` lines) when a receiver goes into or out
/// of `rebuilding` or `failed`, with its last error: the workers have no log
/// subscriber, and a consumer rebuilt after a fatal error shows nowhere else.
async fn watch_health(runtime: Runtime) {
    let watched = |state| matches!(state, exactly::ReceiverState::Rebuilding | exactly::ReceiverState::Failed);
    let mut last: HashMap<String, (exactly::ReceiverState, SystemTime)> = HashMap::new();
    loop {
        for receiver in runtime.health().receivers {
            let now = (receiver.state, receiver.since);
            let before = last.insert(receiver.name.clone(), now);
            let changed = before.is_none_or(|b| b != now);
            if changed && (watched(receiver.state) || before.is_some_and(|b| watched(b.0))) {
                println!(
                    "HEALTH {} {}: {}",
                    receiver.state.as_str().replace(' ', "-"),
                    receiver.name,
                    receiver.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An SQS worker, until SIGKILL or SIGTERM.
async fn sqs_worker() {
    let options = SqsConsumerOptions::new()
        .queue_url(env("QUEUE_URL"))
        .client(sqs_support::client())
        .wait_time_s(1)
        .batch_size(10)
        .visibility_timeout_s(5);
    register_sqs_consumer(sqs_order, options);
    let runtime = Runtime::builder()
        .executor_id(env("INSTANCE"))
        .shutdown_timeout(Duration::from_secs(10))
        .launch()
        .await
        .expect("worker launch");
    println!("READY");
    tokio::spawn(watch_health(runtime.clone()));
    runtime.until_shutdown_signal().await.unwrap();
}

// ---------------------------------------------------------------- the schedule

/// xorshift64*: small, seeded, enough for a fault schedule.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [low, high).
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Kill,
    /// `dev/services restart kafka`.
    Broker,
    /// The broker restarted twice within seconds: `dev/services restart kafka`, a
    /// pause of 1–5 s (`hold`) with the broker up, then a second restart. Each
    /// outage outlasts the session timeout (6 s): librdkafka drops the member ID,
    /// loses the assignment and rejoins, and an offset commit it deferred meanwhile
    /// can reach the coordinator without the member ID the broker holds for the
    /// `group.instance.id`: FENCED_INSTANCE_ID, a fatal error. A consumer left in
    /// that state consumes nothing more (a fresh-machine run lost 330 messages that
    /// way, seed 394849, after two broker restarts in quick succession).
    BrokerTwice,
    Db,
    Rebalance,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Kill, Kind::Broker, Kind::BrokerTwice, Kind::Db, Kind::Rebalance];

    fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Broker => "broker",
            Kind::BrokerTwice => "broker-twice",
            Kind::Db => "db",
            Kind::Rebalance => "rebalance",
        }
    }
}

#[derive(Debug, Clone)]
struct Fault {
    /// When, from the start of producing.
    at: Duration,
    kind: Kind,
    /// Kill: which permanent worker.
    worker: usize,
    /// Kill: until the restart; rebalance: how long the extra worker stays;
    /// broker-twice: the pause between the two restarts.
    hold: Duration,
}

struct Config {
    mode: &'static str,
    seed: u64,
    kinds: Option<HashSet<String>>,
    scale: f64,
}

impl Config {
    fn from_env() -> Config {
        let long = std::env::var("EXACTLY_FAULTS").is_ok_and(|m| m == "long");
        let seed = std::env::var("EXACTLY_FAULTS_SEED")
            .ok()
            .map(|s| s.parse().expect("EXACTLY_FAULTS_SEED is a number"))
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000);
        let kinds = std::env::var("EXACTLY_FAULTS_KINDS")
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| k.split(',').map(|s| s.trim().to_owned()).collect::<HashSet<String>>());
        if let Some(kinds) = &kinds {
            let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            for kind in kinds {
                assert!(known.contains(&kind.as_str()), "EXACTLY_FAULTS_KINDS: no fault kind {kind:?} (kinds: {known:?})");
            }
        }
        let scale = std::env::var("EXACTLY_FAULTS_SCALE").ok().map(|s| s.parse().expect("a number")).unwrap_or(1.0);
        Config { mode: if long { "long" } else { "short" }, seed, kinds, scale }
    }

    fn long(&self) -> bool {
        self.mode == "long"
    }

    fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }

    fn allowed(&self, kind: Kind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(kind.name()))
    }

    /// The schedule: `counts` faults of each kind at random times over `window`.
    /// A workload's messages (scaled) and its fault schedule over the producing
    /// window at `rate` a second, announced with what replays it.
    fn plan(
        &self,
        workload: &str,
        rng: &mut Rng,
        messages: usize,
        rate: f64,
        counts: &[(Kind, usize)],
        workers: usize,
    ) -> (usize, Vec<Fault>) {
        let messages = self.scaled(messages);
        let window = Duration::from_secs_f64(messages as f64 / rate);
        let schedule = self.schedule(rng, counts, window, workers);
        say(&format!(
            "faults: {workload} workload, mode={} seed={} messages={messages} over {window:?}, {} faults (replay: EXACTLY_FAULTS={} EXACTLY_FAULTS_SEED={})",
            self.mode,
            self.seed,
            schedule.len(),
            self.mode,
            self.seed
        ));
        (messages, schedule)
    }

    fn schedule(&self, rng: &mut Rng, counts: &[(Kind, usize)], window: Duration, workers: usize) -> Vec<Fault> {
        let mut faults = Vec::new();
        let window_ms = window.as_millis() as u64;
        for &(kind, count) in counts {
            if !self.allowed(kind) {
                continue;
            }
            for _ in 0..self.scaled(count) {
                let at = Duration::from_millis(rng.range(window_ms / 20, window_ms * 9 / 10));
                let worker = rng.range(0, workers as u64) as usize;
                let hold = match kind {
                    Kind::Kill => Duration::from_millis(rng.range(200, 5_000)),
                    Kind::Rebalance => Duration::from_millis(rng.range(3_000, 10_000)),
                    Kind::BrokerTwice => Duration::from_millis(rng.range(1_000, 5_000)),
                    Kind::Broker | Kind::Db => Duration::ZERO,
                };
                faults.push(Fault { at, kind, worker, hold });
            }
        }
        faults.sort_by_key(|f| f.at);
        faults
    }
}

/// How many faults of each kind a schedule has.
fn per_kind(schedule: &[Fault]) -> HashMap<Kind, usize> {
    let mut counts = HashMap::new();
    for fault in schedule {
        *counts.entry(fault.kind).or_insert(0) += 1;
    }
    counts
}

/// Written past libtest's capture, so that the summary shows in `dev/test` too.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ---------------------------------------------------------------- the workers

struct Worker {
    name: String,
    role: &'static str,
    test: &'static str,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    ready: Arc<AtomicBool>,
    /// Down after a kill (or an unexpected exit) until then.
    restart_at: Option<Instant>,
    /// SIGTERM sent: leaving for good.
    leaving: bool,
}

impl Worker {
    fn new(test: &'static str, role: &'static str, name: &str, envs: Vec<(String, String)>) -> Worker {
        Worker {
            name: name.to_owned(),
            role,
            test,
            envs,
            child: None,
            ready: Arc::new(AtomicBool::new(false)),
            restart_at: None,
            leaving: false,
        }
    }

    fn spawn(&mut self) {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([self.test, "--exact", "--nocapture", "--test-threads=1"])
            .env(common::CHILD_ROLE, self.role)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn a worker");
        let ready = Arc::new(AtomicBool::new(false));
        self.ready = ready.clone();
        let stdout = child.stdout.take().unwrap();
        let name = self.name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim_end().ends_with("READY") {
                    ready.store(true, Ordering::SeqCst);
                } else if let Some(health) = line.strip_prefix("HEALTH ") {
                    if health.starts_with("rebuilding ") {
                        REBUILDS.fetch_add(1, Ordering::SeqCst);
                    }
                    say(&format!("faults: worker {name}: receiver {health}"));
                }
            }
        });
        let started = chrono_now();
        PIDS.lock().unwrap().get_or_insert_with(HashMap::new).insert(child.id(), format!("{}, started {started}", self.name));
        self.child = Some(child);
        self.restart_at = None;
    }

    fn is_ready(&self) -> bool {
        self.child.is_some() && self.ready.load(Ordering::SeqCst)
    }

    fn kill(&mut self) -> Option<u32> {
        let mut child = self.child.take()?;
        let pid = child.id();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        Some(pid)
    }

    fn terminate(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            self.leaving = true;
        }
    }

    /// Waits for the worker to exit after SIGTERM (SIGKILL after `timeout`).
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let Some(child) = self.child.as_mut() else { return true };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            if Instant::now() > deadline {
                self.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every worker process of this test process: its worker's name and start time,
/// to name the processes of a repeated step in a report.
static PIDS: Mutex<Option<HashMap<u32, String>>> = Mutex::new(None);

fn worker_of(pid: u32) -> String {
    PIDS.lock().unwrap().as_ref().and_then(|p| p.get(&pid).cloned()).unwrap_or_else(|| "no worker".to_owned())
}

/// The time of day (UTC), as PostgreSQL's `HH24:MI:SS.MS` prints it.
fn chrono_now() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let s = t.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, t.subsec_millis())
}

/// Receivers that went into `rebuilding` in the workers (a consumer closed and
/// created again after a fatal error), from their `HEALTH` lines. The workloads
/// take turns, so a run counts the difference.
static REBUILDS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Default, Clone)]
struct Counts {
    kills: usize,
    /// `broker` faults: one restart each.
    broker_restarts: usize,
    /// `broker-twice` faults: two restarts each.
    broker_twice: usize,
    db_restarts: usize,
    rebalances: usize,
    unexpected_exits: usize,
    unclean_stops: usize,
    /// Receivers rebuilt in the workers during the run.
    rebuilds: usize,
    killed_pids: HashSet<u32>,
}

/// Runs the schedule against the workers, restarting killed ones, until `stop`;
/// then stops every worker with SIGTERM.
struct Fleet {
    workers: Vec<Worker>,
    /// The worker that joins and leaves for a rebalance, if any.
    extra: Option<Worker>,
    make_extra: Option<Box<dyn Fn(usize) -> Worker + Send>>,
    counts: Counts,
}

impl Fleet {
    fn supervise(&mut self) {
        let now = Instant::now();
        for worker in &mut self.workers {
            if let Some(child) = worker.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                // Nothing the harness did ends a worker on its own (launch waits out a
                // restarting database within its connect timeout): restarted, as a
                // process manager would, and counted against the run.
                say(&format!("faults: worker {} exited ({status}); restarting it", worker.name));
                worker.child = None;
                worker.restart_at = Some(now + Duration::from_secs(1));
                self.counts.unexpected_exits += 1;
            }
            if worker.child.is_none() && worker.restart_at.is_some_and(|at| at <= now) {
                worker.spawn();
            }
        }
        if let Some(extra) = self.extra.as_mut()
            && let Some(child) = extra.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            if !extra.leaving {
                say(&format!("faults: worker {} exited unexpectedly ({status})", extra.name));
                self.counts.unexpected_exits += 1;
            } else if !status.success() {
                say(&format!("faults: worker {} did not stop cleanly on SIGTERM ({status})", extra.name));
                self.counts.unclean_stops += 1;
            }
            extra.child = None;
        }
        if self.extra.as_ref().is_some_and(|e| e.child.is_none()) {
            self.extra = None;
        }
    }

    /// Applies a fault if it can now; false to try again later.
    fn apply(&mut self, fault: &Fault, service: &mut Option<std::thread::JoinHandle<()>>, started: Instant) -> bool {
        let t = started.elapsed().as_secs_f64();
        match fault.kind {
            Kind::Kill => {
                let n = self.workers.len();
                let Some(index) = (0..n).map(|i| (fault.worker + i) % n).find(|&i| self.workers[i].is_ready()) else {
                    return false;
                };
                let worker = &mut self.workers[index];
                let pid = worker.kill().expect("a ready worker has a process");
                worker.restart_at = Some(Instant::now() + fault.hold);
                self.counts.kills += 1;
                self.counts.killed_pids.insert(pid);
                say(&format!("faults: {t:7.1}s SIGKILL {} (pid {pid}), restart in {:?}", worker.name, fault.hold));
            }
            // One server restart at a time (a broker-twice holds the slot through both
            // of its restarts): `dev/services` is not run twice at once, and a
            // restart never lands in the middle of another.
            Kind::Broker | Kind::BrokerTwice | Kind::Db => {
                if service.as_ref().is_some_and(|s| !s.is_finished()) {
                    return false;
                }
                if let Some(done) = service.take() {
                    done.join().expect("the restart thread");
                }
                let name = if fault.kind == Kind::Db { "postgres" } else { "kafka" };
                match fault.kind {
                    Kind::Broker => self.counts.broker_restarts += 1,
                    Kind::BrokerTwice => self.counts.broker_twice += 1,
                    _ => self.counts.db_restarts += 1,
                }
                if fault.kind == Kind::BrokerTwice {
                    let pause = fault.hold;
                    say(&format!("faults: {t:7.1}s dev/services restart {name} (1 of 2, then {pause:?} up, then again)"));
                    *service = Some(std::thread::spawn(move || {
                        common::restart_service(name);
                        std::thread::sleep(pause);
                        let t = started.elapsed().as_secs_f64();
                        say(&format!("faults: {t:7.1}s dev/services restart {name} (2 of 2)"));
                        common::restart_service(name);
                    }));
                } else {
                    say(&format!("faults: {t:7.1}s dev/services restart {name}"));
                    *service = Some(std::thread::spawn(move || common::restart_service(name)));
                }
            }
            Kind::Rebalance => {
                if self.extra.is_some() {
                    return false; // the last one has not left yet
                }
                let make = self.make_extra.as_ref().expect("rebalances only where a worker can join");
                let mut extra = make(self.counts.rebalances);
                extra.spawn();
                self.counts.rebalances += 1;
                say(&format!("faults: {t:7.1}s worker {} joins for {:?}", extra.name, fault.hold));
                self.extra = Some(extra);
            }
        }
        true
    }

    /// Runs the schedule; `producing` tells when the producer is done. Sets
    /// `faults_done` once every fault is applied, every restart made and every
    /// worker ready again; returns after `stop`, with the workers stopped.
    fn run(mut self, schedule: Vec<Fault>, started: Instant, faults_done: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Counts {
        let mut pending: std::collections::VecDeque<Fault> = schedule.into();
        let mut service: Option<std::thread::JoinHandle<()>> = None;
        let mut leave_at: Option<Instant> = None;
        let rebuilds_before = REBUILDS.load(Ordering::SeqCst);
        while !stop.load(Ordering::SeqCst) {
            self.supervise();
            if let Some(fault) = pending.front().cloned()
                && started.elapsed() >= fault.at
                && self.apply(&fault, &mut service, started)
            {
                if fault.kind == Kind::Rebalance {
                    leave_at = Some(Instant::now() + fault.hold);
                }
                pending.pop_front();
            }
            if let Some(at) = leave_at
                && Instant::now() >= at
                && let Some(extra) = self.extra.as_mut()
                && extra.is_ready()
            {
                say(&format!("faults: {:7.1}s worker {} leaves (SIGTERM)", started.elapsed().as_secs_f64(), extra.name));
                extra.terminate();
                leave_at = None;
            }
            if pending.is_empty() && !faults_done.load(Ordering::SeqCst) {
                let services_done = service.as_ref().is_none_or(|s| s.is_finished());
                let all_ready = self.workers.iter().all(Worker::is_ready);
                if services_done && all_ready && self.extra.is_none() {
                    if let Some(done) = service.take() {
                        done.join().expect("the restart thread");
                    }
                    faults_done.store(true, Ordering::SeqCst);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for worker in &mut self.workers {
            worker.terminate();
        }
        for worker in &mut self.workers {
            if !worker.wait_exit(Duration::from_secs(30)) {
                say(&format!("faults: worker {} did not exit within 30 s of SIGTERM", worker.name));
                self.counts.unclean_stops += 1;
            }
        }
        self.counts.rebuilds = REBUILDS.load(Ordering::SeqCst) - rebuilds_before;
        self.counts.clone()
    }
}

/// Waits until every fault is applied. A fault thread that stopped meanwhile (a
/// `dev/services restart` that failed) fails the run at once, with its panic,
/// instead of after the 600 s wait.
async fn faults_applied(
    fleet_thread: std::thread::JoinHandle<Counts>,
    faults_done: &AtomicBool,
) -> std::thread::JoinHandle<Counts> {
    kafka_common::wait_until(Duration::from_secs(600), "every fault applied", || async {
        faults_done.load(Ordering::SeqCst) || fleet_thread.is_finished()
    })
    .await;
    if fleet_thread.is_finished() && !faults_done.load(Ordering::SeqCst) {
        match fleet_thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(_) => panic!("the fault thread stopped before applying every fault"),
        }
    }
    fleet_thread
}

// ---------------------------------------------------------------- verification

#[derive(Default)]
struct Verdict {
    lost: Vec<String>,
    duplicated: Vec<String>,
    stuck: Vec<String>,
    executions_repeated: i64,
    unexplained: Vec<String>,
    /// Kafka: running workers that are no member of the group at the end.
    absent: Vec<String>,
}

/// Retries a read while PostgreSQL restarts.
async fn read<T, F, Fut>(what: &str, mut query: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match query().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("reading {what}: {e}"),
        }
    }
}

/// (finished, running or waiting) workflows whose ID starts with `prefix`.
async fn progress(pool: &sqlx::PgPool, prefix: &str) -> (i64, i64, i64) {
    read("progress", || async {
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT count(*) FILTER (WHERE status = 'SUCCESS'),
                    count(*) FILTER (WHERE status IN ('PENDING', 'ENQUEUED')),
                    count(*)
             FROM exactly.workflow_status WHERE starts_with(workflow_id, $1)",
        )
        .bind(prefix)
        .fetch_one(pool)
        .await
    })
    .await
}

/// Waits until every expected workflow succeeded and nothing runs or waits, or
/// until `timeout`.
async fn quiesce(pool: &sqlx::PgPool, prefix: &str, expected: usize, timeout: Duration, extra: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    let (mut last_done, mut last_change) = (-1, Instant::now());
    loop {
        let (done, active, _) = progress(pool, prefix).await;
        if done as usize >= expected && active == 0 && extra().await {
            return;
        }
        if done != last_done {
            (last_done, last_change) = (done, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(180) {
            say(&format!("faults: no progress for 180 s: {done} of {expected} done, {active} running or waiting"));
            return;
        }
        if Instant::now() > deadline {
            say(&format!("faults: not quiescent after {timeout:?}: {done} of {expected} done, {active} running or waiting"));
            return;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            say(&format!("faults: draining: {done} of {expected} done, {active} running or waiting"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Checks every message: `expected` maps each message's workflow ID to its number.
async fn verify(pool: &sqlx::PgPool, prefix: &str, expected: &HashMap<String, u64>, counts: &Counts) -> Verdict {
    let rows: Vec<(String, String)> = read("workflows", || async {
        sqlx::query_as("SELECT workflow_id, status FROM exactly.workflow_status WHERE starts_with(workflow_id, $1)")
            .bind(prefix)
            .fetch_all(pool)
            .await
    })
    .await;
    let checkpoints: HashMap<String, i64> = read("checkpoints", || async {
        sqlx::query_as(
            "SELECT workflow_id, count(*) FROM exactly.operation_outputs WHERE starts_with(workflow_id, $1) GROUP BY 1",
        )
        .bind(prefix)
        .fetch_all(pool)
        .await
    })
    .await
    .into_iter()
    .collect();
    let effects: HashMap<String, i64> = read("effects", || async {
        sqlx::query_as("SELECT workflow_id, count(*) FROM public.effects GROUP BY 1").fetch_all(pool).await
    })
    .await
    .into_iter()
    .collect();
    // Per step: its executions, their processes (in order) and, for a report, when
    // each ran, the workflow's executor and start count, and when the step was
    // checkpointed.
    let executions: Vec<(String, i32, i64, i64, Vec<i32>, String)> = read("executions", || async {
        sqlx::query_as(
            "SELECT e.workflow_id, e.step_id, count(*),
                    count(*) FILTER (WHERE e.pid = ANY($1)),
                    array_agg(e.pid ORDER BY e.at),
                    CASE WHEN count(*) > 1 THEN
                        string_agg(to_char(e.at, 'HH24:MI:SS.MS'), ', ' ORDER BY e.at)
                        || '; workflow executor ' || coalesce(min(w.executor_id), '-')
                        || ', started ' || min(w.recovery_attempts) || ' time(s), created '
                        || coalesce(to_char(min(w.created_at), 'HH24:MI:SS.MS'), '-')
                        || ', step checkpointed ' || coalesce(to_char(min(o.completed_at), 'HH24:MI:SS.MS'), 'never')
                    ELSE '' END
             FROM public.executions e
             LEFT JOIN exactly.workflow_status w ON w.workflow_id = e.workflow_id
             LEFT JOIN exactly.operation_outputs o ON o.workflow_id = e.workflow_id AND o.step_id = e.step_id
             GROUP BY 1, 2",
        )
        .bind(counts.killed_pids.iter().map(|p| *p as i32).collect::<Vec<i32>>())
        .fetch_all(pool)
        .await
    })
    .await;

    let mut verdict = Verdict::default();
    let statuses: HashMap<&str, &str> = rows.iter().map(|(id, s)| (id.as_str(), s.as_str())).collect();
    let mut ids: Vec<&String> = expected.keys().collect();
    ids.sort_by_key(|id| expected[*id]);
    for id in ids {
        let n = expected[id];
        match statuses.get(id.as_str()) {
            None => verdict.lost.push(format!("message {n}: no workflow {id}")),
            Some(&"SUCCESS") => {
                let steps = checkpoints.get(id).copied().unwrap_or(0);
                let recorded = effects.get(id).copied().unwrap_or(0);
                if steps < STEPS || recorded < STEPS {
                    verdict.lost.push(format!("message {n}: {id} SUCCESS with {steps} checkpoints, {recorded} side effects"));
                } else if steps > STEPS {
                    verdict.duplicated.push(format!("message {n}: {id} has {steps} checkpoints"));
                }
            }
            Some(status) => verdict.stuck.push(format!("message {n}: {id} is {status}")),
        }
    }
    for (id, _) in &rows {
        if !expected.contains_key(id) {
            verdict.duplicated.push(format!("{id}: a workflow for no produced message"));
        }
    }
    for (id, step, runs, in_killed, pids, when) in executions {
        if runs > 1 {
            verdict.executions_repeated += runs - 1;
            // Every execution but the last must have died with a killed process.
            if in_killed < runs - 1 {
                let processes: Vec<String> = pids
                    .iter()
                    .map(|&pid| {
                        let killed = if counts.killed_pids.contains(&(pid as u32)) { ", killed" } else { "" };
                        format!("pid {pid} ({}{killed})", worker_of(pid as u32))
                    })
                    .collect();
                verdict.unexplained.push(format!(
                    "{id} step {step}: {runs} executions, only {in_killed} of them in killed workers: in {} at {when}",
                    processes.join(", ")
                ));
            }
        }
    }
    verdict
}

impl Counts {
    /// How many faults of `kind` were applied.
    fn applied(&self, kind: Kind) -> usize {
        match kind {
            Kind::Kill => self.kills,
            Kind::Broker => self.broker_restarts,
            Kind::BrokerTwice => self.broker_twice,
            Kind::Db => self.db_restarts,
            Kind::Rebalance => self.rebalances,
        }
    }
}

/// Prints the summary line and fails the run on any lost, duplicated or stuck
/// message, unexplained repeat, unexpected exit, unclean stop, or scheduled fault
/// not applied (`schedule`: the faults of each kind the schedule had).
fn report(
    workload: &str,
    config: &Config,
    messages: usize,
    schedule: &HashMap<Kind, usize>,
    counts: &Counts,
    verdict: &Verdict,
    took: Duration,
) {
    say(&format!(
        "faults: messages={messages} kills={} broker_restarts={} broker_twice={} db_restarts={} rebalances={} lost={} duplicated={} \
         stuck={} executions_repeated={} unexplained_repeats={} absent_members={} consumer_rebuilds={} workload={workload} mode={} seed={} \
         duration={:.0}s",
        counts.kills,
        counts.broker_restarts,
        counts.broker_twice,
        counts.db_restarts,
        counts.rebalances,
        verdict.lost.len(),
        verdict.duplicated.len(),
        verdict.stuck.len(),
        verdict.executions_repeated,
        verdict.unexplained.len(),
        verdict.absent.len(),
        counts.rebuilds,
        config.mode,
        config.seed,
        took.as_secs_f64(),
    ));
    let not_applied: Vec<String> = Kind::ALL
        .iter()
        .filter(|&&kind| counts.applied(kind) != schedule.get(&kind).copied().unwrap_or(0))
        .map(|&kind| format!("{} {} of {}", kind.name(), counts.applied(kind), schedule.get(&kind).copied().unwrap_or(0)))
        .collect();
    if !not_applied.is_empty() {
        say(&format!("faults: {workload}: faults applied differ from the schedule: {}", not_applied.join(", ")));
    }
    if counts.unexpected_exits > 0 || counts.unclean_stops > 0 {
        say(&format!(
            "faults: {workload}: {} unexpected worker exits, {} unclean stops",
            counts.unexpected_exits, counts.unclean_stops
        ));
    }
    for (what, list) in [
        ("lost", &verdict.lost),
        ("duplicated", &verdict.duplicated),
        ("stuck", &verdict.stuck),
        ("unexplained repeat", &verdict.unexplained),
        ("absent member", &verdict.absent),
    ] {
        for line in list.iter().take(20) {
            say(&format!("faults: {workload}: {what}: {line}"));
        }
        if list.len() > 20 {
            say(&format!("faults: {workload}: ... and {} more {what}", list.len() - 20));
        }
    }
    let failed = !(verdict.lost.is_empty()
        && verdict.duplicated.is_empty()
        && verdict.stuck.is_empty()
        && verdict.unexplained.is_empty()
        && verdict.absent.is_empty()
        && counts.unexpected_exits == 0
        && counts.unclean_stops == 0
        && not_applied.is_empty());
    assert!(
        !failed,
        "{workload}: lost={} duplicated={} stuck={} unexplained_repeats={} absent_members={} unexpected_exits={} unclean_stops={} faults_not_applied={:?} (replay with EXACTLY_FAULTS={} EXACTLY_FAULTS_SEED={})",
        verdict.lost.len(),
        verdict.duplicated.len(),
        verdict.stuck.len(),
        verdict.unexplained.len(),
        verdict.absent.len(),
        counts.unexpected_exits,
        counts.unclean_stops,
        not_applied,
        config.mode,
        config.seed
    );
}

async fn prepare_database(name: &str) -> (String, sqlx::PgPool) {
    let url = common::fresh_database(name).await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE public.executions (token TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, step_id INTEGER NOT NULL,
                                         pid INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
         CREATE TABLE public.effects (workflow_id TEXT NOT NULL, step_id INTEGER NOT NULL, token TEXT NOT NULL,
                                      PRIMARY KEY (workflow_id, step_id));",
    )
    .execute(&pool)
    .await
    .unwrap();
    (url, pool)
}

/// The two workloads take turns: each restarts servers the other uses.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn envs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

// ---------------------------------------------------------------- Kafka

#[test]
fn kafka_workload_under_faults() {
    if common::child_role().is_some() {
        return common::block_on(kafka_worker());
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = Config::from_env();
    let mut rng = Rng::new(config.seed ^ 0x6b61_666b_61);
    let (messages, rate, counts, drain) = if config.long() {
        // broker-twice last: a seed gives the faults it gave before this kind, plus these.
        let counts = [(Kind::Kill, 40), (Kind::Broker, 10), (Kind::Db, 15), (Kind::Rebalance, 15), (Kind::BrokerTwice, 4)];
        (90_000, 100.0, counts, 900)
    } else {
        (2_000, 40.0, [(Kind::Kill, 5), (Kind::Broker, 2), (Kind::Db, 2), (Kind::Rebalance, 3), (Kind::BrokerTwice, 1)], 180)
    };
    let workers = 2;
    let (messages, schedule) = config.plan("kafka", &mut rng, messages, rate, &counts, workers);
    let scheduled = per_kind(&schedule);
    common::block_on(async move {
        let (url, pool) = prepare_database("exactly_faults_kafka").await;
        let topic = kafka_common::unique("exactly-faults");
        let group = kafka_common::unique("exactly-faults-group");
        kafka_common::create_topics(&[(&topic, PARTITIONS)]).await;
        let prefix = format!("kafka:{group}:{topic}:");
        let worker = |name: &str, static_member: bool| {
            let member = if static_member { "1" } else { "0" };
            Worker::new(
                KAFKA_TEST,
                "kafka-worker",
                name,
                envs(&[
                    ("EXACTLY_DATABASE_URL", &url),
                    ("TOPIC", &topic),
                    ("GROUP", &group),
                    ("INSTANCE", name),
                    ("STATIC", member),
                ]),
            )
        };
        let mut fleet = Fleet {
            workers: (0..workers).map(|i| worker(&format!("kafka-w{i}"), true)).collect(),
            extra: None,
            make_extra: None,
            counts: Counts::default(),
        };
        let (u, t, g) = (url.clone(), topic.clone(), group.clone());
        fleet.make_extra = Some(Box::new(move |i| {
            let name = format!("kafka-r{i}");
            Worker::new(
                KAFKA_TEST,
                "kafka-worker",
                &name,
                envs(&[("EXACTLY_DATABASE_URL", &u), ("TOPIC", &t), ("GROUP", &g), ("INSTANCE", &name), ("STATIC", "0")]),
            )
        }));
        for w in &mut fleet.workers {
            w.spawn();
        }
        kafka_common::wait_until(Duration::from_secs(120), "the workers are ready", || async {
            fleet.workers.iter().all(Worker::is_ready)
        })
        .await;

        let started = Instant::now();
        let faults_done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let fleet_thread = {
            let (faults_done, stop) = (faults_done.clone(), stop.clone());
            std::thread::spawn(move || fleet.run(schedule, started, faults_done, stop))
        };
        let sent = produce_kafka(&topic, messages, rate).await;
        say(&format!("faults: kafka: {} messages produced in {:.0}s", sent.len(), started.elapsed().as_secs_f64()));
        let expected: HashMap<String, u64> =
            sent.iter().map(|(n, p, o)| (format!("{prefix}{p}:{o}"), *n)).collect();
        assert_eq!(expected.len(), messages, "every message has an offset of its own");
        let fleet_thread = faults_applied(fleet_thread, &faults_done).await;
        quiesce(&pool, &prefix, messages, Duration::from_secs(drain), async || true).await;
        let instances: Vec<String> = (0..workers).map(|i| format!("kafka-w{i}")).collect();
        let absent = absent_members(&group, &instances).await;
        stop.store(true, Ordering::SeqCst);
        let counts = tokio::task::spawn_blocking(move || fleet_thread.join().expect("the fault thread"))
            .await
            .unwrap();
        let mut verdict = verify(&pool, &prefix, &expected, &counts).await;
        verdict.absent = absent;
        report("kafka", &config, messages, &scheduled, &counts, &verdict, started.elapsed());
    });
}

/// The permanent workers (by `group.instance.id`) that are no member of `group`
/// once everything is consumed, while they still run. A consumer that librdkafka
/// failed for good (fenced: a fatal error) and that nobody replaced leaves the group
/// when its session times out (6 s) and consumes nothing more; its partitions go to
/// the other workers, so no message need be lost for it to go unseen otherwise. The
/// group must show every worker (the broker names a static member
/// `<group.instance.id>-<uuid>`) in a stable group, with the same members again
/// after longer than the session timeout; within 60 s.
async fn absent_members(group: &str, instances: &[String]) -> Vec<String> {
    let describe = {
        let group = group.to_owned();
        move || -> Result<(String, Vec<String>), String> {
            let client: BaseConsumer =
                ClientConfig::new().set("bootstrap.servers", kafka_common::bootstrap()).create().map_err(|e| e.to_string())?;
            let list = client.fetch_group_list(Some(&group), Duration::from_secs(5)).map_err(|e| e.to_string())?;
            let info = list.groups().first().ok_or("no such group")?;
            let mut members: Vec<String> = info.members().iter().map(|m| m.id().to_owned()).collect();
            members.sort();
            Ok((info.state().to_owned(), members))
        }
    };
    let missing = |members: &[String]| -> Vec<String> {
        instances.iter().filter(|i| !members.iter().any(|m| m.starts_with(&format!("{i}-")))).cloned().collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settled: Option<Vec<String>> = None;
    loop {
        let described = tokio::task::spawn_blocking(describe.clone()).await.unwrap();
        let complete = match &described {
            Ok((state, members)) => state == "Stable" && missing(members).is_empty(),
            Err(_) => false,
        };
        match (&described, &settled) {
            (Ok((_, members)), Some(before)) if complete && members == before => return Vec::new(),
            (Ok((_, members)), _) if complete => {
                settled = Some(members.clone());
                tokio::time::sleep(Duration::from_secs(8)).await;
                continue;
            }
            _ => settled = None,
        }
        if Instant::now() > deadline {
            let (why, absent) = match described {
                Ok((state, members)) => (format!("group {state}, members {members:?}"), missing(&members)),
                Err(e) => (format!("describing the group: {e}"), instances.to_vec()),
            };
            let absent = if absent.is_empty() { instances.to_vec() } else { absent };
            return absent.into_iter().map(|i| format!("worker {i} (still running) is no member of {group}: {why}")).collect();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Produces `messages` JSON messages `{"n": i}` at `rate` a second, keyed over 32
/// keys; returns (n, partition, offset) of each once all are delivered.
async fn produce_kafka(topic: &str, messages: usize, rate: f64) -> Vec<(u64, i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_common::bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let start = tokio::time::Instant::now();
    let mut deliveries = Vec::with_capacity(messages);
    for i in 0..messages {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let key = format!("k{}", i % 32);
        let payload = format!(r#"{{"n":{i}}}"#);
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        let delivery = producer.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue for {topic}: {e}"));
        deliveries.push((i as u64, delivery));
    }
    let mut out = Vec::with_capacity(messages);
    for (n, delivery) in deliveries {
        match delivery.await.expect("producer dropped") {
            Ok(d) => out.push((n, d.partition, d.offset)),
            Err((e, _)) => panic!("produce message {n} to {topic}: {e}"),
        }
    }
    out
}

// ---------------------------------------------------------------- SQS

#[test]
fn sqs_workload_under_faults() {
    if common::child_role().is_some() {
        return common::block_on(sqs_worker());
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = Config::from_env();
    let mut rng = Rng::new(config.seed ^ 0x0073_7173);
    let (messages, rate, counts, drain) = if config.long() {
        (10_000, 40.0, [(Kind::Kill, 14), (Kind::Db, 6)], 900)
    } else {
        (800, 25.0, [(Kind::Kill, 4), (Kind::Db, 2)], 180)
    };
    let workers = 2;
    let (messages, schedule) = config.plan("sqs", &mut rng, messages, rate, &counts, workers);
    let scheduled = per_kind(&schedule);
    common::block_on(async move {
        let (url, pool) = prepare_database("exactly_faults_sqs").await;
        let client = sqs_support::client();
        let queue_url = sqs_support::create_queue(&client, &sqs_support::unique("faults"), 5).await;
        let name = queue_url.rsplit('/').next().unwrap().to_owned();
        let prefix = format!("sqs:{name}:");
        let mut fleet = Fleet {
            workers: (0..workers)
                .map(|i| {
                    let instance = format!("sqs-w{i}");
                    Worker::new(
                        SQS_TEST,
                        "sqs-worker",
                        &instance,
                        envs(&[("EXACTLY_DATABASE_URL", &url), ("QUEUE_URL", &queue_url), ("INSTANCE", &instance)]),
                    )
                })
                .collect(),
            extra: None,
            make_extra: None,
            counts: Counts::default(),
        };
        for w in &mut fleet.workers {
            w.spawn();
        }
        kafka_common::wait_until(Duration::from_secs(120), "the workers are ready", || async {
            fleet.workers.iter().all(Worker::is_ready)
        })
        .await;

        let started = Instant::now();
        let faults_done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let fleet_thread = {
            let (faults_done, stop) = (faults_done.clone(), stop.clone());
            std::thread::spawn(move || fleet.run(schedule, started, faults_done, stop))
        };
        let sent = produce_sqs(&client, &queue_url, messages, rate).await;
        say(&format!("faults: sqs: {} messages sent in {:.0}s", sent.len(), started.elapsed().as_secs_f64()));
        let expected: HashMap<String, u64> = sent.iter().map(|(n, id)| (format!("{prefix}{id}"), *n)).collect();
        assert_eq!(expected.len(), messages, "every message has an ID of its own");
        let fleet_thread = faults_applied(fleet_thread, &faults_done).await;
        let empty = async || sqs_support::messages_left(&client, &queue_url).await == 0;
        quiesce(&pool, &prefix, messages, Duration::from_secs(drain), empty).await;
        stop.store(true, Ordering::SeqCst);
        let counts = tokio::task::spawn_blocking(move || fleet_thread.join().expect("the fault thread"))
            .await
            .unwrap();
        let verdict = verify(&pool, &prefix, &expected, &counts).await;
        report("sqs", &config, messages, &scheduled, &counts, &verdict, started.elapsed());
    });
}

/// Sends `messages` bodies `{"n": i}` at `rate` a second, in batches of up to 10;
/// returns (n, message ID) of each.
async fn produce_sqs(
    client: &exactly::sqs::aws_sdk_sqs::Client,
    queue_url: &str,
    messages: usize,
    rate: f64,
) -> Vec<(u64, String)> {
    let start = tokio::time::Instant::now();
    let mut out = Vec::with_capacity(messages);
    let mut next = 0usize;
    let mut waiting: Vec<usize> = Vec::new();
    while next < messages || !waiting.is_empty() {
        // Everything due by now, up to 10.
        let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(messages);
        while waiting.len() < 10 && next < due {
            waiting.push(next);
            next += 1;
        }
        if waiting.is_empty() {
            tokio::time::sleep_until(start + Duration::from_secs_f64(next as f64 / rate)).await;
            continue;
        }
        let entries: Vec<SendMessageBatchRequestEntry> = waiting
            .iter()
            .map(|i| {
                SendMessageBatchRequestEntry::builder().id(format!("m{i}")).message_body(format!(r#"{{"n":{i}}}"#)).build().unwrap()
            })
            .collect();
        match client.send_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await {
            Ok(output) => {
                for entry in output.successful() {
                    let i: usize = entry.id()[1..].parse().unwrap();
                    out.push((i as u64, entry.message_id().to_owned()));
                    waiting.retain(|w| *w != i);
                }
            }
            Err(e) => panic!("sending to {queue_url}: {e:?}"),
        }
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out
}

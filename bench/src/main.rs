//! `exactly-bench`: runs the same workloads on `exactly` and on the `dbos` crate
//! against the same PostgreSQL server, in one run, and prints the ratios.
//!
//! Run it in release mode only: `cargo run --release -p exactly-bench -- --help`.

mod consume;
mod db;
mod messaging;
mod peers;
mod process;
mod stats;
mod systems;
mod workloads;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use stats::{Better, Row};
use systems::{QueueVariant, System};
use workloads::queue::QueueRun;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

const DEFAULT_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable";

const USAGE: &str = "\
exactly-bench: the same workloads on exactly and on the dbos crate, same Postgres, one run

USAGE: exactly-bench [OPTIONS]      (build with --release: debug numbers mean nothing)

OPTIONS:
  --workflows N        workflows in the concurrent workload (default 2000)
  --serial N           workflows in the serial workload (default 200)
  --queued N           workflows in the queue workload (default 10000)
  --queue-poll MS      how often the queue workload looks whether its run is done: every MS
                       or every 0.5% of the time elapsed, whichever is longer (default 5)
  --workloads LIST     which workloads to run, comma-separated: concurrent, serial, queue,
                       kafka-ingest, kafka-e2e, kafka-latency, sqs-e2e; `kafka` for the three
                       Kafka ones, `dbos-crate` for the first three (default: all)
  --messages N         Kafka messages of kafka-ingest and kafka-e2e (default 100000)
  --latency-rate N     kafka-latency: messages produced per second (default 50)
  --latency-seconds N  kafka-latency: for how long (default 20)
  --sqs-messages N     SQS messages of sqs-e2e (default 10000)
  --sqs-loops N        concurrent receive/delete loops of the SQS server ceiling (default 4)
  --insert-batch N     rows per transaction of the batched-insert ceiling (default 500)
  --peers all|none     run the DBOS peers (bench/peers) in the Kafka and SQS workloads
                       (default all; a peer that is not installed is reported, not run)
  --give-up S          a Kafka or SQS run not done after S seconds is reported as such
                       (default 600)
  --bootstrap H:P      Kafka (default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092); SQS
                       goes to the standard AWS environment ($AWS_ENDPOINT_URL_SQS, ...),
                       which dev/bench points at ElasticMQ (BENCH_SQS=moto: at moto)
  --rounds N           measured rounds of each workload per system, alternating (default 3)
  --only SYSTEM        run one system only: exactly | dbos
  --database-url URL   the server's maintenance database; bench_exactly and bench_dbos are
                       dropped and created beside it (default: $DATABASE_URL, else
                       postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable)
  --pool N             give both systems a pool of N connections (default: each one's own)
  -h, --help           this text
";

/// The systems, in the order they are launched and listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Exactly,
    Dbos,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Exactly, Kind::Dbos];

    fn name(self) -> &'static str {
        match self {
            Kind::Exactly => "exactly",
            Kind::Dbos => "dbos",
        }
    }

    fn database(self) -> &'static str {
        match self {
            Kind::Exactly => "bench_exactly",
            Kind::Dbos => "bench_dbos",
        }
    }

    async fn launch(self, url: &str, pool: Option<u32>) -> Result<Arc<dyn System>, Error> {
        Ok(match self {
            Kind::Exactly => Arc::new(systems::exactly::Exactly::launch(url, pool).await?),
            Kind::Dbos => Arc::new(systems::dbos::Dbos::launch(url, pool).await?),
        })
    }
}

/// The workloads, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Concurrent,
    Serial,
    Queue,
    KafkaIngest,
    KafkaE2e,
    KafkaLatency,
    SqsE2e,
}

impl Workload {
    const ALL: [Workload; 7] = [
        Workload::Concurrent,
        Workload::Serial,
        Workload::Queue,
        Workload::KafkaIngest,
        Workload::KafkaE2e,
        Workload::KafkaLatency,
        Workload::SqsE2e,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Concurrent => "concurrent",
            Workload::Serial => "serial",
            Workload::Queue => "queue",
            Workload::KafkaIngest => "kafka-ingest",
            Workload::KafkaE2e => "kafka-e2e",
            Workload::KafkaLatency => "kafka-latency",
            Workload::SqsE2e => "sqs-e2e",
        }
    }

    /// The workloads against the dbos crate, in this process.
    fn in_process(self) -> bool {
        matches!(self, Workload::Concurrent | Workload::Serial | Workload::Queue)
    }

    /// The workloads a `--workloads` name stands for.
    fn named(name: &str) -> Option<Vec<Workload>> {
        match name {
            "all" => Some(Workload::ALL.to_vec()),
            "kafka" => Some(vec![Workload::KafkaIngest, Workload::KafkaE2e, Workload::KafkaLatency]),
            "sqs" => Some(vec![Workload::SqsE2e]),
            "dbos-crate" => Some(vec![Workload::Concurrent, Workload::Serial, Workload::Queue]),
            _ => Workload::ALL.into_iter().find(|w| w.name() == name).map(|w| vec![w]),
        }
    }
}

#[derive(Debug)]
struct Args {
    workflows: u64,
    serial: u64,
    queued: u64,
    queue_poll: Duration,
    workloads: Vec<Workload>,
    rounds: usize,
    only: Option<Kind>,
    database_url: String,
    pool: Option<u32>,
    messages: u64,
    latency_rate: u64,
    latency_seconds: u64,
    sqs_messages: u64,
    sqs_loops: usize,
    insert_batch: usize,
    peers: bool,
    give_up: Duration,
    bootstrap: String,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, Error> {
        let mut parsed = Args {
            workflows: 2000,
            serial: 200,
            queued: 10_000,
            queue_poll: workloads::queue::POLL,
            workloads: Workload::ALL.to_vec(),
            rounds: 3,
            only: None,
            database_url: std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_URL.to_owned()),
            pool: None,
            messages: 100_000,
            latency_rate: 50,
            latency_seconds: 20,
            sqs_messages: 10_000,
            sqs_loops: 4,
            insert_batch: 500,
            peers: true,
            give_up: Duration::from_secs(600),
            bootstrap: std::env::var("KAFKA_BOOTSTRAP_SERVERS")
                .ok()
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| "127.0.0.1:9092".to_owned()),
        };
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
            fn number<T: std::str::FromStr>(flag: &str, text: String) -> Result<T, Error> {
                text.parse().map_err(|_| format!("{flag}: `{text}` is not a valid number").into())
            }
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--workflows" => parsed.workflows = number(&flag, value()?)?,
                "--serial" => parsed.serial = number(&flag, value()?)?,
                "--queued" => parsed.queued = number(&flag, value()?)?,
                "--queue-poll" => parsed.queue_poll = Duration::from_millis(number(&flag, value()?)?),
                "--workloads" => {
                    let list = value()?;
                    let mut chosen = Vec::new();
                    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let workloads = Workload::named(name).ok_or_else(|| {
                            format!(
                                "--workloads: unknown workload `{name}` (expected concurrent, serial, queue, kafka-ingest, \
                                 kafka-e2e, kafka-latency, sqs-e2e, kafka, sqs, dbos-crate, all)"
                            )
                        })?;
                        for workload in workloads {
                            if !chosen.contains(&workload) {
                                chosen.push(workload);
                            }
                        }
                    }
                    if chosen.is_empty() {
                        return Err("--workloads needs at least one workload".into());
                    }
                    // Always run in the usual order, whatever the list's.
                    chosen.sort_by_key(|w| Workload::ALL.iter().position(|a| a == w));
                    parsed.workloads = chosen;
                }
                "--rounds" => parsed.rounds = number(&flag, value()?)?,
                "--pool" => parsed.pool = Some(number(&flag, value()?)?),
                "--database-url" => parsed.database_url = value()?,
                "--messages" => parsed.messages = number(&flag, value()?)?,
                "--latency-rate" => parsed.latency_rate = number(&flag, value()?)?,
                "--latency-seconds" => parsed.latency_seconds = number(&flag, value()?)?,
                "--sqs-messages" => parsed.sqs_messages = number(&flag, value()?)?,
                "--sqs-loops" => parsed.sqs_loops = number(&flag, value()?)?,
                "--insert-batch" => parsed.insert_batch = number(&flag, value()?)?,
                "--give-up" => parsed.give_up = Duration::from_secs(number(&flag, value()?)?),
                "--bootstrap" => parsed.bootstrap = value()?,
                "--peers" => {
                    parsed.peers = match value()?.as_str() {
                        "all" => true,
                        "none" => false,
                        other => return Err(format!("--peers: `{other}` (expected all or none)").into()),
                    }
                }
                "--only" => {
                    let name = value()?;
                    parsed.only = Some(
                        Kind::ALL
                            .into_iter()
                            .find(|k| k.name() == name)
                            .ok_or_else(|| format!("--only: unknown system `{name}` (expected exactly or dbos)"))?,
                    );
                }
                other => return Err(format!("unknown argument `{other}` (see --help)").into()),
            }
        }
        if parsed.workflows == 0 || parsed.serial == 0 || parsed.queued == 0 || parsed.rounds == 0 {
            return Err("--workflows, --serial, --queued and --rounds must be at least 1".into());
        }
        if [parsed.messages, parsed.latency_rate, parsed.latency_seconds, parsed.sqs_messages].contains(&0)
            || parsed.sqs_loops == 0
            || parsed.insert_batch == 0
        {
            return Err("--messages, --latency-rate, --latency-seconds, --sqs-messages, --sqs-loops and --insert-batch must be at least 1".into());
        }
        Ok(Some(parsed))
    }

    fn runs(&self, workload: Workload) -> bool {
        self.workloads.contains(&workload)
    }

    fn kinds(&self) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|k| self.only.is_none_or(|only| only == *k)).collect()
    }
}

/// A launched system and what was measured on it.
struct Subject {
    system: Arc<dyn System>,
    url: String,
    throughputs: Vec<f64>,
    latencies: Vec<Duration>,
}

/// A system on one of its queues, and what the queue workload measured there.
struct QueueSubject {
    system: Arc<dyn System>,
    url: String,
    variant: QueueVariant,
    runs: Vec<QueueRun>,
}

impl QueueSubject {
    /// Runs the queue workload once (IDs `{label}-{tag}-{i}`), checked.
    async fn run(&self, tag: &str, args: &Args) -> Result<QueueRun, Error> {
        let (workflows, poll) = (args.queued, args.queue_poll);
        let prefix = format!("{}-{tag}", self.variant.label);
        let run = workloads::queue::run(&self.system, &self.url, self.variant.queue, &prefix, workflows, poll);
        checked(&*self.system, &self.url, workflows, run).await
    }

    fn report(&self, tag: &str, workflows: u64, run: &QueueRun) {
        println!(
            "{tag:<9} queue      {:<8} {:>6.0} wf/s ({:.0} ms); enqueue {:>6.0} wf/s ({:.0} ms); {} probes of {:.2} ms",
            self.variant.label,
            workflows as f64 / run.completed.as_secs_f64(),
            stats::ms(run.completed),
            workflows as f64 / run.enqueued.as_secs_f64(),
            stats::ms(run.enqueued),
            run.probes,
            stats::ms(run.probe_mean),
        );
    }

    fn median(&self, workflows: u64, time: impl Fn(&QueueRun) -> Duration) -> f64 {
        let rates: Vec<f64> = self.runs.iter().map(|r| workflows as f64 / time(r).as_secs_f64()).collect();
        stats::median(&rates)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // The hidden subcommand: a consumer process of the Kafka and SQS workloads.
    if std::env::args().nth(1).as_deref() == Some("consume") {
        return match consume::main(std::env::args().skip(2)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("exactly-bench consume: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("exactly-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exactly-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    if cfg!(debug_assertions) {
        eprintln!("exactly-bench: WARNING: this is a debug build; benchmarks must be run in release mode");
    }
    let server = db::server_info(&args.database_url)
        .await
        .map_err(|e| format!("cannot reach PostgreSQL at {}: {e}", redact(&args.database_url)))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("command:  {command}");
    println!("build:    {}", if cfg!(debug_assertions) { "DEBUG (numbers not valid)" } else { "release" });
    println!("machine:  {}", machine());
    println!(
        "postgres: {} ({})",
        server.version,
        server.settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    println!("versions: {}", versions());
    let load = load_average();
    println!("load:     {load} (1, 5, 15 min) at the start");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if load.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()).is_some_and(|l| l > cpus / 2.0) {
        println!("note:     the machine is busy; latencies in particular will be noisy");
    }
    let mut chosen = Vec::new();
    if args.runs(Workload::Concurrent) {
        chosen.push(format!("concurrent W={}", args.workflows));
    }
    if args.runs(Workload::Serial) {
        chosen.push(format!("serial N={}", args.serial));
    }
    if args.runs(Workload::Queue) {
        chosen.push(format!("queue N={}", args.queued));
    }
    let in_process = args.workloads.iter().any(|w| w.in_process());
    if in_process {
        println!(
            "workload: {}, {} measured round(s) each after one warm-up, systems alternating",
            chosen.join(", "),
            args.rounds
        );
    }
    let plan = messaging_plan(&args);
    if let Some(k) = &plan.kafka {
        let mut kafka = Vec::new();
        if plan.ingest || plan.e2e {
            kafka.push(format!("N={} messages of {} bytes in {} partitions", k.messages, k.payload, k.partitions));
        }
        if plan.latency {
            kafka.push(format!("latency {} msg/s for {} s", k.rate, k.seconds));
        }
        println!("workload: kafka ({}) on {}, one run per system, each consumer in a process of its own", kafka.join(", "), k.bootstrap);
    }
    if let Some(q) = &plan.sqs {
        println!(
            "workload: sqs N={} messages on {}, one run per system; server ceiling with {} and 1 receive/delete loop(s)",
            q.messages,
            workloads::sqs::endpoint(),
            q.loops
        );
    }

    let mut subjects = Vec::new();
    for kind in args.kinds().into_iter().filter(|_| in_process) {
        let url = db::recreate(&args.database_url, kind.database()).await?;
        let system = kind.launch(&url, args.pool).await.map_err(|e| format!("launching {}: {e}", kind.name()))?;
        println!("settings: {}", system.describe());
        subjects.push(Subject { system, url, throughputs: Vec::new(), latencies: Vec::new() });
    }
    // The queue workload runs each system on its default queue, alternating like the
    // others; a system's further queue variants (dbos with a lower polling interval)
    // run after that, one at a time, so that nothing they set up (a worker polling
    // every millisecond) runs beside another system's measurement.
    let (mut queued, mut variants) = (Vec::new(), Vec::new());
    if args.runs(Workload::Queue) {
        for s in &subjects {
            for (n, variant) in s.system.queues().into_iter().enumerate() {
                println!("settings: {}", variant.describe);
                let q = QueueSubject { system: s.system.clone(), url: s.url.clone(), variant, runs: Vec::new() };
                if n == 0 { queued.push(q) } else { variants.push(q) }
            }
        }
        println!(
            "settings: queue workload: {} enqueues at once (a task each); the harness polls the system's \
             database every {:?} (or 1/{} of the time elapsed, if longer) until no row of the run is ENQUEUED or PENDING",
            args.queued,
            args.queue_poll,
            workloads::queue::RESOLUTION
        );
    }

    // One warm-up of each workload per system: connections opened, statements prepared,
    // caches filled. Not reported.
    for s in &subjects {
        let mut done = Vec::new();
        if args.runs(Workload::Concurrent) {
            let elapsed = workloads::concurrent::run(&s.system, args.workflows).await?;
            done.push(format!("concurrent took {:.0} ms", stats::ms(elapsed)));
        }
        if args.runs(Workload::Serial) {
            workloads::serial::run(&s.system, args.serial).await?;
        }
        if let Some(q) = queued.iter().find(|q| Arc::ptr_eq(&q.system, &s.system)) {
            let run = q.run("warm", &args).await?;
            done.push(format!("queue took {:.0} ms", stats::ms(run.completed)));
        }
        println!("warm-up:  {} done ({})", s.system.name(), done.join(", "));
    }

    for round in (1..=args.rounds).filter(|_| args.runs(Workload::Concurrent)) {
        for s in alternate(&mut subjects, round) {
            let run = workloads::concurrent::run(&s.system, args.workflows);
            let elapsed = checked(&*s.system, &s.url, args.workflows, run).await?;
            let throughput = args.workflows as f64 / elapsed.as_secs_f64();
            println!("round {round}:  concurrent {:<7} {throughput:>8.0} wf/s ({:.0} ms)", s.system.name(), stats::ms(elapsed));
            s.throughputs.push(throughput);
        }
    }
    for round in (1..=args.rounds).filter(|_| args.runs(Workload::Serial)) {
        for s in alternate(&mut subjects, round) {
            let run = workloads::serial::run(&s.system, args.serial);
            let latencies = checked(&*s.system, &s.url, args.serial, run).await?;
            println!(
                "round {round}:  serial     {:<7} p50 {:.2} ms, p99 {:.2} ms",
                s.system.name(),
                stats::ms(stats::percentile(&latencies, 50.0)),
                stats::ms(stats::percentile(&latencies, 99.0))
            );
            s.latencies.extend(latencies);
        }
    }

    for round in (1..=args.rounds).filter(|_| args.runs(Workload::Queue)) {
        for q in alternate(&mut queued, round) {
            let run = q.run(&format!("r{round}"), &args).await?;
            q.report(&format!("round {round}:"), args.queued, &run);
            q.runs.push(run);
        }
    }
    for q in &mut variants {
        println!("load:     {} (1, 5, 15 min) before setting up {}", load_average(), q.variant.label);
        q.system.open_queue(q.variant.queue).await.map_err(|e| format!("{}: {e}", q.variant.label))?;
        let run = q.run("warm", &args).await?;
        println!("warm-up:  {} done (queue took {:.0} ms)", q.variant.label, stats::ms(run.completed));
        for round in 1..=args.rounds {
            let run = q.run(&format!("r{round}"), &args).await?;
            q.report(&format!("round {round}:"), args.queued, &run);
            q.runs.push(run);
        }
        q.system.close_queue(q.variant.queue).await.map_err(|e| format!("{}: {e}", q.variant.label))?;
    }

    let pick = |name: &str, f: &dyn Fn(&Subject) -> f64| subjects.iter().find(|s| s.system.name() == name).map(f);
    let throughput = |s: &Subject| stats::median(&s.throughputs);
    let p = |q: f64| move |s: &Subject| stats::ms(stats::percentile(&s.latencies, q));
    let mut rows = Vec::new();
    if args.runs(Workload::Concurrent) {
        rows.push(Row {
            workload: format!("concurrent: {} workflows, throughput (median of {})", args.workflows, args.rounds),
            unit: "wf/s",
            better: Better::Higher,
            exactly: pick("exactly", &throughput),
            dbos: pick("dbos", &throughput),
        });
    }
    if args.runs(Workload::Serial) {
        rows.push(Row {
            workload: format!("serial: {} workflows x {}, p50 latency", args.serial, args.rounds),
            unit: "ms",
            better: Better::Lower,
            exactly: pick("exactly", &p(50.0)),
            dbos: pick("dbos", &p(50.0)),
        });
        rows.push(Row {
            workload: format!("serial: {} workflows x {}, p99 latency", args.serial, args.rounds),
            unit: "ms",
            better: Better::Lower,
            exactly: pick("exactly", &p(99.0)),
            dbos: pick("dbos", &p(99.0)),
        });
    }
    if args.runs(Workload::Queue) {
        let (n, rounds) = (args.queued, args.rounds);
        let queue = |name: &str, time: &dyn Fn(&QueueRun) -> Duration| {
            queued.iter().chain(&variants).find(|q| q.variant.label == name).map(|q| q.median(n, time))
        };
        let completed = |r: &QueueRun| r.completed;
        let enqueued = |r: &QueueRun| r.enqueued;
        rows.push(Row {
            workload: format!("queue: {n} enqueued, until all SUCCESS (median of {rounds})"),
            unit: "wf/s",
            better: Better::Higher,
            exactly: queue("exactly", &completed),
            dbos: queue("dbos", &completed),
        });
        for v in &variants {
            rows.push(Row {
                workload: format!("queue: {n} enqueued, until all SUCCESS, {} (median of {rounds})", v.variant.label),
                unit: "wf/s",
                better: Better::Higher,
                exactly: queue("exactly", &completed),
                dbos: Some(v.median(n, completed)),
            });
        }
        rows.push(Row {
            workload: format!("queue: {n} enqueued, until all durably ENQUEUED (median of {rounds})"),
            unit: "wf/s",
            better: Better::Higher,
            exactly: queue("exactly", &enqueued),
            dbos: queue("dbos", &enqueued),
        });
    }
    for s in &subjects {
        s.system.shutdown().await?;
    }
    let messaging = if plan.kafka.is_some() || plan.sqs.is_some() {
        println!("load:     {} (1, 5, 15 min) before the Kafka and SQS workloads", load_average());
        Some(messaging::run(&plan).await?)
    } else {
        None
    };

    println!("load:     {} (1, 5, 15 min) at the end", load_average());
    if !rows.is_empty() {
        println!();
        print!("{}", stats::table(&rows));
        println!("ratio > 1 means exactly is better (exactly/dbos for throughput, dbos/exactly for latency)");
    }
    if let Some(table) = messaging {
        println!();
        print!("{table}");
        println!("ratio > 1 means exactly is better (throughput: exactly/other; latency and memory: other/exactly)");
    }
    Ok(())
}

/// The Kafka and SQS workloads the arguments ask for.
fn messaging_plan(args: &Args) -> messaging::Plan {
    let (ingest, e2e, latency) =
        (args.runs(Workload::KafkaIngest), args.runs(Workload::KafkaE2e), args.runs(Workload::KafkaLatency));
    let poll = args.queue_poll;
    messaging::Plan {
        kafka: (ingest || e2e || latency).then(|| workloads::kafka::Options {
            bootstrap: args.bootstrap.clone(),
            admin_url: args.database_url.clone(),
            messages: args.messages,
            partitions: 6,
            payload: 100,
            rate: args.latency_rate,
            seconds: args.latency_seconds,
            insert_batch: args.insert_batch,
            poll,
            give_up: args.give_up,
        }),
        ingest,
        e2e,
        latency,
        sqs: args.runs(Workload::SqsE2e).then(|| workloads::sqs::Options {
            admin_url: args.database_url.clone(),
            messages: args.sqs_messages,
            payload: 100,
            loops: args.sqs_loops,
            poll,
            give_up: args.give_up,
        }),
        peers: args.peers,
    }
}

/// Runs a measured workload and checks, outside the timing, that it left exactly
/// `workflows` new SUCCESS rows in the system's database.
async fn checked<T>(
    system: &dyn System,
    url: &str,
    workflows: u64,
    workload: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let before = db::count_success(url, system.status_table()).await?;
    let measured = workload.await?;
    let after = db::count_success(url, system.status_table()).await?;
    if after - before != workflows as i64 {
        let name = system.name();
        return Err(format!("{name}: {} new SUCCESS rows after the run, expected {workflows}", after - before).into());
    }
    Ok(measured)
}

/// The subjects in launch order in odd rounds (the first is 1) and reversed in even ones.
fn alternate<S>(subjects: &mut [S], round: usize) -> Vec<&mut S> {
    let mut order: Vec<&mut S> = subjects.iter_mut().collect();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// CPU count and model, kernel.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    format!("nproc={cpus}, {model}, Linux {kernel}")
}

/// The load averages, which say whether something else was using the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The exactly commit (from git, at run time) and the dbos version (from Cargo.lock,
/// at build time).
fn versions() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-C", env!("CARGO_MANIFEST_DIR")])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    format!(
        "exactly {commit}{}, dbos {}",
        if dirty { " (with uncommitted changes)" } else { "" },
        locked_version("dbos").unwrap_or("unknown")
    )
}

/// The version of `package` recorded in the workspace's Cargo.lock.
fn locked_version(package: &str) -> Option<&'static str> {
    const LOCK: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
    let mut lines = LOCK.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"") {
            return lines.next()?.strip_prefix("version = \"")?.strip_suffix('"');
        }
    }
    None
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, Error> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_the_options() {
        let args = parse(&["--workflows", "10", "--serial=5", "--only", "dbos", "--database-url", "postgres://x/y", "--pool", "4"])
            .unwrap()
            .unwrap();
        assert_eq!((args.workflows, args.serial, args.only, args.pool), (10, 5, Some(Kind::Dbos), Some(4)));
        assert_eq!(args.database_url, "postgres://x/y");
        assert!(parse(&["--only", "nope"]).is_err());
        assert!(parse(&["--workflows"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
        let args = parse(&["--workloads", "queue,concurrent", "--queued=500"]).unwrap().unwrap();
        assert_eq!((args.workloads, args.queued), (vec![Workload::Concurrent, Workload::Queue], 500));
        assert_eq!(parse(&[]).unwrap().unwrap().workloads, Workload::ALL.to_vec());
        assert!(parse(&["--workloads", "kafka-nope"]).is_err());
        let args = parse(&["--workloads", "kafka,queue", "--messages", "50"]).unwrap().unwrap();
        assert_eq!(
            (args.workloads, args.messages),
            (vec![Workload::Queue, Workload::KafkaIngest, Workload::KafkaE2e, Workload::KafkaLatency], 50)
        );
    }

    #[test]
    fn redacts_the_password() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
    }
}

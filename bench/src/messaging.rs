//! The Kafka and SQS workloads of one run: each system's consumer in turn (exactly,
//! then the DBOS peers), then the ceilings; one table with a column per system, the
//! ceiling, and the ratios the targets are stated in.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::peers::{self, Contender};
use crate::stats;
use crate::workloads::{GaveUp, kafka, sqs};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kafka: Option<kafka::Options>,
    pub ingest: bool,
    pub e2e: bool,
    pub latency: bool,
    pub sqs: Option<sqs::Options>,
    /// Run the DBOS peers (else their columns say "not run").
    pub peers: bool,
}

/// A value, or why there is none.
#[derive(Debug, Clone)]
enum Cell {
    Value(f64),
    /// The rate a run sustained until `--give-up` stopped it, and how far it got.
    Partial(f64, String),
    Missing(String),
}

impl Cell {
    fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v) | Cell::Partial(v, _) => Some(*v),
            Cell::Missing(_) => None,
        }
    }

    /// A failed run's cell: the rate so far if it gave up, else why it failed.
    fn failed(e: &Error) -> Cell {
        match e.downcast_ref::<GaveUp>() {
            Some(g) => Cell::Partial(
                g.done as f64 / g.after.as_secs_f64(),
                format!("(gave up at {} of {} after {:.0} s)", g.done, g.want, g.after.as_secs_f64()),
            ),
            _ => Cell::Missing(short(e)),
        }
    }
}

/// How a row's numbers compare: the direction that is better, and the unit.
#[derive(Clone, Copy)]
enum Kind {
    Rate,
    Millis,
    Megabytes,
}

impl Kind {
    fn show(self, cell: &Cell) -> String {
        match (self, cell) {
            (Kind::Rate, Cell::Value(v)) => format!("{v:.0} msg/s"),
            (Kind::Rate, Cell::Partial(v, note)) => format!("{v:.0} msg/s {note}"),
            (_, Cell::Partial(_, note)) => note.clone(),
            (Kind::Millis, Cell::Value(v)) => format!("{v:.1} ms"),
            (Kind::Megabytes, Cell::Value(v)) => format!("{v:.1} MB"),
            (_, Cell::Missing(why)) => why.clone(),
        }
    }

    /// Above 1 means exactly did better.
    fn ratio(self, exactly: f64, other: f64) -> f64 {
        match self {
            Kind::Rate => exactly / other,
            Kind::Millis | Kind::Megabytes => other / exactly,
        }
    }
}

struct Line {
    workload: String,
    kind: Kind,
    /// exactly, exactly-queued, dbos-python, dbos-ts (in the order of `COLUMNS`).
    systems: [Cell; 4],
    ceiling: Cell,
}

const COLUMNS: [&str; 4] = ["exactly", "exactly-queued", "dbos-python", "dbos-ts"];
/// The columns of exactly's own modes (the rest are the peers).
const EXACTLY_MODES: usize = 2;

fn not_applicable() -> Cell {
    Cell::Missing("n/a".to_owned())
}

/// A failure in a table cell: its first words (the whole error is printed above the table).
fn short(e: &Error) -> String {
    let text = e.to_string();
    let text = text.lines().next().unwrap_or("");
    if text.chars().count() > 40 { format!("failed: {}..", text.chars().take(38).collect::<String>()) } else { format!("failed: {text}") }
}

/// Whether an error is a lost database connection (another engineer's restart of
/// the server): such a run is tried once more.
fn transient(e: &Error) -> bool {
    let text = e.to_string();
    ["terminating connection", "Connection refused", "connection refused", "Connection reset", "connection closed", "the database system is"]
        .iter()
        .any(|t| text.contains(t))
}

/// Runs `run`, and once more after a pause if it failed on a lost connection.
async fn retried<T, F: Future<Output = Result<T, Error>>>(label: &str, mut run: impl FnMut() -> F) -> Result<T, Error> {
    match run().await {
        Err(e) if transient(&e) => {
            println!("retry:    {label}: {e}; trying again in 5 s");
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            run().await
        }
        other => other,
    }
}

fn mb(bytes: Option<u64>) -> Cell {
    bytes.map_or_else(|| Cell::Missing("unknown".to_owned()), |b| Cell::Value(b as f64 / (1024.0 * 1024.0)))
}

fn column(label: &str) -> usize {
    COLUMNS.iter().position(|c| *c == label).expect("a known column")
}

/// Runs the plan; returns the table.
pub async fn run(plan: &Plan) -> Result<String, Error> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut lines = Vec::new();
    if let Some(o) = &plan.kafka {
        run_kafka(plan, o, stamp, &mut lines).await?;
    }
    if let Some(o) = &plan.sqs {
        run_sqs(plan, o, stamp, &mut lines).await?;
    }
    let header = ["workload", "exactly", "exactly-queued", "dbos-python", "dbos-ts", "ceiling", "better exactly / faster DBOS", "better exactly / ceiling"];
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let (ours, peers) = l.systems.split_at(EXACTLY_MODES);
            let better = |cells: &[Cell]| match l.kind {
                Kind::Rate => cells.iter().filter_map(Cell::value).reduce(f64::max),
                _ => cells.iter().filter_map(Cell::value).reduce(f64::min),
            };
            let (exactly, best) = (better(ours), better(peers));
            let ratio = |other: Option<f64>| match (exactly, other) {
                (Some(e), Some(o)) if e > 0.0 && o > 0.0 => format!("{:.2}x", l.kind.ratio(e, o)),
                _ => "-".to_owned(),
            };
            let mut row = vec![l.workload.clone()];
            row.extend(l.systems.iter().map(|c| l.kind.show(c)));
            row.push(l.kind.show(&l.ceiling));
            row.push(ratio(best));
            row.push(ratio(l.ceiling.value()));
            row
        })
        .collect();
    Ok(stats::grid(&header, &rows))
}

/// Why a contender is not run, if it is not.
fn skipped(plan: &Plan, c: &Contender) -> Option<Cell> {
    if matches!(c.launch, peers::Launch::Peer(_)) && !plan.peers {
        return Some(Cell::Missing("not run (--peers none)".to_owned()));
    }
    c.unavailable().map(|why| {
        println!("skip:     {}: {why}", c.label);
        Cell::Missing(format!("unavailable: {why}"))
    })
}

async fn run_kafka(plan: &Plan, o: &kafka::Options, stamp: u64, lines: &mut Vec<Line>) -> Result<(), Error> {
    let contenders = peers::kafka();
    let (n, p) = (o.messages, o.partitions);
    let missing = || [not_applicable(), not_applicable(), not_applicable(), not_applicable()];
    if plan.ingest || plan.e2e {
        let topic = format!("bench_kafka_{stamp}");
        kafka::create_topic(&o.bootstrap, &topic, p).await?;
        let produced = kafka::produce_all(o, &topic).await?;
        println!(
            "kafka:    produced {n} messages of {} bytes to {topic} ({p} partitions, acks=all) in {:.1} s",
            o.payload,
            produced.as_secs_f64()
        );
        let (mut ingest, mut e2e, mut rss) = (missing(), missing(), missing());
        for c in &contenders {
            let i = column(c.label);
            if let Some(cell) = skipped(plan, c) {
                (ingest[i], e2e[i], rss[i]) = (cell.clone(), cell.clone(), cell);
                continue;
            }
            // A fresh group per attempt: a retried run reads every message again.
            let mut attempt = 0;
            let run = retried(c.label, || {
                attempt += 1;
                let group = format!("bench_{}_{stamp}_{attempt}", c.label.replace('-', "_"));
                let topic = &topic;
                async move { kafka::batch_run(c, o, topic, &group, plan.e2e).await }
            });
            match run.await {
                Ok(run) => {
                    println!(
                        "kafka:    {:<11} ingest {:>7.0} msg/s ({:.0} ms){}; peak RSS {:.1} MB; started in {:.1} s; {} probes of {:.2} ms",
                        c.label,
                        n as f64 / run.ingest.as_secs_f64(),
                        stats::ms(run.ingest),
                        run.e2e.map_or(String::new(), |d| format!(", all SUCCESS {:>7.0} msg/s ({:.0} ms)", n as f64 / d.as_secs_f64(), stats::ms(d))),
                        run.rss.unwrap_or(0) as f64 / 1048576.0,
                        run.startup.as_secs_f64(),
                        run.probes,
                        stats::ms(run.probe_mean),
                    );
                    ingest[i] = Cell::Value(n as f64 / run.ingest.as_secs_f64());
                    if let Some(d) = run.e2e {
                        e2e[i] = Cell::Value(n as f64 / d.as_secs_f64());
                    }
                    rss[i] = mb(run.rss);
                }
                Err(e) => {
                    println!("kafka:    {:<11} FAILED: {e}", c.label);
                    let cell = Cell::failed(&e);
                    let gave_up_on_success = e.downcast_ref::<GaveUp>().is_some_and(|g| g.what.contains("SUCCESS"));
                    // Gave up waiting for SUCCESS: the ingest was done; no number for it here.
                    ingest[i] = if gave_up_on_success { Cell::Missing("see log".to_owned()) } else { cell.clone() };
                    e2e[i] = if gave_up_on_success { cell } else { Cell::Missing(short(&e)) };
                    rss[i] = Cell::Missing(short(&e));
                }
            }
        }
        // The ceilings.
        let count = kafka::count_run(o, &topic, &format!("bench_count_{stamp}")).await;
        let (count_rate, count_rss) = match &count {
            Ok(run) => {
                println!(
                    "kafka:    rdkafka     counted {n} in {:.0} ms: {:.0} msg/s; peak RSS {:.1} MB",
                    stats::ms(run.ingest),
                    n as f64 / run.ingest.as_secs_f64(),
                    run.rss.unwrap_or(0) as f64 / 1048576.0
                );
                (Cell::Value(n as f64 / run.ingest.as_secs_f64()), mb(run.rss))
            }
            Err(e) => {
                println!("kafka:    rdkafka     FAILED: {e}");
                (Cell::Missing(short(e)), Cell::Missing(short(e)))
            }
        };
        let insert = match retried("INSERT ceiling", || kafka::insert_ceiling(o, &topic)).await {
            Ok(d) => {
                println!(
                    "kafka:    INSERT      {n} rows, {} per transaction, one connection: {:.0} ms: {:.0} rows/s",
                    o.insert_batch,
                    stats::ms(d),
                    n as f64 / d.as_secs_f64()
                );
                Cell::Value(n as f64 / d.as_secs_f64())
            }
            Err(e) => {
                println!("kafka:    INSERT      FAILED: {e}");
                Cell::Missing(short(&e))
            }
        };
        // The receiver's own path: the same ingest with execution held back (a queue of
        // concurrency 1), printed beside the ceilings, not in the table.
        if plan.ingest {
            let held = peers::kafka_held();
            let group = format!("bench_held_{stamp}");
            match retried(held.label, || kafka::batch_run(&held, o, &topic, &group, false)).await {
                Ok(run) => println!(
                    "kafka:    exactly-held ingest {:.0} msg/s ({:.0} ms) with execution held back (queue of concurrency 1): the receiver's own path",
                    n as f64 / run.ingest.as_secs_f64(),
                    stats::ms(run.ingest)
                ),
                Err(e) => println!("kafka:    exactly-held FAILED: {e}"),
            }
        }
        if plan.ingest {
            lines.push(Line {
                workload: format!("kafka ingest: {n} msgs, {p} partitions, until all rows durable (ceiling: batched INSERTs)"),
                kind: Kind::Rate,
                systems: ingest.clone(),
                ceiling: insert,
            });
            lines.push(Line {
                workload: format!("kafka ingest: {n} msgs, {p} partitions, until all rows durable (ceiling: rdkafka counting)"),
                kind: Kind::Rate,
                systems: ingest,
                ceiling: count_rate,
            });
        }
        if plan.e2e {
            lines.push(Line {
                workload: format!("kafka e2e: {n} msgs, one-step workflow each, until all SUCCESS"),
                kind: Kind::Rate,
                systems: e2e,
                ceiling: not_applicable(),
            });
        }
        lines.push(Line {
            workload: format!("kafka: consumer's peak RSS, {n} msgs (ceiling: rdkafka counting)"),
            kind: Kind::Megabytes,
            systems: rss,
            ceiling: count_rss,
        });
    }
    if plan.latency {
        let total = o.rate * o.seconds;
        let (mut p50, mut p99) = (missing(), missing());
        for c in &contenders {
            let i = column(c.label);
            if let Some(cell) = skipped(plan, c) {
                (p50[i], p99[i]) = (cell.clone(), cell);
                continue;
            }
            let name = c.label.replace('-', "_");
            let mut attempt = 0;
            let run = retried(c.label, || {
                attempt += 1;
                let topic = format!("bench_lat_{name}_{stamp}_{attempt}");
                async move { kafka::latency_run(c, o, &topic, &topic).await }
            });
            match run.await {
                Ok(run) => {
                    let (a, b) = (stats::percentile(&run.latencies, 50.0), stats::percentile(&run.latencies, 99.0));
                    println!(
                        "kafka:    {:<11} latency over {total} msgs at {}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak RSS {:.1} MB",
                        c.label,
                        o.rate,
                        stats::ms(a),
                        stats::ms(b),
                        stats::ms(stats::percentile(&run.latencies, 100.0)),
                        run.rss.unwrap_or(0) as f64 / 1048576.0
                    );
                    (p50[i], p99[i]) = (Cell::Value(stats::ms(a)), Cell::Value(stats::ms(b)));
                }
                Err(e) => {
                    println!("kafka:    {:<11} latency FAILED: {e}", c.label);
                    (p50[i], p99[i]) = (Cell::Missing(short(&e)), Cell::Missing(short(&e)));
                }
            }
        }
        for (q, cells) in [("p50", p50), ("p99", p99)] {
            lines.push(Line {
                workload: format!("kafka latency: {}/s for {} s, produce to SUCCESS, {q}", o.rate, o.seconds),
                kind: Kind::Millis,
                systems: cells,
                ceiling: not_applicable(),
            });
        }
    }
    Ok(())
}

async fn run_sqs(plan: &Plan, o: &sqs::Options, stamp: u64, lines: &mut Vec<Line>) -> Result<(), Error> {
    let client = sqs::client().await?;
    let n = o.messages;
    let mut e2e = [not_applicable(), not_applicable(), not_applicable(), not_applicable()];
    let mut rss = e2e.clone();
    for c in &peers::sqs() {
        let i = column(c.label);
        if let Some(cell) = skipped(plan, c) {
            (e2e[i], rss[i]) = (cell.clone(), cell);
            continue;
        }
        // A fresh queue per attempt, filled with the N messages.
        let mut attempt = 0;
        let run = retried(c.label, || {
            attempt += 1;
            let queue = format!("bench_sqs_{}_{stamp}_{attempt}", c.label.replace('-', "_"));
            let client = &client;
            async move {
                let url = sqs::fill(client, &queue, o).await?;
                let run = sqs::run(c, o, &url).await;
                sqs::delete(client, &url).await;
                run
            }
        });
        match run.await {
            Ok(run) => {
                println!(
                    "sqs:      {:<11} all SUCCESS {:>6.0} msg/s ({:.0} ms); peak RSS {:.1} MB; {} probes of {:.2} ms",
                    c.label,
                    n as f64 / run.e2e.as_secs_f64(),
                    stats::ms(run.e2e),
                    run.rss.unwrap_or(0) as f64 / 1048576.0,
                    run.probes,
                    stats::ms(run.probe_mean)
                );
                (e2e[i], rss[i]) = (Cell::Value(n as f64 / run.e2e.as_secs_f64()), mb(run.rss));
            }
            Err(e) => {
                println!("sqs:      {:<11} FAILED: {e}", c.label);
                (e2e[i], rss[i]) = (Cell::failed(&e), Cell::Missing(short(&e)));
            }
        }
    }
    let mut ceilings = Vec::new();
    for loops in [o.loops, 1] {
        let url = sqs::fill(&client, &format!("bench_sqs_ceiling{loops}_{stamp}"), o).await?;
        let cell = match sqs::ceiling(&client, &url, o, loops).await {
            Ok(d) => {
                println!(
                    "sqs:      server      {loops} receive/delete loop(s), batches of 10: {n} in {:.0} ms: {:.0} msg/s",
                    stats::ms(d),
                    n as f64 / d.as_secs_f64()
                );
                Cell::Value(n as f64 / d.as_secs_f64())
            }
            Err(e) => {
                println!("sqs:      server      {loops} loop(s) FAILED: {e}");
                Cell::Missing(short(&e))
            }
        };
        ceilings.push((loops, cell));
        sqs::delete(&client, &url).await;
    }
    for (loops, ceiling) in ceilings {
        lines.push(Line {
            workload: format!("sqs e2e: {n} msgs until all SUCCESS (ceiling: server, {loops} receive/delete loop(s))"),
            kind: Kind::Rate,
            systems: e2e.clone(),
            ceiling,
        });
    }
    lines.push(Line { workload: format!("sqs: consumer's peak RSS, {n} msgs"), kind: Kind::Megabytes, systems: rss, ceiling: not_applicable() });
    Ok(())
}

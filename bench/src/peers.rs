//! The consumers of the Kafka and SQS workloads that run in processes of their own,
//! each a small table entry: how to start it, its database, and the SQL the harness
//! polls in that database. The DBOS peers live in `bench/peers/` (installed by
//! `bench/peers/install`, started by `bench/peers/run PEER ..`; their SQL is
//! documented in `bench/peers/README.md`).

use std::path::PathBuf;

use crate::Error;
use crate::consume;
use crate::process;

/// The queries the harness polls in a consumer's database. Every one reads only the
/// rows of the consumer's bench workflow (the database is created fresh for each run).
#[derive(Debug, Clone)]
pub struct Sql {
    /// `count(*)` of workflow rows, any status (ingest: every message has its durable row).
    pub rows: String,
    /// `count(*)` of SUCCESS rows.
    pub success: String,
    /// Kafka latency: one row per SUCCESS workflow, `(partition int4, offset int8,
    /// ended_at_ms float8)`, the end as milliseconds since the Unix epoch.
    pub ends: String,
    /// `count(*)` of the rows with these workflow IDs (the SQL list is appended):
    /// the cheap ingest probe, asked of the primary key.
    pub rows_with_ids: String,
    /// The workflow ID the system gives the Kafka message `(group, topic, partition, offset)`.
    pub kafka_id: fn(&str, &str, i32, i64) -> String,
}

/// How a consumer process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// This program's `consume kafka` / `consume sqs`.
    Exactly,
    /// This program's `consume kafka --queue`: the receiver enqueues each message's
    /// workflow on an unlimited durable queue and the dispatcher runs it (as DBOS
    /// Python's batched enqueue does), so that storing is not paced by running.
    ExactlyQueued,
    /// This program's `consume kafka --queue bench.held`: as `ExactlyQueued`, on a
    /// queue of concurrency 1, so that almost no workflow runs while the rows are
    /// stored (a diagnostic of the receiver's own path, not a way to run).
    ExactlyHeld,
    /// `bench/peers/run NAME`.
    Peer(&'static str),
}

/// A system whose consumer runs in a process of its own.
#[derive(Debug, Clone)]
pub struct Contender {
    /// The column in the table.
    pub label: &'static str,
    pub launch: Launch,
    /// Its database on the server, dropped and created before each of its runs.
    pub database: &'static str,
    pub sql: Sql,
}

impl Contender {
    /// The program and arguments that start it.
    pub fn command(&self, args: &[(&str, &str)]) -> Result<(PathBuf, Vec<String>), Error> {
        let flags = args.iter().flat_map(|(k, v)| [format!("--{k}"), (*v).to_owned()]);
        Ok(match self.launch {
            Launch::Exactly => {
                let kind = if args.iter().any(|(k, _)| *k == "queue-url") { "sqs" } else { "kafka" };
                (process::this_exe()?, ["consume".to_owned(), kind.to_owned()].into_iter().chain(flags).collect())
            }
            Launch::ExactlyQueued | Launch::ExactlyHeld => {
                let queue = if self.launch == Launch::ExactlyHeld { consume::HELD_QUEUE } else { consume::BENCH_QUEUE };
                let consume = ["consume", "kafka", "--queue", queue].map(str::to_owned);
                (process::this_exe()?, consume.into_iter().chain(flags).collect())
            }
            Launch::Peer(name) => (process::root().join("bench/peers/run"), std::iter::once(name.to_owned()).chain(flags).collect()),
        })
    }

    /// Why it cannot run on this machine, if it cannot (a peer not installed).
    pub fn unavailable(&self) -> Option<String> {
        let Launch::Peer(name) = self.launch else { return None };
        let run = process::root().join("bench/peers/run");
        if !run.exists() {
            return Some("bench/peers/run missing".to_owned());
        }
        let installed = process::root().join(".dev/bench");
        let needs = if name.starts_with("dbos-python") { installed.join("python/bin/python") } else { installed.join("node/node_modules") };
        if !needs.exists() {
            return Some(format!("not installed ({} missing: run bench/peers/install)", needs.display()));
        }
        let script = match name {
            "dbos-python-kafka" => "bench/peers/python/kafka_peer.py",
            "dbos-ts-kafka" => "bench/peers/ts/kafka_peer.js",
            "dbos-ts-sqs" => "bench/peers/ts/sqs_peer.js",
            _ => return None,
        };
        (!process::root().join(script).exists()).then(|| format!("{script} missing"))
    }
}

/// exactly's queries: its rows in `exactly.workflow_status`, the Kafka coordinates
/// from the row's `source`, the end from `completed_at`. The SUCCESS count is taken
/// only once no row is PENDING or ENQUEUED (each asked of a partial index holding
/// only such rows), so that most polls cost a fraction of a millisecond.
fn exactly_sql(workflow: &str) -> Sql {
    let table = "exactly.workflow_status";
    Sql {
        rows: format!("SELECT count(*) FROM {table} WHERE name = '{workflow}'"),
        success: format!(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM {table} WHERE status = 'PENDING') \
                          OR EXISTS (SELECT 1 FROM {table} WHERE status = 'ENQUEUED') THEN -1 \
                     ELSE (SELECT count(*) FROM {table} WHERE name = '{workflow}' AND status = 'SUCCESS') END"
        ),
        ends: format!(
            "SELECT (source->'kafka'->>'partition')::int4, (source->'kafka'->>'offset')::int8, \
                    (extract(epoch FROM completed_at) * 1000)::float8 \
             FROM {table} WHERE name = '{workflow}' AND status = 'SUCCESS'"
        ),
        rows_with_ids: format!("SELECT count(*) FROM {table} WHERE workflow_id IN "),
        kafka_id: |group, topic, partition, offset| format!("kafka:{group}:{topic}:{partition}:{offset}"),
    }
}

/// DBOS's queries: `dbos.workflow_status` (the same system schema in Python and
/// TypeScript), the peers' workflow `bench_message`, `completed_at` (epoch
/// milliseconds) as the end; the SUCCESS count gated like exactly's, on DBOS's
/// partial index of ENQUEUED and PENDING rows (`idx_workflow_status_in_flight_v2`).
/// The Kafka coordinates are parsed from the workflow ID, which each SDK builds from
/// them (the harness's topic and group names have no `-`):
/// `(partition field, offset field)` of the ID split on `-`.
fn dbos_sql(coordinates: (u32, u32), kafka_id: fn(&str, &str, i32, i64) -> String) -> Sql {
    let table = "dbos.workflow_status";
    let (p, o) = coordinates;
    Sql {
        rows: format!("SELECT count(*) FROM {table} WHERE name = 'bench_message'"),
        success: format!(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM {table} WHERE status IN ('ENQUEUED', 'PENDING')) THEN -1 \
                     ELSE (SELECT count(*) FROM {table} WHERE name = 'bench_message' AND status = 'SUCCESS') END"
        ),
        ends: format!(
            "SELECT split_part(workflow_uuid, '-', {p})::int4, split_part(workflow_uuid, '-', {o})::int8, \
                    coalesce(completed_at, updated_at)::float8 \
             FROM {table} WHERE name = 'bench_message' AND status = 'SUCCESS'"
        ),
        rows_with_ids: format!("SELECT count(*) FROM {table} WHERE workflow_uuid IN "),
        kafka_id,
    }
}

/// The Kafka consumers, in the order they run and are listed.
pub fn kafka() -> Vec<Contender> {
    vec![
        Contender { label: "exactly", launch: Launch::Exactly, database: "bench_kafka_exactly", sql: exactly_sql(consume::KAFKA_WORKFLOW) },
        Contender {
            label: "exactly-queued",
            launch: Launch::ExactlyQueued,
            database: "bench_kafka_exactly_queued",
            sql: exactly_sql(consume::KAFKA_WORKFLOW),
        },
        Contender {
            label: "dbos-python",
            launch: Launch::Peer("dbos-python-kafka"),
            database: "bench_kafka_dbos_python",
            // DBOS Python's ID: `kafka-unique-id-{topic}-{partition}-{group}-{offset}`.
            sql: dbos_sql((5, 7), |group, topic, p, o| format!("kafka-unique-id-{topic}-{p}-{group}-{o}")),
        },
        Contender {
            label: "dbos-ts",
            launch: Launch::Peer("dbos-ts-kafka"),
            database: "bench_kafka_dbos_ts",
            // kafkajs-receive's ID: `kafkajs-{topic}-{partition}-{group}-{offset}`.
            sql: dbos_sql((3, 5), |group, topic, p, o| format!("kafkajs-{topic}-{p}-{group}-{o}")),
        },
    ]
}

/// exactly's Kafka consumer with execution held back (see [`Launch::ExactlyHeld`]).
pub fn kafka_held() -> Contender {
    Contender {
        label: "exactly-held",
        launch: Launch::ExactlyHeld,
        database: "bench_kafka_exactly_held",
        sql: exactly_sql(consume::KAFKA_WORKFLOW),
    }
}

/// The SQS consumers, in the order they run and are listed.
pub fn sqs() -> Vec<Contender> {
    vec![
        Contender { label: "exactly", launch: Launch::Exactly, database: "bench_sqs_exactly", sql: exactly_sql(consume::SQS_WORKFLOW) },
        Contender { label: "dbos-ts", launch: Launch::Peer("dbos-ts-sqs"), database: "bench_sqs_dbos_ts", sql: dbos_sql((0, 0), |_, _, _, _| String::new()) },
    ]
}

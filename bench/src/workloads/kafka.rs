//! The Kafka workloads: N messages already in a topic of 6 partitions, consumed by
//! each system's consumer in a process of its own, completion learned by polling the
//! system's database from a connection of the harness's own; a steady stream for
//! latency; and two ceilings (a plain rdkafka consumer that only counts, batched
//! inserts of the same rows straight into PostgreSQL). See BENCHMARKS.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exactly::KafkaMessage;
use exactly::kafka::ClientConfig;
use exactly::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use exactly::kafka::rdkafka::client::DefaultClientContext;
use exactly::kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use exactly::kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use exactly::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinSet;

use crate::Error;
use crate::consume;
use crate::db::{self, Watch};
use crate::peers::Contender;
use crate::process::{self, Consumer};

/// What the Kafka workloads need to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub bootstrap: String,
    /// The server's maintenance database (each system's database is created beside it).
    pub admin_url: String,
    /// N, the messages of the ingest and end-to-end workloads.
    pub messages: u64,
    pub partitions: i32,
    /// Bytes of each message's payload.
    pub payload: usize,
    /// The latency workload: messages per second, for how many seconds.
    pub rate: u64,
    pub seconds: u64,
    /// Rows per transaction of the batched-insert ceiling (exactly's default batch).
    pub insert_batch: usize,
    /// The completion poll's interval (or 1/RESOLUTION of the time elapsed, if longer).
    pub poll: Duration,
    /// A run not done by then is reported as such.
    pub give_up: Duration,
}

/// Past `poll * RESOLUTION`, the completion poll waits 1/RESOLUTION of the time elapsed.
const RESOLUTION: u32 = 200;

/// One run of the ingest and end-to-end workloads on one system.
#[derive(Debug, Clone)]
pub struct BatchRun {
    /// From the consumer group's assignment until every message has its row.
    pub ingest: Duration,
    /// Until every row is SUCCESS (None: not asked for, or a consumer without workflows).
    pub e2e: Option<Duration>,
    /// Peak resident memory of the consumer process, bytes.
    pub rss: Option<u64>,
    /// The completion poll: queries and their mean round trip.
    pub probes: u32,
    pub probe_mean: Duration,
    /// From the process's start until READY.
    pub startup: Duration,
}

/// One run of the latency workload on one system.
#[derive(Debug, Clone)]
pub struct LatencyRun {
    /// Produce to SUCCESS, one per message.
    pub latencies: Vec<Duration>,
    pub rss: Option<u64>,
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64() * 1000.0
}

/// Creates `topic` with `partitions` partitions and waits until every partition has a leader.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new], &AdminOptions::new()).await? {
        if let Err((name, code)) = result {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(format!("cannot create topic {name}: {code}").into());
            }
        }
    }
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let metadata = client.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
            let ready = metadata.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!("topic {topic}: partitions without a leader after 30 s").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await?
}

fn producer(bootstrap: &str, linger_ms: u32) -> Result<FutureProducer, Error> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// The payload of message `i`: its number, zero-padded to `size` bytes.
fn payload(i: u64, size: usize) -> String {
    format!("{i:0>size$}")
}

/// Produces `n` messages round-robin over the partitions (acks=all, batched by
/// librdkafka); returns once every one is acknowledged.
pub async fn produce_all(o: &Options, topic: &str) -> Result<Duration, Error> {
    let producer = producer(&o.bootstrap, 5)?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(o.messages as usize);
    for i in 0..o.messages {
        let (key, body) = (i.to_string(), payload(i, o.payload));
        let mut record = FutureRecord::to(topic).partition((i % o.partitions as u64) as i32).key(&key).payload(&body);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(format!("producing to {topic}: {e}").into()),
            }
        }
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| format!("producing to {topic}: {e}"))?;
    }
    Ok(started.elapsed())
}

/// Waits until the consumer group `group` is Stable with members (its partitions
/// assigned): the start of the ingest and end-to-end timings, the same for every
/// system. Returns that instant.
pub async fn wait_assigned(bootstrap: &str, group: &str) -> Result<Instant, Error> {
    let (bootstrap, group) = (bootstrap.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || -> Result<Instant, Error> {
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(list) = client.fetch_group_list(Some(&group), Duration::from_secs(2)) {
                let stable = list.groups().iter().any(|g| g.name() == group && g.state() == "Stable" && !g.members().is_empty());
                if stable {
                    return Ok(Instant::now());
                }
            }
            if Instant::now() > until {
                return Err(format!("consumer group {group} not Stable after 120 s").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await?
}

/// `(partition, offset of its last message)` of every partition of `topic` that has messages.
async fn last_offsets(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64)>, Error> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>, Error> {
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
        let metadata = client.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        let mut last = Vec::new();
        for p in partitions {
            let (low, high) = client.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
            if high > low {
                last.push((p, high - 1));
            }
        }
        Ok(last)
    })
    .await?
}

/// Polls `sql` (a count) until it reaches `want`; the time since `started`.
async fn poll_until(
    watch: &mut Watch,
    consumer: &mut Consumer,
    sql: &str,
    want: u64,
    started: Instant,
    o: &Options,
    what: &str,
) -> Result<Duration, Error> {
    loop {
        let n = watch.count(sql).await?;
        let now = Instant::now();
        if n >= want as i64 {
            return Ok(now - started);
        }
        if now - started > o.give_up {
            return Err(super::GaveUp { done: n.max(0) as u64, want, after: now - started, what: what.to_owned() }.into());
        }
        if let Some(status) = consumer.exited() {
            return Err(format!("consumer exited ({status}) at {n} of {want} {what}").into());
        }
        tokio::time::sleep(o.poll.max((now - started) / RESOLUTION)).await;
    }
}

/// Starts `c`'s consumer on `topic` in group `group` against its fresh database.
async fn start(c: &Contender, o: &Options, topic: &str, group: &str) -> Result<(Consumer, String), Error> {
    let url = db::recreate(&o.admin_url, c.database).await?;
    let (program, args) = c.command(&[("database-url", &url), ("bootstrap", &o.bootstrap), ("topic", topic), ("group", group)])?;
    let log = process::log_dir().join(format!("{}-{group}.log", c.label));
    Ok((Consumer::start(c.label, &program, &args, &log).await?, url))
}

/// The ingest and end-to-end workloads on one system: its consumer reads the N
/// messages of `topic` (already produced) from the earliest offset in a new group.
pub async fn batch_run(c: &Contender, o: &Options, topic: &str, group: &str, e2e: bool) -> Result<BatchRun, Error> {
    let last = last_offsets(&o.bootstrap, topic).await?;
    let last_ids: Vec<String> = last.iter().map(|(p, offset)| format!("'{}'", (c.sql.kafka_id)(group, topic, *p, *offset))).collect();
    let last_rows = format!("{}({})", c.sql.rows_with_ids, last_ids.join(", "));
    let (mut consumer, url) = start(c, o, topic, group).await?;
    let mut watch = Watch::connect(&url).await?;
    watch.count(&c.sql.rows).await?; // prepared, and the schema is there
    let started = wait_assigned(&o.bootstrap, group).await?;
    // First the rows of each partition's last message, by primary key (a count of
    // every row costs the server more with every row, and slows what it measures);
    // then the full count, which is the measurement: it is less than N only if a
    // system inserted a partition's messages out of order.
    if let Err(e) = poll_until(&mut watch, &mut consumer, &last_rows, last.len() as u64, started, o, "last rows").await {
        // A system too slow to get there: report how many rows it did record.
        return Err(match e.downcast::<super::GaveUp>() {
            Ok(gave_up) => {
                let done = watch.count(&c.sql.rows).await?.max(0) as u64;
                Box::new(super::GaveUp { done, want: o.messages, what: "rows".to_owned(), ..*gave_up })
            }
            Err(other) => other,
        });
    }
    let ingest = poll_until(&mut watch, &mut consumer, &c.sql.rows, o.messages, started, o, "rows").await?;
    let e2e = match e2e {
        true => Some(poll_until(&mut watch, &mut consumer, &c.sql.success, o.messages, started, o, "SUCCESS rows").await?),
        false => None,
    };
    let rss = consumer.peak_rss();
    let (probes, probe_mean) = (watch.queries, watch.mean());
    watch.close().await?;
    let startup = consumer.startup;
    consumer.stop().await?;
    Ok(BatchRun { ingest, e2e, rss, probes, probe_mean, startup })
}

/// The consuming ceiling: a plain rdkafka consumer (`consume kafka-count`) that
/// counts the N messages; from the group's assignment until it prints DONE.
pub async fn count_run(o: &Options, topic: &str, group: &str) -> Result<BatchRun, Error> {
    let program = process::this_exe()?;
    let expect = o.messages.to_string();
    let args: Vec<String> = ["consume", "kafka-count", "--bootstrap", &o.bootstrap, "--topic", topic, "--group", group, "--expect", &expect]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let log = process::log_dir().join(format!("rdkafka-{group}.log"));
    let mut consumer = Consumer::start("rdkafka-count", &program, &args, &log).await?;
    let started = wait_assigned(&o.bootstrap, group).await?;
    tokio::time::timeout(o.give_up, consumer.wait_for_line("DONE"))
        .await
        .map_err(|_| format!("gave up after {:.0} s", o.give_up.as_secs_f64()))??;
    let ingest = started.elapsed();
    let rss = consumer.peak_rss();
    let startup = consumer.startup;
    consumer.stop().await?;
    Ok(BatchRun { ingest, e2e: None, rss, probes: 0, probe_mean: Duration::ZERO, startup })
}

/// The durability ceiling: the rows exactly's receiver would insert for the N
/// messages (same table, same columns and JSON), inserted straight into PostgreSQL
/// from one connection, `insert_batch` rows per statement, each statement its own
/// transaction (one commit per batch, as the receiver does per poll batch).
/// Returns the time of the inserts alone (rows built beforehand).
pub async fn insert_ceiling(o: &Options, topic: &str) -> Result<Duration, Error> {
    let url = db::recreate(&o.admin_url, "bench_kafka_ceiling").await?;
    // exactly's schema, created by its own migrations in a process of its own.
    let status = std::process::Command::new(process::this_exe()?).args(["consume", "migrate", "--database-url", &url]).status()?;
    if !status.success() {
        return Err(format!("creating exactly's schema in bench_kafka_ceiling failed ({status})").into());
    }
    let group = "bench_ceiling";
    let mut rows = Vec::with_capacity(o.messages as usize);
    for i in 0..o.messages {
        let (partition, offset) = ((i % o.partitions as u64) as i32, (i / o.partitions as u64) as i64);
        let message = KafkaMessage::new(topic, partition, offset, payload(i, o.payload)).with_key(i.to_string());
        rows.push((
            format!("kafka:{group}:{topic}:{partition}:{offset}"),
            serde_json::to_string(&(topic, partition, &message))?,
            serde_json::json!({ "kafka": { "group": group, "topic": topic, "partition": partition, "offset": offset } }).to_string(),
        ));
    }
    let mut conn = db::connect(&url).await?;
    let sql = "INSERT INTO exactly.workflow_status (workflow_id, name, status, inputs, executor_id, app_version, source, started_at) \
               SELECT id, $2, 'PENDING', inputs::jsonb, 'bench', 'bench', source::jsonb, clock_timestamp() \
               FROM UNNEST($1::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(id, inputs, source, ord) ORDER BY ord \
               ON CONFLICT (workflow_id) DO NOTHING";
    let started = Instant::now();
    for chunk in rows.chunks(o.insert_batch.max(1)) {
        let ids: Vec<&str> = chunk.iter().map(|r| r.0.as_str()).collect();
        let inputs: Vec<&str> = chunk.iter().map(|r| r.1.as_str()).collect();
        let sources: Vec<&str> = chunk.iter().map(|r| r.2.as_str()).collect();
        sqlx::query(sql).bind(ids).bind(consume::KAFKA_WORKFLOW).bind(inputs).bind(sources).execute(&mut conn).await?;
    }
    let elapsed = started.elapsed();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status").fetch_one(&mut conn).await?;
    if n != o.messages as i64 {
        return Err(format!("batched-insert ceiling: {n} rows, expected {}", o.messages).into());
    }
    Ok(elapsed)
}

/// The latency workload on one system: its consumer runs on a fresh topic; the
/// harness produces `rate` messages a second for `seconds` (acks=all, no linger),
/// keeping each message's (partition, offset) and the wall-clock time just before
/// its send; once all are SUCCESS, each workflow's end is read from the database.
pub async fn latency_run(c: &Contender, o: &Options, topic: &str, group: &str) -> Result<LatencyRun, Error> {
    create_topic(&o.bootstrap, topic, o.partitions).await?;
    let (mut consumer, url) = start(c, o, topic, group).await?;
    let mut watch = Watch::connect(&url).await?;
    watch.count(&c.sql.success).await?;
    wait_assigned(&o.bootstrap, group).await?;

    let producer = producer(&o.bootstrap, 0)?;
    let total = o.rate * o.seconds;
    let sent: Arc<Mutex<HashMap<(i32, i64), f64>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut deliveries = JoinSet::new();
    let started = Instant::now();
    for i in 0..total {
        ticks.tick().await;
        let (key, body) = (i.to_string(), payload(i, o.payload));
        let record = FutureRecord::to(topic).partition((i % o.partitions as u64) as i32).key(&key).payload(&body);
        let at = now_ms();
        let delivery = producer.send_result(record).map_err(|(e, _)| format!("producing to {topic}: {e}"))?;
        let sent = sent.clone();
        deliveries.spawn(async move {
            let delivery = delivery.await.map_err(|e| e.to_string())?.map_err(|(e, _)| e.to_string())?;
            sent.lock().expect("sent").insert((delivery.partition, delivery.offset), at);
            Ok::<(), String>(())
        });
    }
    while let Some(done) = deliveries.join_next().await {
        done?.map_err(|e| format!("producing to {topic}: {e}"))?;
    }
    poll_until(&mut watch, &mut consumer, &c.sql.success, total, started, o, "SUCCESS rows").await?;
    let rss = consumer.peak_rss();
    let ends = watch.triples(&c.sql.ends).await?;
    watch.close().await?;
    consumer.stop().await?;

    let sent = sent.lock().expect("sent");
    let mut latencies = Vec::with_capacity(ends.len());
    for (partition, offset, end) in ends {
        let at = sent.get(&(partition, offset)).ok_or_else(|| format!("{}: a workflow for {partition}:{offset}, which was not produced", c.label))?;
        latencies.push(Duration::from_secs_f64(((end - at) / 1000.0).max(0.0)));
    }
    if latencies.len() as u64 != total {
        return Err(format!("{}: {} ends read for {total} messages", c.label, latencies.len()).into());
    }
    Ok(LatencyRun { latencies, rss })
}

//! The Kafka demo: orders on a topic become durable workflows, exactly once.
//!
//! 1. A `#[kafka_consumer]` workflow bills each order in two steps: `charge` (a
//!    side effect: a ledger row in PostgreSQL) and `exactly::kafka::send` of the
//!    receipt (a durable send). The demo produces a few hundred orders, waits until
//!    every workflow has completed, and prints a summary.
//! 2. It then rewinds the consumer group to the first offset, as an operator's
//!    offset reset or a lost commit would, and launches again: every order is
//!    delivered a second time, finds its workflow under its ID
//!    (`kafka:{group}:{topic}:{partition}:{offset}`), and nothing runs twice.
//!
//! Run it with `dev/demo` (which starts PostgreSQL and Kafka), or with
//! `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` set: `cargo run --example kafka_orders`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use exactly::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use exactly::kafka::rdkafka::client::DefaultClientContext;
use exactly::kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use exactly::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use exactly::kafka::rdkafka::{Offset, TopicPartitionList};
use exactly::kafka::{ClientConfig, KafkaSettings};
use exactly::{KafkaMessage, Runtime, kafka_consumer, step, workflow};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgPool};

const ORDERS: usize = 300;
const CUSTOMERS: usize = 25;
const ORDERS_TOPIC: &str = "demo-orders";
const RECEIPTS_TOPIC: &str = "demo-receipts";
const PARTITIONS: i32 = 4;
const GROUP: &str = "demo-billing";
const DEMO_DATABASE: &str = "exactly_kafka_demo";

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: String,
    customer: String,
    cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    order: String,
    cents: u64,
}

/// The ledger pool, from the URL the demo launched with.
fn ledger() -> &'static PgPool {
    static POOL: std::sync::OnceLock<PgPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| PgPool::connect_lazy(&demo_url()).unwrap())
}

/// Step 1, the side effect: a ledger row keyed by order (`executions` counts how
/// often the body ran).
#[step(retries = 3)]
async fn charge(order: &Order) -> exactly::Result<Receipt> {
    sqlx::query(
        "INSERT INTO public.ledger (order_id, cents, executions) VALUES ($1, $2, 1)
         ON CONFLICT (order_id) DO UPDATE SET executions = ledger.executions + 1",
    )
    .bind(&order.id)
    .bind(order.cents as i64)
    .execute(ledger())
    .await
    .map_err(exactly::Error::msg)?;
    Ok(Receipt { order: order.id.clone(), cents: order.cents })
}

/// One workflow per order message; the orders of one customer (the message key) are
/// billed one at a time, in order.
#[kafka_consumer("demo-orders", group = "demo-billing", ordering = "key")]
#[workflow]
async fn bill(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<Receipt> {
    let _ = (topic, partition);
    let order: Order = message.json()?;
    let receipt = charge(&order).await?;
    // Step 2: the receipt goes out as a durable step, with the workflow and step IDs in its headers.
    exactly::kafka::send(RECEIPTS_TOPIC, &order.customer, &receipt).await?;
    Ok(receipt)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = fresh_database().await?;
    fresh_topics().await?;
    // Offsets are committed every half second (the default is 5 s): the replay below waits for them.
    let settings = KafkaSettings::new().bootstrap_servers(bootstrap()).set("auto.commit.interval.ms", "500");

    println!("== 1. launch; #[kafka_consumer(\"{ORDERS_TOPIC}\")] joins group `{GROUP}`, and {ORDERS} orders are produced");
    let runtime = Runtime::builder().database_url(demo_url()).kafka(settings.clone()).launch().await?;
    let started = Instant::now();
    let ends = produce_orders().await?;
    wait_for(&pool, "SELECT count(*) FROM exactly.workflow_status WHERE status = 'SUCCESS'", ORDERS as i64).await?;
    let elapsed = started.elapsed();
    let (workflows, cents): (i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum((output->>'cents')::bigint), 0)::bigint FROM exactly.workflow_status WHERE status = 'SUCCESS'",
    )
    .fetch_one(&pool)
    .await?;
    let sends: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE name = 'exactly::kafka::send'").fetch_one(&pool).await?;
    let (example, input): (String, String) = sqlx::query_as(
        "SELECT workflow_id, inputs->2->>'payload' FROM exactly.workflow_status ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    println!("   {workflows} workflows SUCCESS in {:.2} s ({:.0} orders/s), ${:.2} charged, {sends} receipts sent", elapsed.as_secs_f64(), workflows as f64 / elapsed.as_secs_f64(), cents as f64 / 100.0);
    println!("   e.g. workflow `{example}` with input {input}");
    let (charges_before, _) = ledger_totals(&pool).await?;
    runtime.shutdown().await?; // stops the receiver, commits its offsets, leaves the group

    println!("== 2. replay: rewind group `{GROUP}` to offset 0 and launch again: all {ORDERS} orders are delivered again");
    rewind().await?;
    let runtime = Runtime::builder().database_url(demo_url()).kafka(settings).launch().await?;
    wait_until_consumed(&ends).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status").fetch_one(&pool).await?;
    let (charges, executions) = ledger_totals(&pool).await?;
    let sends: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE name = 'exactly::kafka::send'").fetch_one(&pool).await?;
    println!("   each redelivered message found its workflow by ID (e.g. `{example}`): {} new workflows", total - workflows);
    println!("   charges: {charges} ledger rows, {executions} executions (before the replay: {charges_before}); receipts sent: {sends}");
    runtime.shutdown().await?;

    if total == ORDERS as i64 && charges == ORDERS as i64 && executions == ORDERS as i64 && sends == ORDERS as i64 {
        println!("== summary: {ORDERS} messages, delivered twice, became {ORDERS} workflows; every order charged once, every receipt sent once");
        Ok(())
    } else {
        Err("the run does not add up: see above".into())
    }
}

/// Produces the orders, keyed by customer; returns each partition's end offset.
async fn produce_orders() -> Result<HashMap<i32, i64>, Box<dyn std::error::Error>> {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap()).create()?;
    let orders: Vec<(String, String)> = (0..ORDERS)
        .map(|i| {
            let order = Order { id: format!("o-{i:04}"), customer: format!("c-{:02}", i % CUSTOMERS), cents: 500 + (i as u64 * 37) % 9_500 };
            (order.customer.clone(), serde_json::to_string(&order).unwrap())
        })
        .collect();
    // Enqueue them all, then wait for the deliveries: awaiting one send at a time would send one at a time.
    let deliveries: Vec<_> = orders
        .iter()
        .map(|(key, json)| producer.send_result(FutureRecord::to(ORDERS_TOPIC).key(key).payload(json)).map_err(|(e, _)| e))
        .collect::<Result<_, _>>()?;
    let mut ends = HashMap::new();
    for delivery in deliveries {
        let delivered = delivery.await?.map_err(|(e, _)| e)?;
        let end = ends.entry(delivered.partition).or_insert(0);
        *end = (*end).max(delivered.offset + 1);
    }
    Ok(ends)
}

async fn ledger_totals(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as("SELECT count(*), COALESCE(sum(executions), 0)::bigint FROM public.ledger").fetch_one(pool).await
}

async fn wait_for(pool: &PgPool, count_sql: &'static str, want: i64) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while sqlx::query_scalar::<_, i64>(count_sql).fetch_one(pool).await? < want {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {want} rows of `{count_sql}`").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn group_client() -> Result<BaseConsumer, Box<dyn std::error::Error>> {
    Ok(ClientConfig::new().set("bootstrap.servers", bootstrap()).set("group.id", GROUP).create()?)
}

/// Commits offset 0 for every partition, as `kafka-consumer-groups --reset-offsets --to-earliest` would.
async fn rewind() -> Result<(), Box<dyn std::error::Error>> {
    let consumer = group_client()?;
    {
        let mut start = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            start.add_partition_offset(ORDERS_TOPIC, p, Offset::Offset(0))?;
        }
        consumer.commit(&start, CommitMode::Sync)?;
    } // lists go before their consumer
    Ok(())
}

/// Waits until the group has committed every partition's end offset again.
async fn wait_until_consumed(ends: &HashMap<i32, i64>) -> Result<(), Box<dyn std::error::Error>> {
    let consumer = group_client()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = {
            let mut wanted = TopicPartitionList::new();
            for p in 0..PARTITIONS {
                wanted.add_partition(ORDERS_TOPIC, p);
            }
            let committed = consumer.committed_offsets(wanted, Duration::from_secs(10))?;
            committed.elements().iter().all(|e| {
                let end = ends.get(&e.partition()).copied().unwrap_or(0);
                end == 0 || e.offset() == Offset::Offset(end)
            })
        };
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("timed out waiting for the replay to be consumed".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The demo's topics, made afresh (with the group's offsets) so that every run starts clean.
async fn fresh_topics() -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap()).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let _ = admin.delete_groups(&[GROUP], &options).await;
    let _ = admin.delete_topics(&[ORDERS_TOPIC, RECEIPTS_TOPIC], &options).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let topics = [
            NewTopic::new(ORDERS_TOPIC, PARTITIONS, TopicReplication::Fixed(1)),
            NewTopic::new(RECEIPTS_TOPIC, 1, TopicReplication::Fixed(1)),
        ];
        let results = admin.create_topics(&topics, &options).await?;
        // A topic being deleted still exists for a moment.
        if results.iter().all(Result::is_ok) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("cannot create the demo topics: {results:?}").into());
        }
        let _ = admin.delete_topics(&[ORDERS_TOPIC, RECEIPTS_TOPIC], &options).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn demo_url() -> String {
    let admin = std::env::var("DATABASE_URL").expect("set DATABASE_URL (dev/demo does) to a PostgreSQL server URL");
    let (base, query) = admin.split_once('?').map_or((admin.as_str(), ""), |(b, q)| (b, q));
    let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
    if query.is_empty() { format!("{root}/{DEMO_DATABASE}") } else { format!("{root}/{DEMO_DATABASE}?{query}") }
}

async fn fresh_database() -> Result<PgPool, Box<dyn std::error::Error>> {
    let mut conn = PgConnection::connect(&std::env::var("DATABASE_URL")?).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)"))).execute(&mut conn).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DEMO_DATABASE}"))).execute(&mut conn).await?;
    let pool = PgPool::connect(&demo_url()).await?;
    sqlx::raw_sql("CREATE TABLE public.ledger (order_id TEXT PRIMARY KEY, cents BIGINT NOT NULL, executions INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    Ok(pool)
}

//! The workflow demo: a worker fulfils 40 orders, each a workflow of three steps
//! with a side effect (a ledger row in PostgreSQL). The demo kills the worker with
//! SIGKILL in the middle of the run, starts it again, and shows that the restarted
//! worker resumed every unfinished order where it stopped: completed steps are
//! replayed from their checkpoints, not run again; only a step that was in flight
//! at the kill runs a second time (steps run at least once), and the ledger's key
//! (order, step) keeps its side effect single. Every workflow ends SUCCESS.
//!
//! Run it with `dev/demo` (which starts PostgreSQL), or with `DATABASE_URL` set:
//! `cargo run --example crash_and_resume`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use exactly::{Runtime, step, workflow};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgPool};

const ORDERS: u32 = 40;
const KILL_AFTER_STEPS: usize = 45;
const DEMO_DATABASE: &str = "exactly_demo";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u32,
    item: String,
    cents: u64,
}

/// The worker's connection for side effects, from the URL it was given.
fn ledger() -> &'static PgPool {
    static POOL: std::sync::OnceLock<PgPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| PgPool::connect_lazy(&std::env::var("EXACTLY_DATABASE_URL").unwrap()).unwrap())
}

/// A step's work (30 ms) and then its side effect, keyed by (order, step) so that a
/// step re-run after a crash cannot apply it twice; `executions` counts how often
/// the effect was attempted.
async fn record(order: u32, step: &str) -> exactly::Result<()> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    sqlx::query(
        "INSERT INTO public.ledger (order_id, step, executions) VALUES ($1, $2, 1)
         ON CONFLICT (order_id, step) DO UPDATE SET executions = ledger.executions + 1",
    )
    .bind(order as i32)
    .bind(step)
    .execute(ledger())
    .await
    .map_err(exactly::Error::msg)?;
    println!("ran {step} for order {order}");
    Ok(())
}

#[step]
async fn reserve(order: &Order) -> exactly::Result<()> {
    record(order.id, "reserve").await
}

#[step(retries = 3)]
async fn charge(order: &Order) -> exactly::Result<String> {
    record(order.id, "charge").await?;
    Ok(format!("receipt-{}-{}c", order.id, order.cents))
}

#[step]
async fn ship(order: &Order, receipt: &str) -> exactly::Result<String> {
    record(order.id, "ship").await?;
    Ok(format!("{} shipped with {receipt}", order.item))
}

#[workflow]
async fn fulfil(order: Order) -> exactly::Result<String> {
    // Each line is printed once the step's checkpoint is durable.
    reserve(&order).await?;
    println!("step reserve done for order {}", order.id);
    let receipt = charge(&order).await?;
    println!("step charge  done for order {}", order.id);
    let shipped = ship(&order, &receipt).await?;
    println!("step ship    done for order {}", order.id);
    Ok(shipped)
}

/// The worker: starts every order's workflow (an existing ID is not started again)
/// and waits for all of them. Launch first recovers what a killed worker left.
async fn worker() -> exactly::Result<()> {
    let runtime = Runtime::builder().executor_id("demo-worker").launch().await?;
    let mut tasks = Vec::new();
    for id in 0..ORDERS {
        let order = Order { id, item: format!("widget-{}", id % 7), cents: 100 + u64::from(id) };
        tasks.push(tokio::spawn(fulfil(order).with_id(format!("order-{id}")).into_future()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        task.await.expect("workflow task")?;
    }
    println!("worker: all {ORDERS} orders fulfilled");
    runtime.shutdown().await
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect("set DATABASE_URL (dev/demo does) to a PostgreSQL server URL")
}

fn demo_url(admin: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, ""), |(b, q)| (b, q));
    let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
    if query.is_empty() { format!("{root}/{DEMO_DATABASE}") } else { format!("{root}/{DEMO_DATABASE}?{query}") }
}

/// Runs the worker as a child process; kills it with SIGKILL after `kill_after`
/// checkpointed steps if given. Returns how many step bodies it ran.
fn run_worker(url: &str, kill_after: Option<usize>) -> usize {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("worker")
        .env("EXACTLY_DATABASE_URL", url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the worker");
    let (mut checkpointed, mut ran) = (0, 0);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("ran ") {
            ran += 1;
            continue;
        }
        println!("  | {line}");
        if line.starts_with("step ") {
            checkpointed += 1;
            if kill_after == Some(checkpointed) {
                child.kill().expect("SIGKILL the worker");
                println!("  X worker killed with SIGKILL after {checkpointed} checkpointed steps");
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    if kill_after.is_none() {
        assert!(status.success(), "the restarted worker failed: {status}");
    }
    ran
}

async fn orchestrate() -> Result<(), Box<dyn std::error::Error>> {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)")))
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DEMO_DATABASE}"))).execute(&mut conn).await?;
    let url = demo_url(&admin);
    let pool = PgPool::connect(&url).await?;
    sqlx::raw_sql(
        "CREATE TABLE public.ledger (order_id INTEGER, step TEXT, executions INTEGER NOT NULL, PRIMARY KEY (order_id, step))",
    )
    .execute(&pool)
    .await?;

    println!("== run 1: fulfil {ORDERS} orders (3 steps each); the worker is killed mid-run");
    run_worker(&url, Some(KILL_AFTER_STEPS));
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE status = 'PENDING'").fetch_one(&pool).await?;
    let done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE status = 'SUCCESS'").fetch_one(&pool).await?;
    println!("== after the crash: {done} orders SUCCESS, {pending} PENDING in PostgreSQL");

    println!("== run 2: restart the worker; launch recovers the PENDING workflows");
    let resumed_steps = run_worker(&url, None);

    let (effects, executions): (i64, i64) =
        sqlx::query_as("SELECT count(*), COALESCE(sum(executions), 0) FROM public.ledger").fetch_one(&pool).await?;
    let success: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE status = 'SUCCESS'").fetch_one(&pool).await?;
    let recovered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE recovery_attempts > 1").fetch_one(&pool).await?;
    let checkpoints: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs").fetch_one(&pool).await?;
    let rerun = executions - effects;
    println!();
    println!("== summary");
    println!("   workflows SUCCESS:             {success} of {ORDERS}");
    println!("   workflows resumed after kill:  {recovered}");
    println!("   step checkpoints:              {checkpoints} (one per order and step)");
    println!("   ledger side effects:           {effects} (one per order and step)");
    println!("   step bodies run by the restart: {resumed_steps} (replayed steps do not run)");
    println!("   side effects attempted twice:  {rerun} (a step whose effect ran but whose checkpoint was not yet");
    println!("                                  committed at the kill runs again; its key keeps the effect single)");
    let expected = i64::from(ORDERS * 3);
    if success == i64::from(ORDERS) && effects == expected && checkpoints == expected && rerun <= recovered {
        println!("   => no order lost, no step recorded twice, completed steps never re-run");
        Ok(())
    } else {
        Err("the run does not add up: see the summary".into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        return Ok(worker().await?);
    }
    orchestrate().await
}

//! Fencing under a pause, with real processes: two workers on one database with a
//! 2 s executor timeout; worker A runs eight workflows whose first step takes 4 s
//! (four wait in one long call, four poll in short ticks) and is then stopped with
//! SIGSTOP for 6 s, past the timeout: worker B declares A dead and runs the
//! workflows again. When A resumes (SIGCONT), its step bodies may still finish, but
//! nothing A writes may land: every workflow ends SUCCESS once, with B's outcome,
//! and its checkpoints all come from B's execution. The test prints how long A's
//! step bodies overlapped B's.

mod common;

use std::process::Command;
use std::time::Duration;

use exactly::{Runtime, step, workflow};

const WORKFLOWS: usize = 8;

fn pool() -> &'static sqlx::PgPool {
    static POOL: std::sync::OnceLock<sqlx::PgPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let url = std::env::var("TEST_DATABASE_URL").expect("children get the test database URL");
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_lazy(&url).unwrap()
    })
}

/// Records a moment of a step body's life (`began`, `ended`) in this process.
async fn mark(event: &str) {
    sqlx::query("INSERT INTO public.step_runs (workflow_id, pid, event) VALUES ($1, $2, $3)")
        .bind(exactly::workflow_id().unwrap())
        .bind(std::process::id() as i32)
        .bind(event)
        .execute(pool())
        .await
        .unwrap();
}

/// Four seconds, in one call or in short ticks.
#[step]
async fn slow(polling: bool) -> exactly::Result<u32> {
    mark("began").await;
    if polling {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    mark("ended").await;
    Ok(std::process::id())
}

#[step]
async fn stamp() -> exactly::Result<u32> {
    Ok(std::process::id())
}

#[workflow]
async fn paused_work(polling: bool) -> exactly::Result<(u32, u32)> {
    let first = slow(polling).await?;
    let second = stamp().await?;
    Ok((first, second))
}

async fn worker(role: &str) {
    let runtime = Runtime::builder()
        .executor_id(role)
        .heartbeat_interval(Duration::from_millis(200))
        .executor_timeout(Duration::from_secs(2))
        .dispatch_poll_interval(Duration::from_millis(100))
        .launch()
        .await
        .expect("worker launch");
    if role == "worker-a" {
        for n in 0..WORKFLOWS {
            paused_work(n % 2 == 1).with_id(format!("fenced-{n}")).start().await.unwrap();
        }
    }
    println!("READY");
    runtime.until_shutdown_signal().await.unwrap();
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn a_paused_executor_writes_nothing_after_its_successor_took_over() {
    if let Some(role) = common::child_role() {
        return worker(&role).await;
    }
    let url = common::fresh_database("exactly_test_fencing").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE public.step_runs (workflow_id TEXT NOT NULL, pid INT NOT NULL, event TEXT NOT NULL,
                                        at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let envs = [("EXACTLY_DATABASE_URL", url.as_str()), ("TEST_DATABASE_URL", url.as_str())];
    let test = "a_paused_executor_writes_nothing_after_its_successor_took_over";
    let mut a = common::KillOnDrop(common::spawn_child(test, "worker-a", &envs));
    common::wait_for_marker(&mut a.0, "READY", Duration::from_secs(60));
    let began = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM public.step_runs WHERE event = 'began'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    common::wait_until(Duration::from_secs(30), "every first step began on A", || async {
        began().await == WORKFLOWS as i64
    })
    .await;
    let mut b = common::KillOnDrop(common::spawn_child(test, "worker-b", &envs));
    common::wait_for_marker(&mut b.0, "READY", Duration::from_secs(60));
    let (pid_a, pid_b) = (a.0.id(), b.0.id());

    signal(pid_a, "-STOP");
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal(pid_a, "-CONT");

    let done = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM exactly.workflow_status WHERE status = 'SUCCESS'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    common::wait_until(Duration::from_secs(60), "every workflow SUCCESS", || async { done().await == WORKFLOWS as i64 })
        .await;
    // Whatever A still had in flight has had time to try its writes.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Each workflow's outcome and checkpoints come from one execution: that of the
    // executor its row names. A's fenced executions wrote nothing; A may only own a
    // workflow it claimed back from the queue after it resumed (a new execution).
    let rows: Vec<(String, String, String, i32, serde_json::Value)> = sqlx::query_as(
        "SELECT workflow_id, status, executor_id, recovery_attempts, output FROM exactly.workflow_status ORDER BY workflow_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), WORKFLOWS);
    let mut taken_over = Vec::new();
    for (id, status, executor, attempts, output) in &rows {
        assert_eq!(status, "SUCCESS", "{id}");
        let owner = match executor.as_str() {
            "worker-b" => {
                taken_over.push(id.clone());
                pid_b
            }
            "worker-a" => {
                assert!(*attempts >= 3, "{id}: A's outcome must come from an execution it began after B's, not its fenced one");
                pid_a
            }
            other => panic!("{id}: executor {other}"),
        };
        assert_eq!(output, &serde_json::json!([owner, owner]), "{id}: the outcome of its owner's execution alone");
        let checkpoints: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT output FROM exactly.operation_outputs WHERE workflow_id = $1 ORDER BY step_id")
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(checkpoints, [serde_json::json!(owner), serde_json::json!(owner)], "{id}: checkpointed by its owner only");
    }
    assert!(!taken_over.is_empty(), "B took no workflow over");

    // How long A's step bodies ran beside B's: only a body already in flight when
    // the pause began can overlap its successor.
    let overlap_ms: Option<f64> = sqlx::query_scalar(
        "SELECT max(extract(epoch FROM a.at - b.at) * 1000)::float8
         FROM public.step_runs a JOIN public.step_runs b USING (workflow_id)
         WHERE a.pid = $1 AND a.event = 'ended' AND b.pid = $2 AND b.event = 'began' AND a.at > b.at",
    )
    .bind(pid_a as i32)
    .bind(pid_b as i32)
    .fetch_one(&pool)
    .await
    .unwrap();
    let a_began: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.step_runs WHERE pid = $1 AND event = 'began' AND workflow_id = ANY($2)",
    )
    .bind(pid_a as i32)
    .bind(&taken_over)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(a_began, taken_over.len() as i64, "A began no step of a taken-over workflow after it resumed");
    eprintln!("fencing: A's step bodies overlapped B's by at most {} ms", overlap_ms.unwrap_or(0.0).round());
    drop((a, b));
}

//! Several processes on one database, and launch configured from the environment:
//! the same workflow ID started by three processes at once runs once; a schema
//! named by `EXACTLY_SCHEMA` holds every table; `EXACTLY_DATABASE_URL` wins over
//! `DATABASE_URL`; shutdown gives up on a step that outlives its timeout. Each case
//! runs this test binary again as child processes (one runtime per process).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use exactly::{Runtime, step, workflow};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The child's own pool on the test database, named apart from the runtime's
/// variables, which some cases clear or point elsewhere.
fn pool() -> &'static sqlx::PgPool {
    static POOL: std::sync::OnceLock<sqlx::PgPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let url = std::env::var("TEST_DATABASE_URL").expect("children get the test database URL");
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_lazy(&url).unwrap()
    })
}

#[step]
async fn record_winner() -> exactly::Result<u32> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "step").await;
    Ok(std::process::id())
}

#[workflow]
async fn contested() -> exactly::Result<u32> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "body").await;
    // Long enough for the other processes' starts to arrive while this one runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    record_winner().await
}

#[step]
async fn outlives_shutdown() -> exactly::Result<()> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "long-step-began").await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    Ok(())
}

#[workflow]
async fn long_running() -> exactly::Result<()> {
    outlives_shutdown().await
}

/// The children's part. Everything but the role comes from the environment,
/// launch's configuration included.
async fn child_main(role: &str) {
    let rt = Runtime::builder().launch().await.expect("child launch");
    let id = std::env::var("WORKFLOW_ID").unwrap();
    match role {
        "contend" => {
            println!("READY");
            // Start when the parent says go, at the same instant as the others.
            let go = PathBuf::from(std::env::var("GO_FILE").unwrap());
            while !go.exists() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let winner = contested().with_id(&id).await.unwrap();
            sqlx::query("INSERT INTO public.answers (process, answer) VALUES ($1, $2)")
                .bind(std::process::id() as i64)
                .bind(winner as i64)
                .execute(pool())
                .await
                .unwrap();
        }
        "run" => {
            contested().with_id(&id).await.unwrap();
            println!("DONE");
        }
        "shutdown" => {
            long_running().with_id(&id).start().await.unwrap();
            common::wait_until(Duration::from_secs(30), "the long step began", || async {
                common::side_effect_count(pool(), &id, "long-step-began").await == 1
            })
            .await;
            let began = Instant::now();
            rt.shutdown().await.unwrap();
            // The timeout is 1 s: the step's remaining 120 s must not be waited for.
            let took = began.elapsed();
            assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
            println!("SHUT_DOWN_IN_TIME");
            return;
        }
        other => panic!("unknown child role {other}"),
    }
    rt.shutdown().await.unwrap();
}

async fn test_database(name: &str) -> (String, sqlx::PgPool) {
    let url = common::fresh_database(name).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    common::create_side_effects(&pool).await;
    sqlx::raw_sql("CREATE TABLE public.answers (process BIGINT PRIMARY KEY, answer BIGINT NOT NULL)")
    .execute(&pool)
    .await
    .unwrap();
    (url, pool)
}

async fn status_in(pool: &sqlx::PgPool, schema: &str, id: &str) -> Option<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT status FROM \"{schema}\".workflow_status WHERE workflow_id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_id_started_by_three_processes_at_once_runs_once() {
    if let Some(role) = common::child_role() {
        return child_main(&role).await;
    }
    let (url, pool) = test_database("exactly_test_contend").await;
    let id = "contended-1";
    let go = std::env::temp_dir().join(format!("exactly-contend-go-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let go_text = go.to_str().unwrap();
    let mut children: Vec<_> = ["contend-a", "contend-b", "contend-c"]
        .into_iter()
        .map(|executor| {
            let env = [("TEST_DATABASE_URL", url.as_str()), ("EXACTLY_DATABASE_URL", url.as_str()), ("EXACTLY_EXECUTOR_ID", executor), ("WORKFLOW_ID", id), ("GO_FILE", go_text)];
            common::spawn_child("the_same_id_started_by_three_processes_at_once_runs_once", "contend", &env)
        })
        .collect();
    for child in &mut children {
        common::wait_for_marker(child, "READY", CHILD_TIMEOUT);
    }
    std::fs::write(&go, b"go").unwrap();
    for child in &mut children {
        assert!(common::wait_exit(child, CHILD_TIMEOUT).success());
    }
    let _ = std::fs::remove_file(&go);

    assert_eq!(common::side_effect_count(&pool, id, "body").await, 1, "the workflow body ran in more than one process");
    assert_eq!(common::side_effect_count(&pool, id, "step").await, 1);
    assert_eq!(status_in(&pool, "exactly", id).await.as_deref(), Some("SUCCESS"));
    let answers: Vec<(i64, i64)> = sqlx::query_as("SELECT process, answer FROM public.answers").fetch_all(&pool).await.unwrap();
    assert_eq!(answers.len(), 3, "every process got an answer: {answers:?}");
    assert!(answers.iter().all(|&(_, answer)| answer == answers[0].1), "every process got the one recorded result: {answers:?}");
    assert!(answers.iter().any(|&(process, answer)| process == answer), "the result names one of the three processes: {answers:?}");
}

#[tokio::test]
async fn a_schema_named_in_the_environment_holds_every_table() {
    if let Some(role) = common::child_role() {
        return child_main(&role).await;
    }
    let (url, pool) = test_database("exactly_test_schema").await;
    let id = "in-billing-schema";
    let env = [("TEST_DATABASE_URL", url.as_str()), ("EXACTLY_DATABASE_URL", url.as_str()), ("EXACTLY_SCHEMA", "billing_workflows"), ("WORKFLOW_ID", id)];
    let mut child = common::spawn_child("a_schema_named_in_the_environment_holds_every_table", "run", &env);
    common::wait_for_marker(&mut child, "DONE", CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());

    assert_eq!(status_in(&pool, "billing_workflows", id).await.as_deref(), Some("SUCCESS"));
    let steps: i64 = sqlx::query_scalar("SELECT count(*) FROM billing_workflows.operation_outputs WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(steps, 1);
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT table_schema::text FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(schemas, ["billing_workflows", "public"], "no table outside the named schema (and the test's own)");
}

#[tokio::test]
async fn exactly_database_url_wins_over_database_url() {
    if let Some(role) = common::child_role() {
        return child_main(&role).await;
    }
    let (url, pool) = test_database("exactly_test_env_url").await;
    let test = "exactly_database_url_wins_over_database_url";
    // DATABASE_URL names a server that does not exist: launching at all proves it is unused.
    let unused = "postgres://postgres:postgres@127.0.0.1:1/nowhere?sslmode=disable";
    let env = [("TEST_DATABASE_URL", url.as_str()), ("EXACTLY_DATABASE_URL", url.as_str()), ("DATABASE_URL", unused), ("WORKFLOW_ID", "through-exactly-url")];
    let mut child = common::spawn_child(test, "run", &env);
    common::wait_for_marker(&mut child, "DONE", CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());
    assert_eq!(status_in(&pool, "exactly", "through-exactly-url").await.as_deref(), Some("SUCCESS"));

    // Without EXACTLY_DATABASE_URL (cleared: the parent's may be set), DATABASE_URL is used.
    let env = [("TEST_DATABASE_URL", url.as_str()), ("EXACTLY_DATABASE_URL", ""), ("DATABASE_URL", url.as_str()), ("WORKFLOW_ID", "through-database-url")];
    let mut child = common::spawn_child(test, "run", &env);
    common::wait_for_marker(&mut child, "DONE", CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());
    assert_eq!(status_in(&pool, "exactly", "through-database-url").await.as_deref(), Some("SUCCESS"));
}

#[tokio::test]
async fn shutdown_gives_up_on_a_step_that_outlives_its_timeout() {
    if let Some(role) = common::child_role() {
        return child_main(&role).await;
    }
    let (url, pool) = test_database("exactly_test_shutdown_bound").await;
    let id = "outlives-shutdown";
    let env = [("TEST_DATABASE_URL", url.as_str()), ("EXACTLY_DATABASE_URL", url.as_str()), ("EXACTLY_SHUTDOWN_TIMEOUT_MS", "1000"), ("WORKFLOW_ID", id)];
    let mut child = common::spawn_child("shutdown_gives_up_on_a_step_that_outlives_its_timeout", "shutdown", &env);
    common::wait_for_marker(&mut child, "SHUT_DOWN_IN_TIME", CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());
    assert_eq!(common::side_effect_count(&pool, id, "long-step-began").await, 1);
    // The abandoned step recorded nothing; the workflow waits for recovery.
    assert_eq!(status_in(&pool, "exactly", id).await.as_deref(), Some("PENDING"));
    let steps: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(steps, 0);
}

//! A PostgreSQL restart in the middle of running workflows: checkpoint writes wait
//! and retry until the database is back; no workflow fails, none runs a step twice.
//! And a launch while the server drops connections (as it does while restarting)
//! waits for it, within the connect timeout.
//!
//! In a binary of its own (cargo runs test binaries one after another), because
//! it restarts the server every test uses. It needs the server started by
//! `dev/services up`, which it restarts with `dev/services restart postgres`.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use exactly::{WorkflowState, step, workflow};

static EXECUTIONS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn executed(key: String) {
    *EXECUTIONS.lock().unwrap().get_or_insert_with(HashMap::new).entry(key).or_default() += 1;
}

#[step]
async fn stage(n: u32, name: &'static str) -> exactly::Result<u32> {
    executed(format!("{}/{name}", exactly::workflow_id().unwrap()));
    Ok(n)
}

#[workflow]
async fn through_outage(n: u32) -> exactly::Result<u32> {
    let a = stage(n, "before").await?;
    tokio::time::sleep(Duration::from_millis(300 + u64::from(n % 10) * 100)).await;
    let b = stage(n, "after").await?;
    Ok(a + b)
}


#[tokio::test]
async fn workflows_wait_through_a_database_restart_and_finish_once() {
    if common::child_role().is_some() {
        return;
    }
    let rt = &common::shared("exactly_test_outage").runtime;
    const N: u32 = 40;
    let tasks: Vec<_> = (0..N)
        .map(|n| tokio::spawn(through_outage(n).with_id(format!("outage-{n}")).into_future()))
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    tokio::task::spawn_blocking(|| common::restart_service("postgres")).await.unwrap();

    for (n, task) in tasks.into_iter().enumerate() {
        let result = tokio::time::timeout(Duration::from_secs(60), task).await.expect("workflow stuck").unwrap();
        assert_eq!(result.unwrap(), 2 * n as u32);
    }
    let executions = EXECUTIONS.lock().unwrap().clone().unwrap();
    for n in 0..N {
        for stage in ["before", "after"] {
            assert_eq!(executions.get(&format!("outage-{n}/{stage}")), Some(&1), "outage-{n}/{stage}");
        }
        let status = rt.status(&format!("outage-{n}")).await.unwrap().unwrap();
        assert_eq!(status.state, WorkflowState::Success);
    }
    let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM operation_outputs WHERE workflow_id LIKE 'outage-%'")
        .fetch_one(rt.pool())
        .await
        .unwrap();
    assert_eq!(checkpoints, 2 * i64::from(N));
}

/// `host:port` of a `postgres://user:password@host:port/db` URL.
fn authority(url: &str) -> &str {
    let rest = &url[url.find('@').map_or(url.find("://").unwrap() + 3, |at| at + 1)..];
    &rest[..rest.find('/').unwrap_or(rest.len())]
}

/// A TCP front for the real PostgreSQL that, until `opens`, accepts connections
/// and drops them at once (as a restarting server does); then it forwards them.
async fn flaky_front(opens: tokio::time::Instant) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = authority(&common::admin_url()).to_owned();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            if tokio::time::Instant::now() < opens {
                drop(client); // reset before the startup handshake
                continue;
            }
            let server = server.clone();
            tokio::spawn(async move {
                let mut upstream = tokio::net::TcpStream::connect(&server).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_launch_while_the_database_drops_connections_waits_for_it() {
    if common::child_role().is_some() {
        let runtime = exactly::Runtime::builder()
            .executor_id("late")
            .connect_timeout(Duration::from_secs(30))
            .launch()
            .await
            .expect("launch once the server answers");
        println!("LAUNCHED");
        return runtime.shutdown().await.unwrap();
    }
    let url = common::fresh_database("exactly_test_late_launch").await;
    let port = flaky_front(tokio::time::Instant::now() + Duration::from_secs(2)).await;
    let through_front = url.replacen(authority(&url), &format!("127.0.0.1:{port}"), 1);
    let test = "a_launch_while_the_database_drops_connections_waits_for_it";
    let mut child = common::spawn_child(test, "late", &[("EXACTLY_DATABASE_URL", &through_front)]);
    let status = tokio::task::spawn_blocking(move || {
        let status = common::wait_exit(&mut child, Duration::from_secs(60));
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        (status, stdout)
    })
    .await
    .unwrap();
    assert!(status.0.success() && status.1.contains("LAUNCHED"), "launch gave up while connections were dropped: {}", status.1);
}

/// The test's own pool in a child, on connections named apart from the runtime's
/// (the test terminates every other connection to the database).
fn side_effects_pool() -> &'static sqlx::PgPool {
    static POOL: std::sync::OnceLock<sqlx::PgPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let options: sqlx::postgres::PgConnectOptions = std::env::var("EXACTLY_DATABASE_URL").unwrap().parse().unwrap();
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_lazy_with(options.application_name(SIDE_EFFECTS))
    })
}

#[workflow(name = "outage.recovered")]
async fn recovered(n: u32) -> exactly::Result<u32> {
    common::side_effect(side_effects_pool(), &exactly::workflow_id().unwrap(), "body").await;
    Ok(n)
}

const SIDE_EFFECTS: &str = "exactly-test-side-effects";
const RECOVERED: i64 = 300;

async fn successes(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE status = 'SUCCESS'").fetch_one(pool).await.unwrap()
}

/// The children: `seed` creates the schema; `recover` is executor `recovering`,
/// whose launch recovers the workflows the parent left PENDING for it.
async fn recovery_child(role: &str) {
    let executor = if role == "seed" { "seed" } else { "recovering" };
    let runtime = exactly::Runtime::builder()
        .executor_id(executor)
        .connect_timeout(Duration::from_secs(30))
        .launch()
        .await
        .expect("launch through dropped connections");
    println!("LAUNCHED");
    if role == "recover" {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while successes(side_effects_pool()).await < RECOVERED {
            assert!(tokio::time::Instant::now() < deadline, "the recovered workflows did not all finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_connections_drop_mid_recovery_tries_again_and_runs_each_workflow_once() {
    if let Some(role) = common::child_role() {
        return recovery_child(&role).await;
    }
    let test = "a_launch_whose_connections_drop_mid_recovery_tries_again_and_runs_each_workflow_once";
    let url = common::fresh_database("exactly_test_recovery_outage").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut seed = common::KillOnDrop(common::spawn_child(test, "seed", &[("EXACTLY_DATABASE_URL", &url)]));
    assert!(tokio::task::block_in_place(|| common::wait_exit(&mut seed.0, Duration::from_secs(60))).success());
    // RECOVERED workflows left PENDING by executor `recovering`.
    common::create_side_effects(&pool).await;
    sqlx::query(
        "INSERT INTO exactly.workflow_status (workflow_id, name, status, inputs, executor_id, app_version, recovery_attempts)
         SELECT 'recovered-' || n, 'outage.recovered', 'PENDING', jsonb_build_array(n), 'recovering', '0', 1
         FROM generate_series(1, $1) AS n",
    )
    .bind(RECOVERED)
    .execute(&pool)
    .await
    .unwrap();

    let mut child = common::KillOnDrop(common::spawn_child(test, "recover", &[("EXACTLY_DATABASE_URL", &url)]));
    // Once recovery has begun (attempts raised), drop every connection of the child's
    // runtime, a few times over: it is reading the recovered workflows' steps then.
    common::wait_until(Duration::from_secs(60), "recovery begins", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM exactly.workflow_status WHERE recovery_attempts > 1")
            .fetch_one(&pool)
            .await
            .unwrap()
            > 0
    })
    .await;
    let mut dropped = 0;
    for _ in 0..5 {
        dropped += sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity, pg_terminate_backend(pid)
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> $1",
        )
        .bind(SIDE_EFFECTS)
        .fetch_one(&pool)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(dropped > 0, "no connection of the launching runtime was dropped");
    let (status, stdout) = tokio::task::block_in_place(|| {
        let status = common::wait_exit(&mut child.0, Duration::from_secs(90));
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut stdout).unwrap();
        (status, stdout)
    });
    assert!(status.success() && stdout.contains("LAUNCHED"), "launch failed when its connections dropped: {stdout}");
    assert_eq!(successes(&pool).await, RECOVERED);
    let twice: Vec<(String, i32)> =
        sqlx::query_as("SELECT workflow_id, n FROM public.side_effects WHERE n <> 1").fetch_all(&pool).await.unwrap();
    assert!(twice.is_empty(), "a recovered workflow's body ran twice in one live process: {twice:?}");
    let ran: i64 = sqlx::query_scalar("SELECT count(*) FROM public.side_effects").fetch_one(&pool).await.unwrap();
    assert_eq!(ran, RECOVERED);
}

//! Durable queues against the real PostgreSQL, with three worker processes sharing
//! one database: this test process and two children (this binary run again in the
//! `worker` role). Limits are checked from what the workflows recorded, not trusted.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exactly::{Error, Queue, Runtime, step, workflow};

exactly::queue!(static CONCURRENCY_3 = "q_concurrency", concurrency = 3);
exactly::queue!(static RATE_10 = "q_rate", rate_limit = (10, Duration::from_secs(1)));
exactly::queue!(static PARTITIONED = "q_partition", partition_concurrency = 1);
exactly::queue!(static SERIAL = "q_priority", concurrency = 1);
exactly::queue!(static DEDUP = "q_dedup", concurrency = 1);
exactly::queue!(static TWO_PER_PROCESS = "q_worker", worker_concurrency = 2);

/// Known only to the children of the kill test, so only they dispatch it.
const VICTIM_QUEUE: &str = "q_victim";

const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

fn shared() -> &'static common::Shared {
    common::shared("exactly_test_queues")
}

fn in_child() -> bool {
    common::child_role().is_some()
}

/// The test database. In this process: the shared runtime's pool, which lives on
/// the shared runtime's thread (a pool opened inside one `#[tokio::test]` dies with
/// that test's runtime). In a child, which runs one test: a pool of its own.
fn pool() -> &'static sqlx::PgPool {
    if !in_child() {
        return shared().runtime.pool();
    }
    common::child_pool()
}

fn micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// Works for `ms` and records when it ran, in which process.
#[step]
async fn work(ms: u64) -> exactly::Result<()> {
    let started = micros();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    sqlx::query("INSERT INTO public.runs (workflow_id, pid, started_us, ended_us) VALUES ($1, $2, $3, $4)")
        .bind(exactly::workflow_id().unwrap())
        .bind(std::process::id() as i32)
        .bind(started)
        .bind(micros())
        .execute(pool())
        .await
        .map_err(Error::msg)?;
    Ok(())
}

#[workflow]
async fn timed(ms: u64) -> exactly::Result<()> {
    work(ms).await
}

#[step]
async fn effect(name: &str) -> exactly::Result<()> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), name).await;
    Ok(())
}

#[workflow]
async fn two_effects(ms: u64) -> exactly::Result<()> {
    effect("first").await?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    effect("second").await
}

async fn create_tables() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS public.runs (
                 workflow_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, started_us BIGINT NOT NULL, ended_us BIGINT NOT NULL)",
        )
        .execute(shared().runtime.pool())
        .await
        .unwrap();
    })
    .await;
}

async fn successes(pool: &sqlx::PgPool, prefix: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE workflow_id LIKE $1 || '%' AND status = 'SUCCESS'")
        .bind(prefix)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_for_successes(prefix: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
    while successes(pool(), prefix).await < n {
        assert!(tokio::time::Instant::now() < deadline, "workflows `{prefix}*` did not all finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (start, end) of each recorded run of the workflows with this prefix.
async fn intervals(prefix: &str) -> Vec<(String, i64, i64, i32)> {
    sqlx::query_as("SELECT workflow_id, started_us, ended_us, pid FROM public.runs WHERE workflow_id LIKE $1 || '%'")
        .bind(prefix)
        .fetch_all(pool())
        .await
        .unwrap()
}


/// The child's part: a worker that runs until `n` workflows with `prefix` succeeded.
async fn worker_main(role: &str) {
    let executor = std::env::var("CHILD_EXECUTOR").unwrap();
    let mut builder = Runtime::builder()
        .executor_id(&executor)
        .heartbeat_interval(Duration::from_millis(200))
        .executor_timeout(Duration::from_millis(1000));
    if role != "worker" {
        builder = builder.queue(Queue::new(VICTIM_QUEUE));
    }
    if role == "takeover" {
        builder = builder.heartbeat_interval(Duration::from_millis(300)).executor_timeout(Duration::from_secs(60));
    }
    let rt = builder.launch().await.expect("child launch");
    if role == "takeover" {
        return takeover_main(rt, &executor).await;
    }
    let prefix = std::env::var("WAIT_PREFIX").unwrap();
    let n: i64 = std::env::var("WAIT_COUNT").unwrap().parse().unwrap();
    if role == "victim" {
        for i in 0..n {
            two_effects(3_000).with_id(format!("{prefix}{i}")).with_queue(VICTIM_QUEUE).start().await.unwrap();
        }
        // Hold them: every first step recorded, every workflow still PENDING here.
        loop {
            let first: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM exactly.operation_outputs WHERE workflow_id LIKE $1 || '%' AND step_id = 0",
            )
            .bind(&prefix)
            .fetch_one(pool())
            .await
            .unwrap();
            if first == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("HOLDING");
        std::future::pending::<()>().await;
    }
    println!("WORKER_READY");
    wait_for_successes(&prefix, n).await;
    println!("WORKER_DONE");
    rt.shutdown().await.unwrap();
}

/// Starts two worker children that stop once `n` workflows with `prefix` succeeded.
fn spawn_workers(test: &str, prefix: &str, n: usize) -> Vec<std::process::Child> {
    let count = n.to_string();
    (0..2)
        .map(|i| {
            let executor = format!("{prefix}worker-{i}");
            let env = [
                ("EXACTLY_DATABASE_URL", shared().url.as_str()),
                ("CHILD_EXECUTOR", executor.as_str()),
                ("WAIT_PREFIX", prefix),
                ("WAIT_COUNT", count.as_str()),
            ];
            let mut child = common::spawn_child(test, "worker", &env);
            common::wait_for_marker(&mut child, "WORKER_READY", CHILD_TIMEOUT);
            child
        })
        .collect()
}

fn finish_workers(children: Vec<std::process::Child>) {
    for mut child in children {
        assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());
    }
}

#[test]
fn global_concurrency_holds_across_three_processes() {
    common::block_on(async {
        if let Some(role) = common::child_role() {
            return worker_main(&role).await;
        }
        create_tables().await;
        let (prefix, n) = ("conc-", 24);
        let workers = spawn_workers("global_concurrency_holds_across_three_processes", prefix, n);
        for i in 0..n {
            timed(150).with_id(format!("{prefix}{i}")).on_queue(&CONCURRENCY_3).start().await.unwrap();
        }
        wait_for_successes(prefix, n as i64).await;
        finish_workers(workers);
        let runs = intervals(prefix).await;
        assert_eq!(runs.len(), n);
        let overlap = common::max_overlap(&runs.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>());
        assert!(overlap <= 3, "{overlap} workflows ran at once on a queue with concurrency 3");
        assert!(overlap >= 2, "the queue never ran workflows in parallel (max overlap {overlap})");
        let processes: std::collections::HashSet<i32> = runs.iter().map(|r| r.3).collect();
        assert!(processes.len() >= 2, "only one process ran work: {processes:?}");
    })
}

#[test]
fn a_rate_limit_of_ten_per_second_holds_in_every_window() {
    common::block_on(async {
        if let Some(role) = common::child_role() {
            return worker_main(&role).await;
        }
        create_tables().await;
        let (prefix, n) = ("rate-", 32);
        let workers = spawn_workers("a_rate_limit_of_ten_per_second_holds_in_every_window", prefix, n);
        for i in 0..n {
            timed(5).with_id(format!("{prefix}{i}")).on_queue(&RATE_10).start().await.unwrap();
        }
        wait_for_successes(prefix, n as i64).await;
        finish_workers(workers);
        // Dispatch times as the database recorded them.
        let mut starts: Vec<i64> = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM started_at) * 1000000)::bigint FROM exactly.workflow_status WHERE workflow_id LIKE $1 || '%'",
        )
        .bind(prefix)
        .fetch_all(pool())
        .await
        .unwrap();
        starts.sort();
        assert_eq!(starts.len(), n);
        for (i, start) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().take_while(|s| **s < start + 1_000_000).count();
            assert!(in_window <= 10, "{in_window} starts within one second from the {i}th");
        }
        let span = starts.last().unwrap() - starts.first().unwrap();
        assert!(span >= 2_000_000, "32 starts at 10/s need at least 3 windows, took {span} us");
    })
}

#[test]
fn partition_concurrency_one_is_serial_per_key_and_parallel_across_keys() {
    common::block_on(async {
        if let Some(role) = common::child_role() {
            return worker_main(&role).await;
        }
        create_tables().await;
        let (prefix, keys, per_key) = ("part-", 4, 5);
        let workers = spawn_workers("partition_concurrency_one_is_serial_per_key_and_parallel_across_keys", prefix, keys * per_key);
        for i in 0..per_key {
            for key in 0..keys {
                timed(80)
                    .with_id(format!("{prefix}{key}-{i}"))
                    .on_queue(&PARTITIONED)
                    .with_partition_key(format!("key-{key}"))
                    .start()
                    .await
                    .unwrap();
            }
        }
        wait_for_successes(prefix, (keys * per_key) as i64).await;
        finish_workers(workers);
        let runs = intervals(prefix).await;
        assert_eq!(runs.len(), keys * per_key);
        for key in 0..keys {
            let mine: Vec<_> =
                runs.iter().filter(|r| r.0.starts_with(&format!("{prefix}{key}-"))).map(|r| (r.1, r.2)).collect();
            assert_eq!(common::max_overlap(&mine), 1, "partition key-{key} ran two workflows at once");
        }
        let all: Vec<_> = runs.iter().map(|r| (r.1, r.2)).collect();
        assert!(common::max_overlap(&all) >= 2, "different partitions never ran in parallel");
    })
}

#[test]
fn worker_concurrency_holds_in_each_process() {
    common::block_on(async {
        if let Some(role) = common::child_role() {
            return worker_main(&role).await;
        }
        create_tables().await;
        let (prefix, n) = ("worker-", 18);
        let workers = spawn_workers("worker_concurrency_holds_in_each_process", prefix, n);
        for i in 0..n {
            timed(100).with_id(format!("{prefix}{i}")).on_queue(&TWO_PER_PROCESS).start().await.unwrap();
        }
        wait_for_successes(prefix, n as i64).await;
        finish_workers(workers);
        let runs = intervals(prefix).await;
        assert_eq!(runs.len(), n);
        let pids: std::collections::HashSet<i32> = runs.iter().map(|r| r.3).collect();
        for pid in &pids {
            let mine: Vec<_> = runs.iter().filter(|r| r.3 == *pid).map(|r| (r.1, r.2)).collect();
            assert!(common::max_overlap(&mine) <= 2, "process {pid} ran {} at once with worker_concurrency 2", common::max_overlap(&mine));
        }
        let all: Vec<_> = runs.iter().map(|r| (r.1, r.2)).collect();
        assert!(common::max_overlap(&all) > 2, "with several processes more than 2 run at once in all");
    })
}

#[test]
fn lower_priority_runs_first() {
    common::block_on(async {
        create_tables().await;
        let prefix = "prio-";
        // The blocker holds the only slot while the others are enqueued.
        timed(500).with_id(format!("{prefix}blocker")).on_queue(&SERIAL).start().await.unwrap();
        for priority in [5, 1, 4, 2, 3] {
            timed(5).with_id(format!("{prefix}{priority}")).on_queue(&SERIAL).with_priority(priority).start().await.unwrap();
        }
        wait_for_successes(prefix, 6).await;
        let order: Vec<String> = sqlx::query_scalar(
            "SELECT workflow_id FROM exactly.workflow_status WHERE workflow_id LIKE $1 || '%' ORDER BY started_at",
        )
        .bind(prefix)
        .fetch_all(pool())
        .await
        .unwrap();
        let expected: Vec<String> = ["blocker", "1", "2", "3", "4", "5"].iter().map(|s| format!("{prefix}{s}")).collect();
        assert_eq!(order, expected);
    })
}

#[test]
fn a_deduplication_id_is_held_until_its_workflow_finishes() {
    common::block_on(async {
        create_tables().await;
        let prefix = "dedup-";
        let blocker = timed(400).with_id(format!("{prefix}blocker")).on_queue(&DEDUP).start().await.unwrap();
        let first = timed(5).with_id(format!("{prefix}a")).on_queue(&DEDUP).with_deduplication_id("order-7").start().await.unwrap();
        let err = timed(5).with_id(format!("{prefix}b")).on_queue(&DEDUP).with_deduplication_id("order-7").start().await.unwrap_err();
        match &err {
            Error::Deduplicated { queue, deduplication_id, holder } => {
                assert_eq!((queue.as_str(), deduplication_id.as_str()), ("q_dedup", "order-7"));
                assert_eq!(holder, &format!("{prefix}a"));
            }
            other => panic!("expected Deduplicated, got {other:?}"),
        }
        assert!(shared().runtime.status(&format!("{prefix}b")).await.unwrap().is_none(), "the rejected start left a row");
        blocker.result().await.unwrap();
        first.result().await.unwrap();
        // Released once the holder finished.
        timed(5).with_id(format!("{prefix}c")).on_queue(&DEDUP).with_deduplication_id("order-7").await.unwrap();
    })
}

#[test]
fn starting_on_an_undeclared_queue_fails_naming_the_queues() {
    common::block_on(async {
        shared();
        let err = timed(1).with_queue("nope").start().await.unwrap_err();
        assert!(matches!(&err, Error::UnknownQueue { queue, declared } if queue == "nope" && declared.contains("q_concurrency")), "{err}");
    })
}

#[test]
fn kill_9_of_the_executor_holding_work_hands_it_to_another_exactly_once() {
    common::block_on(async {
        if let Some(role) = common::child_role() {
            return worker_main(&role).await;
        }
        create_tables().await;
        let test = "kill_9_of_the_executor_holding_work_hands_it_to_another_exactly_once";
        let (prefix, n) = ("victim-", 8);
        let count = n.to_string();
        let env = |executor: &'static str| {
            vec![
                ("EXACTLY_DATABASE_URL", shared().url.clone()),
                ("CHILD_EXECUTOR", executor.to_owned()),
                ("WAIT_PREFIX", prefix.to_owned()),
                ("WAIT_COUNT", count.clone()),
            ]
        };
        let as_refs = |env: &[(&'static str, String)]| env.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
        let victim_env = as_refs(&env("victim"));
        let victim_env: Vec<(&str, &str)> = victim_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut victim = common::spawn_child(test, "victim", &victim_env);
        common::wait_for_marker(&mut victim, "HOLDING", CHILD_TIMEOUT);
        victim.kill().unwrap(); // SIGKILL
        victim.wait().unwrap();
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM exactly.workflow_status WHERE workflow_id LIKE $1 || '%' AND status = 'PENDING' AND executor_id = 'victim'",
        )
        .bind(prefix)
        .fetch_one(pool())
        .await
        .unwrap();
        assert_eq!(held, n as i64, "the victim held all its workflows PENDING when killed");

        let rescuer_env = as_refs(&env("rescuer"));
        let rescuer_env: Vec<(&str, &str)> = rescuer_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut rescuer = common::spawn_child(test, "rescuer", &rescuer_env);
        common::wait_for_marker(&mut rescuer, "WORKER_DONE", CHILD_TIMEOUT);
        assert!(common::wait_exit(&mut rescuer, CHILD_TIMEOUT).success());

        for i in 0..n {
            let id = format!("{prefix}{i}");
            let status = shared().runtime.status(&id).await.unwrap().unwrap();
            assert_eq!(status.state, exactly::WorkflowState::Success, "{id}");
            assert_eq!(status.executor_id.as_deref(), Some("rescuer"), "{id}");
            assert_eq!(common::side_effect_count(pool(), &id, "first").await, 1, "{id}: the first step ran again");
            assert_eq!(common::side_effect_count(pool(), &id, "second").await, 1, "{id}");
        }
    })
}

/// The child's part of the takeover test: one workflow of its own runs; a peer (the
/// SQL below does what `requeue_dead` does) declares this executor dead and puts the
/// workflow back on its queue; this executor's dispatcher claims it back before its
/// heartbeat learns it was declared dead. The workflow must still finish.
async fn takeover_main(rt: Runtime, executor: &str) {
    let id = "takeover-0";
    two_effects(1_500).with_id(id).with_queue(VICTIM_QUEUE).start().await.unwrap();
    while common::side_effect_count(pool(), id, "first").await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN;
         DELETE FROM exactly.executors WHERE executor_id = '{executor}';
         UPDATE exactly.workflow_status SET status = 'ENQUEUED', executor_id = NULL WHERE workflow_id = '{id}';
         SELECT pg_notify('exactly_enqueued', '{VICTIM_QUEUE}');
         COMMIT;"
    )))
    .execute(pool())
    .await
    .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = rt.status(id).await.unwrap().unwrap();
            if status.state.is_terminal() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let status = outcome.expect("the workflow claimed back during the takeover stayed PENDING");
    println!("TAKEOVER_DONE {:?}", status.state);
    rt.shutdown().await.unwrap();
}

#[test]
fn an_executor_declared_dead_finishes_the_work_it_claimed_back() {
    common::block_on(async {
        if let Some(role) = common::child_role() {
            return worker_main(&role).await;
        }
        create_tables().await;
        let test = "an_executor_declared_dead_finishes_the_work_it_claimed_back";
        let env = [("EXACTLY_DATABASE_URL", shared().url.as_str()), ("CHILD_EXECUTOR", "takeover")];
        let mut child = common::spawn_child(test, "takeover", &env);
        assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success(), "the takeover child failed");
        let id = "takeover-0";
        let status = shared().runtime.status(id).await.unwrap().unwrap();
        assert_eq!(status.state, exactly::WorkflowState::Success);
        assert_eq!(common::side_effect_count(pool(), id, "first").await, 1, "the first step ran again");
        assert_eq!(common::side_effect_count(pool(), id, "second").await, 1);
    })
}

/// The child's part of the foreign-queue test, on a runtime of a single thread,
/// where a task that never yields stalls everything: a dead executor held a
/// workflow on a queue this process does not declare; this process's heartbeat
/// hands it back to that queue and tells its dispatcher, which must not go round
/// and round over a queue it cannot claim from.
fn foreign_child() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let runtime = Runtime::builder()
            .executor_id("foreign")
            .heartbeat_interval(Duration::from_millis(200))
            .executor_timeout(Duration::from_millis(1000))
            .launch()
            .await
            .expect("child launch");
        sqlx::raw_sql(
            "INSERT INTO exactly.executors (executor_id, app_version, last_heartbeat)
                 VALUES ('ghost', '0', clock_timestamp() - interval '1 hour');
             INSERT INTO exactly.workflow_status (workflow_id, name, status, inputs, executor_id, app_version, queue_name)
                 VALUES ('foreign-0', 'elsewhere::w', 'PENDING', '[]', 'ghost', '0', 'q_foreign');",
        )
        .execute(runtime.pool())
        .await
        .unwrap();
        loop {
            let status = runtime.status("foreign-0").await.unwrap().unwrap();
            if status.state == exactly::WorkflowState::Enqueued {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Several heartbeats and poll rounds go by; a stalled runtime never gets here.
        tokio::time::sleep(Duration::from_secs(1)).await;
        runtime.shutdown().await.unwrap();
    });
    println!("FOREIGN_DONE");
}

#[test]
fn work_handed_back_to_a_queue_declared_elsewhere_leaves_the_dispatcher_idle() {
    if common::child_role().is_some() {
        return foreign_child();
    }
    common::block_on(async {
        let test = "work_handed_back_to_a_queue_declared_elsewhere_leaves_the_dispatcher_idle";
        let env = [("EXACTLY_DATABASE_URL", shared().url.as_str())];
        let mut child = common::spawn_child(test, "foreign", &env);
        // A stalled child is killed at the timeout (and the test fails).
        assert!(common::wait_exit(&mut child, Duration::from_secs(30)).success(), "the child failed");
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        assert!(stdout.contains("FOREIGN_DONE"), "the child did not finish: {stdout}");
        let status = shared().runtime.status("foreign-0").await.unwrap().unwrap();
        assert_eq!(status.state, exactly::WorkflowState::Enqueued, "left for an executor that declares its queue");
    })
}

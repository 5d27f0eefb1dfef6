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
exactly::queue!(static STARVE = "q_starve", partition_concurrency = 1);
exactly::queue!(static UNKNOWN = "q_unknown", concurrency = 1);
exactly::queue!(static FIFO = "q_fifo", concurrency = 1);
exactly::queue!(static DEDUP_RUNNING = "q_dedup_running");
exactly::queue!(static DEDUP_RACE = "q_dedup_race");

/// Known only to the children of the kill test, so only they dispatch it.
const VICTIM_QUEUE: &str = "q_victim";
/// Known only to the child of the NOTIFY test.
const NOTIFY_QUEUE: &str = "q_notify";
/// Known only to the children of the crash-loop test.
const CRASH_QUEUE: &str = "q_crash";
/// Known only to the child of the hand-back test.
const HANDBACK_QUEUE: &str = "q_handback";

const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

/// This process's runtime. It beats every 200 ms: the children declare an executor
/// dead after 1 s of silence, which the default 1 s interval would cross now and
/// then, handing this process's running workflows to a child mid-run.
fn shared() -> &'static common::Shared {
    static SHARED: std::sync::OnceLock<common::Shared> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        common::launch_shared("exactly_test_queues", |_| async {}, |builder| builder.heartbeat_interval(Duration::from_millis(200)))
    })
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
    // The last execution wins: a process killed mid-step has its step run again elsewhere.
    sqlx::query(
        "INSERT INTO public.runs (workflow_id, pid, started_us, ended_us) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workflow_id) DO UPDATE SET pid = $2, started_us = $3, ended_us = $4",
    )
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
        // The odd ones on no queue: a peer hands them to the internal queue.
        for i in 0..n {
            let call = two_effects(3_000).with_id(format!("{prefix}{i}"));
            let call = if i % 2 == 0 { call.with_queue(VICTIM_QUEUE) } else { call };
            call.start().await.unwrap();
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
        let processes: std::collections::HashSet<i32> = intervals(prefix).await.iter().map(|r| r.3).collect();
        assert!(processes.len() >= 2, "only one process claimed from the rate-limited queue: {processes:?}");
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
        let processes: std::collections::HashSet<i32> = runs.iter().map(|r| r.3).collect();
        assert!(processes.len() >= 2, "only one process claimed from the partitioned queue: {processes:?}");
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
            if i % 2 == 0 {
                assert_eq!(status.executor_id.as_deref(), Some("rescuer"), "{id}");
            } else {
                // Every runtime dispatches the internal queue: the rescuer or this process.
                assert_ne!(status.executor_id.as_deref(), Some("victim"), "{id}");
                let queue: Option<String> = sqlx::query_scalar("SELECT queue_name FROM exactly.workflow_status WHERE workflow_id = $1")
                    .bind(&id)
                    .fetch_one(pool())
                    .await
                    .unwrap();
                assert_eq!(queue.as_deref(), Some("_exactly_internal"), "{id}: not taken over through the internal queue");
            }
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

/// Waits until workflow `id` is in `state`, for at most `within`; panics naming
/// the state it is in otherwise.
async fn wait_for_state(id: &str, state: exactly::WorkflowState, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = shared().runtime.status(id).await.unwrap().map(|s| s.state);
        if now == Some(state) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "`{id}` is {now:?} after {within:?}, expected {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child's part of the NOTIFY test: a dispatcher that polls only every 30 s
/// must still start work enqueued on an idle queue at once. In a schema of its
/// own, so that it neither takes nor wakes for the other tests' work.
async fn notify_main() {
    let rt = Runtime::builder()
        .schema("notify_test")
        .executor_id("notify")
        .queue(Queue::new(NOTIFY_QUEUE))
        .dispatch_poll_interval(Duration::from_secs(30))
        .launch()
        .await
        .expect("child launch");
    // Past the dispatcher's first look at every queue: it now waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let enqueued = std::time::Instant::now();
    let handle = timed(1).with_id("notify-0").with_queue(NOTIFY_QUEUE).start().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle.result()).await.expect("not started within 5 s").unwrap();
    println!("NOTIFY_DONE {}", enqueued.elapsed().as_millis());
    rt.shutdown().await.unwrap();
}

#[test]
fn an_enqueue_wakes_an_idle_dispatcher_by_notify_not_by_its_poll() {
    common::block_on(async {
        if common::child_role().is_some() {
            return notify_main().await;
        }
        create_tables().await;
        let test = "an_enqueue_wakes_an_idle_dispatcher_by_notify_not_by_its_poll";
        let env = [("EXACTLY_DATABASE_URL", shared().url.as_str())];
        let mut child = common::spawn_child(test, "notify", &env);
        assert!(common::wait_exit(&mut child, Duration::from_secs(60)).success(), "the child failed");
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        let line = stdout.lines().find(|l| l.contains("NOTIFY_DONE")).unwrap_or_else(|| panic!("no NOTIFY_DONE: {stdout}"));
        let ms: u64 = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
        assert!(ms < 2_000, "an enqueue on an idle queue took {ms} ms to run with a 30 s poll: NOTIFY did not wake the dispatcher");
    })
}

#[test]
fn a_free_partition_runs_behind_more_than_a_thousand_rows_of_a_full_one() {
    common::block_on(async {
        create_tables().await;
        let prefix = "starve-";
        let busy = |id: String, ms: u64| timed(ms).with_id(id).on_queue(&STARVE).with_partition_key("busy");
        // The blocker fills the busy partition; 1,100 rows queue up behind it.
        busy(format!("{prefix}blocker"), 8_000).start().await.unwrap();
        wait_for_state(&format!("{prefix}blocker"), exactly::WorkflowState::Pending, Duration::from_secs(5)).await;
        let mut starts = tokio::task::JoinSet::new();
        for i in 0..1_100 {
            starts.spawn(busy(format!("{prefix}busy-{i}"), 0).start());
        }
        while let Some(started) = starts.join_next().await {
            started.unwrap().unwrap();
        }
        let free = format!("{prefix}free");
        timed(1).with_id(&free).on_queue(&STARVE).with_partition_key("free").start().await.unwrap();
        wait_for_state(&free, exactly::WorkflowState::Success, Duration::from_secs(4)).await;
        let blocker = shared().runtime.status(&format!("{prefix}blocker")).await.unwrap().unwrap();
        assert_eq!(blocker.state, exactly::WorkflowState::Pending, "the free partition waited for the busy one");
        // Spare the other tests' dispatchers the 1,100 claims.
        sqlx::query("DELETE FROM exactly.workflow_status WHERE workflow_id LIKE $1 || 'busy-%' AND status = 'ENQUEUED'")
            .bind(prefix)
            .execute(pool())
            .await
            .unwrap();
    })
}

#[test]
fn a_workflow_this_program_does_not_register_is_left_on_its_queue_not_claimed() {
    common::block_on(async {
        create_tables().await;
        // First in line on a queue of concurrency 1: claimed, it would hold the slot.
        sqlx::raw_sql(
            "INSERT INTO exactly.workflow_status (workflow_id, name, status, inputs, app_version, queue_name)
             VALUES ('unknown-foreign', 'elsewhere::w', 'ENQUEUED', '[]', '0', 'q_unknown')",
        )
        .execute(pool())
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await; // a dispatcher round or two
        timed(1).with_id("unknown-mine").on_queue(&UNKNOWN).start().await.unwrap();
        wait_for_state("unknown-mine", exactly::WorkflowState::Success, Duration::from_secs(5)).await;
        let (status, executor, claimed): (String, Option<String>, bool) = sqlx::query_as(
            "SELECT status, executor_id, started_at IS NOT NULL FROM exactly.workflow_status WHERE workflow_id = 'unknown-foreign'",
        )
        .fetch_one(pool())
        .await
        .unwrap();
        assert_eq!((status.as_str(), executor, claimed), ("ENQUEUED", None, false), "left for an executor that registers it");
    })
}

/// Crashes the process that runs it, every time.
#[workflow]
async fn crash_every_time() -> exactly::Result<()> {
    assert!(in_child(), "only the crash test's children dispatch its queue");
    std::process::exit(3)
}

/// The child's part of the crash-loop test: executor `CHILD_EXECUTOR` takes the
/// crashing workflow over from the previous (dead) child, unless it has ended. In
/// a schema of its own, so that the crashes take none of the other tests' work.
async fn crash_main() {
    let executor = std::env::var("CHILD_EXECUTOR").unwrap();
    let rt = Runtime::builder()
        .schema("crash_test")
        .executor_id(&executor)
        .queue(Queue::new(CRASH_QUEUE))
        .max_recovery_attempts(1)
        .heartbeat_interval(Duration::from_millis(200))
        .executor_timeout(Duration::from_millis(1000))
        .launch()
        .await
        .expect("child launch");
    if executor == "crash-0" {
        crash_every_time().with_id("crash-loop").with_queue(CRASH_QUEUE).start().await.unwrap();
    }
    loop {
        let status = rt.status("crash-loop").await.unwrap().unwrap();
        if status.state.is_terminal() {
            println!("CRASH_DONE {:?}", status.state);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.shutdown().await.unwrap();
}

#[test]
fn a_workflow_crashing_every_executor_ends_max_recovery_attempts_exceeded() {
    common::block_on(async {
        if common::child_role().is_some() {
            return crash_main().await;
        }
        let test = "a_workflow_crashing_every_executor_ends_max_recovery_attempts_exceeded";
        // One child after another, each on an executor of its own; with
        // max_recovery_attempts = 1 the third one gives the workflow up.
        let mut crashed = 0;
        for i in 0..6 {
            let executor = format!("crash-{i}");
            let env = [("EXACTLY_DATABASE_URL", shared().url.as_str()), ("CHILD_EXECUTOR", executor.as_str())];
            let mut child = common::spawn_child(test, "crash", &env);
            if common::wait_exit(&mut child, Duration::from_secs(30)).success() {
                break;
            }
            crashed += 1;
        }
        let status: String = sqlx::query_scalar("SELECT status FROM crash_test.workflow_status WHERE workflow_id = 'crash-loop'")
            .fetch_one(pool())
            .await
            .unwrap();
        assert_eq!(status, "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "after {crashed} crashed executors");
        assert_eq!(crashed, 2, "the first execution and one recovery crash; the next claim gives up");
    })
}

#[test]
fn a_running_workflow_holds_its_deduplication_id() {
    common::block_on(async {
        create_tables().await;
        let prefix = "dedup-running-";
        let holder = timed(1_000).with_id(format!("{prefix}a")).on_queue(&DEDUP_RUNNING).with_deduplication_id("job-1");
        let holder = holder.start().await.unwrap();
        wait_for_state(&format!("{prefix}a"), exactly::WorkflowState::Pending, Duration::from_secs(5)).await;
        let err = timed(1).with_id(format!("{prefix}b")).on_queue(&DEDUP_RUNNING).with_deduplication_id("job-1").start().await;
        match err {
            Err(Error::Deduplicated { holder, .. }) => assert_eq!(holder, format!("{prefix}a")),
            other => panic!("expected Deduplicated while the holder runs, got {other:?}"),
        }
        holder.result().await.unwrap();
        timed(1).with_id(format!("{prefix}c")).on_queue(&DEDUP_RUNNING).with_deduplication_id("job-1").await.unwrap();
    })
}

/// The holder of a deduplication ID finishes between the start's conflicting
/// insert and its lookup of the holder: the ID is free, so the start must succeed.
/// Table locks order the race: the holder's insert is uncommitted while the start
/// inserts (which waits on it); an exclusive lock, queued behind both, finishes the
/// holder after the conflict and before the lookup can read.
#[test]
fn a_deduplication_id_freed_during_the_conflict_is_taken() {
    use sqlx::Connection;
    common::block_on(async {
        create_tables().await;
        let mut holder = sqlx::PgConnection::connect(&shared().url).await.unwrap();
        let mut finisher = sqlx::PgConnection::connect(&shared().url).await.unwrap();
        let observer = shared().pool();
        sqlx::raw_sql(
            "BEGIN;
             INSERT INTO exactly.workflow_status (workflow_id, name, status, inputs, app_version, queue_name, deduplication_id)
             VALUES ('race-holder', 'elsewhere::w', 'ENQUEUED', '[]', '0', 'q_dedup_race', 'race');",
        )
        .execute(&mut holder)
        .await
        .unwrap();
        let start = tokio::spawn(timed(1).with_id("race-b").on_queue(&DEDUP_RACE).with_deduplication_id("race").start());
        let waiting = |sql: &'static str| {
            let observer = observer.clone();
            async move {
                for _ in 0..500 {
                    if sqlx::query_scalar::<_, bool>(sql).fetch_one(&observer).await.unwrap() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("never waiting: {sql}");
            }
        };
        waiting(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                 AND wait_event = 'transactionid' AND query LIKE '%INSERT INTO workflow_status%')",
        )
        .await;
        let finish = tokio::spawn(async move {
            sqlx::raw_sql(
                "BEGIN;
                 LOCK TABLE exactly.workflow_status IN ACCESS EXCLUSIVE MODE;
                 UPDATE exactly.workflow_status SET status = 'SUCCESS' WHERE workflow_id = 'race-holder';
                 COMMIT;",
            )
            .execute(&mut finisher)
            .await
            .unwrap();
        });
        waiting(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND NOT granted
                 AND relation = 'exactly.workflow_status'::regclass)",
        )
        .await;
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
        finish.await.unwrap();
        let started = start.await.unwrap();
        assert!(started.is_ok(), "the start was refused though the holder had finished: {:?}", started.err());
        wait_for_state("race-b", exactly::WorkflowState::Success, Duration::from_secs(10)).await;
    })
}

#[test]
fn equal_priorities_run_in_creation_order() {
    common::block_on(async {
        create_tables().await;
        let prefix = "fifo-";
        timed(300).with_id(format!("{prefix}blocker")).on_queue(&FIFO).start().await.unwrap();
        let ids: Vec<String> = (0..6).map(|i| format!("{prefix}{i}")).collect();
        for id in &ids {
            timed(5).with_id(id).on_queue(&FIFO).start().await.unwrap();
        }
        wait_for_successes(prefix, 7).await;
        let order: Vec<String> = sqlx::query_scalar(
            "SELECT workflow_id FROM exactly.workflow_status WHERE workflow_id LIKE $1 || '%' AND workflow_id <> $1 || 'blocker'
             ORDER BY started_at",
        )
        .bind(prefix)
        .fetch_all(pool())
        .await
        .unwrap();
        assert_eq!(order, ids);
    })
}

#[test]
fn a_queue_declared_twice_with_different_limits_fails_launch() {
    common::block_on(async {
        let err = Runtime::builder()
            .database_url(&shared().url)
            .executor_id("twice")
            .queue(Queue::new("q_concurrency").concurrency(4))
            .launch()
            .await
            .err()
            .expect("launch must fail");
        match &err {
            Error::Registration(message) => {
                assert!(message.contains("queue `q_concurrency` is declared twice"), "{message}");
                assert!(message.contains("queues.rs") && message.contains("the runtime builder (concurrency = 4)"), "{message}");
            }
            other => panic!("expected a registration error, got {other:?}"),
        }
    })
}

/// The child's part of the orphan test: it relaunches executor `orphan`, which held
/// two workflows this program does not register, one queued and one not.
async fn orphan_main() {
    sqlx::raw_sql(
        "INSERT INTO exactly.workflow_status (workflow_id, name, status, inputs, executor_id, app_version, queue_name)
         VALUES ('orphan-queued', 'elsewhere::w', 'PENDING', '[]', 'orphan', '0', 'q_dedup_running'),
                ('orphan-direct', 'elsewhere::w', 'PENDING', '[]', 'orphan', '0', NULL)",
    )
    .execute(pool())
    .await
    .unwrap();
    let rt = Runtime::builder()
        .executor_id("orphan")
        .heartbeat_interval(Duration::from_millis(200))
        .executor_timeout(Duration::from_millis(1000))
        .launch()
        .await
        .expect("child launch");
    // Recovery runs in the background after launch: wait until it has handled both.
    common::wait_until(Duration::from_secs(30), "recovery handled the orphans", || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM exactly.workflow_status WHERE workflow_id LIKE 'orphan-%' AND status = 'PENDING'",
        )
        .fetch_one(pool())
        .await
        .unwrap();
        pending == 0
    })
    .await;
    rt.shutdown().await.unwrap();
    println!("ORPHAN_DONE");
}

#[test]
fn recovery_hands_a_workflow_this_program_does_not_register_back_to_a_queue() {
    common::block_on(async {
        if common::child_role().is_some() {
            return orphan_main().await;
        }
        create_tables().await;
        let test = "recovery_hands_a_workflow_this_program_does_not_register_back_to_a_queue";
        let env = [("EXACTLY_DATABASE_URL", shared().url.as_str())];
        let mut child = common::spawn_child(test, "orphan", &env);
        assert!(common::wait_exit(&mut child, Duration::from_secs(60)).success(), "the child failed");
        let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT workflow_id, status, executor_id, queue_name FROM exactly.workflow_status
             WHERE workflow_id LIKE 'orphan-%' ORDER BY workflow_id",
        )
        .fetch_all(pool())
        .await
        .unwrap();
        let expected = [("orphan-direct", "_exactly_internal"), ("orphan-queued", "q_dedup_running")];
        let rows: Vec<_> = rows.iter().map(|(id, status, executor, queue)| (id.as_str(), status.as_str(), executor.clone(), queue.clone())).collect();
        let expected: Vec<_> = expected.iter().map(|(id, queue)| (*id, "ENQUEUED", None, Some(queue.to_string()))).collect();
        assert_eq!(rows, expected, "left PENDING for the executor that cannot run them");
    })
}

/// The child's part of the hand-back test, in a schema of its own: a workflow that
/// ran before is claimed, but its step records cannot be read (the table is
/// renamed away); it must go back to its queue, not stay PENDING here, and run
/// once the records can be read again.
async fn handback_main() {
    let rt = Runtime::builder()
        .schema("handback_test")
        .executor_id("handback")
        .queue(Queue::new(HANDBACK_QUEUE))
        .launch()
        .await
        .expect("child launch");
    let name = timed(1).name();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE handback_test.operation_outputs RENAME TO operation_outputs_away;
         INSERT INTO handback_test.workflow_status (workflow_id, name, status, inputs, app_version, queue_name, recovery_attempts)
         VALUES ('handback-0', '{name}', 'ENQUEUED', '[1]', '0', '{HANDBACK_QUEUE}', 1);"
    )))
    .execute(rt.pool())
    .await
    .unwrap();
    let row = || async {
        sqlx::query_as::<_, (String, Option<String>, i32)>(
            "SELECT status, executor_id, recovery_attempts FROM handback_test.workflow_status WHERE workflow_id = 'handback-0'",
        )
        .fetch_one(rt.pool())
        .await
        .unwrap()
    };
    // Claimed (the claim fails as it reads the records) and handed back, over and over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, executor, attempts) = row().await;
        if status == "ENQUEUED" && executor.is_none() {
            assert_eq!(attempts, 1, "a claim that did not start the workflow counted as an attempt");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stranded: {status} for {executor:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::raw_sql("ALTER TABLE handback_test.operation_outputs_away RENAME TO operation_outputs")
        .execute(rt.pool())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while row().await.0 != "SUCCESS" {
        assert!(tokio::time::Instant::now() < deadline, "not run once its records could be read: {:?}", row().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.shutdown().await.unwrap();
    println!("HANDBACK_DONE");
}

#[test]
fn a_claimed_workflow_that_cannot_start_goes_back_to_its_queue() {
    common::block_on(async {
        if common::child_role().is_some() {
            return handback_main().await;
        }
        create_tables().await;
        let test = "a_claimed_workflow_that_cannot_start_goes_back_to_its_queue";
        let env = [("EXACTLY_DATABASE_URL", shared().url.as_str())];
        let mut child = common::spawn_child(test, "handback", &env);
        assert!(common::wait_exit(&mut child, Duration::from_secs(60)).success(), "the child failed");
    })
}

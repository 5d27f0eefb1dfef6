//! The durable workflow engine against the real PostgreSQL: idempotent starts,
//! step checkpoints, outcomes, retries, timeouts, child workflows and bad config.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use exactly::{Error, WorkflowState, step, workflow};
use serde::{Deserialize, Serialize};

fn shared() -> &'static common::Shared {
    common::shared("exactly_test_engine")
}

/// How many times each workflow body ran in this process, by key.
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn count_run(key: &str) -> u32 {
    let mut runs = RUNS.lock().unwrap();
    let n = runs.get_or_insert_with(HashMap::new).entry(key.to_owned()).or_default();
    *n += 1;
    *n
}

fn runs(key: &str) -> u32 {
    RUNS.lock().unwrap().as_ref().and_then(|r| r.get(key).copied()).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    order_id: String,
    charged: u64,
}

#[step]
async fn charge(order: &Order) -> exactly::Result<Receipt> {
    let workflow_id = exactly::workflow_id().expect("a step inside a workflow knows its workflow");
    common::side_effect(shared().runtime.pool(), &workflow_id, "charge").await;
    Ok(Receipt { order_id: order.id.clone(), charged: order.cents })
}

#[workflow]
async fn process_order(order: Order) -> exactly::Result<Receipt> {
    count_run(&order.id);
    // Give concurrent starts of the same ID every chance to overlap.
    tokio::time::sleep(Duration::from_millis(50)).await;
    charge(&order).await
}

#[test]
fn the_same_id_started_concurrently_runs_once() {
    common::block_on(async {
        let rt = &shared().runtime;
        let order = Order { id: "concurrent-1".into(), cents: 500 };
        let starts = (0..16).map(|_| process_order(order.clone()).with_id("order-concurrent-1").start());
        let handles: Vec<_> = futures_join_all(starts).await.into_iter().map(Result::unwrap).collect();
        assert!(handles.iter().all(|h| h.id() == "order-concurrent-1"));
        for handle in handles {
            let receipt = handle.result().await.unwrap();
            assert_eq!(receipt, Receipt { order_id: "concurrent-1".into(), charged: 500 });
        }
        assert_eq!(runs("concurrent-1"), 1, "the workflow body ran more than once");
        assert_eq!(common::side_effect_count(rt.pool(), "order-concurrent-1", "charge").await, 1);
        let status = rt.status("order-concurrent-1").await.unwrap().unwrap();
        assert_eq!(status.state, WorkflowState::Success);
        assert_eq!(status.recovery_attempts, 1);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&status.inputs).unwrap(), serde_json::json!([{"id": "concurrent-1", "cents": 500}]));
    })
}

#[test]
fn a_finished_id_returns_the_recorded_result_without_running_again() {
    common::block_on(async {
        shared();
        let order = Order { id: "again-1".into(), cents: 7 };
        let first = process_order(order.clone()).with_id("order-again-1").await.unwrap();
        let second = process_order(Order { id: "again-1".into(), cents: 999 }).with_id("order-again-1").await.unwrap();
        assert_eq!(first, second, "the second start must return the first run's recorded output");
        assert_eq!(runs("again-1"), 1);
    })
}

#[test]
fn steps_are_checkpointed_with_their_outputs() {
    common::block_on(async {
        let rt = &shared().runtime;
        process_order(Order { id: "ckpt-1".into(), cents: 3 }).with_id("order-ckpt-1").await.unwrap();
        let rows: Vec<(i32, String, String)> = sqlx::query_as(
            "SELECT step_id, name, output::text FROM operation_outputs WHERE workflow_id = $1 ORDER BY step_id",
        )
        .bind("order-ckpt-1")
        .fetch_all(rt.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 0);
        assert!(rows[0].1.ends_with("::charge"), "step name was {}", rows[0].1);
        assert_eq!(serde_json::from_str::<Receipt>(&rows[0].2).unwrap(), Receipt { order_id: "ckpt-1".into(), charged: 3 });
    })
}

#[workflow]
async fn always_fails(reason: String) -> exactly::Result<u32> {
    Err(Error::msg(format!("refused: {reason}")))
}

#[test]
fn a_failing_workflow_ends_as_error_with_its_input_and_error_kept() {
    common::block_on(async {
        let rt = &shared().runtime;
        let err = always_fails("bad card".into()).with_id("fail-1").await.unwrap_err();
        match &err {
            Error::WorkflowFailed { id, message } => {
                assert_eq!(id, "fail-1");
                assert_eq!(message, "refused: bad card");
            }
            other => panic!("expected WorkflowFailed, got {other:?}"),
        }
        let status = rt.status("fail-1").await.unwrap().unwrap();
        assert_eq!(status.state, WorkflowState::Error);
        assert_eq!(status.inputs, r#"["bad card"]"#);
        assert!(status.error.unwrap().contains("refused: bad card"));
    })
}

static FLAKY_CALLS: Mutex<u32> = Mutex::new(0);

#[step(retries = 3, backoff_ms = 10)]
async fn flaky() -> exactly::Result<u32> {
    let mut calls = FLAKY_CALLS.lock().unwrap();
    *calls += 1;
    if *calls < 3 { Err(Error::msg(format!("transient failure {calls}"))) } else { Ok(*calls) }
}

#[workflow]
async fn uses_flaky() -> exactly::Result<u32> {
    flaky().await
}

#[test]
fn a_step_is_retried_until_it_succeeds_and_recorded_once() {
    common::block_on(async {
        let rt = &shared().runtime;
        assert_eq!(uses_flaky().with_id("flaky-1").await.unwrap(), 3);
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM operation_outputs WHERE workflow_id = 'flaky-1'")
            .fetch_one(rt.pool())
            .await
            .unwrap();
        assert_eq!(recorded, 1);
    })
}

#[step]
async fn after_the_wait() -> exactly::Result<()> {
    common::side_effect(shared().runtime.pool(), &exactly::workflow_id().unwrap(), "after-the-wait").await;
    Ok(())
}

#[workflow]
async fn slow(ms: u64) -> exactly::Result<u64> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    after_the_wait().await?;
    Ok(ms)
}

#[test]
fn a_workflow_over_its_timeout_is_cancelled() {
    common::block_on(async {
        let rt = &shared().runtime;
        let err = slow(1_000).with_id("slow-1").with_timeout(Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(&err, Error::WorkflowNotCompleted { status: WorkflowState::Cancelled, .. }), "{err:?}");
        let status = rt.status("slow-1").await.unwrap().unwrap();
        assert_eq!(status.state, WorkflowState::Cancelled);
        assert!(status.error.as_deref().is_some_and(|e| e.contains("timed out after 100ms")), "{:?}", status.error);
        // The body stopped at its timeout: the step after the wait never runs.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(common::side_effect_count(rt.pool(), "slow-1", "after-the-wait").await, 0);

        assert_eq!(slow(10).with_id("slow-2").with_timeout(Duration::from_secs(30)).await.unwrap(), 10);
        assert_eq!(common::side_effect_count(rt.pool(), "slow-2", "after-the-wait").await, 1);
    })
}

#[test]
fn a_handle_reads_the_status_while_running_and_after() {
    common::block_on(async {
        let handle = slow(400).with_id("slow-status").start().await.unwrap();
        let running = handle.status().await.unwrap();
        assert_eq!((running.id.as_str(), running.state, running.output), ("slow-status", WorkflowState::Pending, None));
        assert_eq!(handle.result().await.unwrap(), 400);
        let done = shared().runtime.status("slow-status").await.unwrap().unwrap();
        assert_eq!((done.state, done.output.as_deref()), (WorkflowState::Success, Some("400")));
    })
}

#[workflow]
async fn parent(n: u64) -> exactly::Result<Vec<String>> {
    let a = slow(n).start().await?;
    let b = slow(n + 1).start().await?;
    let ids = vec![a.id().to_owned(), b.id().to_owned()];
    a.result().await?;
    b.result().await?;
    Ok(ids)
}

#[test]
fn child_workflows_get_ids_derived_from_the_parent() {
    common::block_on(async {
        shared();
        let ids = parent(1).with_id("parent-1").await.unwrap();
        assert_eq!(ids, vec!["parent-1-0".to_owned(), "parent-1-1".to_owned()]);
        let rt = &shared().runtime;
        assert_eq!(rt.status("parent-1-1").await.unwrap().unwrap().state, WorkflowState::Success);
    })
}

/// Where the step body runs: its workflow's ID and its own step ID.
#[step]
async fn whereabouts() -> exactly::Result<(String, i32)> {
    Ok((exactly::workflow_id().unwrap(), exactly::step_id().expect("a step body knows its step ID")))
}

#[workflow]
async fn locates_its_steps() -> exactly::Result<Vec<(String, i32)>> {
    assert_eq!(exactly::step_id(), None, "the workflow body is no step");
    let first = whereabouts().await?;
    let _child = slow(0).start().await?; // a child workflow takes an operation ID too
    let second = exactly::run_step("inline", || async { Ok::<_, Error>(exactly::step_id()) }).await?;
    Ok(vec![first, (exactly::workflow_id().unwrap(), second.unwrap())])
}

#[test]
fn a_step_body_reads_its_step_id() {
    common::block_on(async {
        shared();
        assert_eq!(exactly::step_id(), None);
        let seen = locates_its_steps().with_id("steps-ids").await.unwrap();
        assert_eq!(seen, vec![("steps-ids".to_owned(), 0), ("steps-ids".to_owned(), 2)]);
    })
}

#[workflow]
async fn panics(n: u32) -> exactly::Result<u32> {
    if n > 0 {
        panic!("boom {n}");
    }
    Ok(n)
}

#[test]
fn a_panicking_workflow_ends_as_error_and_the_runtime_goes_on() {
    common::block_on(async {
        shared();
        let err = panics(1).with_id("panic-1").await.unwrap_err();
        assert!(err.to_string().contains("workflow panicked: boom 1"), "{err}");
        assert_eq!(panics(0).with_id("panic-0").await.unwrap(), 0);
    })
}

#[test]
fn an_id_taken_by_another_workflow_is_a_conflict() {
    common::block_on(async {
        shared();
        slow(1).with_id("taken-1").await.unwrap();
        let err = always_fails("x".into()).with_id("taken-1").start().await.unwrap_err();
        assert!(matches!(&err, Error::IdConflict { existing, .. } if existing.ends_with("::slow")), "{err:?}");
    })
}

#[test]
fn many_concurrent_workflows_all_complete() {
    common::block_on(async {
        let rt = &shared().runtime;
        let calls = (0..300u64).map(|i| slow(i % 3).with_id(format!("many-{i}")));
        let results = futures_join_all(calls.map(|c| async move { c.await })).await;
        assert!(results.iter().all(|r| r.is_ok()));
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_status WHERE workflow_id LIKE 'many-%' AND status = 'SUCCESS'")
            .fetch_one(rt.pool())
            .await
            .unwrap();
        assert_eq!(done, 300);
    })
}

#[test]
fn run_step_checkpoints_a_closure() {
    common::block_on(async {
        #[workflow]
        async fn with_closure(x: u64) -> exactly::Result<u64> {
            let doubled: u64 = exactly::run_step("double", || async move { Ok::<_, Error>(x * 2) }).await?;
            Ok(doubled + 1)
        }
        let rt = &shared().runtime;
        assert_eq!(with_closure(20).with_id("closure-1").await.unwrap(), 41);
        let (name, output): (String, String) =
            sqlx::query_as("SELECT name, output::text FROM operation_outputs WHERE workflow_id = 'closure-1'")
                .fetch_one(rt.pool())
                .await
                .unwrap();
        assert_eq!((name.as_str(), output.as_str()), ("double", "40"));
    })
}

#[test]
fn launch_rejects_bad_configuration_with_a_clear_message() {
    common::block_on(async {
        shared(); // only one runtime runs per process: make sure the shared one is up first
        let err = exactly::Runtime::builder().database_url("postgres://host:notaport/db").launch().await.unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.contains("database_url") && m.contains("not a valid PostgreSQL URL")), "{err}");

        let err = exactly::Runtime::builder()
            .database_url("postgres://postgres:postgres@127.0.0.1:1/postgres?sslmode=disable")
            .connect_timeout(Duration::from_secs(2))
            .launch()
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Database { context, .. } if context.contains("127.0.0.1:1/postgres")), "{err}");

        let err = exactly::Runtime::builder().database_url(&shared().url).schema("Bad-Name").launch().await.unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.contains("Bad-Name")), "{err}");

        let err = exactly::Runtime::builder().database_url(&shared().url).launch().await.unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
    })
}

/// `join_all` without a futures dependency: spawn each future and collect in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task panicked"));
    }
    out
}

#[workflow]
async fn nul_output(part: String) -> exactly::Result<String> {
    match part.as_str() {
        "output" => Ok("a\0b".to_owned()),
        "error" => Err(exactly::Error::msg("bad\0byte")),
        "step" => nul_step().await,
        _ => Ok(part),
    }
}

#[step]
async fn nul_step() -> exactly::Result<String> {
    Ok("x\0y".to_owned())
}

#[test]
fn a_nul_anywhere_gives_a_clear_error_and_no_workflow_stays_pending() {
    common::block_on(async {
        let rt = &shared().runtime;
        let status = |id: &'static str| async move { rt.status(id).await.unwrap().unwrap() };

        let err = nul_output("output".into()).with_id("nul-output").await.unwrap_err().to_string();
        assert!(err.contains("output of workflow `nul-output` contains the character U+0000"), "{err}");
        assert_eq!(status("nul-output").await.state, WorkflowState::Error);

        let err = nul_output("error".into()).with_id("nul-error").await.unwrap_err().to_string();
        assert!(err.contains("bad\\0byte"), "the NUL shown as \\0: {err}");
        assert_eq!(status("nul-error").await.state, WorkflowState::Error);

        let err = nul_output("step".into()).with_id("nul-step").await.unwrap_err().to_string();
        assert!(err.contains("output of step") && err.contains("U+0000"), "{err}");
        let step_error: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT error FROM exactly.operation_outputs WHERE workflow_id = 'nul-step'")
                .fetch_one(shared().runtime.pool())
                .await
                .unwrap();
        assert!(step_error.unwrap().to_string().contains("U+0000"), "the step's error is recorded");
        assert_eq!(status("nul-step").await.state, WorkflowState::Error);

        let err = nul_output("in\0put".into()).with_id("nul-input").await.unwrap_err().to_string();
        assert!(err.contains("inputs of workflow") && err.contains("U+0000"), "{err}");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.workflow_status WHERE workflow_id = 'nul-input'")
            .fetch_one(shared().runtime.pool())
            .await
            .unwrap();
        assert_eq!(rows, 0, "refused before anything was stored");
    })
}

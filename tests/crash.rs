//! Crashes and restarts: a child process (this test binary run again in a child
//! role) runs workflows and is killed with SIGKILL or aborts; a new child recovers.
//! The parent checks the database: each side effect done once, one outcome.

mod common;

use std::time::Duration;

use exactly::{Runtime, step, workflow};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok()
}

fn pool() -> &'static sqlx::PgPool {
    common::child_pool()
}

#[step]
async fn first_step(tag: &str) -> exactly::Result<String> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "first").await;
    // A value that differs on every execution: replay must return the recorded one.
    Ok(format!("{tag}-{}", std::process::id()))
}

#[step]
async fn second_step(from_first: &str) -> exactly::Result<String> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "second").await;
    Ok(format!("{from_first}+second"))
}

#[workflow]
async fn two_steps(tag: String) -> exactly::Result<String> {
    let first = first_step(&tag).await?;
    if env_flag("CRASH_BETWEEN_STEPS") {
        println!("BETWEEN_STEPS");
        // Wait here to be killed with SIGKILL by the parent.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    second_step(&first).await
}

#[workflow]
async fn crashes_every_time(n: u32) -> exactly::Result<u32> {
    // Counted outside any step: every execution of the body shows up.
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), "body").await;
    if n > 0 {
        std::process::abort();
    }
    Ok(n)
}

async fn launch_child(max_recovery_attempts: u32) -> Runtime {
    Runtime::builder()
        .executor_id(std::env::var("CHILD_EXECUTOR").unwrap())
        .max_recovery_attempts(max_recovery_attempts)
        .shutdown_timeout(Duration::from_secs(5))
        .launch()
        .await
        .expect("child launch")
}

/// The child's part: launch (which recovers), start the workflow (a no-op when it
/// exists), wait for its result and print it.
async fn child_main(role: &str) {
    let rt = launch_child(2).await;
    let id = std::env::var("WORKFLOW_ID").unwrap();
    match role {
        "two_steps" => {
            let out = two_steps("t".into()).with_id(&id).await.unwrap();
            println!("RESULT {out}");
        }
        "crashes" => {
            // Starting it crashes this process unless launch already gave it up.
            let status = rt.status(&id).await.unwrap();
            if status.is_none() {
                let _ = crashes_every_time(1).with_id(&id).await;
            }
            // Recovery (in the background after launch) either runs it, which aborts
            // this process, or gives it up.
            let state = loop {
                let state = rt.status(&id).await.unwrap().unwrap().state;
                if state != exactly::WorkflowState::Pending {
                    break state;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            println!("STATUS {state}");
        }
        "shutdown" => {
            let handle = slow_steps(3).with_id(&id).start().await.unwrap();
            println!("STARTED");
            // Stop while the first step runs: that step completes, no later one starts.
            tokio::time::sleep(Duration::from_millis(100)).await;
            rt.clone().shutdown().await.unwrap();
            println!("SHUT_DOWN {}", handle.id());
            return;
        }
        "resume" => {
            // Recovery (started by launch) runs the workflow; wait for it.
            println!("RESULT {}", rt.result::<u32>(&id).await.unwrap());
        }
        other => panic!("unknown child role {other}"),
    }
    rt.shutdown().await.unwrap();
}

fn child_env<'a>(url: &'a str, executor: &'a str, id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("EXACTLY_DATABASE_URL", url), ("CHILD_EXECUTOR", executor), ("WORKFLOW_ID", id)]
}

async fn test_database(name: &str) -> (String, sqlx::PgPool) {
    let url = common::fresh_database(name).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    common::create_side_effects(&pool).await;
    (url, pool)
}

async fn status_of(pool: &sqlx::PgPool, id: &str) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT status, recovery_attempts, inputs::text FROM exactly.workflow_status WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn sigkill_between_two_steps_then_restart_completes_exactly_once() {
    if let Some(role) = common::child_role() {
        return child_main(&role).await;
    }
    let (url, pool) = test_database("exactly_test_crash_between").await;
    let id = "crash-between-1";
    let env = child_env(&url, "worker-a", id);

    let mut env_crash = env.clone();
    env_crash.push(("CRASH_BETWEEN_STEPS", "1"));
    let mut child = common::spawn_child("sigkill_between_two_steps_then_restart_completes_exactly_once", "two_steps", &env_crash);
    common::wait_for_marker(&mut child, "BETWEEN_STEPS", CHILD_TIMEOUT);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(status_of(&pool, id).await.0, "PENDING");
    assert_eq!(common::side_effect_count(&pool, id, "first").await, 1);
    assert_eq!(common::side_effect_count(&pool, id, "second").await, 0);
    let first_output: String = sqlx::query_scalar(
        "SELECT output #>> '{}' FROM exactly.operation_outputs WHERE workflow_id = $1 AND step_id = 0",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();

    // Restart with the same executor ID: launch recovers the workflow.
    let mut child = common::spawn_child("sigkill_between_two_steps_then_restart_completes_exactly_once", "two_steps", &env);
    common::wait_for_marker(&mut child, &format!("RESULT {first_output}+second"), CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());

    let (status, attempts, _) = status_of(&pool, id).await;
    assert_eq!(status, "SUCCESS");
    assert_eq!(attempts, 2, "one first execution, one recovery");
    assert_eq!(common::side_effect_count(&pool, id, "first").await, 1, "the first step ran again");
    assert_eq!(common::side_effect_count(&pool, id, "second").await, 1);
    let outputs: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outputs, 2);
    let output: String = sqlx::query_scalar("SELECT output #>> '{}' FROM exactly.workflow_status WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(output, format!("{first_output}+second"), "the final output must build on the replayed first step");
}

#[tokio::test]
async fn a_workflow_that_crashes_the_process_every_time_is_given_up() {
    if let Some(role) = common::child_role() {
        return child_main(&role).await;
    }
    let (url, pool) = test_database("exactly_test_crash_loop").await;
    let id = "crash-loop-1";
    let env = child_env(&url, "worker-b", id);
    let test = "a_workflow_that_crashes_the_process_every_time_is_given_up";
    // max_recovery_attempts = 2: the first run and two recoveries crash; the fourth
    // launch gives the workflow up.
    for run in 1..=3 {
        let mut child = common::spawn_child(test, "crashes", &env);
        let status = common::wait_exit(&mut child, CHILD_TIMEOUT);
        assert!(!status.success(), "run {run} should have crashed");
        assert_eq!(status_of(&pool, id).await.0, "PENDING");
    }
    let mut child = common::spawn_child(test, "crashes", &env);
    common::wait_for_marker(&mut child, "STATUS MAX_RECOVERY_ATTEMPTS_EXCEEDED", CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());

    let (status, attempts, inputs) = status_of(&pool, id).await;
    assert_eq!(status, "MAX_RECOVERY_ATTEMPTS_EXCEEDED");
    assert_eq!(attempts, 4);
    assert_eq!(inputs.as_deref(), Some("[1]"), "the input must be kept for inspection");
    assert_eq!(common::side_effect_count(&pool, id, "body").await, 3, "three executions, no fourth");
}

#[step]
async fn slow_step(i: u32) -> exactly::Result<u32> {
    common::side_effect(pool(), &exactly::workflow_id().unwrap(), &format!("slow-{i}")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(i)
}

#[workflow]
async fn slow_steps(n: u32) -> exactly::Result<u32> {
    let mut sum = 0;
    for i in 0..n {
        sum += slow_step(i).await?;
    }
    Ok(sum)
}

#[tokio::test]
async fn shutdown_lets_the_running_step_finish_and_the_rest_resumes_at_relaunch() {
    if let Some(role) = common::child_role() {
        return child_main(&role).await;
    }
    let (url, pool) = test_database("exactly_test_shutdown").await;
    let id = "shutdown-1";
    let env = child_env(&url, "worker-c", id);
    let test = "shutdown_lets_the_running_step_finish_and_the_rest_resumes_at_relaunch";
    let mut child = common::spawn_child(test, "shutdown", &env);
    common::wait_for_marker(&mut child, &format!("SHUT_DOWN {id}"), CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());

    assert_eq!(status_of(&pool, id).await.0, "PENDING");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(recorded, 1, "the step running at shutdown finishes and is recorded; no later step starts");
    assert_eq!(common::side_effect_count(&pool, id, "slow-1").await, 0);

    // Relaunch with the same executor ID: recovery finishes the work.
    let mut child = common::spawn_child(test, "resume", &env);
    common::wait_for_marker(&mut child, "RESULT 3", CHILD_TIMEOUT);
    assert!(common::wait_exit(&mut child, CHILD_TIMEOUT).success());
    assert_eq!(status_of(&pool, id).await.0, "SUCCESS");
    for i in 0..3 {
        assert_eq!(common::side_effect_count(&pool, id, &format!("slow-{i}")).await, 1, "step {i}");
    }
}

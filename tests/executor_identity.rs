//! Executor identity with real processes: a second process launched with the
//! executor ID of a live one fails launch, naming the ID and the holder; once the
//! holder is killed (SIGKILL), a new process takes the ID back at once and recovers
//! the workflow the dead one left PENDING.

mod common;

use std::time::{Duration, Instant};

use exactly::{Runtime, step, workflow};

const ID: &str = "exactly-test-identity";

#[step]
async fn wait_for_release() -> exactly::Result<()> {
    // Long enough that the first process is killed with this step in flight.
    if std::env::var("FIRST").is_ok() {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    Ok(())
}

#[workflow]
async fn held_work() -> exactly::Result<u32> {
    wait_for_release().await?;
    Ok(std::process::id())
}

async fn child(role: &str) {
    match Runtime::builder().executor_id(ID).executor_timeout(Duration::from_secs(10)).launch().await {
        Ok(runtime) => {
            if role == "first" {
                held_work().with_id("identity-1").start().await.unwrap();
            }
            println!("LAUNCHED");
            if role == "first" {
                runtime.until_shutdown_signal().await.unwrap();
            } else {
                let result = runtime.handle::<exactly::Result<u32>>("identity-1").result().await.unwrap();
                println!("RECOVERED {result}");
                runtime.shutdown().await.unwrap();
            }
        }
        Err(e) => println!("REFUSED {e}"),
    }
}

/// Runs a child to its end; returns its output.
fn run(role: &str, envs: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["a_live_executor_id_is_refused_and_a_dead_ones_taken_back", "--exact", "--nocapture", "--test-threads=1"])
        .env(common::CHILD_ROLE, role)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_live_executor_id_is_refused_and_a_dead_ones_taken_back() {
    if let Some(role) = common::child_role() {
        return child(&role).await;
    }
    let url = common::fresh_database("exactly_test_identity").await;
    let envs = [("EXACTLY_DATABASE_URL", url.as_str())];
    let mut first = common::KillOnDrop(common::spawn_child(
        "a_live_executor_id_is_refused_and_a_dead_ones_taken_back",
        "first",
        &[("EXACTLY_DATABASE_URL", url.as_str()), ("FIRST", "1")],
    ));
    common::wait_for_marker(&mut first.0, "LAUNCHED", Duration::from_secs(60));

    let refused = run("second", &envs);
    assert!(refused.contains(&format!("REFUSED invalid configuration: executor ID `{ID}` is held by a live process")), "{refused}");
    assert!(refused.contains(&format!("pid {}", first.0.id())) && refused.contains("EXACTLY_EXECUTOR_ID"), "{refused}");

    drop(first); // SIGKILL, reaped: its heartbeat is still fresh
    let began = Instant::now();
    let recovered = run("third", &envs);
    assert!(recovered.contains("LAUNCHED") && recovered.contains("RECOVERED"), "{recovered}");
    let took = began.elapsed();
    assert!(took < Duration::from_secs(8), "took the ID back at once, not after the 10 s timeout: {took:?}");
}

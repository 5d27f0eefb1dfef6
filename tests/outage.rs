//! A PostgreSQL restart in the middle of running workflows: checkpoint writes wait
//! and retry until the database is back; no workflow fails, none runs a step twice.
//!
//! The only test of its binary (cargo runs test binaries one after another), because
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

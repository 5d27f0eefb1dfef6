//! `concurrent`: W one-step workflows, all started at once; the time from the first
//! start until every one has returned its result (its row is SUCCESS by then).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::Error;
use crate::systems::System;

/// Runs `workflows` one-step workflows concurrently; returns the wall time.
pub async fn run(system: &Arc<dyn System>, workflows: u64) -> Result<Duration, Error> {
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..workflows {
        let call = system.one_step(i);
        tasks.spawn(async move { (i, call.await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined?;
        let output = result.map_err(|e| format!("{}: workflow {i} failed: {e}", system.name()))?;
        if output != 2 * i {
            return Err(format!("{}: workflow {i} returned {output}, expected {}", system.name(), 2 * i).into());
        }
    }
    Ok(started.elapsed())
}

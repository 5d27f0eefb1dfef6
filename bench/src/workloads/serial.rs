//! `serial`: N one-step workflows one after another; the latency of each, from the
//! start call until its result is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;
use crate::systems::System;

/// Runs `workflows` one-step workflows in sequence; returns each one's latency.
pub async fn run(system: &Arc<dyn System>, workflows: u64) -> Result<Vec<Duration>, Error> {
    let mut latencies = Vec::with_capacity(workflows as usize);
    for i in 0..workflows {
        let started = Instant::now();
        let output = system.one_step(i).await.map_err(|e| format!("{}: workflow {i} failed: {e}", system.name()))?;
        latencies.push(started.elapsed());
        if output != 2 * i {
            return Err(format!("{}: workflow {i} returned {output}, expected {}", system.name(), 2 * i).into());
        }
    }
    Ok(latencies)
}

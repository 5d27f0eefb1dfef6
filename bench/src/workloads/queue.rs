//! `queue`: N one-step workflows enqueued on an unlimited durable queue, all at once
//! (one task per enqueue, as `concurrent` starts them), and run by the system's own
//! dispatcher. Two times, both from just before the first enqueue:
//!
//! - `enqueued`: until every enqueue call has returned, i.e. every row is durably
//!   ENQUEUED (committed). The dispatcher is already claiming and running meanwhile.
//! - `completed`: until no row of the run is ENQUEUED or PENDING any more. Found by
//!   polling the system's database from a connection of the harness's own (not the
//!   system's pool) with one indexed probe (see [`db::Probe`]), every `poll` ([`POLL`]
//!   unless `--queue-poll` says otherwise) or every 1/[`RESOLUTION`] of the time
//!   elapsed so far, whichever is longer: the end is known to within 0.5% (plus one
//!   probe's round trip), and a run of 30 s is not probed 6,000 times. After the timing the caller checks that N new rows are SUCCESS,
//!   and this checks every output, so "none left ENQUEUED or PENDING" is "all SUCCESS".
//!
//! Not timed by awaiting the handles: an enqueue returns a handle that reads the row
//! (exactly: at once, then every 50 ms doubling to 1 s, or sooner if the workflow ends
//! in this process; dbos: every `outcome_poll_interval`, 1 s), so 10,000 handles would
//! add tens of thousands of queries on the systems' own pools, competing with the
//! dispatcher, and dbos's end would be quantized to its 1 s polls. Not timed by
//! counting SUCCESS rows either: `status = 'SUCCESS'` has no index in either schema,
//! so the count is a scan of the whole table (tens of thousands of rows by then,
//! several ms of a 2-CPU machine) every few ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::Error;
use crate::db;
use crate::systems::System;

/// How often the harness looks whether the run is done by default: the resolution
/// of `completed`.
pub const POLL: Duration = Duration::from_millis(5);

/// Past `POLL * RESOLUTION`, the probe waits 1/RESOLUTION of the time elapsed.
pub const RESOLUTION: u32 = 200;

/// A run that has not ended by then has failed.
const GIVE_UP: Duration = Duration::from_secs(600);

/// How many outputs are read at once in the check after the timing.
const CHECK_CONCURRENCY: usize = 32;

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct QueueRun {
    /// From the first enqueue until every enqueue had returned (rows committed).
    pub enqueued: Duration,
    /// From the first enqueue until no row of the run was ENQUEUED or PENDING.
    pub completed: Duration,
    /// How many probes the completion poll made, and their mean round trip.
    pub probes: u32,
    pub probe_mean: Duration,
}

/// Enqueues `workflows` one-step workflows on `queue` with IDs `{prefix}-{i}` and waits
/// until all have run; checks every output (`2 * i`) after the timing.
pub async fn run(
    system: &Arc<dyn System>,
    url: &str,
    queue: &'static str,
    prefix: &str,
    workflows: u64,
    poll: Duration,
) -> Result<QueueRun, Error> {
    let name = system.name();
    let mut probe = db::Probe::connect(url, system.status_table(), queue).await?;
    if probe.unfinished().await? {
        return Err(format!("{name}: queue `{queue}` has unfinished rows before the run").into());
    }
    let id = |i: u64| format!("{prefix}-{i}");

    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..workflows {
        let call = system.enqueue(queue, id(i), i);
        tasks.spawn(async move { (i, call.await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined?;
        result.map_err(|e| format!("{name}: enqueuing workflow {i} on `{queue}` failed: {e}"))?;
    }
    let enqueued = started.elapsed();

    let (mut probes, mut probing) = (0u32, Duration::ZERO);
    let completed = loop {
        let asked = Instant::now();
        let unfinished = probe.unfinished().await?;
        let now = Instant::now();
        probes += 1;
        probing += now - asked;
        if !unfinished {
            break now - started;
        }
        if now - started > GIVE_UP {
            return Err(format!("{name}: queue `{queue}` still has unfinished rows after {GIVE_UP:?}").into());
        }
        tokio::time::sleep(poll.max((now - started) / RESOLUTION)).await;
    };
    probe.close().await?;

    // The check, outside the timing: every workflow's output through the system's API.
    let mut checks = JoinSet::new();
    for i in 0..workflows {
        if checks.len() >= CHECK_CONCURRENCY {
            check(name, checks.join_next().await)?;
        }
        let output = system.output(id(i));
        checks.spawn(async move { (i, output.await) });
    }
    while let Some(joined) = checks.join_next().await {
        check(name, Some(joined))?;
    }

    Ok(QueueRun { enqueued, completed, probes, probe_mean: probing / probes.max(1) })
}

type Joined = Result<(u64, Result<u64, Error>), tokio::task::JoinError>;

fn check(name: &str, joined: Option<Joined>) -> Result<(), Error> {
    let Some(joined) = joined else { return Ok(()) };
    let (i, output) = joined?;
    let output = output.map_err(|e| format!("{name}: queued workflow {i} failed: {e}"))?;
    if output != 2 * i {
        return Err(format!("{name}: queued workflow {i} returned {output}, expected {}", 2 * i).into());
    }
    Ok(())
}

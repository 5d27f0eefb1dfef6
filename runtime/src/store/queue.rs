//! SQL of durable queues: claiming ENQUEUED rows within the queue's limits, executor
//! heartbeats, and handing a dead executor's work back to the queues.

use std::collections::HashMap;

use sqlx::Row;

use super::{PendingWorkflow, Store};
use crate::error::{Error, Result};
use crate::queue::{INTERNAL_QUEUE, Queue};

/// The NOTIFY channel on which new ENQUEUED rows are announced (payload: the queue).
pub(crate) const ENQUEUED_CHANNEL: &str = "exactly_enqueued";

/// How many ENQUEUED rows a partitioned claim reads first, in claim order, to fill
/// its slots; only if they leave slots free does it look at each partition's head.
const PARTITION_SCAN: i64 = 1000;

/// A workflow this executor just claimed from a queue.
pub(crate) struct Claimed {
    pub workflow: PendingWorkflow,
    /// Executions started, this one included; above 1 the workflow has recorded steps.
    pub attempts: i32,
}

const CLAIM_SET: &str = "SET status = 'PENDING', executor_id = $2, started_at = clock_timestamp(),
        updated_at = clock_timestamp(), recovery_attempts = recovery_attempts + 1,
        deadline = COALESCE(deadline, clock_timestamp() + timeout_ms * interval '1 millisecond')";

/// The first ENQUEUED rows of each partition of queue `$1`, named in `$2` and not in
/// `$6`: as many as the partition has free slots (`$3` keys with `$4` free slots,
/// `$5` for a key not listed), at most `$7` in all, in priority then creation order.
/// The keys are found by a skip scan of `workflow_status_enqueued_partition` (one
/// probe per key), so rows behind a long backlog of full partitions cost nothing
/// to reach; rows without a key are one partition of their own.
const PARTITION_HEADS: &str = "
    WITH RECURSIVE slots AS (
        SELECT * FROM UNNEST($3::text[], $4::int8[]) AS s(key, free)
    ), keys AS (
        (SELECT partition_key AS key FROM workflow_status
         WHERE queue_name = $1 AND status = 'ENQUEUED' AND partition_key IS NOT NULL
         ORDER BY partition_key LIMIT 1)
        UNION ALL
        SELECT (SELECT partition_key FROM workflow_status
                WHERE queue_name = $1 AND status = 'ENQUEUED' AND partition_key > keys.key
                ORDER BY partition_key LIMIT 1)
        FROM keys WHERE keys.key IS NOT NULL
    ), heads AS (
        SELECT head.* FROM keys LEFT JOIN slots USING (key)
        CROSS JOIN LATERAL (
            SELECT workflow_id, priority, seq FROM workflow_status
            WHERE queue_name = $1 AND status = 'ENQUEUED' AND partition_key = keys.key
              AND name = ANY($2) AND workflow_id <> ALL($6)
            ORDER BY priority, seq
            LIMIT GREATEST(COALESCE(slots.free, $5), 0)
        ) AS head
        WHERE keys.key IS NOT NULL
        UNION ALL
        (SELECT workflow_id, priority, seq FROM workflow_status
         WHERE queue_name = $1 AND status = 'ENQUEUED' AND partition_key IS NULL
           AND name = ANY($2) AND workflow_id <> ALL($6)
         ORDER BY priority, seq
         LIMIT GREATEST((SELECT COALESCE(min(free), $5) FROM slots WHERE key = ''), 0))
    )
    SELECT workflow_id FROM heads ORDER BY priority, seq LIMIT $7";

const CLAIM_RETURNING: &str = "RETURNING workflow_id, name, inputs::text AS inputs, recovery_attempts, queue_name,
        (EXTRACT(EPOCH FROM (deadline - clock_timestamp())) * 1000)::bigint AS remaining_ms";

impl Store {
    /// Moves up to `want` ENQUEUED workflows of `queue` to PENDING for `executor`,
    /// in priority then creation order, within the queue's global limits. Only
    /// workflows named in `runnable` (those this program registers) are claimed:
    /// the others stay ENQUEUED for an executor that can run them.
    ///
    /// Queues with a global limit serialize their claims on an advisory lock, so the
    /// count of running (or recently started) workflows cannot change between the
    /// check and the claim; queues without one claim with `SKIP LOCKED` only.
    pub async fn claim(&self, queue: &Queue, executor: &str, runnable: &[&str], want: u32) -> Result<Vec<Claimed>> {
        let fail = |e| Error::db(format!("claiming workflows from queue `{}`", queue.name), e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let mut allowed = i64::from(want);
        if queue.has_global_limit() {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('exactly.queue.' || $1))")
                .bind(queue.name)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            let period_ms = queue.rate_limit.map(|r| r.period.as_millis() as i64).unwrap_or(0);
            let (running, recent): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status = 'PENDING'),
                        count(*) FILTER (WHERE started_at > clock_timestamp() - $2 * interval '1 millisecond')
                 FROM workflow_status
                 WHERE queue_name = $1
                   AND (status = 'PENDING' OR started_at > clock_timestamp() - $2 * interval '1 millisecond')",
            )
            .bind(queue.name)
            .bind(period_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
            if let Some(limit) = queue.concurrency {
                allowed = allowed.min(i64::from(limit) - running);
            }
            if let Some(rate) = queue.rate_limit {
                allowed = allowed.min(i64::from(rate.limit) - recent);
            }
        }
        if allowed <= 0 {
            tx.commit().await.map_err(fail)?;
            return Ok(Vec::new());
        }
        // `= ANY(ARRAY(..))` rather than `IN (..)`: the planner may turn an `IN` into a
        // hash join over the whole table (16 ms per claim at 60k rows, growing); the
        // array is looked up through the primary key whatever the table's size.
        let rows = match queue.partition_concurrency {
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE workflow_status {CLAIM_SET}
                 WHERE workflow_id = ANY(ARRAY(
                     SELECT workflow_id FROM workflow_status
                     WHERE queue_name = $1 AND status = 'ENQUEUED' AND name = ANY($4)
                     ORDER BY priority, seq
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED))
                 {CLAIM_RETURNING}"
            )))
            .bind(queue.name)
            .bind(executor)
            .bind(allowed)
            .bind(runnable)
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?,
            Some(per_partition) => {
                let ids = pick_by_partition(&mut tx, queue.name, runnable, per_partition, allowed).await.map_err(fail)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE workflow_status {CLAIM_SET}
                     WHERE workflow_id = ANY($3) AND queue_name = $1 AND status = 'ENQUEUED'
                     {CLAIM_RETURNING}"
                )))
                .bind(queue.name)
                .bind(executor)
                .bind(ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(fail)?
            }
        };
        tx.commit().await.map_err(fail)?;
        Ok(rows
            .into_iter()
            .map(|row| Claimed {
                workflow: PendingWorkflow {
                    id: row.get("workflow_id"),
                    name: row.get("name"),
                    inputs: row.get("inputs"),
                    queue: row.get("queue_name"),
                    remaining_ms: row.get("remaining_ms"),
                },
                attempts: row.get("recovery_attempts"),
            })
            .collect())
    }

    /// Hands workflows that `executor` claimed but did not start back to their
    /// queues (those on none, claimed for recovery, to the internal queue): ENQUEUED
    /// again, the claim's attempt, start time and deadline undone, announced by
    /// NOTIFY. Rows no longer PENDING for `executor` are left alone.
    pub async fn release(&self, executor: &str, ids: &[String]) -> Result<()> {
        sqlx::query(
            "WITH released AS (
                 UPDATE workflow_status
                 SET status = 'ENQUEUED', executor_id = NULL, queue_name = COALESCE(queue_name, $4),
                     started_at = NULL, updated_at = clock_timestamp(),
                     recovery_attempts = recovery_attempts - 1,
                     deadline = CASE WHEN recovery_attempts <= 1 THEN NULL ELSE deadline END
                 WHERE workflow_id = ANY($2) AND status = 'PENDING' AND executor_id = $1
                 RETURNING queue_name
             )
             SELECT pg_notify($3, queue_name) FROM (SELECT DISTINCT queue_name FROM released) AS queues",
        )
        .bind(executor)
        .bind(ids)
        .bind(ENQUEUED_CHANNEL)
        .bind(INTERNAL_QUEUE)
        .execute(&self.pool)
        .await
        .map_err(|e| Error::db(format!("handing {} claimed workflows back to their queues", ids.len()), e))?;
        Ok(())
    }

    /// The workflow that holds a deduplication ID on a queue, if any.
    pub async fn deduplication_holder(&self, queue: &str, deduplication_id: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT workflow_id FROM workflow_status
             WHERE queue_name = $1 AND deduplication_id = $2 AND status IN ('ENQUEUED', 'PENDING')",
        )
        .bind(queue)
        .bind(deduplication_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Error::db(format!("reading deduplication ID `{deduplication_id}` of queue `{queue}`"), e))
    }

    /// Records that `executor` is alive. Returns false if its row was gone, which
    /// means another executor declared it dead and took over its PENDING workflows.
    pub async fn heartbeat(&self, executor: &str, app_version: &str) -> Result<bool> {
        let fail = |e| Error::db(format!("recording the heartbeat of executor `{executor}`"), e);
        let updated = sqlx::query("UPDATE executors SET last_heartbeat = clock_timestamp() WHERE executor_id = $1")
            .bind(executor)
            .execute(&self.liveness)
            .await
            .map_err(fail)?
            .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO executors (executor_id, app_version, last_heartbeat) VALUES ($1, $2, clock_timestamp())
                 ON CONFLICT (executor_id) DO UPDATE SET last_heartbeat = clock_timestamp()",
            )
            .bind(executor)
            .bind(app_version)
            .execute(&self.liveness)
            .await
            .map_err(fail)?;
        }
        Ok(updated > 0)
    }

    /// How long ago `executor` last heartbeat (ms) and which process holds it, if it
    /// is registered.
    pub async fn executor_holder(&self, executor: &str) -> Result<Option<(i64, Option<String>)>> {
        sqlx::query_as(
            "SELECT (extract(epoch FROM clock_timestamp() - last_heartbeat) * 1000)::int8, process
             FROM executors WHERE executor_id = $1",
        )
        .bind(executor)
        .fetch_optional(&self.liveness)
        .await
        .map_err(|e| Error::db(format!("reading executor `{executor}`"), e))
    }

    /// Records that `process` holds `executor` now.
    pub async fn hold_executor(&self, executor: &str, process: &str) -> Result<()> {
        sqlx::query("UPDATE executors SET process = $2 WHERE executor_id = $1")
            .bind(executor)
            .bind(process)
            .execute(&self.liveness)
            .await
            .map_err(|e| Error::db(format!("recording the process of executor `{executor}`"), e))?;
        Ok(())
    }

    /// Declares dead every other executor silent for longer than `timeout_ms` and
    /// puts its PENDING workflows back on their queues (those on none go to the
    /// internal queue). Returns the queues that received work, announced by NOTIFY.
    pub async fn requeue_dead(&self, executor: &str, timeout_ms: i64) -> Result<Vec<String>> {
        let fail = |e| Error::db("handing the work of dead executors back to the queues", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let queues: Vec<String> = sqlx::query_scalar(
            "WITH dead AS (
                 DELETE FROM executors
                 WHERE executor_id <> $1 AND last_heartbeat < clock_timestamp() - $2 * interval '1 millisecond'
                 RETURNING executor_id
             ), moved AS (
                 UPDATE workflow_status
                 SET status = 'ENQUEUED', executor_id = NULL, queue_name = COALESCE(queue_name, $3),
                     updated_at = clock_timestamp()
                 WHERE status = 'PENDING' AND executor_id IN (SELECT executor_id FROM dead)
                 RETURNING queue_name
             )
             SELECT DISTINCT queue_name FROM moved",
        )
        .bind(executor)
        .bind(timeout_ms)
        .bind(INTERNAL_QUEUE)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        for queue in &queues {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(ENQUEUED_CHANNEL)
                .bind(queue)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(queues)
    }
}

/// Chooses up to `allowed` ENQUEUED workflows in priority order such that no
/// partition key runs more than `per_partition` at once. The first
/// [`PARTITION_SCAN`] rows usually fill the slots; when they do not and more rows
/// lie behind them, each partition's head is read (rows of free partitions may wait
/// behind a long backlog of full ones).
async fn pick_by_partition(
    tx: &mut sqlx::PgConnection,
    queue: &str,
    runnable: &[&str],
    per_partition: u32,
    allowed: i64,
) -> std::result::Result<Vec<String>, sqlx::Error> {
    let running: Vec<(String, i64)> = sqlx::query_as(
        "SELECT COALESCE(partition_key, ''), count(*) FROM workflow_status
         WHERE queue_name = $1 AND status = 'PENDING' GROUP BY 1",
    )
    .bind(queue)
    .fetch_all(&mut *tx)
    .await?;
    let mut slots: HashMap<String, i64> =
        running.into_iter().map(|(key, n)| (key, i64::from(per_partition) - n)).collect();
    let candidates: Vec<(String, String)> = sqlx::query_as(
        "SELECT workflow_id, COALESCE(partition_key, '') FROM workflow_status
         WHERE queue_name = $1 AND status = 'ENQUEUED' AND name = ANY($2)
         ORDER BY priority, seq
         LIMIT $3",
    )
    .bind(queue)
    .bind(runnable)
    .bind(PARTITION_SCAN)
    .fetch_all(&mut *tx)
    .await?;
    let scanned_all = (candidates.len() as i64) < PARTITION_SCAN;
    let mut picked = Vec::new();
    for (id, key) in candidates {
        if picked.len() as i64 >= allowed {
            break;
        }
        let free = slots.entry(key).or_insert(i64::from(per_partition));
        if *free > 0 {
            *free -= 1;
            picked.push(id);
        }
    }
    if picked.len() as i64 >= allowed || scanned_all {
        return Ok(picked);
    }
    let (keys, free): (Vec<String>, Vec<i64>) = slots.into_iter().unzip();
    let more: Vec<String> = sqlx::query_scalar(PARTITION_HEADS)
        .bind(queue)
        .bind(runnable)
        .bind(keys)
        .bind(free)
        .bind(i64::from(per_partition))
        .bind(&picked)
        .bind(allowed - picked.len() as i64)
        .fetch_all(&mut *tx)
        .await?;
    picked.extend(more);
    Ok(picked)
}

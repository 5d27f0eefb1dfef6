//! Group commit: the writes of many concurrent workflows share transactions.
//!
//! Every hot-path write (a new workflow row, a step checkpoint, an outcome) is sent
//! to a small pool of writer tasks. A writer takes everything waiting (up to
//! `max_batch`), writes it with one statement per kind in one transaction, and only
//! after the commit answers each caller. So each workflow still waits for its own
//! write to be durable, but a thousand workflows pay for a handful of fsyncs.
//!
//! A batch that fails because the database is unreachable is retried with backoff
//! until it succeeds: the callers simply wait through an outage. A batch that fails
//! for any other reason is split and each write retried alone, so one bad write
//! fails only its own caller.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::supervise::{self, OnStop, Supervisor};

/// A workflow row to insert (status PENDING, or ENQUEUED with a queue).
#[derive(Debug, Clone)]
pub(crate) struct NewWorkflow {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub inputs: String,
    pub executor_id: Option<String>,
    pub app_version: String,
    pub timeout_ms: Option<i64>,
    pub source: Option<String>,
    pub queue: Option<String>,
    pub priority: i32,
    pub partition_key: Option<String>,
    pub deduplication_id: Option<String>,
}

/// A step's recorded output (JSON) or error (JSON).
#[derive(Debug, Clone)]
pub(crate) struct StepRecord {
    pub workflow_id: String,
    pub step_id: i32,
    pub name: String,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// A workflow's final status, output and error.
#[derive(Debug, Clone)]
pub(crate) struct Finish {
    pub id: String,
    pub status: &'static str,
    pub output: Option<String>,
    pub error: Option<String>,
    pub owner: Owner,
}

/// The execution a write comes from: the executor that runs the workflow and the
/// row's `recovery_attempts` when that execution began. Every claim, recovery and
/// takeover changes one or the other, so a write lands only while its execution
/// still owns the row (fencing): a process that was paused past its executor
/// timeout, whose workflows another executor took over, writes nothing after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub executor: String,
    pub attempt: i32,
}

enum Write {
    /// Answers whether the row was inserted (false: the ID existed).
    Insert(NewWorkflow, oneshot::Sender<Result<bool>>),
    /// Rows that must commit together (a receiver's poll batch); answers per row.
    #[cfg_attr(not(any(feature = "kafka", feature = "sqs")), allow(dead_code))] // used by the receivers
    InsertMany(Vec<NewWorkflow>, oneshot::Sender<Result<Vec<bool>>>),
    Step(StepRecord, Owner, oneshot::Sender<Result<()>>),
    Finish(Finish, oneshot::Sender<Result<()>>),
}

/// The sending side of the writer pool.
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Write>,
}

impl Writer {
    /// A writer that stops while the runtime runs fails the runtime: the callers of
    /// the batch it held would never hear whether their writes are durable.
    pub fn spawn(pool: PgPool, writers: usize, max_batch: usize, supervisor: &Arc<Supervisor>) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            let (pool, rx) = (pool.clone(), rx.clone());
            supervise::spawn(supervisor, "checkpoint writer", OnStop::FailRuntime, move || {
                run_writer(pool.clone(), rx.clone(), max_batch.max(1))
            });
        }
        Writer { tx }
    }

    /// Inserts a workflow row unless its ID exists; true if this call inserted it.
    pub async fn insert(&self, row: NewWorkflow) -> Result<bool> {
        self.send(|reply| Write::Insert(row, reply)).await
    }

    /// Inserts rows in one transaction unless their IDs exist; for each row, true if
    /// this call inserted it. All rows are durable when this returns.
    #[cfg_attr(not(any(feature = "kafka", feature = "sqs")), allow(dead_code))] // used by the receivers
    pub async fn insert_many(&self, rows: Vec<NewWorkflow>) -> Result<Vec<bool>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.send(|reply| Write::InsertMany(rows, reply)).await
    }

    /// Records a step's output, if `owner` still owns the workflow (else
    /// [`Error::Fenced`]). A record that exists already is kept.
    pub async fn step(&self, record: StepRecord, owner: Owner) -> Result<()> {
        self.send(|reply| Write::Step(record, owner, reply)).await
    }

    /// Records how a PENDING workflow ended, if its execution still owns it (else
    /// [`Error::Fenced`]).
    pub async fn finish(&self, finish: Finish) -> Result<()> {
        self.send(|reply| Write::Finish(finish, reply)).await
    }

    async fn send<T>(&self, write: impl FnOnce(oneshot::Sender<Result<T>>) -> Write) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(write(reply)).map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)?
    }
}

async fn run_writer(pool: PgPool, rx: Arc<Mutex<mpsc::UnboundedReceiver<Write>>>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, max_batch).await == 0 {
                return; // every sender is gone: the runtime has shut down
            }
        }
        supervise::fault_point("checkpoint writer");
        write_batch(&pool, std::mem::take(&mut batch)).await;
    }
}

/// Writes a batch, retrying through outages, and answers every caller.
async fn write_batch(pool: &PgPool, batch: Vec<Write>) {
    // One token for every attempt at this batch: rows a lost-reply attempt inserted
    // carry it, so the retry counts them as its own.
    let token = uuid::Uuid::new_v4().to_string();
    let mut delay = Duration::from_millis(50);
    loop {
        match try_write(pool, &batch, &token).await {
            Ok(written) => return answer(batch, &written),
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "exactly: database unavailable; checkpoint writes wait");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) if batch.len() > 1 => {
                tracing::debug!(error = %e, size = batch.len(), "exactly: batch failed; writing its parts one by one");
                for write in batch {
                    Box::pin(write_batch(pool, vec![write])).await;
                }
                return;
            }
            Err(e) => {
                // A batch of one: that write alone is at fault.
                if let Some(write) = batch.into_iter().next() {
                    fail(write, e);
                }
                return;
            }
        }
    }
}

fn answer(batch: Vec<Write>, written: &Written) {
    let mut seen = HashSet::new();
    let fenced = |id: &str| Err(Error::Fenced { id: id.to_owned() });
    for write in batch {
        // A caller that gave up waiting is no reason to fail the others.
        match write {
            // Of two inserts of one ID in one batch, only the first inserted it.
            Write::Insert(row, reply) => {
                drop(reply.send(Ok(written.inserted.contains(&row.id) && seen.insert(row.id))))
            }
            Write::InsertMany(rows, reply) => drop(reply.send(Ok(rows
                .into_iter()
                .map(|row| written.inserted.contains(&row.id) && seen.insert(row.id))
                .collect()))),
            Write::Step(record, _, reply) => drop(reply.send(
                if written.owned_steps.contains(&(record.workflow_id.clone(), record.step_id)) {
                    Ok(())
                } else {
                    fenced(&record.workflow_id)
                },
            )),
            Write::Finish(finish, reply) => {
                drop(reply.send(if written.finished.contains(&finish.id) { Ok(()) } else { fenced(&finish.id) }))
            }
        }
    }
}

fn fail(write: Write, source: sqlx::Error) {
    match write {
        Write::Insert(row, reply) => {
            drop(reply.send(Err(Error::db(format!("inserting workflow `{}`", row.id), source))));
        }
        Write::InsertMany(rows, reply) => {
            let first = rows.first().map(|r| r.id.as_str()).unwrap_or_default();
            let context = format!("inserting {} workflows (the first `{first}`)", rows.len());
            drop(reply.send(Err(Error::db(context, source))));
        }
        Write::Step(record, _, reply) => drop(reply.send(Err(Error::db(
            format!("recording step {} of workflow `{}`", record.step_id, record.workflow_id),
            source,
        )))),
        Write::Finish(finish, reply) => {
            drop(reply.send(Err(Error::db(format!("recording the outcome of workflow `{}`", finish.id), source))));
        }
    }
}

/// Connection-level failures that retrying will cure once the database is back.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        // A migration cut short by a restarting server.
        sqlx::Error::Migrate(m) => match m.as_ref() {
            sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => is_transient(e),
            _ => false,
        },
        // TLS that cannot be set up fails the same way every time: a certificate refused
        // (rustls reports it, and a server's alert, as I/O of kind InvalidData), or TLS
        // required of a server without it (sqlx::Error::Tls). A restarting server
        // refuses, resets or closes connections instead.
        sqlx::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception; 57P0x: shutdown; 53300: too many connections;
            // 40001/40P01: serialization failure, deadlock.
            code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "40001" || code == "40P01"
        }
        _ => false,
    }
}

/// What a write batch did: the workflow rows it inserted, the step records and
/// outcomes whose execution still owned its workflow (the others were fenced).
#[derive(Default)]
struct Written {
    inserted: HashSet<String>,
    owned_steps: HashSet<(String, i32)>,
    finished: HashSet<String>,
}

/// One transaction, at most one statement per kind of write.
async fn try_write(pool: &PgPool, batch: &[Write], token: &str) -> std::result::Result<Written, sqlx::Error> {
    let mut inserts = Vec::new();
    let mut steps = Vec::new();
    let mut finishes = Vec::new();
    for write in batch {
        match write {
            Write::Insert(row, _) => inserts.push(row),
            Write::InsertMany(rows, _) => inserts.extend(rows),
            Write::Step(record, owner, _) => steps.push((record, owner)),
            Write::Finish(finish, _) => finishes.push(finish),
        }
    }
    let kinds = [!inserts.is_empty(), !steps.is_empty(), !finishes.is_empty()];
    let mut conn = pool.acquire().await?;
    // A single statement commits on its own: no BEGIN/COMMIT round trips needed.
    let in_tx = kinds.iter().filter(|k| **k).count() > 1;
    if in_tx {
        sqlx::query("BEGIN").execute(&mut *conn).await?;
    }
    let result = async {
        let mut written = Written::default();
        if !inserts.is_empty() {
            written.inserted = insert_workflows(&mut conn, &inserts, token).await?;
        }
        if !steps.is_empty() {
            written.owned_steps = insert_steps(&mut conn, &steps).await?;
        }
        if !finishes.is_empty() {
            written.finished = finish_workflows(&mut conn, &finishes).await?;
        }
        Ok::<_, sqlx::Error>(written)
    }
    .await;
    if in_tx {
        match &result {
            Ok(_) => sqlx::query("COMMIT").execute(&mut *conn).await.map(drop)?,
            Err(_) => {
                // The connection may be dead; a failed rollback only loses the connection.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
        }
    }
    result
}

async fn insert_workflows(
    conn: &mut sqlx::PgConnection,
    rows: &[&NewWorkflow],
    token: &str,
) -> std::result::Result<HashSet<String>, sqlx::Error> {
    // One row per ID: `ON CONFLICT DO UPDATE` may not touch a row twice in a statement
    // (the first of two inserts of one ID wins, as it would one after the other).
    let mut seen = HashSet::new();
    let rows: Vec<&NewWorkflow> = rows.iter().copied().filter(|r| seen.insert(r.id.as_str())).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status).collect();
    let inputs: Vec<&str> = rows.iter().map(|r| r.inputs.as_str()).collect();
    let executors: Vec<Option<&str>> = rows.iter().map(|r| r.executor_id.as_deref()).collect();
    let versions: Vec<&str> = rows.iter().map(|r| r.app_version.as_str()).collect();
    let timeouts: Vec<Option<i64>> = rows.iter().map(|r| r.timeout_ms).collect();
    let sources: Vec<Option<&str>> = rows.iter().map(|r| r.source.as_deref()).collect();
    let queues: Vec<Option<&str>> = rows.iter().map(|r| r.queue.as_deref()).collect();
    let priorities: Vec<i32> = rows.iter().map(|r| r.priority).collect();
    let partitions: Vec<Option<&str>> = rows.iter().map(|r| r.partition_key.as_deref()).collect();
    let dedups: Vec<Option<&str>> = rows.iter().map(|r| r.deduplication_id.as_deref()).collect();
    // A PENDING row runs now: its first execution starts and its deadline runs from
    // here. An ENQUEUED row gets both when the dispatcher claims it. Rows are inserted
    // in the given order, so their `seq` is the enqueue order. An existing row
    // is returned (as inserted by this write) only if an earlier attempt of this
    // same write inserted it: the no-op update matches on the token alone.
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO workflow_status
             (workflow_id, name, status, inputs, executor_id, app_version, timeout_ms, deadline, source,
              queue_name, priority, partition_key, deduplication_id, recovery_attempts, started_at, insert_token)
         SELECT id, name, status, inputs::jsonb, executor, version, timeout_ms,
                CASE WHEN status = 'PENDING' THEN clock_timestamp() + timeout_ms * interval '1 millisecond' END,
                source::jsonb, queue, priority, partition_key, dedup,
                CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END,
                CASE WHEN status = 'PENDING' THEN clock_timestamp() END, $13::uuid
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::text[],
                     $9::text[], $10::int4[], $11::text[], $12::text[]) WITH ORDINALITY
              AS t(id, name, status, inputs, executor, version, timeout_ms, source, queue, priority, partition_key, dedup, ord)
         ORDER BY ord
         ON CONFLICT (workflow_id) DO UPDATE SET insert_token = EXCLUDED.insert_token
             WHERE workflow_status.insert_token = EXCLUDED.insert_token
         RETURNING workflow_id",
    )
    .bind(ids)
    .bind(names)
    .bind(statuses)
    .bind(inputs)
    .bind(executors)
    .bind(versions)
    .bind(timeouts)
    .bind(sources)
    .bind(queues)
    .bind(priorities)
    .bind(partitions)
    .bind(dedups)
    .bind(token)
    .fetch_all(&mut *conn)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// Inserts the step records whose execution still owns its workflow (PENDING, same
/// executor, same attempt); returns those (workflow, step) pairs. The owning rows
/// are share-locked, so a takeover either waits for this write or this write sees
/// the takeover: a successor never reads a workflow's steps while a fenced
/// execution's record of one is still to land.
async fn insert_steps(
    conn: &mut sqlx::PgConnection,
    steps: &[(&StepRecord, &Owner)],
) -> std::result::Result<HashSet<(String, i32)>, sqlx::Error> {
    let ids: Vec<&str> = steps.iter().map(|(s, _)| s.workflow_id.as_str()).collect();
    let step_ids: Vec<i32> = steps.iter().map(|(s, _)| s.step_id).collect();
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.name.as_str()).collect();
    let outputs: Vec<Option<&str>> = steps.iter().map(|(s, _)| s.output.as_deref()).collect();
    let errors: Vec<Option<&str>> = steps.iter().map(|(s, _)| s.error.as_deref()).collect();
    let executors: Vec<&str> = steps.iter().map(|(_, o)| o.executor.as_str()).collect();
    let attempts: Vec<i32> = steps.iter().map(|(_, o)| o.attempt).collect();
    let owned: Vec<(String, i32)> = sqlx::query_as(
        "WITH owned AS (
             SELECT t.id, t.step_id, t.name, t.output, t.error
             FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[])
                  AS t(id, step_id, name, output, error, executor, attempt)
             JOIN workflow_status w ON w.workflow_id = t.id
             WHERE (w.status || '') = 'PENDING' AND w.executor_id = t.executor AND w.recovery_attempts = t.attempt
             FOR SHARE OF w
         ), recorded AS (
             INSERT INTO operation_outputs (workflow_id, step_id, name, output, error)
             SELECT id, step_id, name, output::jsonb, error::jsonb FROM owned
             ON CONFLICT (workflow_id, step_id) DO NOTHING
         )
         SELECT id, step_id FROM owned",
    )
    .bind(ids)
    .bind(step_ids)
    .bind(names)
    .bind(outputs)
    .bind(errors)
    .bind(executors)
    .bind(attempts)
    .fetch_all(&mut *conn)
    .await?;
    Ok(owned.into_iter().collect())
}

/// Records outcomes whose execution still owns its workflow; returns their IDs. A
/// retry of a write whose reply was lost finds its own outcome already there (same
/// execution, same status) and counts it as written.
async fn finish_workflows(
    conn: &mut sqlx::PgConnection,
    finishes: &[&Finish],
) -> std::result::Result<HashSet<String>, sqlx::Error> {
    let ids: Vec<&str> = finishes.iter().map(|f| f.id.as_str()).collect();
    let statuses: Vec<&str> = finishes.iter().map(|f| f.status).collect();
    let outputs: Vec<Option<&str>> = finishes.iter().map(|f| f.output.as_deref()).collect();
    let errors: Vec<Option<&str>> = finishes.iter().map(|f| f.error.as_deref()).collect();
    let executors: Vec<&str> = finishes.iter().map(|f| f.owner.executor.as_str()).collect();
    let attempts: Vec<i32> = finishes.iter().map(|f| f.owner.attempt).collect();
    let finished: Vec<String> = sqlx::query_scalar(
        "UPDATE workflow_status w
         SET status = t.status, output = t.output::jsonb, error = t.error::jsonb,
             updated_at = clock_timestamp(), completed_at = COALESCE(w.completed_at, clock_timestamp())
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[])
              AS t(id, status, output, error, executor, attempt)
         -- Written so that the planner joins on the primary key: a plain
         -- `status = 'PENDING'` makes it scan the partial index of all PENDING rows.
         WHERE w.workflow_id = t.id AND ((w.status || '') = 'PENDING' OR w.status = t.status)
           AND w.executor_id = t.executor AND w.recovery_attempts = t.attempt
         RETURNING w.workflow_id",
    )
    .bind(ids)
    .bind(statuses)
    .bind(outputs)
    .bind(errors)
    .bind(executors)
    .bind(attempts)
    .fetch_all(&mut *conn)
    .await?;
    Ok(finished.into_iter().collect())
}

#[cfg(test)]
mod tests {
    //! Against the real PostgreSQL of `dev/services` (or `DATABASE_URL`).
    use super::*;
    use crate::store::{Store, StoreConfig};

    fn row(id: &str) -> NewWorkflow {
        NewWorkflow {
            id: id.to_owned(),
            name: "app::w".to_owned(),
            status: "PENDING",
            inputs: "[]".to_owned(),
            executor_id: Some("e".to_owned()),
            app_version: "v".to_owned(),
            timeout_ms: None,
            source: None,
            queue: None,
            priority: 0,
            partition_key: None,
            deduplication_id: None,
        }
    }

    fn insert(id: &str) -> Write {
        Write::Insert(row(id), oneshot::channel().0)
    }

    #[test]
    fn a_migration_cut_short_by_a_restarting_server_is_transient() {
        use sqlx::migrate::MigrateError;
        let reset = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_transient(&sqlx::Error::Migrate(Box::new(MigrateError::Execute(reset())))));
        assert!(is_transient(&sqlx::Error::Migrate(Box::new(MigrateError::ExecuteMigration(reset(), 4)))));
        assert!(!is_transient(&sqlx::Error::Migrate(Box::new(MigrateError::VersionMismatch(4)))));
    }

    /// A store on a schema of its own, dropped by the caller with [`drop_schema`].
    async fn test_store(name: &str) -> (Store, String) {
        let schema = format!("exactly_writer_{name}_{}", std::process::id());
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable".into());
        let config = StoreConfig {
            url,
            url_source: "DATABASE_URL".into(),
            schema: schema.clone(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(10),
            writers: 1,
            max_batch: 10,
        };
        let store = Store::connect(&config, &crate::supervise::Supervisor::new())
            .await
            .expect("the test needs dev/services' PostgreSQL");
        (store, schema)
    }

    async fn drop_schema(store: &Store, schema: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(store.pool()).await.unwrap();
    }

    fn sorted(set: HashSet<String>) -> Vec<String> {
        let mut v: Vec<_> = set.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn a_retried_write_whose_reply_was_lost_knows_its_own_rows() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (store, schema) = test_store("token").await;
            let pool = store.pool();
            // The first attempt commits; suppose its reply was lost. The retry, with the
            // same token, reports the row as inserted by this write.
            let batch = vec![insert("w1"), insert("w2"), insert("w2")];
            let token = "00000000-0000-0000-0000-00000000000a";
            assert_eq!(sorted(try_write(pool, &batch, token).await.unwrap().inserted), ["w1", "w2"]);
            assert_eq!(sorted(try_write(pool, &batch, token).await.unwrap().inserted), ["w1", "w2"]);
            // Any other write finds them existing.
            let other = "00000000-0000-0000-0000-00000000000b";
            assert!(try_write(pool, &batch, other).await.unwrap().inserted.is_empty());
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_status").fetch_one(pool).await.unwrap();
            assert_eq!(rows, 2);
            drop_schema(&store, &schema).await;
        });
    }

    #[test]
    fn writes_of_an_execution_that_lost_its_workflow_are_fenced() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (store, schema) = test_store("fence").await;
            let pool = store.pool();
            let first = Owner { executor: "e".into(), attempt: 1 };
            let step = |n: i32, output: &str| StepRecord {
                workflow_id: "w".into(),
                step_id: n,
                name: "s".into(),
                output: Some(output.into()),
                error: None,
            };
            let finish = |owner: &Owner, output: &str| Finish {
                id: "w".into(),
                status: "SUCCESS",
                output: Some(output.into()),
                error: None,
                owner: owner.clone(),
            };
            store.writer.insert(row("w")).await.unwrap();
            store.writer.step(step(0, "1"), first.clone()).await.unwrap();
            // Another executor takes the workflow over (a dead executor's work, claimed).
            sqlx::query("UPDATE workflow_status SET executor_id = 'other', recovery_attempts = 2").execute(pool).await.unwrap();
            let late = store.writer.step(step(1, "2"), first.clone()).await;
            assert!(matches!(late, Err(Error::Fenced { .. })), "{late:?}");
            let late = store.writer.finish(finish(&first, "3")).await;
            assert!(matches!(late, Err(Error::Fenced { .. })), "{late:?}");
            let same_executor_old_attempt = Owner { executor: "other".into(), attempt: 1 };
            let late = store.writer.step(step(1, "2"), same_executor_old_attempt).await;
            assert!(matches!(late, Err(Error::Fenced { .. })), "{late:?}");

            let owner = Owner { executor: "other".into(), attempt: 2 };
            store.writer.step(step(1, "4"), owner.clone()).await.unwrap();
            store.writer.finish(finish(&owner, "5")).await.unwrap();
            // A retry of that outcome (its reply lost) is its own write, not a fenced one.
            store.writer.finish(finish(&owner, "5")).await.unwrap();
            let steps: Vec<(i32, String)> =
                sqlx::query_as("SELECT step_id, output::text FROM operation_outputs ORDER BY step_id").fetch_all(pool).await.unwrap();
            assert_eq!(steps, [(0, "1".to_owned()), (1, "4".to_owned())], "the fenced step left nothing");
            let outcome: (String, String) =
                sqlx::query_as("SELECT status, output::text FROM workflow_status").fetch_one(pool).await.unwrap();
            assert_eq!(outcome, ("SUCCESS".to_owned(), "5".to_owned()));
            drop_schema(&store, &schema).await;
        });
    }
}

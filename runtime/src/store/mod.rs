//! PostgreSQL: connection, migrations, and every SQL statement of the runtime.
//!
//! Writes on the workflow hot path (new rows, step checkpoints, outcomes) go through
//! the group-commit [`writer`]; reads and rare writes are plain functions here.

mod queue;
mod writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Connection, Row};

use crate::error::{Error, Result};
use crate::supervise::Supervisor;
pub(crate) use queue::{Claimed, ENQUEUED_CHANNEL};
pub(crate) use writer::{Finish, NewWorkflow, Owner, StepRecord, Writer};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The status of a workflow, as stored in `workflow_status.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkflowState {
    /// Waiting in a durable queue.
    Enqueued,
    /// Running (or to be recovered).
    Pending,
    /// Completed with an output.
    Success,
    /// Completed with an error, which is recorded.
    Error,
    /// Cancelled, or timed out.
    Cancelled,
    /// Given up after crashing the process too many times; its inputs are kept.
    MaxRecoveryAttemptsExceeded,
}

impl WorkflowState {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Enqueued => "ENQUEUED",
            WorkflowState::Pending => "PENDING",
            WorkflowState::Success => "SUCCESS",
            WorkflowState::Error => "ERROR",
            WorkflowState::Cancelled => "CANCELLED",
            WorkflowState::MaxRecoveryAttemptsExceeded => "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
        }
    }

    /// Whether the workflow has ended for good.
    pub fn is_terminal(self) -> bool {
        !matches!(self, WorkflowState::Enqueued | WorkflowState::Pending)
    }
}

impl std::fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkflowState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ENQUEUED" => WorkflowState::Enqueued,
            "PENDING" => WorkflowState::Pending,
            "SUCCESS" => WorkflowState::Success,
            "ERROR" => WorkflowState::Error,
            "CANCELLED" => WorkflowState::Cancelled,
            "MAX_RECOVERY_ATTEMPTS_EXCEEDED" => WorkflowState::MaxRecoveryAttemptsExceeded,
            other => return Err(Error::msg(format!("unknown workflow status `{other}` in the database"))),
        })
    }
}

/// How a workflow ended: its state and the recorded output or error (JSON text).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub state: WorkflowState,
    pub output: Option<String>,
    pub error: Option<String>,
}

impl Outcome {
    /// The message of the recorded error, if any.
    pub fn error_message(&self) -> String {
        self.error.as_deref().map(error_message).unwrap_or_default()
    }
}

/// The `message` field of an error as stored in the `error` columns.
pub(crate) fn error_message(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| json.to_owned())
}

/// Encodes an error message as the JSON stored in the `error` columns. JSONB holds
/// no U+0000: a NUL in a message is written as the two characters `\0`.
pub(crate) fn error_json(message: &str) -> String {
    let message: std::borrow::Cow<'_, str> =
        if message.contains('\0') { message.replace('\0', "\\0").into() } else { message.into() };
    serde_json::json!({ "message": message }).to_string()
}

/// Whether JSON text holds a U+0000 character (the escape `\u0000`), which a JSONB
/// column refuses. A backslash before the escape that is itself escaped does not
/// count: `"\\u0000"` is the text `\u0000`, not a NUL.
pub(crate) fn holds_nul(json: &str) -> bool {
    json.match_indices("\\u0000").any(|(at, _)| json[..at].bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 0)
}

/// Why JSON text cannot be stored, if it holds U+0000.
pub(crate) fn refuse_nul(json: &str, what: impl FnOnce() -> String) -> Result<()> {
    if holds_nul(json) {
        return Err(Error::msg(format!(
            "{} contains the character U+0000, which PostgreSQL cannot store in JSONB; remove it or encode the value (e.g. as bytes or base64)",
            what()
        )));
    }
    Ok(())
}

/// One row of `workflow_status`, as [`WorkflowHandle::status`](crate::WorkflowHandle::status) returns it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkflowStatus {
    /// The workflow ID.
    pub id: String,
    /// The workflow's durable name.
    pub name: String,
    /// Where it stands.
    pub state: WorkflowState,
    /// The recorded inputs (JSON).
    pub inputs: String,
    /// The recorded output (JSON), once SUCCESS.
    pub output: Option<String>,
    /// The recorded error (JSON `{"message": ..}`), once ended otherwise.
    pub error: Option<String>,
    /// The executor that runs or ran it.
    pub executor_id: Option<String>,
    /// How many times an execution was started (1 for a workflow never recovered).
    pub recovery_attempts: i32,
}

/// A moment on the database's clock (ms since the epoch): recovery takes only the
/// executions started before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Since(i64);

/// The database side of the runtime.
pub(crate) struct Store {
    pool: PgPool,
    /// The heartbeat's own connection: a pool starved by writers and steps must not
    /// get a live executor declared dead.
    liveness: PgPool,
    pub writer: Writer,
}

/// A PENDING workflow this executor must resume.
pub(crate) struct PendingWorkflow {
    pub id: String,
    pub name: String,
    pub inputs: String,
    /// The queue it was dispatched from, if any.
    pub queue: Option<String>,
    /// Milliseconds left before the recorded deadline (negative when overdue).
    pub remaining_ms: Option<i64>,
}

/// Settings for [`Store::connect`].
pub(crate) struct StoreConfig {
    pub url: String,
    /// Which setting the URL came from, for error messages.
    pub url_source: String,
    pub schema: String,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub writers: usize,
    pub max_batch: usize,
}

impl Store {
    /// Connects, creates the schema and applies the migrations under an advisory lock.
    pub async fn connect(config: &StoreConfig, supervisor: &Arc<Supervisor>) -> Result<Store> {
        validate_schema(&config.schema)?;
        let options = PgConnectOptions::from_str(&config.url).map_err(|e| {
            Error::Config(format!("{} is not a valid PostgreSQL URL ({e})", config.url_source))
        })?;
        let target = format!(
            "{}:{}/{} (from {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("<default database>"),
            config.url_source
        );
        let (options, tls) = Tls::settle(options, &config.url, &config.url_source)?;
        let options = options.options([("search_path", config.schema.as_str())]);
        // A server that is restarting refuses or drops connections for a moment:
        // launch keeps trying for the connect timeout before it gives up. A refusal
        // (a certificate, a password, a database name) fails at once, saying why.
        let pool = while_transient(config.connect_timeout, || async {
            let pool = PgPoolOptions::new()
                .max_connections(config.pool_size)
                // A ping on every acquire would add a round trip to every checkpoint; a
                // dead connection fails its statement instead, and the writer retries.
                .test_before_acquire(false)
                .acquire_timeout(config.connect_timeout)
                .connect_with(options.clone())
                .await
                .map_err(|e| {
                    let why = refusal(&e, &options, &tls, &config.url_source);
                    Error::db(format!("connecting to PostgreSQL at {target}{}", why.unwrap_or_default()), e)
                })?;
            migrate(&pool, &config.schema).await?;
            Ok(pool)
        })
        .await?;
        let writer = Writer::spawn(pool.clone(), config.writers, config.max_batch, supervisor);
        let liveness = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        Ok(Store { pool, liveness, writer })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The full row of one workflow.
    pub async fn status(&self, id: &str) -> Result<Option<WorkflowStatus>> {
        let row = sqlx::query(
            "SELECT workflow_id, name, status, inputs::text AS inputs, output::text AS output,
                    error::text AS error, executor_id, recovery_attempts
             FROM workflow_status WHERE workflow_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Error::db(format!("reading workflow `{id}`"), e))?;
        row.map(|row| {
            Ok(WorkflowStatus {
                id: row.get("workflow_id"),
                name: row.get("name"),
                state: row.get::<String, _>("status").parse()?,
                inputs: row.get("inputs"),
                output: row.get("output"),
                error: row.get("error"),
                executor_id: row.get("executor_id"),
                recovery_attempts: row.get("recovery_attempts"),
            })
        })
        .transpose()
    }

    /// The outcome of a workflow if it has ended.
    pub async fn outcome(&self, id: &str) -> Result<Option<Outcome>> {
        let Some(status) = self.status(id).await? else { return Err(Error::NotFound(id.to_owned())) };
        Ok(status.state.is_terminal().then_some(Outcome {
            state: status.state,
            output: status.output,
            error: status.error,
        }))
    }

    /// The name of the workflow that owns `id`.
    pub async fn workflow_name(&self, id: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT name FROM workflow_status WHERE workflow_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::db(format!("reading workflow `{id}`"), e))
    }

    /// The database's clock now, for [`claim_pending`](Self::claim_pending).
    pub async fn now(&self) -> Result<Since> {
        let ms: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Error::db("reading the database's clock", e))?;
        Ok(Since(ms))
    }

    /// The recorded steps of several workflows, by workflow and step ID.
    pub async fn steps_of(&self, ids: &[String]) -> Result<HashMap<String, HashMap<i32, StepRecord>>> {
        let rows = sqlx::query(
            "SELECT workflow_id, step_id, name, output::text AS output, error::text AS error
             FROM operation_outputs WHERE workflow_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| Error::db(format!("reading the steps of {} workflows", ids.len()), e))?;
        let mut steps: HashMap<String, HashMap<i32, StepRecord>> = HashMap::new();
        for row in rows {
            let record = StepRecord {
                workflow_id: row.get("workflow_id"),
                step_id: row.get("step_id"),
                name: row.get("name"),
                output: row.get("output"),
                error: row.get("error"),
            };
            steps.entry(record.workflow_id.clone()).or_default().insert(record.step_id, record);
        }
        Ok(steps)
    }

    /// The recorded steps of a workflow, by step ID.
    pub async fn steps(&self, workflow_id: &str) -> Result<HashMap<i32, StepRecord>> {
        let rows = sqlx::query(
            "SELECT step_id, name, output::text AS output, error::text AS error
             FROM operation_outputs WHERE workflow_id = $1",
        )
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| Error::db(format!("reading the steps of workflow `{workflow_id}`"), e))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let step_id: i32 = row.get("step_id");
                let record = StepRecord {
                    workflow_id: workflow_id.to_owned(),
                    step_id,
                    name: row.get("name"),
                    output: row.get("output"),
                    error: row.get("error"),
                };
                (step_id, record)
            })
            .collect())
    }

    /// Claims up to `limit` of this executor's PENDING workflows for recovery, in ID
    /// order after `after`, none of `except`: each one's attempt counter goes up by
    /// one, in the same statement that reads it. Recovery claims a batch just before
    /// it starts it, so a process killed during recovery counts an attempt only for
    /// the batch it was starting.
    pub async fn claim_pending(
        &self,
        executor_id: &str,
        since: Since,
        except: &[String],
        after: &str,
        limit: i64,
    ) -> Result<Vec<(PendingWorkflow, i32)>> {
        // Only executions started before `since`: a workflow this process started (or
        // claimed from a queue) since then runs already, and claiming it would fence it.
        let rows = sqlx::query(
            "UPDATE workflow_status w
             SET recovery_attempts = w.recovery_attempts + 1, updated_at = clock_timestamp()
             FROM (SELECT workflow_id FROM workflow_status
                   WHERE status = 'PENDING' AND executor_id = $1 AND workflow_id <> ALL($2) AND workflow_id > $3
                     AND (started_at IS NULL OR started_at < to_timestamp($5::float8 / 1000))
                   ORDER BY workflow_id LIMIT $4 FOR UPDATE) AS c
             WHERE w.workflow_id = c.workflow_id AND w.status = 'PENDING' AND w.executor_id = $1
             RETURNING w.workflow_id, w.name, w.inputs::text AS inputs, w.recovery_attempts, w.queue_name,
                       (EXTRACT(EPOCH FROM (w.deadline - clock_timestamp())) * 1000)::bigint AS remaining_ms",
        )
        .bind(executor_id)
        .bind(except)
        .bind(after)
        .bind(limit)
        .bind(since.0)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| Error::db(format!("claiming the PENDING workflows of executor `{executor_id}`"), e))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let pending = PendingWorkflow {
                    id: row.get("workflow_id"),
                    name: row.get("name"),
                    inputs: row.get("inputs"),
                    queue: row.get("queue_name"),
                    remaining_ms: row.get("remaining_ms"),
                };
                (pending, row.get("recovery_attempts"))
            })
            .collect())
    }
}

/// The URL's TLS settings as libpq reads them: for messages, and for the one place
/// where sqlx reads them otherwise (`sslmode=require` with `sslrootcert`).
struct Tls {
    /// `sslmode` as the URL (or `PGSSLMODE`) sets it; `prefer` when unset.
    mode: &'static str,
    /// Where the CAs to trust come from, for messages: "sslrootcert `/ca.pem`", or
    /// "PGSSLROOTCERT `/ca.pem`" when the URL names none; `None` for the system's.
    root_cert: Option<String>,
}

impl Tls {
    /// Reads the settings, and makes `require` verify the server's certificate when
    /// `sslrootcert` names a readable file: libpq does ("verify as verify-ca"), sqlx
    /// would accept any certificate. A `verify-ca` or `verify-full` whose CA file
    /// cannot be read fails here: every connection would fail on it.
    fn settle(options: PgConnectOptions, url: &str, url_source: &str) -> Result<(PgConnectOptions, Tls)> {
        let mode = match options.get_ssl_mode() {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        };
        // The URL's last `sslrootcert` wins over the environment's, as in sqlx's parser.
        let query = url.split_once('?').map_or("", |(_, query)| query);
        let in_url = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| matches!(*key, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
            .map(|(_, value)| percent_decode(value))
            .next_back();
        let (setting, cert) = match in_url {
            Some(cert) => ("sslrootcert", cert),
            None => match std::env::var("PGSSLROOTCERT") {
                Ok(cert) => ("PGSSLROOTCERT", cert),
                Err(_) => return Ok((options, Tls { mode, root_cert: None })),
            },
        };
        // sqlx takes PEM text in PGSSLROOTCERT for the certificates themselves.
        if cert.trim_start().starts_with("-----BEGIN") {
            return Ok((options, Tls { mode, root_cert: Some(format!("{setting} (PEM text)")) }));
        }
        let tls = Tls { mode, root_cert: Some(format!("{setting} `{cert}`")) };
        match (options.get_ssl_mode(), std::fs::File::open(&cert)) {
            (PgSslMode::Require, Ok(_)) => Ok((options.ssl_mode(PgSslMode::VerifyCa), tls)),
            (PgSslMode::VerifyCa | PgSslMode::VerifyFull, Err(e)) => Err(Error::Config(format!(
                "the CA file of {url_source} cannot be read: {setting} `{cert}` ({e}); with sslmode={mode} the server's certificate is checked against it: name the PEM file of the CA that signed it (for a cloud database, the provider's CA bundle)"
            ))),
            _ => Ok((options, tls)),
        }
    }
}

/// Why PostgreSQL refuses this client in a way no retry cures, and what to check, as
/// the tail of the connect error's context; `None` for failures that may pass (as
/// `writer::is_transient` tells them apart, this is only their explanation).
fn refusal(e: &sqlx::Error, options: &PgConnectOptions, tls: &Tls, url_source: &str) -> Option<String> {
    let Tls { mode, root_cert } = tls;
    let trusted = root_cert.as_deref().unwrap_or("the system's trusted CAs, as no sslrootcert is set");
    let why = match e {
        // rustls reports a refused certificate or an alert from the server as I/O
        // of this kind; a restarting server resets or closes instead.
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            if io.to_string().contains("certificate") {
                let names = if *mode == "verify-full" {
                    format!(", and that the host `{}` is a name the certificate holds", options.get_host())
                } else {
                    String::new()
                };
                format!(
                    "certificate verification failed (sslmode={mode}, against {trusted}); check that sslrootcert in {url_source} names the CA that signed the server's certificate{names}"
                )
            } else {
                format!("the TLS handshake failed (sslmode={mode}); check the server's TLS settings and sslmode in {url_source}")
            }
        }
        sqlx::Error::Tls(tls) if tls.to_string().contains("does not support TLS") => format!(
            "the server does not offer TLS, and sslmode={mode} insists on it; turn `ssl` on in the server, or set a weaker sslmode in {url_source}"
        ),
        sqlx::Error::Tls(_) => format!("TLS could not be set up (sslmode={mode}, {trusted}); check them in {url_source}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => format!(
                "the server refused the password of user `{}`; check the user and password in {url_source}",
                options.get_username()
            ),
            Some("28000") => format!(
                "the server refused user `{}` (no pg_hba.conf entry lets it in from here with sslmode={mode}, or it may not log in); check the user in {url_source} and the server's pg_hba.conf",
                options.get_username()
            ),
            Some("3D000") => format!("the database does not exist; create it, or correct its name in {url_source}"),
            _ => return None,
        },
        _ => return None,
    };
    Some(format!(": {why}"))
}

/// `%41` as `A` and `+` as a space, as a URL's query is read.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The schema name goes into SQL text (`CREATE SCHEMA`), so it must be a plain identifier.
fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63;
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "schema name `{schema}` is not a plain lower-case identifier (letters, digits, `_`, at most 63 bytes)"
        )))
    }
}

/// Runs `step` again while it fails on a database that is briefly away (a server
/// restarting refuses or drops connections), for up to `budget`: launch's connect,
/// migrations, first heartbeat and recovery. Any other error, or one past the
/// budget, is returned.
pub(crate) async fn while_transient<T, F, Fut>(budget: Duration, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut delay = Duration::from_millis(100);
    loop {
        match step().await {
            Err(Error::Database { context, source })
                if writer::is_transient(&source) && tokio::time::Instant::now() + delay < deadline =>
            {
                tracing::warn!(error = %source, %context, retry_in = ?delay, "exactly: PostgreSQL is not answering; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Creates the schema and applies the embedded migrations. Concurrent launches
/// serialize on an advisory lock so only one of them creates anything.
async fn migrate(pool: &PgPool, schema: &str) -> Result<()> {
    let fail = |e| Error::db(format!("migrating schema `{schema}`"), e);
    let mut conn = pool.acquire().await.map_err(fail)?;
    let mut tx = conn.begin().await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('exactly.migrate.' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    MIGRATOR.run(&mut *conn).await.map_err(|e| Error::db(format!("migrating schema `{schema}`"), e.into()))?;
    Ok(())
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn a_nul_is_found_only_where_json_holds_one() {
        let nul = serde_json::to_string("a\0b").unwrap();
        assert!(holds_nul(&nul), "{nul}");
        assert!(!holds_nul(&serde_json::to_string("a\\u0000b").unwrap()), "an escaped backslash, then text");
        assert!(holds_nul(&serde_json::to_string("\\\0").unwrap()), "a backslash, then a NUL");
        assert!(!holds_nul(r#"{"message":"fine"}"#));
        let error = error_json("a\0b");
        assert!(!holds_nul(&error) && error_message(&error) == "a\\0b", "{error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_must_be_plain_identifiers() {
        assert!(validate_schema("exactly").is_ok());
        assert!(validate_schema("_app_2").is_ok());
        for bad in ["", "Exactly", "1abc", "a-b", "a\"; DROP", &"x".repeat(64)] {
            assert!(validate_schema(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn states_round_trip_through_their_text() {
        for state in [
            WorkflowState::Enqueued,
            WorkflowState::Pending,
            WorkflowState::Success,
            WorkflowState::Error,
            WorkflowState::Cancelled,
            WorkflowState::MaxRecoveryAttemptsExceeded,
        ] {
            assert_eq!(state.as_str().parse::<WorkflowState>().unwrap(), state);
        }
        assert!("DONE".parse::<WorkflowState>().is_err());
    }
}

//! The benchmark databases: one fresh database per system on the same server.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::Error;

/// Connects to the database the URL names (the maintenance connection).
pub async fn connect(url: &str) -> Result<PgConnection, Error> {
    admin(url).await
}

async fn admin(url: &str) -> Result<PgConnection, Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(options.connect().await?)
}

/// The URL `url` with its database replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> Result<String, Error> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("not a URL: {url}"))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split_once('/').map_or(before_query, |(a, _)| a);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// Drops (terminating any leftover sessions) and creates `database`; returns its URL.
pub async fn recreate(url: &str, database: &str) -> Result<String, Error> {
    assert!(database.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "plain identifier expected");
    let mut conn = admin(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).execute(&mut conn).await?;
    conn.close().await?;
    with_database(url, database)
}

/// What the report says about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub settings: Vec<(String, String)>,
}

pub async fn server_info(url: &str) -> Result<ServerInfo, Error> {
    let mut conn = admin(url).await?;
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut conn).await?;
    let mut settings = Vec::new();
    for name in ["fsync", "synchronous_commit", "wal_sync_method", "max_connections", "shared_buffers"] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}"))).fetch_one(&mut conn).await?;
        settings.push((name.to_owned(), value));
    }
    conn.close().await?;
    Ok(ServerInfo { version, settings })
}

/// How many rows of `table` have `status = 'SUCCESS'` (a check, never timed).
pub async fn count_success(url: &str, table: &str) -> Result<i64, Error> {
    let mut conn = admin(url).await?;
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE status = 'SUCCESS'")))
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(n)
}

/// The completion probe of the `queue` workload: one connection of the harness's own
/// to a system's database, asking whether any row of a queue is still ENQUEUED or
/// PENDING. Two `EXISTS`, one per status, each answered from a partial index that
/// holds only unfinished rows (exactly: `workflow_status_enqueued` and
/// `workflow_status_pending`; dbos: `idx_workflow_status_in_flight`), so a probe costs
/// about 0.1 ms whatever the number of finished rows. The connection turns sequential
/// scans off: with statistics taken mid-run (thousands of PENDING rows), the planner
/// otherwise answers the PENDING `EXISTS` with a scan of the whole table (seen on
/// dbos: 11 ms over 40,000 rows, every probe).
pub struct Probe {
    conn: PgConnection,
    sql: String,
    queue: &'static str,
}

impl Probe {
    pub async fn connect(url: &str, table: &str, queue: &'static str) -> Result<Probe, Error> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE queue_name = $1 AND status = 'ENQUEUED') \
                 OR EXISTS (SELECT 1 FROM {table} WHERE queue_name = $1 AND status = 'PENDING')"
        );
        let mut conn = admin(url).await?;
        sqlx::raw_sql("SET enable_seqscan = off").execute(&mut conn).await?;
        let mut probe = Probe { conn, sql, queue };
        // Prepared here, outside any timing.
        probe.unfinished().await?;
        Ok(probe)
    }

    /// Whether some row of the queue is ENQUEUED or PENDING.
    pub async fn unfinished(&mut self) -> Result<bool, Error> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(self.sql.clone())).bind(self.queue).fetch_one(&mut self.conn).await?)
    }

    pub async fn close(self) -> Result<(), Error> {
        Ok(self.conn.close().await?)
    }
}

/// A connection of the harness's own to a consumer's database, for the completion
/// polls of the Kafka and SQS workloads (never the system's pool).
pub struct Watch {
    conn: PgConnection,
    /// How many queries it made, and how long they took in all.
    pub queries: u32,
    pub time: std::time::Duration,
}

impl Watch {
    pub async fn connect(url: &str) -> Result<Watch, Error> {
        Ok(Watch { conn: admin(url).await?, queries: 0, time: std::time::Duration::ZERO })
    }

    /// Runs a `SELECT count(*) ..`.
    pub async fn count(&mut self, sql: &str) -> Result<i64, Error> {
        let asked = std::time::Instant::now();
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut self.conn).await?;
        self.queries += 1;
        self.time += asked.elapsed();
        Ok(n)
    }

    /// Runs a query of `(int4, int8, float8)` rows (never timed).
    pub async fn triples(&mut self, sql: &str) -> Result<Vec<(i32, i64, f64)>, Error> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(&mut self.conn).await?)
    }

    /// The mean round trip of its queries.
    pub fn mean(&self) -> std::time::Duration {
        self.time / self.queries.max(1)
    }

    pub async fn close(self) -> Result<(), Error> {
        Ok(self.conn.close().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable", "bench_x").unwrap(),
            "postgres://u:p@127.0.0.1:5432/bench_x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b").unwrap(), "postgres://h/b");
    }
}

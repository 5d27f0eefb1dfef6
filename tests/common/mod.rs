//! Shared set-up for the integration tests: a fresh database on the local
//! PostgreSQL (started by `dev/services up`), a runtime shared by the tests of one
//! binary, and child processes for crash tests.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

pub const DEFAULT_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// The server's administrative URL: `DATABASE_URL`, or the local dev server.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database replaced by `database`.
pub fn url_for(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_end..].find('/').map(|i| authority_end + i).unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], database);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Creates an empty database for this test process and returns its URL. The name
/// is `{name}_{pid}`, so runs of the suite that overlap (two checkouts, a helper
/// script) never drop each other's database; databases left by processes that no
/// longer exist are dropped here.
pub async fn fresh_database(name: &str) -> String {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin} (run `dev/services up`): {e}"));
    let existing: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1 || '\\_%'")
        .bind(name)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for old in existing {
        let pid = old.rsplit('_').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            drop_database(&mut conn, &old).await;
        }
    }
    let database = format!("{name}_{}", std::process::id());
    drop_database(&mut conn, &database).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
        .execute(&mut conn)
        .await
        .unwrap();
    url_for(&admin, &database)
}

async fn drop_database(conn: &mut PgConnection, database: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")))
        .execute(conn)
        .await
        .unwrap();
}

/// One tokio runtime for the whole test process. Tests run their bodies on it with
/// [`block_on`] instead of `#[tokio::test]`: a database connection belongs to the
/// runtime that opened it, so a pool shared between tests must not open
/// connections on a per-test runtime that ends with its test.
pub fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap())
}

/// Runs a test body on the process-wide runtime.
pub fn block_on<F: std::future::Future>(body: F) -> F::Output {
    tokio().handle().block_on(body)
}

/// A runtime shared by all tests of one test binary. It runs on its own tokio
/// runtime in a background thread, so it outlives each test's own.
pub struct Shared {
    pub runtime: exactly::Runtime,
    pub url: String,
}

impl Shared {
    /// A pool for the calling test, on the calling test's tokio runtime.
    #[allow(dead_code)] // not every test binary uses it
    pub fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_lazy(&self.url).unwrap()
    }
}

/// The shared runtime of a test binary on a fresh database `database`, launched
/// with the builder's defaults plus `configure` (executor `in-process`); the
/// database gets the `public.side_effects` table of [`side_effect`].
pub fn shared(database: &'static str) -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| launch_shared(database, |_| async {}, |builder| builder))
}

/// Launches a shared runtime on a thread of its own: `prepare` runs first (with the
/// database URL), then the launch of the builder as `configure` leaves it.
pub fn launch_shared<P, F, C>(database: &'static str, prepare: P, configure: C) -> Shared
where
    P: FnOnce(String) -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
    C: FnOnce(exactly::RuntimeBuilder) -> exactly::RuntimeBuilder + Send + 'static,
{
    on_own_runtime(move || async move {
        let url = fresh_database(database).await;
        prepare(url.clone()).await;
        let builder = exactly::Runtime::builder().database_url(&url).executor_id("in-process");
        let runtime = configure(builder).launch().await.expect("launch the shared runtime");
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS public.side_effects (
                workflow_id TEXT NOT NULL, step TEXT NOT NULL, n INTEGER NOT NULL,
                PRIMARY KEY (workflow_id, step))",
        )
        .execute(runtime.pool())
        .await
        .unwrap();
        Shared { runtime, url }
    })
}

/// Runs `make()`'s future on a tokio runtime of its own, on a thread of its own
/// that lives as long as the process, and returns its output: what it set up (a
/// launched runtime, its pool's connections) outlives every test's own runtime.
pub fn on_own_runtime<T, M, F>(make: M) -> T
where
    T: Send + 'static,
    M: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = T>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            tx.send(make().await).unwrap_or_else(|_| panic!("the caller is gone"));
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("the thread of the shared runtime died")
}

/// A child process's pool on the database its parent named in `EXACTLY_DATABASE_URL`.
#[allow(dead_code)] // not every test binary has children
pub fn child_pool() -> &'static sqlx::PgPool {
    static POOL: OnceLock<sqlx::PgPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let url = std::env::var("EXACTLY_DATABASE_URL").expect("children get the database URL");
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_lazy(&url).unwrap()
    })
}

/// Creates the table of [`side_effect`] in a test's database.
#[allow(dead_code)] // not every test binary counts side effects
pub async fn create_side_effects(pool: &sqlx::PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE public.side_effects (workflow_id TEXT NOT NULL, step TEXT NOT NULL, n INTEGER NOT NULL,
                                           PRIMARY KEY (workflow_id, step))",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Records one execution of a side effect: the counter of (workflow, step) goes up.
pub async fn side_effect(pool: &sqlx::PgPool, workflow_id: &str, step: &str) {
    sqlx::query(
        "INSERT INTO public.side_effects (workflow_id, step, n) VALUES ($1, $2, 1)
         ON CONFLICT (workflow_id, step) DO UPDATE SET n = side_effects.n + 1",
    )
    .bind(workflow_id)
    .bind(step)
    .execute(pool)
    .await
    .unwrap();
}

/// How many times the side effect (workflow, step) ran.
pub async fn side_effect_count(pool: &sqlx::PgPool, workflow_id: &str, step: &str) -> i32 {
    sqlx::query_scalar("SELECT n FROM public.side_effects WHERE workflow_id = $1 AND step = $2")
        .bind(workflow_id)
        .bind(step)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// Restarts a server with `dev/services restart NAME` (for outage tests, each alone
/// in its test binary since every test shares the servers).
pub fn restart_service(name: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/services");
    let status = Command::new(script).args(["restart", name]).status().expect("run dev/services");
    assert!(status.success(), "`dev/services restart {name}` failed: this test needs the servers that dev/services started");
}

/// The environment variable that tells a re-executed test binary which child role to play.
pub const CHILD_ROLE: &str = "EXACTLY_TEST_CHILD_ROLE";

/// The role this process plays if it is a child started by [`spawn_child`].
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ROLE).ok()
}

/// Runs this test binary again, executing only `test`, as a child in `role`.
/// The child inherits `envs`; its stdout is piped so the parent can wait for markers.
pub fn spawn_child(test: &str, role: &str, envs: &[(&str, &str)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in envs {
        command.env(key, value);
    }
    command.spawn().expect("spawn the child test process")
}

/// A child process killed when dropped, so that a failed test leaves none behind
/// (an orphan keeps the test's output pipe open, and cargo waits on it).
#[allow(dead_code)] // not every test binary has children
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stdout until a line equal to `marker` appears (or panics at EOF/timeout).
pub fn wait_for_marker(child: &mut Child, marker: &str, timeout: Duration) {
    let stdout = child.stdout.take().expect("child stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test name ... " on the same line before it.
            if line.trim_end().ends_with(wanted.as_str()) {
                let _ = tx.send(());
                // keep draining so the child never blocks on a full pipe
            }
        }
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| panic!("the child never printed `{marker}`"));
}

/// Waits for the child to exit and returns its exit status.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The largest number of `(start, end)` intervals open at one instant.
#[allow(dead_code)] // not every test binary measures overlap
pub fn max_overlap(intervals: &[(i64, i64)]) -> usize {
    let mut events: Vec<(i64, i32)> = intervals.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    events.sort(); // at equal times an end (-1) sorts before a start (+1)
    let (mut open, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        open += delta;
        max = max.max(open);
    }
    max as usize
}

/// Polls `check` every 50 ms until it returns true; panics with `what` after `timeout`.
#[allow(dead_code)] // not every test binary waits this way
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

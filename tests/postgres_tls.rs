//! TLS to PostgreSQL against the local server, which `dev/services` runs with TLS on
//! (a certificate for 127.0.0.1 and localhost from a CA of its own): `verify-full`
//! runs workflows, `prefer` does use TLS, `require` with `sslrootcert` verifies as
//! libpq does; and what no retry can cure (a CA that did not sign the certificate, a
//! host the certificate does not name, a wrong password, a missing database, TLS
//! required of a server without it) fails `launch()` at once, saying what to check
//! and holding no secret.
//!
//! The tests that need the server's TLS skip, saying so, only when
//! `EXACTLY_TEST_PG_CA` is unset: `dev/services env` leaves it out when the server
//! on :5432 was not started by it, whose certificate is unknown.
//!
//! One runtime at a time per process: the tests take turns.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use exactly::{Error, Runtime, step, workflow};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// A tokio mutex: each test has a tokio runtime of its own, and holds its turn across awaits.
static ONE_RUNTIME_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The role the tests log in as: a password of its own, so that a message can be
/// searched for it (the admin's, `postgres`, is also a user and a database name).
const USER: &str = "exactly_tls_test";
const PASSWORD: &str = "tls-S3cret-4711";

/// Long, so that a launch which retried a refusal would be seen to wait.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A refusal fails launch within this (it takes milliseconds).
const AT_ONCE: Duration = Duration::from_secs(3);

#[step]
async fn shout(word: &str) -> exactly::Result<String> {
    Ok(word.to_uppercase())
}

#[workflow]
async fn greet(name: String) -> exactly::Result<String> {
    let loud = shout(&name).await?;
    Ok(format!("hello, {loud}"))
}

/// The CA that signed the server's certificate and one that did not, from
/// `dev/services env`; `None` (the test skips, saying why) when they are unset.
fn cas(test: &str) -> Option<(String, String)> {
    match (std::env::var("EXACTLY_TEST_PG_CA"), std::env::var("EXACTLY_TEST_PG_OTHER_CA")) {
        (Ok(ca), Ok(other)) => Some((ca, other)),
        _ => {
            // Straight to stderr: libtest hides what `eprintln!` writes in a test that passes.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED: EXACTLY_TEST_PG_CA is not set, so the server's TLS certificate is unknown: \
                 `dev/services env` sets it only for a PostgreSQL that dev/services started (run `dev/services up` \
                 and `eval \"$(dev/services env)\"`)"
            );
            None
        }
    }
}

/// `host:port` of the local server, from the admin URL.
fn server() -> String {
    let url = common::admin_url();
    let rest = &url[url.find('@').map_or(url.find("://").unwrap() + 3, |at| at + 1)..];
    rest[..rest.find(['/', '?']).unwrap_or(rest.len())].to_owned()
}

/// Runs SQL as the admin; the test role is created (or its password set) first.
async fn as_admin(sql: &str) {
    let mut admin = sqlx::PgConnection::connect(&common::admin_url()).await.unwrap();
    // Roles are shared by the databases of every test process: a concurrent creation wins.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN
           CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}';
         EXCEPTION WHEN duplicate_object OR unique_violation THEN
           ALTER ROLE {USER} LOGIN PASSWORD '{PASSWORD}';
         END $$;
         {sql}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// A fresh database owned by the test role; returns its name.
async fn database(name: &str) -> String {
    let url = common::fresh_database(name).await;
    let database = url.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    as_admin(&format!("ALTER DATABASE \"{database}\" OWNER TO {USER};")).await;
    database
}

/// The URL of `database` as the test role with `password`, at `host:port`, with `query`.
fn database_url(password: &str, host_port: &str, database: &str, query: &str) -> String {
    format!("postgres://{USER}:{password}@{host_port}/{database}?{query}")
}

async fn launch(url: &str) -> exactly::Result<Runtime> {
    Runtime::builder().database_url(url).executor_id("tls").connect_timeout(CONNECT_TIMEOUT).launch().await
}

/// Launches, expecting a refusal within [`AT_ONCE`] that names the URL's source and
/// not its password; returns the error.
async fn refused(what: &str, url: &str) -> Error {
    let started = Instant::now();
    let err = launch(url).await.expect_err(what);
    let took = started.elapsed();
    println!("{what}: launch failed after {took:?}: {err}");
    assert!(took < AT_ONCE, "{what}: launch took {took:?} to fail (connect timeout {CONNECT_TIMEOUT:?}): {err}");
    let message = err.to_string();
    assert!(!message.contains(PASSWORD), "{what}: the password leaked: {message}");
    assert!(message.contains("the builder's database_url"), "{what}: the URL's source is not named: {message}");
    err
}

/// Whether the connection that runs this query on the runtime's pool uses TLS.
async fn uses_tls(runtime: &Runtime) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(runtime.pool()).await.unwrap()
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_and_runs_a_workflow() {
    let Some((ca, _)) = cas("verify_full_with_the_servers_ca_connects_and_runs_a_workflow") else { return };
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().await;
    let database = database("exactly_test_pg_tls_full").await;
    let port = server().rsplit(':').next().unwrap().to_owned();
    // The certificate names both: an IP address and a DNS name.
    for host in ["127.0.0.1", "localhost"] {
        let query = format!("sslmode=verify-full&sslrootcert={ca}");
        let url = database_url(PASSWORD, &format!("{host}:{port}"), &database, &query);
        let runtime = launch(&url).await.unwrap_or_else(|e| panic!("verify-full to {host}: {e}"));
        let greeting = greet(host.to_owned()).with_id(format!("tls-{host}")).await.unwrap();
        assert_eq!(greeting, format!("hello, {}", host.to_uppercase()));
        assert!(uses_tls(&runtime).await, "verify-full to {host} without TLS");
        runtime.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_servers_certificate_fails_launch_at_once() {
    let Some((_, other)) = cas("a_ca_that_did_not_sign_the_servers_certificate_fails_launch_at_once") else { return };
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().await;
    let database = database("exactly_test_pg_tls_other_ca").await;
    for mode in ["verify-full", "verify-ca"] {
        let url = database_url(PASSWORD, &server(), &database, &format!("sslmode={mode}&sslrootcert={other}"));
        let message = refused(mode, &url).await.to_string();
        assert!(message.contains("certificate verification failed"), "{mode}: {message}");
        assert!(message.contains(&other), "{mode}: the CA file is not named: {message}");
    }
    // Without sslrootcert the system's CAs are trusted, and the dev CA is not one of them.
    let url = database_url(PASSWORD, &server(), &database, "sslmode=verify-full");
    let message = refused("verify-full without sslrootcert", &url).await.to_string();
    assert!(message.contains("certificate verification failed") && message.contains("the system's trusted CAs"), "{message}");
    // libpq reads the CA file of verify-ca and verify-full: one it cannot read fails
    // before any connection.
    let url = database_url(PASSWORD, &server(), &database, "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    let message = refused("a CA file that does not exist", &url).await.to_string();
    assert!(message.contains("/nonexistent/ca.pem") && message.contains("cannot be read"), "{message}");
}

#[tokio::test]
async fn a_host_the_certificate_does_not_name_fails_verify_full_and_passes_verify_ca() {
    let Some((ca, _)) = cas("a_host_the_certificate_does_not_name_fails_verify_full_and_passes_verify_ca") else { return };
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().await;
    let database = database("exactly_test_pg_tls_host").await;
    // The certificate names 127.0.0.1 and localhost; 127.0.0.2 reaches the same
    // server through a forwarder (Linux routes all of 127.0.0.0/8 to the loopback).
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("listen on 127.0.0.2");
    let front = format!("127.0.0.2:{}", listener.local_addr().unwrap().port());
    let server = server();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(&server).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    let full = database_url(PASSWORD, &front, &database, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let message = refused("verify-full to 127.0.0.2", &full).await.to_string();
    assert!(message.contains("certificate verification failed"), "{message}");
    assert!(message.contains("`127.0.0.2` is a name the certificate holds"), "the host to check is not named: {message}");

    // verify-ca checks the CA alone: the same address passes.
    let ca_only = database_url(PASSWORD, &front, &database, &format!("sslmode=verify-ca&sslrootcert={ca}"));
    let runtime = launch(&ca_only).await.unwrap_or_else(|e| panic!("verify-ca to 127.0.0.2: {e}"));
    assert!(uses_tls(&runtime).await);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn prefer_and_require_use_tls_when_the_server_offers_it_and_disable_does_not() {
    let Some((ca, other)) = cas("prefer_and_require_use_tls_when_the_server_offers_it_and_disable_does_not") else { return };
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().await;
    let database = database("exactly_test_pg_tls_prefer").await;
    for (query, tls) in [
        ("sslmode=prefer".to_owned(), true),
        // require verifies nothing without a CA, as in libpq.
        ("sslmode=require".to_owned(), true),
        (format!("sslmode=require&sslrootcert={ca}"), true),
        ("sslmode=disable".to_owned(), false),
    ] {
        let url = database_url(PASSWORD, &server(), &database, &query);
        let runtime = launch(&url).await.unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(uses_tls(&runtime).await, tls, "{query}");
        runtime.shutdown().await.unwrap();
    }
    // libpq verifies the certificate under require when sslrootcert names a CA file
    // (sqlx alone would not): a CA that did not sign it is refused.
    let url = database_url(PASSWORD, &server(), &database, &format!("sslmode=require&sslrootcert={other}"));
    let message = refused("require with a CA that did not sign the certificate", &url).await.to_string();
    assert!(message.contains("certificate verification failed"), "{message}");
}

#[tokio::test]
async fn a_wrong_password_fails_launch_at_once_with_a_clear_message_and_no_secret() {
    let Some((ca, _)) = cas("a_wrong_password_fails_launch_at_once_with_a_clear_message_and_no_secret") else { return };
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().await;
    let database = database("exactly_test_pg_tls_password").await;
    let wrong = "not-the-password-4711";
    let url = database_url(wrong, &server(), &database, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let message = refused("a wrong password", &url).await.to_string();
    assert!(!message.contains(wrong), "the wrong password leaked: {message}");
    assert!(message.contains("password authentication failed"), "the server's reason: {message}");
    assert!(message.contains(&format!("refused the password of user `{USER}`")), "what to check: {message}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_fails_launch_at_once() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().await;
    as_admin("").await; // the test role, which logs in before the database is looked up
    let url = database_url(PASSWORD, &server(), "exactly_test_pg_tls_no_such_database", "sslmode=disable");
    let message = refused("a missing database", &url).await.to_string();
    assert!(message.contains("does not exist") && message.contains("create it"), "{message}");
}

#[tokio::test]
async fn tls_required_of_a_server_without_it_fails_launch_at_once() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().await;
    // A server that answers the TLS request with "N", as one with `ssl = off` does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                if client.read_exact(&mut request).await.is_ok() {
                    let _ = client.write_all(b"N").await;
                    let _ = client.read(&mut request).await; // until the client hangs up
                }
            });
        }
    });
    for mode in ["require", "verify-full"] {
        let err = refused(mode, &database_url(PASSWORD, &front, "postgres", &format!("sslmode={mode}"))).await;
        assert!(err.to_string().contains("does not offer TLS"), "{mode}: {err}");
        assert!(matches!(err, Error::Database { .. }), "{mode}: the driver's error is kept as the source: {err:?}");
    }
}

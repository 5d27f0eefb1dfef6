//! TLS and SASL to Kafka, against the local broker's SASL_SSL listener (started by
//! `dev/services`: its own CA, user `exactly` with PLAIN, SCRAM-SHA-256 and
//! SCRAM-SHA-512): a consumer and the send helper work over it with each
//! mechanism, and a wrong password or a CA the client does not trust fails
//! `launch()` with a message that says what to check and holds no secret.
//!
//! One runtime at a time per process: the tests take turns.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use std::sync::Mutex;
use std::time::Duration;

use exactly::kafka::KafkaSettings;
use exactly::{KafkaMessage, Runtime, kafka_consumer, workflow};
use kafka_common::{count, numbered, produce, wait_until, workflows};

const IN: &str = "exactly-test-secure-in";
const OUT: &str = "exactly-test-secure-out";
const GROUP: &str = "exactly-test-secure";

static ONE_RUNTIME_AT_A_TIME: Mutex<()> = Mutex::new(());

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `eval \"$(dev/services env)\"` (dev/services starts the SASL_SSL listener)"))
}

/// The SASL_SSL listener with this mechanism, password and CA.
fn secure(mechanism: &str, password: &str, ca: &str) -> KafkaSettings {
    KafkaSettings::new()
        .bootstrap_servers(var("EXACTLY_TEST_KAFKA_SASL_SSL_BOOTSTRAP"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", var("EXACTLY_TEST_KAFKA_SASL_USER"))
        .set("sasl.password", password)
        .set("ssl.ca.location", ca)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
}

async fn launch(database: &str, kafka: KafkaSettings) -> exactly::Result<Runtime> {
    Runtime::builder().database_url(database).executor_id("secure").kafka(kafka).launch().await
}

#[kafka_consumer("exactly-test-secure-in", group = "exactly-test-secure")]
#[workflow]
async fn relay(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    let value: serde_json::Value = message.json()?;
    let n = value["n"].as_u64().unwrap_or_default();
    // The send helper's producer uses the same settings: over SASL_SSL too.
    exactly::kafka::send(OUT, &n.to_string(), &value).await?;
    Ok(n)
}

#[tokio::test]
async fn every_sasl_mechanism_over_tls_consumes_and_produces() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let database = common::fresh_database("exactly_test_kafka_security").await;
    kafka_common::recreate(&[(IN, 2), (OUT, 1)], &[GROUP]).await;
    let password = var("EXACTLY_TEST_KAFKA_SASL_PASSWORD");
    let ca = var("EXACTLY_TEST_KAFKA_CA");
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let prefix = format!("kafka:{GROUP}:{IN}:");
    for (round, mechanism) in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].into_iter().enumerate() {
        let runtime = launch(&database, secure(mechanism, &password, &ca)).await.unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        produce(IN, &numbered(mechanism, 10, 4)).await;
        let want = 10 * (round + 1);
        wait_until(Duration::from_secs(60), &format!("{want} workflows over {mechanism}"), || async {
            count(&pool, &prefix, "SUCCESS").await >= want
        })
        .await;
        assert!(runtime.health().is_ready(), "{mechanism}: {:?}", runtime.health());
        runtime.shutdown().await.unwrap();
    }
    assert_eq!(workflows(&pool, &prefix).await.len(), 30, "each message once, across the three launches");
    let sends: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exactly.operation_outputs WHERE name = 'exactly::kafka::send' AND error IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sends, 30, "every relay was delivered over the SASL_SSL listener");
    assert_eq!(kafka_common::committed(GROUP, IN, 2), 30, "offsets committed over it");
}

#[tokio::test]
async fn a_wrong_password_fails_launch_with_a_clear_message_and_no_secret() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let database = common::fresh_database("exactly_test_kafka_security_password").await;
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let wrong = "not-the-password-4711";
        let err = launch(&database, secure(mechanism, wrong, &var("EXACTLY_TEST_KAFKA_CA"))).await.unwrap_err().to_string();
        assert!(err.contains("refuse") && err.contains("sasl.password"), "{mechanism}: {err}");
        assert!(err.to_lowercase().contains("authentication"), "{mechanism}: the broker's reason: {err}");
        assert!(!err.contains(wrong), "{mechanism}: the password leaked: {err}");
    }
}

#[tokio::test]
async fn a_ca_the_client_does_not_trust_fails_launch_with_a_clear_message() {
    let _turn = ONE_RUNTIME_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let database = common::fresh_database("exactly_test_kafka_security_ca").await;
    let password = var("EXACTLY_TEST_KAFKA_SASL_PASSWORD");
    let other = var("EXACTLY_TEST_KAFKA_OTHER_CA");
    let err = launch(&database, secure("SCRAM-SHA-512", &password, &other)).await.unwrap_err().to_string();
    assert!(err.contains("refuse") && err.contains("ssl.ca.location"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "the TLS reason: {err}");
    assert!(!err.contains(&password), "the password leaked: {err}");
}

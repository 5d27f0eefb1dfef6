//! No secret in `Debug` output or errors: every configuration type formatted with
//! a secret set, and launch failing with a wrong database password and a Kafka
//! property librdkafka refuses.
#![cfg(all(feature = "kafka", feature = "sqs"))]

mod common;

use std::time::Duration;

use exactly::Runtime;
use exactly::kafka::{ClientConfig, KafkaConsumerOptions, KafkaSettings};
use exactly::sqs::aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use exactly::sqs::{SqsConsumerOptions, SqsReceiver};

const SECRET: &str = "s3cret-4711";

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
}

fn sqs_client() -> exactly::sqs::aws_sdk_sqs::Client {
    let config = exactly::sqs::aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDEXAMPLE", SECRET, Some(SECRET.into()), None, "test"))
        .http_client(exactly::sqs::http_client())
        .build();
    exactly::sqs::aws_sdk_sqs::Client::from_conf(config)
}

#[test]
fn configuration_types_do_not_show_secrets() {
    let kafka = KafkaSettings::new()
        .bootstrap_servers("broker:9094")
        .set("sasl.password", SECRET)
        .set("ssl.key.password", SECRET)
        .set("ssl.keystore.password", SECRET)
        .set("ssl.key.pem", SECRET)
        .set("sasl.oauthbearer.client.secret", SECRET);
    assert_hidden("KafkaSettings", &format!("{kafka:?}"));
    let options = KafkaConsumerOptions::new().group("g").config(|| {
        let mut config = ClientConfig::new();
        config.set("sasl.password", SECRET);
        config
    });
    assert_hidden("KafkaConsumerOptions", &format!("{options:?}"));
    let client = sqs_client();
    let receiver = SqsReceiver::new().client(client.clone()).queue_url("http://sqs/q");
    assert_hidden("SqsReceiver", &format!("{receiver:?}"));
    let consumer = SqsConsumerOptions::new().client(client.clone()).queue_url("http://sqs/q");
    assert_hidden("SqsConsumerOptions", &format!("{consumer:?}"));
    assert_hidden("the SQS client", &format!("{client:?}"));
    let builder = Runtime::builder()
        .database_url(format!("postgres://app:{SECRET}@db:5432/x?sslmode=require"))
        .kafka(kafka)
        .sqs_receiver(receiver);
    assert_hidden("RuntimeBuilder", &format!("{builder:?}"));
    let in_query = Runtime::builder().database_url(format!("postgres://db/x?user=app&password={SECRET}"));
    assert_hidden("RuntimeBuilder", &format!("{in_query:?}"));
}

#[tokio::test]
async fn launch_errors_do_not_show_secrets() {
    // A wrong database password.
    let url = common::url_for(&common::admin_url(), "postgres").replace("postgres:postgres@", &format!("postgres:{SECRET}@"));
    let err = Runtime::builder()
        .database_url(&url)
        .connect_timeout(Duration::from_secs(2))
        .launch()
        .await
        .expect_err("a wrong password fails launch");
    let (shown, debug) = (err.to_string(), format!("{err:?}"));
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert_hidden("the error", &shown);
    assert_hidden("the error's Debug", &debug);
}

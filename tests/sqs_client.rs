//! The default SQS client, from the standard AWS configuration chain: the generic
//! `AWS_ENDPOINT_URL` serves when `AWS_ENDPOINT_URL_SQS` is unset, and without any
//! region `default_client()` and a launch that needs it fail with a clear error.
//!
//! The only test of its binary: it changes the process's environment.

mod common;
mod sqs_support;

use std::time::Duration;

use exactly::sqs::{SqsConsumerOptions, SqsReceiver};
use exactly::{Runtime, SqsMessage, workflow};

#[workflow]
async fn on_env_job(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn set(name: &str, value: Option<&str>) {
    // SAFETY: the only test of this binary, before it starts anything that reads
    // the environment concurrently (the SDK reads it in the calls below).
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}

#[tokio::test]
async fn the_default_client_takes_the_generic_endpoint_and_needs_a_region() {
    let endpoint = sqs_support::endpoint();
    let database = common::fresh_database("exactly_test_sqs_client").await;
    // No shared config files, no instance metadata: only the variables below count.
    set("AWS_CONFIG_FILE", Some("/nonexistent/exactly-test-config"));
    set("AWS_SHARED_CREDENTIALS_FILE", Some("/nonexistent/exactly-test-credentials"));
    set("AWS_EC2_METADATA_DISABLED", Some("true"));
    set("AWS_PROFILE", None);
    set("AWS_ACCESS_KEY_ID", Some("test"));
    set("AWS_SECRET_ACCESS_KEY", Some("test"));

    // The generic endpoint variable, the SQS one unset.
    set("AWS_ENDPOINT_URL_SQS", None);
    set("AWS_ENDPOINT_URL", Some(&endpoint));
    set("AWS_REGION", Some("us-east-1"));
    let client = exactly::sqs::default_client().await.expect("a client from the environment");
    let name = sqs_support::unique("generic-endpoint");
    let created = tokio::time::timeout(Duration::from_secs(20), client.create_queue().queue_name(&name).send())
        .await
        .expect("the generic endpoint answers (not AWS itself)")
        .expect("create a queue through AWS_ENDPOINT_URL");
    let url = created.queue_url.unwrap();
    assert!(url.ends_with(&name), "{url}");
    let listed = sqs_support::client().get_queue_url().queue_name(&name).send().await.unwrap();
    assert_eq!(listed.queue_url.as_deref(), Some(url.as_str()), "the queue was created on moto");

    // No region anywhere: a clear error, from the function and from a launch.
    set("AWS_REGION", None);
    set("AWS_DEFAULT_REGION", None);
    let err = exactly::sqs::default_client().await.expect_err("no region").to_string();
    assert!(err.contains("no AWS region for the default SQS client: set AWS_REGION"), "{err}");
    let launched = Runtime::builder()
        .database_url(&database)
        .executor_id("sqs-client")
        .sqs_receiver(SqsReceiver::new().consumer(on_env_job, SqsConsumerOptions::new().queue_url(&url)))
        .launch()
        .await;
    match launched {
        Ok(runtime) => {
            runtime.shutdown().await.unwrap();
            panic!("launch without a region should fail");
        }
        Err(e) => assert!(e.to_string().contains("no AWS region for the default SQS client"), "{e}"),
    }
}

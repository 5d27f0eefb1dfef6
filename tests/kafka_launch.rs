//! Launch refuses Kafka consumers that do not fit together, naming both sides:
//! this binary declares two consumers that share a group and a topic, and registers
//! one on an undeclared queue, so every launch in it fails.
#![cfg(feature = "kafka")]

mod common;
mod kafka_common;

use exactly::kafka::KafkaConsumerOptions;
use exactly::{KafkaMessage, kafka_consumer, register_kafka_consumer, workflow};

#[kafka_consumer("exactly-test-launch", group = "exactly-test-launch")]
#[workflow]
async fn first(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[kafka_consumer(["other", "^exactly-test-la.*"], group = "exactly-test-launch")]
#[workflow]
async fn second(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[workflow]
async fn third(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[tokio::test]
async fn launch_fails_naming_both_consumers_and_the_unknown_queue() {
    let url = common::fresh_database("exactly_test_kafka_launch").await;
    let line = line!() + 1;
    register_kafka_consumer(third, "exactly-test-launch-3", KafkaConsumerOptions::new().queue("missing"))
        .await
        .expect("before launch only the consumer itself is checked");
    let err = exactly::Runtime::builder()
        .database_url(&url)
        .kafka(kafka_common::settings())
        .launch()
        .await
        .expect_err("launch must fail")
        .to_string();
    assert!(
        err.contains("the #[kafka_consumer] of workflow `kafka_launch::first` at tests/kafka_launch.rs:12 (group `exactly-test-launch`)"),
        "{err}"
    );
    assert!(
        err.contains("the #[kafka_consumer] of workflow `kafka_launch::second` at tests/kafka_launch.rs:19 (group `exactly-test-launch`)"),
        "{err}"
    );
    assert!(err.contains("pattern `^exactly-test-la.*` matches topic `exactly-test-launch`"), "{err}");
    assert!(
        err.contains(&format!("the register_kafka_consumer of workflow `kafka_launch::third` at tests/kafka_launch.rs:{line}")),
        "{err}"
    );
    assert!(err.contains("enqueues on queue `missing`, which is not declared"), "{err}");
    // The failed launch left no runtime behind: a workflow call says so.
    let call = third(String::new(), 0, KafkaMessage::new("t", 0, 0, Vec::new())).start().await;
    assert!(matches!(call, Err(exactly::Error::NotLaunched)), "{call:?}");
}

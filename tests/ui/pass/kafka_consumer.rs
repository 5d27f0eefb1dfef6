//! Every form of `#[kafka_consumer]`, and a consumer registered at run time.
use exactly::kafka::{ClientConfig, KafkaConsumerOptions, Ordering};
use exactly::{KafkaMessage, kafka_consumer, register_kafka_consumer, workflow};

exactly::queue!(static ORDERED = "ordered", partition_concurrency = 1);

fn orders_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("session.timeout.ms", "10000");
    config
}

#[kafka_consumer("orders")]
#[workflow]
async fn by_name(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message.text()?);
    Ok(())
}

#[kafka_consumer("^returns-.*", group = "returns", ordering = "key")]
#[workflow(name = "returns.process")]
async fn by_pattern(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<u64> {
    let _ = (topic, partition);
    Ok(message.json::<u64>()?)
}

#[kafka_consumer(["a", "^b.*"], queue = "ordered", ordering = "partition", config = orders_config, batch_size = 100)]
#[exactly::workflow]
pub async fn by_list(topic: std::string::String, partition: i32, message: exactly::KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[workflow]
async fn at_run_time(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[allow(dead_code)]
async fn register() -> exactly::Result<()> {
    let options = KafkaConsumerOptions::new().group("late").ordering(Ordering::Partition).config(orders_config);
    register_kafka_consumer(at_run_time, vec!["late-topic".to_owned()], options).await
}

fn main() {}

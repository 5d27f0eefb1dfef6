use exactly::{KafkaMessage, kafka_consumer, workflow};

#[kafka_consumer(group = "billing")]
#[workflow]
async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[kafka_consumer([])]
#[workflow]
async fn on_nothing(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

fn main() {}

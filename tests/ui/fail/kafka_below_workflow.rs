use exactly::{KafkaMessage, kafka_consumer, workflow};

#[workflow]
#[kafka_consumer("orders")]
async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

fn main() {}

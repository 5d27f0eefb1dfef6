use exactly::{KafkaMessage, kafka_consumer, workflow};

#[kafka_consumer("orders", group = "billing", group = "shipping")]
#[workflow]
async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

fn main() {}

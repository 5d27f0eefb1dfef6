use exactly::{KafkaMessage, kafka_consumer, workflow};

#[kafka_consumer(["orders", "", "order events", "^", orders])]
#[workflow]
async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

fn main() {}

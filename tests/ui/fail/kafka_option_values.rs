use exactly::{KafkaMessage, kafka_consumer, workflow};

#[kafka_consumer("orders", group = "", queue = slow, ordering = "fifo", batch_size = 0, config = "cfg")]
#[workflow]
async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[kafka_consumer("orders", group = "g2", batch_size = 20000)]
#[workflow]
async fn too_big(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

fn main() {}

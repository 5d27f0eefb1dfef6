use exactly::{kafka_consumer, workflow};

/// Not exactly's `KafkaMessage`: the receiver could not decode into it.
#[derive(serde::Serialize, serde::Deserialize)]
struct KafkaMessage {
    body: String,
}

#[kafka_consumer("orders")]
#[workflow]
async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message.body);
    Ok(())
}

fn main() {}

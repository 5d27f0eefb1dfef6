use exactly::{KafkaMessage, kafka_consumer, workflow};

fn settings(group: &str) -> String {
    group.to_owned()
}

fn wrong_type() -> Vec<(String, String)> {
    Vec::new()
}

#[kafka_consumer("orders", config = settings)]
#[workflow]
async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

#[kafka_consumer("returns", config = wrong_type)]
#[workflow]
async fn on_return(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

fn main() {}

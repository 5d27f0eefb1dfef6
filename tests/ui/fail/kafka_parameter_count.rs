use exactly::{KafkaMessage, kafka_consumer, workflow};

#[kafka_consumer("orders")]
#[workflow]
async fn on_order(message: KafkaMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn main() {}

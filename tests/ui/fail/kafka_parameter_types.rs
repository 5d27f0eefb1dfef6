use exactly::{kafka_consumer, workflow};

#[kafka_consumer("orders")]
#[workflow]
async fn on_order(topic: &'static str, partition: u32, message: Vec<u8>) -> exactly::Result<()> {
    let _ = (topic, partition, message);
    Ok(())
}

fn main() {}

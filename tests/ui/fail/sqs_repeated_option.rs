use exactly::{SqsMessage, sqs_consumer, workflow};

#[sqs_consumer(queue_url = env("A"), batch_size = 5, queue_url = env("B"))]
#[workflow]
async fn on_job(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn main() {}

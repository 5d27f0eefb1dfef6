use exactly::{SqsMessage, sqs_consumer, workflow};

#[sqs_consumer(queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs", retries = 3)]
#[workflow]
async fn on_job(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn main() {}

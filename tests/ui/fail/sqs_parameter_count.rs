use exactly::{SqsMessage, sqs_consumer, workflow};

#[sqs_consumer(queue_url = env("JOBS_QUEUE_URL"))]
#[workflow]
async fn on_job(message: SqsMessage, attempt: u32) -> exactly::Result<()> {
    let _ = (message, attempt);
    Ok(())
}

#[sqs_consumer(queue_url = env("JOBS_QUEUE_URL"))]
#[workflow]
async fn on_nothing() -> exactly::Result<()> {
    Ok(())
}

fn main() {}

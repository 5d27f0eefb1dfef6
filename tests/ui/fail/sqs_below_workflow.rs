use exactly::{SqsMessage, sqs_consumer, workflow};

#[workflow]
#[sqs_consumer(queue_url = env("JOBS_QUEUE_URL"))]
async fn on_job(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn main() {}

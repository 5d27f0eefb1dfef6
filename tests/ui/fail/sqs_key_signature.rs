use exactly::{SqsMessage, sqs_consumer, workflow};

fn by_body(body: &str) -> String {
    body.to_owned()
}

#[sqs_consumer(queue_url = env("JOBS_QUEUE_URL"), key = by_body)]
#[workflow]
async fn on_job(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn main() {}

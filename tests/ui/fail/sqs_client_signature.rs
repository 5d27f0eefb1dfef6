use exactly::{SqsMessage, sqs_consumer, workflow};

async fn make_client() -> exactly::sqs::aws_sdk_sqs::Client {
    unimplemented!()
}

#[sqs_consumer(queue_url = env("JOBS_QUEUE_URL"), client = make_client)]
#[workflow]
async fn on_job(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn main() {}

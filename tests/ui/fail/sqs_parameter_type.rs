use exactly::{sqs_consumer, workflow};

#[sqs_consumer(queue_url = env("JOBS_QUEUE_URL"))]
#[workflow]
async fn on_job(body: String) -> exactly::Result<()> {
    let _ = body;
    Ok(())
}

fn main() {}

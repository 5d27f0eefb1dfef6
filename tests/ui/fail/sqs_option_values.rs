use exactly::{SqsMessage, sqs_consumer, workflow};

#[sqs_consumer(
    queue_url = "jobs",
    key = "by_body",
    workflow_queue = "",
    receiver = reports,
    ordering = "fifo",
    wait_time_s = 21,
    batch_size = 0,
    visibility_timeout_s = 50000,
    pollers = 0,
)]
#[workflow]
async fn on_job(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

#[sqs_consumer(queue_url = env(JOBS_QUEUE_URL))]
#[workflow]
async fn on_env(message: SqsMessage) -> exactly::Result<()> {
    let _ = message;
    Ok(())
}

fn main() {}

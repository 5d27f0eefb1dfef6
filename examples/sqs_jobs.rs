//! SQS jobs, each processed exactly once as a durable workflow.
//!
//! Against the local servers (`dev/services up`):
//!
//! ```sh
//! eval "$(dev/services env)"   # DATABASE_URL, AWS_ENDPOINT_URL_SQS, AWS_REGION, credentials
//! cargo run --example sqs_jobs
//! ```
//!
//! It creates the queue `exactly-jobs` (unless `SQS_JOBS_QUEUE_URL` names one), sends
//! five jobs, one of them twice, and waits for their workflows. The consumer's key
//! function makes the job ID the deduplication key, so the repeated job runs once,
//! and so does every job of an earlier run: run it twice and see. It exits with an
//! error if a job's workflow is missing or failed, if the queue has other than four
//! workflows, or if messages remain on the queue (`dev/demo sqs` runs it).

use std::time::Duration;

use exactly::sqs::SqsReceiver;
use exactly::{Runtime, SqsMessage, WorkflowState, sqs_consumer, step, workflow};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u32,
    text: String,
}

/// The workflow ID becomes `sqs:{queue-name}:job-{id}`: a job sent twice runs once.
fn job_key(message: &SqsMessage) -> String {
    match message.json::<Job>() {
        Ok(job) => format!("job-{}", job.id),
        Err(_) => message.message_id.clone(), // not a job: keyed by the message itself
    }
}

/// A side effect: runs at least once, recorded exactly once.
#[step(retries = 3)]
async fn render(job: &Job) -> exactly::Result<String> {
    println!("  rendering job {} (in workflow {})", job.id, exactly::workflow_id().unwrap_or_default());
    Ok(job.text.to_uppercase())
}

/// The queue URL comes from the default receiver (configured in `main`); a fixed
/// one would be `queue_url = env("SQS_JOBS_QUEUE_URL")` or a literal.
#[sqs_consumer(key = job_key, batch_size = 10)]
#[workflow(name = "examples.sqs_jobs.on_job")]
async fn on_job(message: SqsMessage) -> exactly::Result<String> {
    let job: Job = message.json()?;
    render(&job).await
}

#[tokio::main]
async fn main() -> exactly::Result<()> {
    let client = exactly::sqs::default_client().await?;
    let queue_url = match std::env::var("SQS_JOBS_QUEUE_URL") {
        Ok(url) => url,
        Err(_) => client
            .create_queue()
            .queue_name("exactly-jobs")
            .send()
            .await
            .map_err(|e| {
                exactly::Error::msg(format!("cannot create the queue (is `dev/services up` running?): {e:?}"))
            })?
            .queue_url
            .unwrap_or_default(),
    };
    println!("queue: {queue_url}");

    let runtime = Runtime::builder().sqs_receiver(SqsReceiver::new().queue_url(&queue_url)).launch().await?;

    let jobs = [(1, "invoice"), (2, "receipt"), (3, "report"), (2, "receipt"), (4, "summary")];
    for (id, text) in jobs {
        let body = serde_json::to_string(&Job { id, text: text.into() }).expect("a job is JSON");
        client
            .send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| exactly::Error::msg(format!("cannot send: {e:?}")))?;
        println!("sent job {id}");
    }

    let queue_name = queue_url.rsplit('/').next().unwrap_or_default();
    for (id, text) in [(1, "invoice"), (2, "receipt"), (3, "report"), (4, "summary")] {
        let workflow_id = format!("sqs:{queue_name}:job-{id}");
        // The row appears once the receiver has stored the message.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while runtime.status(&workflow_id).await?.is_none() {
            if tokio::time::Instant::now() > deadline {
                return Err(exactly::Error::msg(format!("{workflow_id} never arrived")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let output: String = runtime.result(&workflow_id).await?;
        let status = runtime.status(&workflow_id).await?.expect("it exists");
        if status.state != WorkflowState::Success || output != text.to_uppercase() {
            return Err(exactly::Error::msg(format!("{workflow_id} ended {:?} with {output:?}", status.state)));
        }
        println!("{workflow_id}: {output}");
    }
    // One workflow per job, the repeated one included, over every run.
    let workflows: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_status WHERE starts_with(workflow_id, $1)")
        .bind(format!("sqs:{queue_name}:"))
        .fetch_one(runtime.pool())
        .await
        .map_err(|e| exactly::Error::msg(format!("cannot count the workflows: {e}")))?;
    println!("workflows of the queue: {workflows}");
    if workflows != 4 {
        return Err(exactly::Error::msg(format!("expected 4 workflows for the 5 messages, found {workflows}")));
    }
    // Every message is deleted once its row is stored, repeats included.
    use exactly::sqs::aws_sdk_sqs::types::QueueAttributeName;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attributes = client
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| exactly::Error::msg(format!("cannot read the queue: {e:?}")))?
            .attributes
            .unwrap_or_default();
        let left: u64 = attributes.values().filter_map(|v| v.parse::<u64>().ok()).sum();
        if left == 0 {
            println!("messages left on the queue: 0");
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(exactly::Error::msg(format!("{left} messages are still on the queue after 30 s")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runtime.shutdown().await
}

//! `#[sqs_consumer]` with every option, its defaults, an `env(..)` URL, paths to
//! the key and client functions, and a consumer declared inside a function.
use exactly::sqs::aws_sdk_sqs;
use exactly::{SqsMessage, sqs_consumer, workflow};

fn by_body(message: &SqsMessage) -> String {
    message.body.clone()
}

mod clients {
    pub fn local() -> exactly::sqs::aws_sdk_sqs::Client {
        let config = exactly::sqs::aws_sdk_sqs::Config::builder()
            .behavior_version(exactly::sqs::aws_sdk_sqs::config::BehaviorVersion::latest())
            .http_client(exactly::sqs::http_client())
            .build();
        exactly::sqs::aws_sdk_sqs::Client::from_conf(config)
    }
}

exactly::queue!(static ORDERED = "ordered", partition_concurrency = 1);

#[sqs_consumer(
    queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo",
    key = by_body,
    workflow_queue = "ordered",
    client = clients::local,
    receiver = "jobs",
    ordering = "group",
    wait_time_s = 0,
    batch_size = 10,
    visibility_timeout_s = 43200,
    pollers = 8,
)]
#[workflow(name = "jobs.on_job")]
pub async fn on_job(message: SqsMessage) -> exactly::Result<String> {
    Ok(message.json::<String>()?)
}

#[sqs_consumer(queue_url = env("REPORTS_QUEUE_URL"))]
#[exactly::workflow]
async fn on_report(message: exactly::SqsMessage) -> Result<(), exactly::Error> {
    let _ = message.text();
    Ok(())
}

/// Everything from the receiver.
#[sqs_consumer]
#[workflow]
async fn on_default(_message: SqsMessage) -> exactly::Result<()> {
    Ok(())
}

fn main() {
    #[sqs_consumer(receiver = "local", ordering = "none")]
    #[workflow]
    async fn local_consumer(message: SqsMessage) -> exactly::Result<usize> {
        Ok(message.body.len())
    }

    let _: aws_sdk_sqs::Client = clients::local();
    let _ = (on_job, on_report, on_default, local_consumer, &ORDERED);
}

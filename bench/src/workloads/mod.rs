//! The workloads. Each takes a launched [`System`](crate::systems::System) and returns
//! raw measurements; `main` turns them into table rows.

pub mod concurrent;
pub mod kafka;
pub mod queue;
pub mod serial;
pub mod sqs;

/// A Kafka or SQS run that was not done by `--give-up`: how far it got, so that the
/// table can show the rate it sustained until then.
#[derive(Debug)]
pub struct GaveUp {
    pub done: u64,
    pub want: u64,
    pub after: std::time::Duration,
    pub what: String,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gave up after {:.0} s: {} of {} {}", self.after.as_secs_f64(), self.done, self.want, self.what)
    }
}

impl std::error::Error for GaveUp {}

//! Durable queues: workflows enqueued as ENQUEUED rows and started by each
//! process's dispatcher within the queue's limits, which hold across every process
//! sharing the database.

pub(crate) mod dispatch;
pub(crate) mod heartbeat;
pub(crate) mod identity;

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::registry::Location;

/// The queue that takes the PENDING workflows of a dead executor which were not on
/// a queue: they are started again by whichever executor is alive.
pub const INTERNAL_QUEUE: &str = "_exactly_internal";

/// A durable queue and its limits. Declare one with [`queue!`](crate::queue!) or
/// build one for [`RuntimeBuilder::queue`](crate::RuntimeBuilder::queue).
///
/// Every limit is optional; a queue with none starts its workflows as fast as the
/// dispatcher claims them.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    /// The queue's name, recorded with each workflow.
    pub name: &'static str,
    /// At most this many of its workflows run at once, all processes together.
    pub concurrency: Option<u32>,
    /// At most this many of its workflows run at once in each process.
    pub worker_concurrency: Option<u32>,
    /// At most `limit` workflows start per `period`, all processes together.
    pub rate_limit: Option<RateLimit>,
    /// At most this many workflows run at once per partition key, all processes together.
    pub partition_concurrency: Option<u32>,
    /// Where the queue was declared, for error messages.
    pub location: Location,
}

/// A rate limit: at most `limit` starts in any `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts allowed per period.
    pub limit: u32,
    /// The length of the window.
    pub period: Duration,
}

impl Queue {
    /// A queue with no limits. Its setters are `const`, so a queue can be a `static`.
    pub const fn new(name: &'static str) -> Queue {
        Queue {
            name,
            concurrency: None,
            worker_concurrency: None,
            rate_limit: None,
            partition_concurrency: None,
            location: Location { file: "", line: 0 },
        }
    }

    /// Sets the global concurrency limit.
    pub const fn concurrency(mut self, limit: u32) -> Queue {
        assert!(self.concurrency.is_none(), "`concurrency` set multiple times");
        assert!(limit > 0, "`concurrency` must be at least 1");
        self.concurrency = Some(limit);
        self
    }

    /// Sets the per-process concurrency limit.
    pub const fn worker_concurrency(mut self, limit: u32) -> Queue {
        assert!(self.worker_concurrency.is_none(), "`worker_concurrency` set multiple times");
        assert!(limit > 0, "`worker_concurrency` must be at least 1");
        self.worker_concurrency = Some(limit);
        self
    }

    /// Sets the rate limit: at most `limit` starts per `period`.
    pub const fn rate_limit(mut self, (limit, period): (u32, Duration)) -> Queue {
        assert!(self.rate_limit.is_none(), "`rate_limit` set multiple times");
        assert!(limit > 0 && !period.is_zero(), "`rate_limit` needs a positive limit and period");
        self.rate_limit = Some(RateLimit { limit, period });
        self
    }

    /// Sets the per-partition concurrency limit.
    pub const fn partition_concurrency(mut self, limit: u32) -> Queue {
        assert!(self.partition_concurrency.is_none(), "`partition_concurrency` set multiple times");
        assert!(limit > 0, "`partition_concurrency` must be at least 1");
        self.partition_concurrency = Some(limit);
        self
    }

    #[doc(hidden)]
    pub const fn declared_at(mut self, file: &'static str, line: u32) -> Queue {
        self.location = Location { file, line };
        self
    }

    /// Whether the dispatcher must serialize claims on this queue across processes.
    pub(crate) fn has_global_limit(&self) -> bool {
        self.concurrency.is_some() || self.rate_limit.is_some() || self.partition_concurrency.is_some()
    }

    fn same_limits(&self, other: &Queue) -> bool {
        self.concurrency == other.concurrency
            && self.worker_concurrency == other.worker_concurrency
            && self.rate_limit == other.rate_limit
            && self.partition_concurrency == other.partition_concurrency
    }
}

/// Submitted by [`queue!`](crate::queue!).
pub struct QueueRegistration(pub &'static Queue);
inventory::collect!(QueueRegistration);

/// The queues of a runtime by name: the declared ones and those given to the builder.
pub(crate) fn collect(extra: &[Queue]) -> Result<HashMap<&'static str, Queue>> {
    let declared = inventory::iter::<QueueRegistration>.into_iter().map(|r| r.0.clone());
    build(declared.chain(extra.iter().cloned()))
}

/// Fails on a name declared twice with different limits, naming both places.
pub(crate) fn build(queues: impl IntoIterator<Item = Queue>) -> Result<HashMap<&'static str, Queue>> {
    let mut by_name: HashMap<&'static str, Queue> = HashMap::new();
    let internal = Queue::new(INTERNAL_QUEUE);
    for queue in queues.into_iter().chain([internal]) {
        if let Some(first) = by_name.get(queue.name) {
            if !first.same_limits(&queue) {
                let place = |q: &Queue| {
                    if q.location.line == 0 { "the runtime builder".to_owned() } else { q.location.to_string() }
                };
                return Err(Error::Registration(format!(
                    "queue `{}` is declared twice with different limits: at {} ({}) and at {} ({}); declare it once",
                    queue.name,
                    place(first),
                    describe(first),
                    place(&queue),
                    describe(&queue)
                )));
            }
            continue;
        }
        by_name.insert(queue.name, queue);
    }
    Ok(by_name)
}

fn describe(queue: &Queue) -> String {
    let mut parts = Vec::new();
    if let Some(n) = queue.concurrency {
        parts.push(format!("concurrency = {n}"));
    }
    if let Some(n) = queue.worker_concurrency {
        parts.push(format!("worker_concurrency = {n}"));
    }
    if let Some(r) = queue.rate_limit {
        parts.push(format!("rate_limit = {} per {:?}", r.limit, r.period));
    }
    if let Some(n) = queue.partition_concurrency {
        parts.push(format!("partition_concurrency = {n}"));
    }
    if parts.is_empty() { "no limits".to_owned() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_queue_declared_twice_alike_is_one_queue() {
        let a = Queue::new("q").concurrency(3).declared_at("a.rs", 1);
        let b = Queue::new("q").concurrency(3).declared_at("b.rs", 2);
        let queues = build([a, b]).unwrap();
        assert_eq!(queues.len(), 2, "q and the internal queue");
        assert_eq!(queues["q"].concurrency, Some(3));
    }

    #[test]
    fn different_limits_under_one_name_fail_naming_both_places() {
        let a = Queue::new("q").concurrency(3).declared_at("a.rs", 1);
        let b = Queue::new("q").concurrency(4);
        let err = build([a, b]).unwrap_err().to_string();
        assert!(err.contains("queue `q` is declared twice"), "{err}");
        assert!(err.contains("a.rs:1 (concurrency = 3)") && err.contains("the runtime builder (concurrency = 4)"), "{err}");
    }
}

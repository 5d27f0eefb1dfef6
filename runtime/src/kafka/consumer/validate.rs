//! Launch-time checks of the consumers: what a macro cannot see (two consumers in
//! one group reading one topic, an unknown queue, a queue that cannot keep the
//! requested order) and the options of `register_kafka_consumer`. Every error names
//! the consumer, and for a conflict both consumers.

use std::collections::HashMap;

use regex_lite::Regex;

use super::{ConsumerDef, MAX_BATCH_SIZE, Ordering};
use crate::error::{Error, Result};
use crate::queue::{INTERNAL_QUEUE, Queue};
use crate::registry::{Registry, WorkflowSpec};

/// Checks one consumer on its own: its topics, group and batch size.
pub(crate) fn check_alone(def: &ConsumerDef) -> Result<()> {
    let mut problems = Vec::new();
    if def.topics.is_empty() {
        problems.push("it names no topic: give a topic name, a regular expression starting with `^`, or a list".to_owned());
    }
    for topic in &def.topics {
        if let Some(problem) = topic_problem(topic) {
            problems.push(problem);
        }
    }
    if def.group.trim().is_empty() {
        problems.push("its group is empty".to_owned());
    }
    if def.batch_size == 0 || def.batch_size > MAX_BATCH_SIZE {
        problems.push(format!("its batch_size is {}; it must be between 1 and {MAX_BATCH_SIZE}", def.batch_size));
    }
    if def.queue.as_deref().is_some_and(|q| q.trim().is_empty()) {
        problems.push("its queue name is empty".to_owned());
    }
    fail(def, problems)
}

fn fail(def: &ConsumerDef, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Registration(format!("{} is invalid: {}", def.describe(), problems.join("; "))))
}

/// What is wrong with a topic name or pattern, if anything.
fn topic_problem(topic: &str) -> Option<String> {
    if topic.starts_with('^') {
        return Regex::new(topic).err().map(|e| format!("topic pattern `{topic}` is not a valid regular expression: {e}"));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) || topic == "." || topic == ".." {
        return Some(format!(
            "`{topic}` is not a valid Kafka topic name (1 to 249 of `a-z A-Z 0-9 . _ -`); a regular expression must start with `^`"
        ));
    }
    None
}

/// Checks the consumers against the workflows and queues of the runtime and against
/// each other (`running` are consumers started before, checked only as the other side).
/// Returns each consumer's workflow.
pub(crate) fn check_all(
    defs: &[ConsumerDef],
    running: &[ConsumerDef],
    registry: &Registry,
    queues: &HashMap<&'static str, Queue>,
) -> Result<Vec<&'static WorkflowSpec>> {
    let mut errors = Vec::new();
    let mut specs = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        if let Err(e) = check_alone(def) {
            errors.push(e.to_string());
        }
        match registry.get(&def.workflow) {
            Some(spec) => specs.push(spec),
            None => errors.push(format!(
                "{} names workflow `{}`, which this program does not register: consumers start `#[workflow]` functions",
                def.describe(),
                def.workflow
            )),
        }
        if let Some(problem) = queue_problem(def, queues) {
            errors.push(problem);
        }
        for other in running.iter().chain(&defs[..i]) {
            if let Some(overlap) = overlap(def, other) {
                errors.push(format!(
                    "{} and {} share group `{}` and {overlap}: each message of a group goes to one member only, so one of the two workflows would silently miss it; give one of them its own `group`",
                    other.describe(),
                    def.describe(),
                    def.group
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(Error::Registration(errors.join("\n")))
    }
}

fn queue_problem(def: &ConsumerDef, queues: &HashMap<&'static str, Queue>) -> Option<String> {
    let name = def.queue.as_deref()?;
    let Some(queue) = queues.get(name).filter(|q| q.name != INTERNAL_QUEUE) else {
        let mut declared: Vec<_> = queues.keys().filter(|q| !q.starts_with('_')).copied().collect();
        declared.sort();
        return Some(format!(
            "{} enqueues on queue `{name}`, which is not declared (declared: {}); declare it with `exactly::queue!` or `Runtime::builder().queue(..)`",
            def.describe(),
            if declared.is_empty() { "none".to_owned() } else { declared.join(", ") }
        ));
    };
    if def.ordering != Ordering::None && queue.partition_concurrency != Some(1) {
        let place = if queue.location.line == 0 { "the runtime builder".to_owned() } else { queue.location.to_string() };
        return Some(format!(
            "{} wants ordering = \"{}\" on queue `{name}`, but that queue (declared at {place}) has partition_concurrency = {}; ordering needs partition_concurrency = 1 (or drop `queue` to use the runtime's own ordered queue)",
            def.describe(),
            def.ordering.as_str(),
            queue.partition_concurrency.map_or("none".to_owned(), |n| n.to_string()),
        ));
    }
    None
}

/// How two consumers' topics overlap, if they share a group.
fn overlap(a: &ConsumerDef, b: &ConsumerDef) -> Option<String> {
    if a.group != b.group {
        return None;
    }
    for x in &a.topics {
        for y in &b.topics {
            let found = match (x.starts_with('^'), y.starts_with('^')) {
                (false, false) => (x == y).then(|| format!("both read topic `{x}`")),
                (true, false) => matches(x, y).then(|| format!("pattern `{x}` matches topic `{y}`")),
                (false, true) => matches(y, x).then(|| format!("pattern `{y}` matches topic `{x}`")),
                (true, true) if x == y => Some(format!("both read pattern `{x}`")),
                (true, true) => Some(format!(
                    "patterns `{x}` and `{y}` may match the same topics (two patterns in one group cannot be shown apart)"
                )),
            };
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

fn matches(pattern: &str, topic: &str) -> bool {
    Regex::new(pattern).is_ok_and(|re| re.is_match(topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Location, Outcome};
    use futures_util::future::BoxFuture;

    fn invoke(_: String) -> BoxFuture<'static, Outcome> {
        Box::pin(async { Ok("null".to_owned()) })
    }

    static W: WorkflowSpec =
        WorkflowSpec { name: "app::w", location: Location { file: "src/w.rs", line: 1 }, max_recovery_attempts: None, invoke };

    fn def(topics: &[&str], group: &str, line: u32) -> ConsumerDef {
        ConsumerDef {
            workflow: "app::w".into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group: group.into(),
            queue: None,
            ordering: Ordering::None,
            config: None,
            batch_size: 100,
            location: Location { file: "src/main.rs", line },
            attribute: true,
        }
    }

    fn check(defs: &[ConsumerDef], queues: &[Queue]) -> Result<Vec<&'static WorkflowSpec>> {
        let registry = Registry::build([&W], []).unwrap();
        let queues = crate::queue::build(queues.iter().cloned()).unwrap();
        check_all(defs, &[], &registry, &queues)
    }

    #[test]
    fn overlapping_topics_in_one_group_fail_naming_both_consumers() {
        for (a, b) in [(&["orders"][..], &["x", "orders"][..]), (&["^ord.*"], &["orders"]), (&["^a.*"], &["^b.*"])] {
            let err = check(&[def(a, "g", 10), def(b, "g", 20)], &[]).unwrap_err().to_string();
            assert!(err.contains("src/main.rs:10") && err.contains("src/main.rs:20"), "{err}");
            assert!(err.contains("share group `g`"), "{err}");
        }
        // Different groups, or disjoint topics, are fine.
        check(&[def(&["orders"], "g1", 10), def(&["orders"], "g2", 20)], &[]).unwrap();
        check(&[def(&["^pay.*"], "g", 10), def(&["orders"], "g", 20)], &[]).unwrap();
    }

    #[test]
    fn invalid_options_are_named() {
        let mut bad = def(&["", "a b", "^(unclosed"], "g", 5);
        bad.batch_size = 0;
        let err = check(&[bad], &[]).unwrap_err().to_string();
        assert!(err.contains("src/main.rs:5"), "{err}");
        assert!(err.contains("`` is not a valid Kafka topic name") && err.contains("`a b` is not a valid"), "{err}");
        assert!(err.contains("`^(unclosed` is not a valid regular expression"), "{err}");
        assert!(err.contains("batch_size is 0"), "{err}");
        let err = check(&[def(&[], "g", 5)], &[]).unwrap_err().to_string();
        assert!(err.contains("names no topic"), "{err}");
    }

    #[test]
    fn an_unknown_queue_fails_listing_the_declared_ones() {
        let mut d = def(&["t"], "g", 7);
        d.queue = Some("slow".into());
        let err = check(&[d], &[Queue::new("fast")]).unwrap_err().to_string();
        assert!(err.contains("queue `slow`, which is not declared (declared: fast)") && err.contains("src/main.rs:7"), "{err}");
    }

    #[test]
    fn ordering_needs_a_queue_with_partition_concurrency_one() {
        let mut d = def(&["t"], "g", 7);
        d.queue = Some("q".into());
        d.ordering = Ordering::Key;
        let err = check(&[d.clone()], &[Queue::new("q").concurrency(4).declared_at("src/q.rs", 3)]).unwrap_err().to_string();
        assert!(err.contains("ordering = \"key\" on queue `q`") && err.contains("src/q.rs:3"), "{err}");
        check(&[d], &[Queue::new("q").partition_concurrency(1)]).unwrap();
    }

    #[test]
    fn an_unregistered_workflow_is_named() {
        let mut d = def(&["t"], "g", 9);
        d.workflow = "app::gone".into();
        d.attribute = false;
        let err = check(&[d], &[]).unwrap_err().to_string();
        assert!(err.contains("register_kafka_consumer of workflow `app::gone` at src/main.rs:9"), "{err}");
        assert!(err.contains("does not register"), "{err}");
    }
}

//! Resolving consumers against their receivers' defaults, and the launch errors
//! that need no server.

use std::collections::HashMap;

use futures_util::future::BoxFuture;

use super::consumer::{ConsumerDecl, SqsConsumerOptions, WorkflowRef};
use super::launch::{Plan, PlanClient, plan};
use super::{GROUP_QUEUE, Ordering, SqsMessage, SqsReceiver};
use crate::queue::Queue;
use crate::registry::{Location, Outcome, WorkflowSpec};

fn invoke(_: String) -> BoxFuture<'static, Outcome> {
    Box::pin(async { Ok("null".to_owned()) })
}

static ON_JOB: WorkflowSpec = WorkflowSpec {
    name: "app::on_job",
    location: Location { file: "src/jobs.rs", line: 3 },
    max_recovery_attempts: None,
    invoke,
};

const URL: &str = "http://127.0.0.1:4566/000000000000/jobs";
const FIFO_URL: &str = "http://127.0.0.1:4566/000000000000/jobs.fifo";

fn decl(line: u32, options: SqsConsumerOptions) -> ConsumerDecl {
    ConsumerDecl { workflow: WorkflowRef::Spec(&ON_JOB), location: Location { file: "src/jobs.rs", line }, options }
}

fn queues() -> HashMap<&'static str, Queue> {
    crate::queue::build([Queue::new("slow"), Queue::new("ordered").partition_concurrency(1), GROUP_QUEUE.clone()])
        .unwrap()
}

fn resolve(decls: &[ConsumerDecl], receivers: &[SqsReceiver]) -> crate::Result<Vec<Plan>> {
    let env = |var: &str| (var == "JOBS_URL").then(|| format!("{URL}-from-env"));
    let lookup = |name: &str| (name == ON_JOB.name).then_some(&ON_JOB);
    plan(decls, receivers, &lookup, &queues(), &env)
}

fn error(decls: &[ConsumerDecl], receivers: &[SqsReceiver]) -> String {
    match resolve(decls, receivers) {
        Ok(_) => panic!("expected a launch error"),
        Err(e) => e.to_string(),
    }
}

fn message(body: &str) -> SqsMessage {
    SqsMessage::new(URL, "m-1", body)
}

#[test]
fn a_consumer_takes_what_it_leaves_unset_from_the_default_receiver() {
    let receiver = SqsReceiver::new().queue_url(URL).key(|m| format!("r-{}", m.body)).workflow_queue("slow");
    let plans = resolve(&[decl(1, SqsConsumerOptions::new())], &[receiver]).unwrap();
    let plan = &plans[0];
    assert_eq!((plan.queue_url.as_str(), plan.queue_name.as_str()), (URL, "jobs"));
    assert_eq!(plan.key.as_ref().map(|k| k(&message("b"))).as_deref(), Some("r-b"));
    assert_eq!(plan.workflow_queue.as_deref(), Some("slow"));
    assert_eq!((plan.wait_time_s, plan.batch_size, plan.visibility_timeout_s, plan.pollers), (20, 10, None, 4));
    assert!(matches!(plan.client, PlanClient::Default), "the receiver has no client");
}

#[test]
fn a_consumer_s_own_settings_win_over_its_receiver_s() {
    let receiver = SqsReceiver::named("r")
        .queue_url("http://127.0.0.1:4566/000000000000/other")
        .key(|_| "receiver".into())
        .workflow_queue("slow")
        .client_factory(|| async { unreachable!("not called while planning") });
    let own = SqsConsumerOptions::new()
        .receiver("r")
        .queue_url_env("JOBS_URL")
        .key(|_| "own".into())
        .workflow_queue("ordered")
        .wait_time_s(1)
        .batch_size(3)
        .visibility_timeout_s(7)
        .pollers(1);
    let plans = resolve(&[decl(1, own), decl(2, SqsConsumerOptions::new().receiver("r"))], &[receiver]).unwrap();
    assert_eq!(plans[0].queue_url, format!("{URL}-from-env"));
    assert_eq!(plans[0].key.as_ref().unwrap()(&message("b")), "own");
    assert_eq!(plans[0].workflow_queue.as_deref(), Some("ordered"));
    assert_eq!((plans[0].wait_time_s, plans[0].batch_size, plans[0].visibility_timeout_s, plans[0].pollers), (1, 3, Some(7), 1));
    assert!(matches!(plans[0].client, PlanClient::Receiver(0)));
    assert_eq!(plans[1].queue_name, "other");
    assert_eq!(plans[1].key.as_ref().unwrap()(&message("b")), "receiver");
}

#[test]
fn named_receivers_apply_only_to_the_consumers_that_name_them() {
    let named = SqsReceiver::named("r").queue_url(URL);
    let err = error(&[decl(4, SqsConsumerOptions::new())], &[named]);
    assert!(err.contains("SQS consumer `app::on_job` (src/jobs.rs:4) has no queue URL"), "{err}");
}

#[test]
fn an_unknown_receiver_is_named_with_the_configured_ones() {
    let err = error(&[decl(5, SqsConsumerOptions::new().receiver("reprots"))], &[SqsReceiver::named("reports")]);
    assert!(err.contains("(src/jobs.rs:5) uses SQS receiver `reprots`"), "{err}");
    assert!(err.contains("(configured: `reports`)"), "{err}");
}

#[test]
fn an_unset_environment_variable_is_named() {
    let err = error(&[decl(6, SqsConsumerOptions::new().queue_url_env("NOPE_URL"))], &[]);
    assert!(err.contains("environment variable NOPE_URL, which is not set"), "{err}");
}

#[test]
fn a_url_without_a_queue_name_is_rejected() {
    let err = error(&[decl(7, SqsConsumerOptions::new().queue_url("http://127.0.0.1:4566/"))], &[]);
    assert!(err.contains("is not an SQS queue URL"), "{err}");
}

#[test]
fn an_undeclared_workflow_queue_is_named_with_the_declared_ones() {
    let err = error(&[decl(8, SqsConsumerOptions::new().queue_url(URL).workflow_queue("fast"))], &[]);
    assert!(
        err.contains("enqueues its workflows on queue `fast`, which is not declared (declared: `ordered`, `slow`)"),
        "{err}"
    );
}

#[test]
fn group_ordering_needs_a_fifo_queue_and_a_partitioned_workflow_queue() {
    let group = || SqsConsumerOptions::new().ordering(Ordering::Group);
    let err = error(&[decl(9, group().queue_url(URL))], &[]);
    assert!(err.contains("is a standard queue"), "{err}");
    let err = error(&[decl(9, group().queue_url(FIFO_URL).workflow_queue("slow"))], &[]);
    assert!(err.contains("needs `partition_concurrency = 1`"), "{err}");
    let plans = resolve(&[decl(9, group().queue_url(FIFO_URL))], &[]).unwrap();
    assert_eq!(plans[0].workflow_queue.as_deref(), Some(GROUP_QUEUE.name));
    let plans = resolve(&[decl(9, group().queue_url(FIFO_URL).workflow_queue("ordered"))], &[]).unwrap();
    assert_eq!(plans[0].workflow_queue.as_deref(), Some("ordered"));
}

#[test]
fn two_consumers_of_one_queue_are_rejected_naming_both() {
    let options = SqsConsumerOptions::new().queue_url(URL);
    let err = error(&[decl(10, options.clone()), decl(11, options)], &[]);
    assert!(err.contains("(src/jobs.rs:10) and SQS consumer `app::on_job` (src/jobs.rs:11) both consume"), "{err}");
}

#[test]
fn a_receiver_configured_twice_is_rejected() {
    let err = error(&[], &[SqsReceiver::new(), SqsReceiver::new()]);
    assert!(err.contains("the default SQS receiver is configured twice"), "{err}");
}

#[test]
fn settings_out_of_the_ranges_sqs_allows_are_rejected() {
    let err = error(&[decl(12, SqsConsumerOptions::new().queue_url(URL).batch_size(11))], &[]);
    assert!(err.contains("`batch_size` is 11; SQS allows 1 to 10"), "{err}");
    let err = error(&[decl(12, SqsConsumerOptions::new().queue_url(URL).pollers(0))], &[]);
    assert!(err.contains("`pollers` is 0; exactly allows 1 to 64"), "{err}");
    let err = error(&[decl(12, SqsConsumerOptions::new().queue_url(URL).wait_time_s(21))], &[]);
    assert!(err.contains("`wait_time_s` is 21"), "{err}");
}

#[test]
fn a_programmatic_consumer_of_an_unregistered_workflow_is_rejected() {
    let decl = ConsumerDecl {
        workflow: WorkflowRef::Name("app::gone"),
        location: Location { file: "src/main.rs", line: 1 },
        options: SqsConsumerOptions::new().queue_url(URL),
    };
    let err = error(&[decl], &[]);
    assert!(err.contains("starts workflow `app::gone`, which is not registered"), "{err}");
}

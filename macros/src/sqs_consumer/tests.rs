//! `#[sqs_consumer]` expansions and errors checked as strings (trybuild covers what
//! rustc makes of them).

use proc_macro2::TokenStream;

use super::{disabled, expand};

fn tokens(text: &str) -> TokenStream {
    text.parse().expect("valid tokens")
}

fn squash(tokens: impl ToString) -> String {
    tokens.to_string().chars().filter(|c| !c.is_whitespace()).collect()
}

/// The expansion, squashed, and the messages of its `compile_error!`s.
fn run(args: &str, item: &str) -> (String, Vec<String>) {
    let out = expand(tokens(args), tokens(item));
    let text = out.to_string();
    let errors = text
        .split("compile_error ! { \"")
        .skip(1)
        .map(|rest| rest.split("\" }").next().unwrap_or_default().replace("\\\"", "\""))
        .collect();
    (squash(&out), errors)
}

fn assert_contains(haystack: &str, needle: &str) {
    let needle = squash(needle);
    assert!(haystack.contains(&needle), "expected\n  {needle}\nin\n  {haystack}");
}

const ON_JOB: &str = "#[workflow] async fn on_job(message: SqsMessage) -> exactly::Result<()> { Ok(()) }";

#[test]
fn a_consumer_registers_a_spec_pointing_at_the_workflow_static() {
    let (out, errors) =
        run(r#"queue_url = env("JOBS_URL"), key = keys::by_body, ordering = "none", batch_size = 5"#, ON_JOB);
    assert!(errors.is_empty(), "{errors:?}");
    // The function is left to `#[workflow]`.
    assert_contains(&out, ON_JOB);
    assert_contains(&out, "static __EXACTLY_SQS_CONSUMER_on_job: ::exactly::__private::SqsConsumerSpec");
    assert_contains(&out, "workflow: &__EXACTLY_WORKFLOW_on_job,");
    assert_contains(
        &out,
        r#"queue_url: ::core::option::Option::Some(::exactly::__private::StaticQueueUrl::Env("JOBS_URL"))"#,
    );
    assert_contains(&out, "::exactly::__private::sqs_key(keys::by_body, __exactly_message)");
    assert_contains(&out, "ordering: ::core::option::Option::Some(::exactly::__private::SqsOrdering::None)");
    assert_contains(&out, "batch_size: ::core::option::Option::Some(5u32)");
    assert_contains(&out, "wait_time_s: ::core::option::Option::None");
    assert_contains(&out, "client: ::core::option::Option::None");
    assert_contains(
        &out,
        "::exactly::__private::inventory::submit! { ::exactly::__private::SqsConsumerRegistration(&__EXACTLY_SQS_CONSUMER_on_job) }",
    );
    assert_contains(&out, "::exactly::__private::sqs_consumer_message::<SqsMessage>()");
}

#[test]
fn every_option_fills_the_spec() {
    let args = r#"queue_url = "https://sqs.eu-west-1.amazonaws.com/1/jobs.fifo", key = k, workflow_queue = "slow",
        client = make_client, receiver = "reports", ordering = "group", wait_time_s = 0, batch_size = 10,
        visibility_timeout_s = 43200"#;
    let (out, errors) = run(
        args,
        "#[exactly::workflow(name = \"jobs\")] async fn on_job(m: exactly::SqsMessage) -> exactly::Result<()> { Ok(()) }",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_contains(&out, r#"StaticQueueUrl::Literal("https://sqs.eu-west-1.amazonaws.com/1/jobs.fifo")"#);
    assert_contains(&out, r#"workflow_queue: ::core::option::Option::Some("slow")"#);
    assert_contains(&out, r#"receiver: ::core::option::Option::Some("reports")"#);
    assert_contains(&out, "::exactly::__private::sqs_client(make_client)");
    assert_contains(&out, "SqsOrdering::Group");
    assert_contains(&out, "wait_time_s: ::core::option::Option::Some(0u32)");
    assert_contains(&out, "visibility_timeout_s: ::core::option::Option::Some(43200u32)");
    assert_contains(&out, "::exactly::__private::sqs_consumer_message::<exactly::SqsMessage>()");
}

#[test]
fn cfg_attributes_apply_to_the_registration_too() {
    let (out, _) = run(
        "",
        "#[cfg(feature = \"jobs\")] #[workflow] async fn on_job(message: SqsMessage) -> exactly::Result<()> { Ok(()) }",
    );
    assert_eq!(out.matches("#[cfg(feature=\"jobs\")]").count(), 4, "{out}");
}

#[test]
fn written_below_workflow_it_says_to_move_it_above() {
    // What `#[workflow]` leaves behind: the generated, non-async call function.
    let (out, errors) =
        run("", "fn on_job(message: SqsMessage) -> ::exactly::WorkflowCall<exactly::Result<()>> { todo!() }");
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("must be written above `#[workflow]`"), "{errors:?}");
    assert!(!out.contains("SqsConsumerSpec"), "{out}");
}

#[test]
fn without_workflow_it_asks_for_one() {
    let (_, errors) = run("", "async fn on_job(message: SqsMessage) -> exactly::Result<()> { Ok(()) }");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("add `#[workflow]` on the line below it"), "{errors:?}");
}

#[test]
fn the_workflow_must_take_exactly_the_message() {
    let (_, errors) = run("", "#[workflow] async fn on_job(a: SqsMessage, b: u32) -> exactly::Result<()> { Ok(()) }");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("takes exactly one parameter") && errors[0].contains("this one takes 2"), "{errors:?}");
    let (_, errors) = run("", "#[workflow] async fn on_job() -> exactly::Result<()> { Ok(()) }");
    assert!(errors[0].contains("this one takes 0"), "{errors:?}");
}

#[test]
fn a_workflow_that_workflow_rejects_gets_no_consumer() {
    // `#[workflow]` reports the missing `async`; a consumer would add a second error.
    let (out, errors) = run("", "#[workflow] fn on_job(message: SqsMessage) -> exactly::Result<()> { Ok(()) }");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!out.contains("SqsConsumerSpec"), "{out}");
}

#[test]
fn unknown_and_repeated_keys_are_all_reported() {
    let (out, errors) = run(r#"queue = "x", batch_size = 2, batch_size = 3, wait_time_s = 21"#, ON_JOB);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("unknown attribute `queue`; expected one of: `queue_url`, `key`"), "{errors:?}");
    assert_eq!(errors[1], "`batch_size` is set more than once; keep one of them");
    assert!(errors[2].contains("`wait_time_s` must be between 0 and 20"), "{errors:?}");
    // The workflow is still emitted, so it keeps compiling in the IDE.
    assert_contains(&out, ON_JOB);
}

#[test]
fn values_are_checked() {
    let cases = [
        (r#"queue_url = "jobs""#, "is not an SQS queue URL"),
        (r#"queue_url = env(JOBS)"#, "`env(..)` takes the variable's name as a non-empty string literal"),
        (r#"queue_url = 42"#, "`queue_url` expects a string literal or `env(\"VAR\")`"),
        (r#"key = "by_body""#, "`key` expects the path of a function"),
        (r#"client = || make()"#, "`client` expects the path of a function"),
        (r#"workflow_queue = """#, "`workflow_queue` must not be empty"),
        (r#"receiver = reports"#, "`receiver` expects a string literal"),
        (r#"ordering = "fifo""#, "`ordering` expects `\"group\"`"),
        (r#"batch_size = 0"#, "`batch_size` must be between 1 and 10"),
        (r#"visibility_timeout_s = -1"#, "`visibility_timeout_s` expects an integer literal"),
        (r#"queue_url = "https://sqs.x.amazonaws.com/1/jobs", ordering = "group""#, "names a standard queue"),
        (r#"key"#, "`key` needs a value"),
    ];
    for (args, expected) in cases {
        let (_, errors) = run(args, ON_JOB);
        assert_eq!(errors.len(), 1, "{args}: {errors:?}");
        assert!(errors[0].contains(expected), "{args}: {errors:?}");
    }
}

#[test]
fn without_the_feature_the_attribute_names_it() {
    let out = disabled(tokens(ON_JOB)).to_string();
    assert!(out.contains("needs the `sqs` feature of `exactly`"), "{out}");
    assert!(squash(&out).contains(&squash(ON_JOB)), "the item is kept");
}

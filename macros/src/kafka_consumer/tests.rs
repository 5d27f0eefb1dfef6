//! `#[kafka_consumer]` expansions and errors checked as strings (trybuild covers what
//! rustc makes of them).

use proc_macro2::TokenStream;

use super::{disabled, expand};

fn tokens(text: &str) -> TokenStream {
    text.parse().expect("valid tokens")
}

fn squash(tokens: impl ToString) -> String {
    tokens.to_string().chars().filter(|c| !c.is_whitespace()).collect()
}

fn errors(text: &str) -> Vec<String> {
    text.split("compile_error ! { \"")
        .skip(1)
        .map(|rest| rest.split("\" }").next().unwrap_or_default().replace("\\\"", "\""))
        .collect()
}

/// The expansion, squashed, and the messages of its `compile_error!`s.
fn run(args: &str, item: &str) -> (String, Vec<String>) {
    let out = expand(tokens(args), tokens(item));
    (squash(&out), errors(&out.to_string()))
}

fn assert_contains(haystack: &str, needle: &str) {
    let needle = squash(needle);
    assert!(haystack.contains(&needle), "expected\n  {needle}\nin\n  {haystack}");
}

const ON_ORDER: &str =
    "#[workflow] async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> { Ok(()) }";

#[test]
fn a_consumer_registers_a_spec_pointing_at_the_workflow_static() {
    let (out, errors) = run(r#""orders""#, ON_ORDER);
    assert!(errors.is_empty(), "{errors:?}");
    assert_contains(&out, ON_ORDER);
    assert_contains(&out, "static __EXACTLY_KAFKA_CONSUMER_on_order: ::exactly::__private::KafkaConsumerSpec");
    assert_contains(&out, "workflow: &__EXACTLY_WORKFLOW_on_order,");
    assert_contains(&out, r#"topics: &["orders"],"#);
    assert_contains(&out, "group: ::core::option::Option::None");
    assert_contains(&out, "ordering: ::exactly::__private::KafkaOrdering::None");
    assert_contains(&out, "config: ::core::option::Option::None");
    assert_contains(
        &out,
        "::exactly::__private::inventory::submit! { ::exactly::__private::KafkaConsumerRegistration(&__EXACTLY_KAFKA_CONSUMER_on_order) }",
    );
    assert_contains(&out, "fn __exactly_check(__exactly_message: KafkaMessage) -> ::exactly::__private::KafkaMessage");
}

#[test]
fn every_option_fills_the_spec() {
    let args = r#"["orders", "^returns-.*"], group = "billing", queue = "slow", ordering = "key", config = cfg::orders, batch_size = 50"#;
    let (out, errors) = run(args, ON_ORDER);
    assert!(errors.is_empty(), "{errors:?}");
    assert_contains(&out, r#"topics: &["orders", "^returns-.*"],"#);
    assert_contains(&out, r#"group: ::core::option::Option::Some("billing")"#);
    assert_contains(&out, r#"queue: ::core::option::Option::Some("slow")"#);
    assert_contains(&out, "ordering: ::exactly::__private::KafkaOrdering::Key");
    assert_contains(
        &out,
        "fn __exactly_config() -> ::exactly::__private::KafkaClientConfig { let __exactly_config: fn() -> ::exactly::__private::KafkaClientConfig = cfg::orders; __exactly_config() }",
    );
    assert_contains(&out, "batch_size: ::core::option::Option::Some(50u32)");
}

#[test]
fn every_misuse_is_reported_in_one_compile() {
    let args = r#"["", "a b"], colour = "red", group = "", ordering = "fifo", batch_size = 0, config = || 1, group = "x""#;
    let (_, errors) = run(args, ON_ORDER);
    assert_eq!(errors.len(), 8, "{errors:#?}");
    assert!(errors[0].contains("a topic name cannot be empty"), "{errors:#?}");
    assert!(errors[1].contains("`a b` is not a valid Kafka topic name"), "{errors:#?}");
    assert!(errors[2].contains("unknown attribute `colour`; expected one of: `group`, `queue`"), "{errors:#?}");
    assert!(errors[3].contains("`group` must not be empty"), "{errors:#?}");
    assert!(errors[4].contains("`ordering` expects `\"partition\"`"), "{errors:#?}");
    assert!(errors[5].contains("`batch_size` must be an integer literal between 1 and 10000"), "{errors:#?}");
    assert!(errors[6].contains("`config` expects the path of a function"), "{errors:#?}");
    assert!(errors[7].contains("`group` is set more than once; keep one of them"), "{errors:#?}");
    let (_, errors) = run(r#""t", group = "a", group = "b""#, ON_ORDER);
    assert_eq!(errors, ["`group` is set more than once; keep one of them"]);
}

#[test]
fn the_topics_come_first() {
    for args in ["", r#"group = "g""#, "[]", "orders"] {
        let (_, errors) = run(args, ON_ORDER);
        assert_eq!(errors.len(), 1, "{args}: {errors:#?}");
        assert!(errors[0].contains("topic"), "{args}: {errors:#?}");
    }
}

#[test]
fn the_signature_must_be_topic_partition_message() {
    let (_, errors) = run(r#""t""#, "#[workflow] async fn f(message: KafkaMessage) -> exactly::Result<()> { Ok(()) }");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("(this one takes 1 parameter)"), "{errors:#?}");
    let (_, errors) =
        run(r#""t""#, "#[workflow] async fn f(topic: &str, partition: u32, message: Vec<u8>) -> exactly::Result<()> { Ok(()) }");
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("the topic parameter of a `#[kafka_consumer]` workflow must be `String`, not `&str`"));
    assert!(errors[1].contains("must be `i32`, not `u32`"));
    assert!(errors[2].contains("must be `KafkaMessage`, not `Vec<u8>`"));
}

#[test]
fn it_goes_above_a_workflow() {
    let below = "fn f(topic: String, partition: i32, message: KafkaMessage) -> ::exactly::WorkflowCall<exactly::Result<()>> { todo!() }";
    let (_, errors) = run(r#""t""#, below);
    assert!(errors[0].contains("must be written above `#[workflow]`, not below it"), "{errors:#?}");
    let (_, errors) = run(r#""t""#, "async fn f(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> { Ok(()) }");
    assert!(errors[0].contains("add `#[workflow]` on the line below it"), "{errors:#?}");
}

#[test]
fn a_workflow_that_workflow_rejects_gets_no_second_error() {
    // Not async: `#[workflow]` reports that; the consumer adds nothing.
    let item = "#[workflow] fn f(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> { Ok(()) }";
    let (out, errors) = run(r#""t""#, item);
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(!out.contains("KafkaConsumerSpec"), "{out}");
}

#[test]
fn without_the_feature_it_names_the_feature() {
    let out = disabled(tokens(ON_ORDER)).to_string();
    let errors = errors(&out);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("needs the `kafka` feature of `exactly`"), "{errors:#?}");
    assert!(squash(&out).contains(&squash(ON_ORDER)), "the item is kept");
}

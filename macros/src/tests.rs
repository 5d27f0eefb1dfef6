//! Expansions and errors checked as strings on `proc_macro2` (trybuild covers what
//! rustc makes of them).

use proc_macro2::TokenStream;
use quote::format_ident;

use crate::{signature, step, workflow};

fn tokens(text: &str) -> TokenStream {
    text.parse().expect("valid tokens")
}

/// Token text without whitespace, so that assertions do not depend on spacing.
fn squash(tokens: impl ToString) -> String {
    tokens.to_string().chars().filter(|c| !c.is_whitespace()).collect()
}

/// An expansion, squashed, and the messages of its `compile_error!`s in order.
fn expand_workflow(args: &str, item: &str) -> (String, Vec<String>) {
    let out = workflow::expand(tokens(args), tokens(item));
    (squash(&out), errors(&out.to_string()))
}

fn expand_step(args: &str, item: &str) -> (String, Vec<String>) {
    let out = step::expand(tokens(args), tokens(item));
    (squash(&out), errors(&out.to_string()))
}

fn errors(expansion: &str) -> Vec<String> {
    expansion
        .split("compile_error ! { \"")
        .skip(1)
        .map(|rest| rest.split("\" }").next().unwrap_or_default().replace("\\\"", "\""))
        .collect()
}

fn assert_contains(haystack: &str, needle: &str) {
    let needle = squash(needle);
    assert!(haystack.contains(&needle), "expected\n  {needle}\nin\n  {haystack}");
}

const PROCESS: &str = "pub async fn process(order_id: String, cents: u64) -> exactly::Result<String> { Ok(order_id) }";

#[test]
fn workflow_becomes_a_call_and_a_registered_spec() {
    let (out, errors) = expand_workflow("", PROCESS);
    assert!(errors.is_empty(), "{out}");
    assert_contains(
        &out,
        "pub fn process(order_id: String, cents: u64) -> ::exactly::WorkflowCall<exactly::Result<String>>",
    );
    assert_contains(&out, "::exactly::WorkflowCall::new(&__EXACTLY_WORKFLOW_process,");
    assert_contains(
        &out,
        "#[doc(hidden)] #[allow(non_upper_case_globals)] pub static __EXACTLY_WORKFLOW_process: ::exactly::__private::WorkflowSpec",
    );
    assert_contains(&out, r#"name: ::core::concat!(::core::module_path!(), "::process")"#);
    assert_contains(&out, "max_recovery_attempts: ::core::option::Option::None");
    assert_contains(&out, "async fn __body(order_id: String, cents: u64) -> exactly::Result<String> { Ok(order_id) }");
    assert_contains(&out, "::exactly::__private::workflow_input::<String>()");
    assert_contains(&out, "::exactly::__private::workflow_input::<u64>()");
    assert_contains(
        &out,
        "::exactly::__private::workflow_output::<<exactly::Result<String> as ::exactly::__private::ReturnsResult>::Ok>()",
    );
    assert_contains(
        &out,
        "::exactly::__private::inventory::submit! { ::exactly::__private::WorkflowRegistration(&__EXACTLY_WORKFLOW_process) }",
    );
    // The original async fn is gone: the outer function is not async.
    assert!(!out.contains("pubasyncfnprocess"), "{out}");
}

#[test]
fn workflow_options_fill_the_spec() {
    let (out, errors) = expand_workflow(r#"name = "orders.process", max_recovery_attempts = 3"#, PROCESS);
    assert!(errors.is_empty(), "{out}");
    assert_contains(&out, r#"name: "orders.process""#);
    assert_contains(&out, "max_recovery_attempts: ::core::option::Option::Some(3u32)");
}

#[test]
fn workflow_patterns_bind_in_the_body_only() {
    let (out, errors) = expand_workflow(
        "",
        "async fn f(mut order: Order, (a, b): (u8, u8)) -> exactly::Result<()> { order.touch(); Ok(()) }",
    );
    assert!(errors.is_empty(), "{out}");
    // The outer function takes plain names; the body keeps the patterns as written.
    assert_contains(&out, "fn f(order: Order, __exactly_arg1: (u8, u8)) -> ::exactly::WorkflowCall");
    assert_contains(&out, "async fn __body(mut order: Order, (a, b): (u8, u8))");
    assert_contains(&out, r#".decode(&mut __exactly_decoder, "(a, b)")?"#);
}

#[test]
fn workflow_keeps_user_attributes() {
    let (out, errors) = expand_workflow(
        "",
        "/// Docs.\n#[allow(clippy::too_many_arguments)] async fn f() -> exactly::Result<()> { #![allow(unused)] Ok(()) }",
    );
    assert!(errors.is_empty(), "{out}");
    assert_contains(
        &out,
        r#"#[doc = " Docs."] #[allow(clippy::too_many_arguments)] fn f() -> ::exactly::WorkflowCall"#,
    );
    // Lint levels apply to the body too, and inner attributes stay inside it.
    assert_contains(
        &out,
        "#[allow(clippy::too_many_arguments)] async fn __body() -> exactly::Result<()> { #![allow(unused)] Ok(()) }",
    );
}

#[test]
fn spec_ident_is_the_contract_name() {
    assert_eq!(workflow::spec_ident(&format_ident!("process")).to_string(), "__EXACTLY_WORKFLOW_process");
    assert_eq!(workflow::spec_ident(&format_ident!("r#type")).to_string(), "__EXACTLY_WORKFLOW_type");
}

#[test]
fn workflow_signature_errors_are_all_reported_with_the_item() {
    let (out, errors) =
        expand_workflow(r#"nmae = "x", name = "a", name = "b""#, "fn f(&self, id: &str, x: impl Display) -> u64 { 0 }");
    assert_eq!(
        errors,
        [
            "unknown attribute `nmae`; expected one of: `name`, `max_recovery_attempts`",
            "`name` is set more than once; keep one of them",
            "a workflow must be an `async fn`: it runs as a durable task that awaits its steps; write `async fn`",
            "a workflow cannot take `self`: on recovery it is started again from its recorded arguments alone, so it must be a free function; pass what it needs as arguments",
            "workflow arguments are recorded as JSON and decoded again on recovery, so they must be owned values: take `String` instead of `&str`",
            "workflow arguments cannot be `impl Trait`: they are recorded as JSON and decoded on recovery into one concrete type; name the type",
            "a workflow must return `Result<T, E>`: its output or its error is recorded as the outcome of the workflow; return `exactly::Result<u64>` instead of `u64`",
        ]
    );
    // The function as written stays, so that the IDE keeps resolving it.
    assert!(out.starts_with("fnf(&self,id:&str,x:implDisplay)->u64{0}"), "{out}");
}

#[test]
fn owned_suggestions() {
    let (_, errors) = expand_workflow(
        "",
        "async fn f(a: Option<&[u8]>, b: &Path, c: &mut Vec<&'a str>) -> exactly::Result<()> { Ok(()) }",
    );
    assert!(errors[0].ends_with("take `Option<Vec<u8>>` instead of `Option<&[u8]>`"), "{errors:?}");
    assert!(errors[1].ends_with("take `PathBuf` instead of `&Path`"), "{errors:?}");
    assert!(errors[2].ends_with("take `Vec<String>` instead of `&mut Vec<&'a str>`"), "{errors:?}");
}

#[test]
fn generic_workflows_are_rejected() {
    let (out, errors) = expand_workflow("", "async fn f<T: Serialize>(x: T) -> exactly::Result<()> { Ok(()) }");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("a workflow cannot be generic"), "{out}");
}

#[test]
fn option_values_are_checked() {
    let (_, errors) = expand_workflow(r#"name = NAME, max_recovery_attempts = -1"#, PROCESS);
    assert_eq!(
        errors,
        [
            r#"`name` expects a string literal, e.g. `name = "orders.process"`: it is recorded with every execution, so it must be fixed at compile time"#,
            "`max_recovery_attempts` cannot be negative",
        ]
    );
    let (_, errors) =
        expand_step("retries = 4294967296, backoff_factor = 0.5, backoff_ms = 10, max_backoff_ms = 5", PROCESS);
    assert_eq!(
        errors,
        [
            "`retries` is too large: it must fit in a `u32`",
            "`backoff_factor` must be at least 1.0: each retry waits at least as long as the one before",
            "`max_backoff_ms` (5) is less than the first delay, `backoff_ms` (10): raise it or lower `backoff_ms`",
        ]
    );
}

#[test]
fn a_function_is_a_workflow_or_a_step() {
    let (out, errors) = expand_workflow("", "#[step] async fn f() -> exactly::Result<()> { Ok(()) }");
    assert!(errors[0].starts_with("a function is either a workflow or a step, not both"), "{out}");
    // The other attribute is dropped, so that it does not report the conflict again.
    assert!(out.starts_with("asyncfnf()"), "{out}");
    let (out, errors) = expand_step("", "#[exactly::workflow] async fn f() -> exactly::Result<()> { Ok(()) }");
    assert!(errors[0].ends_with("remove `#[workflow]` or `#[step]`"), "{out}");
}

#[test]
fn not_a_function() {
    let (out, errors) = expand_workflow("", "struct S;");
    assert!(errors[0].starts_with("`#[workflow]` applies to an `async fn`"), "{out}");
    assert!(out.starts_with("structS;"), "{out}");
}

const CHARGE: &str =
    "async fn charge(order: &Order, cents: u64) -> exactly::Result<Receipt> { Ok(receipt(order, cents)) }";

#[test]
fn step_keeps_its_signature_and_runs_through_the_runtime() {
    let (out, errors) = expand_step("", CHARGE);
    assert!(errors.is_empty(), "{out}");
    assert_contains(
        &out,
        "async fn charge(order: &Order, cents: u64) -> exactly::Result<Receipt> { static __EXACTLY_STEP: ::exactly::__private::StepSpec",
    );
    assert_contains(&out, r#"name: ::core::concat!(::core::module_path!(), "::charge")"#);
    assert_contains(
        &out,
        "retries: 0u32, backoff: ::core::time::Duration::from_millis(100u64), backoff_factor: 2f64, max_backoff: ::core::time::Duration::from_millis(60000u64)",
    );
    assert_contains(
        &out,
        "::exactly::__private::inventory::submit! { ::exactly::__private::StepRegistration(&__EXACTLY_STEP) }",
    );
    assert_contains(
        &out,
        "::exactly::__private::step_output::<<exactly::Result<Receipt> as ::exactly::__private::ReturnsResult>::Ok>();",
    );
    assert_contains(
        &out,
        "::exactly::__private::step_error::<<exactly::Result<Receipt> as ::exactly::__private::ReturnsResult>::Err>();",
    );
    // Without retries the arguments are handed over once, with no `Clone` needed.
    assert_contains(&out, "let mut __exactly_args = ::core::option::Option::Some((order, cents,));");
    assert_contains(&out, "let (order, cents,) = __exactly_args.take()");
    assert!(!out.contains("retried_step_argument"), "{out}");
    assert_contains(&out, "let __exactly_fake_return: exactly::Result<Receipt> = loop {};");
    assert_contains(&out, ".run(&__EXACTLY_STEP, move ||");
}

#[test]
fn retried_step_clones_its_arguments_for_each_attempt() {
    let (out, errors) = expand_step(
        r#"name = "payments.charge", retries = 3, backoff_ms = 250, backoff_factor = 1.5, max_backoff_ms = 1000"#,
        CHARGE,
    );
    assert!(errors.is_empty(), "{out}");
    assert_contains(&out, r#"name: "payments.charge""#);
    assert_contains(
        &out,
        "retries: 3u32, backoff: ::core::time::Duration::from_millis(250u64), backoff_factor: 1.5f64",
    );
    assert_contains(&out, "let __exactly_clone0 = ::exactly::__private::retried_step_argument::<&Order>();");
    assert_contains(&out, "let __exactly_clone1 = ::exactly::__private::retried_step_argument::<u64>();");
    assert_contains(&out, "let order = __exactly_clone0(&order); let cents = __exactly_clone1(&cents);");
}

#[test]
fn step_generics_and_patterns() {
    let (out, errors) = expand_step(
        "retries = 1",
        "pub async fn f<T: Clone>(mut item: T, x: impl Display + Clone) -> Result<T, MyError> where T: Send { Ok(item) }",
    );
    assert!(errors.is_empty(), "{out}");
    assert_contains(
        &out,
        "pub async fn f<T: Clone>(item: T, x: impl Display + Clone) -> Result<T, MyError> where T: Send {",
    );
    assert_contains(&out, "::exactly::__private::retried_step_argument::<T>()");
    assert_contains(&out, "::exactly::__private::retried_step_argument_of(&x)");
    assert_contains(&out, "let mut item = __exactly_clone0(&item);");
}

#[test]
fn step_signature_errors() {
    let (_, errors) = expand_step("retry = 3", "fn f(&mut self) {}");
    assert_eq!(
        errors,
        [
            "unknown attribute `retry`; expected one of: `name`, `retries`, `backoff_ms`, `backoff_factor`, `max_backoff_ms`",
            "a step must be an `async fn`: the workflow awaits it and its outcome is recorded before the workflow goes on; write `async fn`",
            "a step must be a free function, not a method: on recovery a completed step is not run again (its recorded output is returned instead), so changes it made to `self` would be lost; pass what it needs as arguments",
            "a step must return `Result<T, E>`: its output or its error is recorded, and replayed on recovery; add a return type, e.g. `-> exactly::Result<()>`",
        ]
    );
}

#[test]
fn result_aliases_are_accepted() {
    for ret in ["Result<u8, E>", "std::result::Result<u8, E>", "exactly::Result<u8>", "io::Result<u8>", "PaymentResult"]
    {
        let (out, errors) = expand_step("", &format!("async fn f() -> {ret} {{ todo!() }}"));
        assert!(errors.is_empty(), "{ret}: {out}");
    }
    let (out, errors) = expand_step("", "async fn f() -> Option<u8> { None }");
    assert!(errors[0].ends_with("return `exactly::Result<Option<u8>>` instead of `Option<u8>`"), "{out}");
}

#[test]
fn types_print_as_written() {
    let ty: syn::Type = syn::parse_quote!(std::collections::HashMap<&'a str, Vec<(u8, [u8; 4])>>);
    assert_eq!(signature::tokens_to_string(&ty), "std::collections::HashMap<&'a str, Vec<(u8, [u8 ; 4])>>");
    let ty: syn::Type = syn::parse_quote!(&mut dyn Fn(u8) -> u8);
    assert_eq!(signature::tokens_to_string(&ty), "&mut dyn Fn(u8) -> u8");
}

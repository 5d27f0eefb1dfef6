//! `#[sqs_consumer(..)]`: written above `#[workflow]`, it registers the workflow as
//! the consumer of an SQS queue. It leaves the function to `#[workflow]` and adds a
//! registered `SqsConsumerSpec` that points at the workflow's spec static:
//!
//! ```text
//! #[sqs_consumer(queue_url = env("JOBS_URL"), key = by_body)]
//! #[workflow]
//! async fn on_job(message: SqsMessage) -> exactly::Result<()> { BODY }
//! ```
//! becomes
//! ```text
//! #[workflow] async fn on_job(message: SqsMessage) -> exactly::Result<()> { BODY }
//! static __EXACTLY_SQS_CONSUMER_on_job: SqsConsumerSpec = SqsConsumerSpec {
//!     workflow: &__EXACTLY_WORKFLOW_on_job, queue_url: Some(StaticQueueUrl::Env("JOBS_URL")),
//!     key: Some(/* fn calling `by_body` through the `SqsKeyFn` check */), ..
//! };
//! inventory::submit! { SqsConsumerRegistration(&__EXACTLY_SQS_CONSUMER_on_job) }
//! const _: () = { /* `SqsMessage: SqsConsumerMessage`, spanned on the parameter type */ };
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, ExprPath, Ident, ItemFn, Lit, LitStr, Meta, Token};

use crate::consumer;
use crate::error::Errors;
use crate::signature::{self, span_range};
use crate::workflow;

const KEYS: &[&str] = &[
    "queue_url",
    "key",
    "workflow_queue",
    "client",
    "receiver",
    "ordering",
    "wait_time_s",
    "batch_size",
    "visibility_timeout_s",
    "pollers",
];

/// What `#[sqs_consumer]` expands to without the crate's `sqs` feature: the item,
/// and an error that names the feature (as `#[tokio::main]` does without `rt`).
pub(crate) fn disabled(item: TokenStream) -> TokenStream {
    consumer::disabled("sqs_consumer", "sqs", item)
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer::expand(
        "`#[sqs_consumer]` applies to a `#[workflow] async fn` taking the message, e.g. `#[sqs_consumer(queue_url = env(\"JOBS_URL\"))] #[workflow] async fn on_job(message: SqsMessage) -> exactly::Result<()> { .. }`",
        args,
        item,
        try_expand,
    )
}

fn try_expand(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::new();
    let args = errors.ok(syn::parse2::<ConsumerArgs>(args));
    let Some(workflow_attr) = consumer::workflow_attr("sqs_consumer", func, &mut errors) else {
        return Err(errors.finish().expect_err("an error was added"));
    };
    let (_, inputs) = signature::args(&func.sig);
    if inputs.len() != 1 {
        let at = if func.sig.inputs.is_empty() {
            func.sig.ident.to_token_stream()
        } else {
            func.sig.inputs.to_token_stream()
        };
        errors.spanned(
            at,
            format!(
                "an `#[sqs_consumer]` workflow takes exactly one parameter, the received message: `message: exactly::SqsMessage` (this one takes {})",
                inputs.len()
            ),
        );
    }
    errors.finish()?;
    let args = args.expect("errors were reported");
    // If `#[workflow]` will reject the function, it reports why; a consumer of the
    // missing workflow would only add a confusing second error.
    let workflow_args = match &workflow_attr.meta {
        Meta::Path(_) => TokenStream::new(),
        Meta::List(list) => list.tokens.clone(),
        Meta::NameValue(_) => return Ok(func.to_token_stream()),
    };
    if workflow::try_expand(workflow_args, func).is_err() {
        return Ok(func.to_token_stream());
    }
    Ok(generate(&args, func, &inputs[0].ty))
}

fn generate(args: &ConsumerArgs, func: &ItemFn, message_ty: &syn::Type) -> TokenStream {
    let ident = &func.sig.ident;
    let spec = workflow::spec_ident(ident);
    let consumer = format_ident!("__EXACTLY_SQS_CONSUMER_{}", ident.unraw(), span = ident.span());
    let cfgs: Vec<_> = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg")).collect();
    let some = |tokens: TokenStream| quote!(::core::option::Option::Some(#tokens));
    let none = quote!(::core::option::Option::None);
    let string = |value: &Option<LitStr>| value.as_ref().map_or_else(|| none.clone(), |lit| some(quote!(#lit)));
    let number = |value: Option<u32>| value.map_or_else(|| none.clone(), |n| some(quote!(#n)));

    let queue_url = match &args.queue_url {
        Some(QueueUrlArg::Literal(url)) => some(quote!(::exactly::__private::StaticQueueUrl::Literal(#url))),
        Some(QueueUrlArg::Env(var)) => some(quote!(::exactly::__private::StaticQueueUrl::Env(#var))),
        None => none.clone(),
    };
    let message = Ident::new("__exactly_message", Span::mixed_site());
    let key = match &args.key {
        Some(path) => {
            let (first, _) = span_range(path);
            let call = quote_spanned!(first=> ::exactly::__private::sqs_key(#path, #message));
            some(quote!({
                fn __exactly_key(#message: &::exactly::__private::SqsMessage) -> ::std::string::String { #call }
                __exactly_key as fn(&::exactly::__private::SqsMessage) -> ::std::string::String
            }))
        }
        None => none.clone(),
    };
    let client = match &args.client {
        Some(path) => {
            let (first, _) = span_range(path);
            let call = quote_spanned!(first=> ::exactly::__private::sqs_client(#path));
            some(quote!({
                fn __exactly_client() -> ::exactly::__private::aws_sdk_sqs::Client { #call }
                __exactly_client as fn() -> ::exactly::__private::aws_sdk_sqs::Client
            }))
        }
        None => none.clone(),
    };
    let ordering = match &args.ordering {
        Some((Ordering::Group, _)) => some(quote!(::exactly::__private::SqsOrdering::Group)),
        Some((Ordering::None, _)) => some(quote!(::exactly::__private::SqsOrdering::None)),
        None => none.clone(),
    };
    let workflow_queue = string(&args.workflow_queue);
    let receiver = string(&args.receiver);
    let (wait, batch, visibility, pollers) = (
        number(args.wait_time_s),
        number(args.batch_size),
        number(args.visibility_timeout_s),
        number(args.pollers),
    );
    let (first, _) = span_range(message_ty);
    let check = quote_spanned!(first=> ::exactly::__private::sqs_consumer_message::<#message_ty>());

    quote! {
        #func

        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #consumer: ::exactly::__private::SqsConsumerSpec = ::exactly::__private::SqsConsumerSpec {
            workflow: &#spec,
            queue_url: #queue_url,
            key: #key,
            workflow_queue: #workflow_queue,
            client: #client,
            receiver: #receiver,
            ordering: #ordering,
            wait_time_s: #wait,
            batch_size: #batch,
            visibility_timeout_s: #visibility,
            pollers: #pollers,
            location: ::exactly::__private::Location { file: ::core::file!(), line: ::core::line!() },
        };

        #(#cfgs)*
        ::exactly::__private::inventory::submit! { ::exactly::__private::SqsConsumerRegistration(&#consumer) }

        #(#cfgs)*
        const _: () = {
            fn __exactly_check() { #check; }
        };
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ordering {
    None,
    Group,
}

enum QueueUrlArg {
    Literal(LitStr),
    Env(LitStr),
}

/// The arguments of `#[sqs_consumer(..)]`.
#[derive(Default)]
struct ConsumerArgs {
    queue_url: Option<QueueUrlArg>,
    key: Option<ExprPath>,
    workflow_queue: Option<LitStr>,
    client: Option<ExprPath>,
    receiver: Option<LitStr>,
    ordering: Option<(Ordering, LitStr)>,
    wait_time_s: Option<u32>,
    batch_size: Option<u32>,
    visibility_timeout_s: Option<u32>,
    pollers: Option<u32>,
}

impl Parse for ConsumerArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = ConsumerArgs::default();
        let mut errors = Errors::new();
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            let key = Ident::parse_any(input)?;
            let name = key.unraw().to_string();
            let value: Option<Expr> = match input.parse::<Option<Token![=]>>()? {
                Some(_) => Some(input.parse()?),
                None => None,
            };
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            if !KEYS.contains(&name.as_str()) {
                let expected = KEYS.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                errors.spanned(&key, format!("unknown attribute `{name}`; expected one of: {expected}"));
                continue;
            }
            if seen.contains(&name) {
                errors.spanned(&key, format!("`{name}` is set more than once; keep one of them"));
                continue;
            }
            seen.push(name.clone());
            let Some(value) = value else {
                errors.spanned(&key, format!("`{name}` needs a value: `{name} = ..`"));
                continue;
            };
            let result = match name.as_str() {
                "queue_url" => queue_url(&value).map(|v| args.queue_url = Some(v)),
                "key" => path(&value, "key", "key = by_body_hash", "a `fn(&SqsMessage) -> String`")
                    .map(|v| args.key = Some(v)),
                "client" => path(&value, "client", "client = sqs_client", "a `fn() -> aws_sdk_sqs::Client`")
                    .map(|v| args.client = Some(v)),
                "workflow_queue" => name_literal(&value, "workflow_queue", "a declared durable queue")
                    .map(|v| args.workflow_queue = Some(v)),
                "receiver" => name_literal(&value, "receiver", "an `SqsReceiver` configured on the runtime builder")
                    .map(|v| args.receiver = Some(v)),
                "ordering" => ordering(&value).map(|v| args.ordering = Some(v)),
                "wait_time_s" => bounded(&value, "wait_time_s", 0, 20, "SQS long polling waits at most 20 s")
                    .map(|v| args.wait_time_s = Some(v)),
                "batch_size" => bounded(&value, "batch_size", 1, 10, "SQS returns at most 10 messages per receive")
                    .map(|v| args.batch_size = Some(v)),
                "visibility_timeout_s" => bounded(&value, "visibility_timeout_s", 0, 43_200, "SQS allows at most 12 hours")
                    .map(|v| args.visibility_timeout_s = Some(v)),
                _ => bounded(&value, "pollers", 1, 64, "each poller is a receive loop of its own")
                    .map(|v| args.pollers = Some(v)),
            };
            if let Err(e) = result {
                errors.add(e);
            }
        }
        if let (Some(QueueUrlArg::Literal(url)), Some((Ordering::Group, lit))) = (&args.queue_url, &args.ordering)
            && !url.value().trim_end_matches('/').ends_with(".fifo")
        {
            errors.spanned(
                lit,
                "`ordering = \"group\"` orders the messages of each FIFO message group, but this queue URL names a standard queue (FIFO queue names end in `.fifo`)",
            );
        }
        errors.finish()?;
        Ok(args)
    }
}

/// The literal inside invisible groups (values passed on by `macro_rules!`).
fn literal(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(lit) => Some(&lit.lit),
        Expr::Group(group) => literal(&group.expr),
        Expr::Paren(paren) => literal(&paren.expr),
        _ => None,
    }
}

fn queue_url(value: &Expr) -> syn::Result<QueueUrlArg> {
    let usage = "`queue_url` expects a string literal or `env(\"VAR\")`, e.g. `queue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/jobs\"` or `queue_url = env(\"JOBS_QUEUE_URL\")`";
    if let Some(Lit::Str(url)) = literal(value) {
        let text = url.value();
        let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
        let has_name =
            rest.and_then(|r| r.split_once('/')).is_some_and(|(_, path)| path.split('/').any(|s| !s.is_empty()));
        if !has_name {
            return Err(syn::Error::new_spanned(
                url,
                format!(
                    "`{text}` is not an SQS queue URL; expected `https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE`, or `env(\"VAR\")` to read it at launch"
                ),
            ));
        }
        return Ok(QueueUrlArg::Literal(url.clone()));
    }
    if let Expr::Call(call) = value
        && matches!(&*call.func, Expr::Path(p) if p.path.is_ident("env"))
    {
        return match call.args.iter().collect::<Vec<_>>().as_slice() {
            [arg] => match literal(arg) {
                Some(Lit::Str(var)) if !var.value().trim().is_empty() => Ok(QueueUrlArg::Env(var.clone())),
                _ => Err(syn::Error::new_spanned(
                    arg,
                    "`env(..)` takes the variable's name as a non-empty string literal, e.g. `env(\"JOBS_QUEUE_URL\")`",
                )),
            },
            _ => Err(syn::Error::new_spanned(
                &call.args,
                "`env(..)` takes one argument, the variable's name, e.g. `env(\"JOBS_QUEUE_URL\")`",
            )),
        };
    }
    Err(syn::Error::new_spanned(value, usage))
}

fn path(value: &Expr, key: &str, example: &str, what: &str) -> syn::Result<ExprPath> {
    match value {
        Expr::Path(path) => Ok(path.clone()),
        Expr::Group(group) => path(&group.expr, key, example, what),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects the path of a function, {what}, e.g. `{example}`"),
        )),
    }
}

fn name_literal(value: &Expr, key: &str, what: &str) -> syn::Result<LitStr> {
    match literal(value) {
        Some(Lit::Str(name)) if !name.value().trim().is_empty() => Ok(name.clone()),
        Some(Lit::Str(name)) => {
            Err(syn::Error::new_spanned(name, format!("`{key}` must not be empty: it names {what}")))
        }
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects a string literal naming {what}, e.g. `{key} = \"jobs\"`"),
        )),
    }
}

fn ordering(value: &Expr) -> syn::Result<(Ordering, LitStr)> {
    match literal(value) {
        Some(Lit::Str(lit)) if lit.value() == "group" => Ok((Ordering::Group, lit.clone())),
        Some(Lit::Str(lit)) if lit.value() == "none" => Ok((Ordering::None, lit.clone())),
        _ => Err(syn::Error::new_spanned(
            value,
            "`ordering` expects `\"group\"` (one workflow at a time per FIFO message group, in order) or `\"none\"` (the default)",
        )),
    }
}

fn bounded(value: &Expr, key: &str, min: u32, max: u32, why: &str) -> syn::Result<u32> {
    match literal(value) {
        Some(Lit::Int(int)) => match int.base10_parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(syn::Error::new_spanned(int, format!("`{key}` must be between {min} and {max}: {why}"))),
        },
        _ => Err(syn::Error::new_spanned(value, format!("`{key}` expects an integer literal between {min} and {max}"))),
    }
}

#[cfg(test)]
mod tests;

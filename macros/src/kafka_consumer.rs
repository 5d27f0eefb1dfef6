//! `#[kafka_consumer(..)]`: written above `#[workflow]`, it registers the workflow as
//! the consumer of Kafka topics. It leaves the function to `#[workflow]` and adds a
//! registered `KafkaConsumerSpec` that points at the workflow's spec static:
//!
//! ```text
//! #[kafka_consumer(["orders", "^returns-.*"], group = "billing", ordering = "key")]
//! #[workflow]
//! async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> { BODY }
//! ```
//! becomes
//! ```text
//! #[workflow] async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> .. { BODY }
//! static __EXACTLY_KAFKA_CONSUMER_on_order: KafkaConsumerSpec = KafkaConsumerSpec {
//!     workflow: &__EXACTLY_WORKFLOW_on_order, topics: &["orders", "^returns-.*"],
//!     group: Some("billing"), ordering: KafkaOrdering::Key, config: None, ..
//! };
//! inventory::submit! { KafkaConsumerRegistration(&__EXACTLY_KAFKA_CONSUMER_on_order) }
//! const _: () = { /* the message parameter is exactly's `KafkaMessage`, spanned on its type */ };
//! ```

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, ExprPath, Ident, ItemFn, Lit, LitStr, Meta, PathArguments, Token, Type};

use crate::consumer;
use crate::error::Errors;
use crate::signature::{self, span_range};
use crate::workflow;

const KEYS: &[&str] = &["group", "queue", "ordering", "config", "batch_size"];
const MAX_BATCH_SIZE: u32 = 10_000;
const SIGNATURE: &str = "`(topic: String, partition: i32, message: KafkaMessage)`";

/// What `#[kafka_consumer]` expands to without the crate's `kafka` feature: the
/// item, and an error that names the feature (as `#[tokio::main]` does without `rt`).
pub(crate) fn disabled(item: TokenStream) -> TokenStream {
    consumer::disabled("kafka_consumer", "kafka", item)
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer::expand(
        "`#[kafka_consumer]` applies to a `#[workflow] async fn` taking the topic, the partition and the message, e.g. `#[kafka_consumer(\"orders\")] #[workflow] async fn on_order(topic: String, partition: i32, message: KafkaMessage) -> exactly::Result<()> { .. }`",
        args,
        item,
        try_expand,
    )
}

fn try_expand(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::new();
    let args = errors.ok(syn::parse2::<ConsumerArgs>(args));
    let Some(workflow_attr) = consumer::workflow_attr("kafka_consumer", func, &mut errors) else {
        return Err(errors.finish().expect_err("an error was added"));
    };
    let (_, inputs) = signature::args(&func.sig);
    if inputs.len() != 3 {
        let at = if func.sig.inputs.is_empty() { func.sig.ident.to_token_stream() } else { func.sig.inputs.to_token_stream() };
        errors.spanned(
            at,
            format!(
                "a `#[kafka_consumer]` workflow takes the message's topic, partition and the message itself: {SIGNATURE} (this one takes {} parameter{})",
                inputs.len(),
                if inputs.len() == 1 { "" } else { "s" }
            ),
        );
    } else {
        let expected = [("topic", "String"), ("partition", "i32"), ("message", "KafkaMessage")];
        for (arg, (role, ty)) in inputs.iter().zip(expected) {
            if last_ident(&arg.ty).as_deref() != Some(ty) {
                errors.spanned(
                    &arg.ty,
                    format!(
                        "the {role} parameter of a `#[kafka_consumer]` workflow must be `{ty}`, not `{}`: the workflow takes {SIGNATURE}",
                        signature::tokens_to_string(&arg.ty)
                    ),
                );
            }
        }
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
    Ok(generate(&args, func, &inputs[2].ty))
}

/// The last segment of a plain path type without generic arguments (`String`,
/// `std::string::String`, `exactly::KafkaMessage`).
fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Group(group) => last_ident(&group.elem),
        Type::Paren(paren) => last_ident(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            matches!(last.arguments, PathArguments::None).then(|| last.ident.to_string())
        }
        _ => None,
    }
}

fn generate(args: &ConsumerArgs, func: &ItemFn, message_ty: &Type) -> TokenStream {
    let ident = &func.sig.ident;
    let spec = workflow::spec_ident(ident);
    let consumer = format_ident!("__EXACTLY_KAFKA_CONSUMER_{}", ident.unraw(), span = ident.span());
    let cfgs: Vec<_> = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg")).collect();
    let some = |tokens: TokenStream| quote!(::core::option::Option::Some(#tokens));
    let none = quote!(::core::option::Option::None);
    let string = |value: &Option<LitStr>| value.as_ref().map_or_else(|| none.clone(), |lit| some(quote!(#lit)));

    let topics = &args.topics;
    let (group, queue) = (string(&args.group), string(&args.queue));
    let ordering = match args.ordering {
        Ordering::None => quote!(::exactly::__private::KafkaOrdering::None),
        Ordering::Partition => quote!(::exactly::__private::KafkaOrdering::Partition),
        Ordering::Key => quote!(::exactly::__private::KafkaOrdering::Key),
    };
    let config = match &args.config {
        Some(path) => {
            // Through a typed binding, so that a function of another signature is one
            // error, on the path, that shows both types.
            let (first, _) = span_range(path);
            let bind = quote_spanned!(first=> let __exactly_config: fn() -> ::exactly::__private::KafkaClientConfig = #path;);
            some(quote!({
                fn __exactly_config() -> ::exactly::__private::KafkaClientConfig { #bind __exactly_config() }
                __exactly_config as fn() -> ::exactly::__private::KafkaClientConfig
            }))
        }
        None => none.clone(),
    };
    let batch_size = args.batch_size.map_or_else(|| none.clone(), |n| some(quote!(#n)));
    // Named with the type's span, so that a mismatch is reported on the type.
    let (first, _) = span_range(message_ty);
    let message = Ident::new("__exactly_message", first);

    quote! {
        #func

        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #consumer: ::exactly::__private::KafkaConsumerSpec = ::exactly::__private::KafkaConsumerSpec {
            workflow: &#spec,
            topics: &[#(#topics),*],
            group: #group,
            queue: #queue,
            ordering: #ordering,
            config: #config,
            batch_size: #batch_size,
            location: ::exactly::__private::Location { file: ::core::file!(), line: ::core::line!() },
        };

        #(#cfgs)*
        ::exactly::__private::inventory::submit! { ::exactly::__private::KafkaConsumerRegistration(&#consumer) }

        #(#cfgs)*
        const _: () = {
            // The receiver records exactly's `KafkaMessage`: another type of that name would not decode.
            fn __exactly_check(#message: #message_ty) -> ::exactly::__private::KafkaMessage { #message }
        };
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Ordering {
    #[default]
    None,
    Partition,
    Key,
}

/// The arguments of `#[kafka_consumer(..)]`.
#[derive(Default)]
struct ConsumerArgs {
    topics: Vec<LitStr>,
    group: Option<LitStr>,
    queue: Option<LitStr>,
    ordering: Ordering,
    config: Option<ExprPath>,
    batch_size: Option<u32>,
}

impl Parse for ConsumerArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = ConsumerArgs::default();
        let mut errors = Errors::new();
        let usage = "`#[kafka_consumer]` takes the topics first: a name (`\"orders\"`), a regular expression starting with `^` (`\"^orders-.*\"`), or a list of both (`[\"orders\", \"^returns-.*\"]`)";
        if input.is_empty() || (input.peek(Ident::peek_any) && input.peek2(Token![=])) {
            return Err(syn::Error::new(input.span(), usage));
        }
        let first: Expr = input.parse()?;
        match topics(&first, usage) {
            Ok(topics) => args.topics = topics,
            Err(e) => errors.add(e),
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
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
                "group" => name_literal(&value, "group", "the Kafka consumer group").map(|v| args.group = Some(v)),
                "queue" => name_literal(&value, "queue", "a declared durable queue").map(|v| args.queue = Some(v)),
                "ordering" => ordering(&value).map(|v| args.ordering = v),
                "config" => config(&value).map(|v| args.config = Some(v)),
                _ => batch_size(&value).map(|v| args.batch_size = Some(v)),
            };
            if let Err(e) = result {
                errors.add(e);
            }
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

fn topics(value: &Expr, usage: &str) -> syn::Result<Vec<LitStr>> {
    let items: Vec<&Expr> = match value {
        Expr::Array(array) if array.elems.is_empty() => {
            return Err(syn::Error::new_spanned(value, "the list of topics is empty: name at least one topic"));
        }
        Expr::Array(array) => array.elems.iter().collect(),
        Expr::Group(group) => return topics(&group.expr, usage),
        _ => vec![value],
    };
    let mut errors = Errors::new();
    let mut topics = Vec::new();
    for item in items {
        match literal(item) {
            Some(Lit::Str(topic)) => match topic_problem(&topic.value()) {
                Some(problem) => errors.spanned(topic, problem),
                None => topics.push(topic.clone()),
            },
            _ => errors.spanned(item, usage),
        }
    }
    errors.finish()?;
    Ok(topics)
}

/// Kafka topic names are 1 to 249 of `a-z A-Z 0-9 . _ -`; a pattern starts with `^`
/// (as librdkafka reads it) and is checked at launch.
fn topic_problem(topic: &str) -> Option<String> {
    if topic.starts_with('^') {
        return (topic.len() == 1).then(|| "the pattern `^` is empty: write the expression after it, e.g. `^orders-.*`".to_owned());
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() {
        return Some("a topic name cannot be empty".to_owned());
    }
    if topic.len() > 249 || !topic.chars().all(legal) || topic == "." || topic == ".." {
        return Some(format!(
            "`{topic}` is not a valid Kafka topic name (1 to 249 of `a-z A-Z 0-9 . _ -`); a regular expression must start with `^`"
        ));
    }
    None
}

fn name_literal(value: &Expr, key: &str, what: &str) -> syn::Result<LitStr> {
    match literal(value) {
        Some(Lit::Str(name)) if !name.value().trim().is_empty() => Ok(name.clone()),
        Some(Lit::Str(name)) => Err(syn::Error::new_spanned(name, format!("`{key}` must not be empty: it names {what}"))),
        _ => Err(syn::Error::new_spanned(value, format!("`{key}` expects a string literal naming {what}, e.g. `{key} = \"orders\"`"))),
    }
}

fn ordering(value: &Expr) -> syn::Result<Ordering> {
    match literal(value) {
        Some(Lit::Str(lit)) if lit.value() == "none" => Ok(Ordering::None),
        Some(Lit::Str(lit)) if lit.value() == "partition" => Ok(Ordering::Partition),
        Some(Lit::Str(lit)) if lit.value() == "key" => Ok(Ordering::Key),
        _ => Err(syn::Error::new_spanned(
            value,
            "`ordering` expects `\"partition\"` (one workflow at a time per partition, in offset order), `\"key\"` (one at a time per message key) or `\"none\"` (the default)",
        )),
    }
}

fn config(value: &Expr) -> syn::Result<ExprPath> {
    match value {
        Expr::Path(path) => Ok(path.clone()),
        Expr::Group(group) => config(&group.expr),
        _ => Err(syn::Error::new_spanned(
            value,
            "`config` expects the path of a function returning this consumer's librdkafka settings, a `fn() -> exactly::kafka::ClientConfig`, e.g. `config = orders_config`",
        )),
    }
}

fn batch_size(value: &Expr) -> syn::Result<u32> {
    let message = format!(
        "`batch_size` must be an integer literal between 1 and {MAX_BATCH_SIZE}: the messages of one poll batch are recorded in one transaction"
    );
    match literal(value) {
        Some(Lit::Int(int)) => match int.base10_parse::<u32>() {
            Ok(n) if (1..=MAX_BATCH_SIZE).contains(&n) => Ok(n),
            _ => Err(syn::Error::new_spanned(int, message)),
        },
        _ => Err(syn::Error::new_spanned(value, message)),
    }
}

#[cfg(test)]
mod tests;

//! What `#[kafka_consumer]` and `#[sqs_consumer]` share: the feature-off error, the
//! parse-and-expand entry, and finding the `#[workflow]` they must stand above.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{Attribute, ItemFn};

use crate::error::{Errors, with_item};

/// The error when the receiver's cargo feature is off in this build.
pub(crate) fn disabled(attribute: &str, feature: &str, item: TokenStream) -> TokenStream {
    let message = format!(
        "`#[{attribute}]` needs the `{feature}` feature of `exactly`, which is off in this build: enable it (`exactly = {{ version = \"..\", features = [\"{feature}\"] }}`; it is on by default unless `default-features = false`)"
    );
    with_item(item, syn::Error::new(Span::call_site(), message))
}

/// Parses the item as a function and expands it with `try_expand`; on error the
/// function is still emitted, followed by every error. `usage` is the sentence shown
/// when the item is not a function at all.
pub(crate) fn expand(
    usage: &str,
    args: TokenStream,
    item: TokenStream,
    try_expand: fn(TokenStream, &ItemFn) -> syn::Result<TokenStream>,
) -> TokenStream {
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => return with_item(item, syn::Error::new(Span::call_site(), usage)),
    };
    match try_expand(args, &func) {
        Ok(tokens) => tokens,
        Err(error) => with_item(func, error),
    }
}

/// The `#[workflow]` attribute below the consumer attribute, or an error that says
/// how to fix its absence (or its place above).
pub(crate) fn workflow_attr<'a>(attribute: &str, func: &'a ItemFn, errors: &mut Errors) -> Option<&'a Attribute> {
    if let Some(attr) = func.attrs.iter().find(|attr| is_workflow_attr(attr)) {
        return Some(attr);
    }
    let message = if func.sig.asyncness.is_none() && returns_workflow_call(func) {
        // `#[workflow]` ran first and left this attribute on the function it generated.
        format!(
            "`#[{attribute}]` must be written above `#[workflow]`, not below it: attributes expand from the top, and the consumer registers the workflow that `#[workflow]` declares; swap the two lines"
        )
    } else {
        format!("`#[{attribute}]` starts a workflow for each message, so it goes on a workflow: add `#[workflow]` on the line below it")
    };
    errors.at(Span::call_site(), message);
    None
}

/// `#[workflow]`, `#[workflow(..)]`, `#[exactly::workflow]`.
fn is_workflow_attr(attr: &Attribute) -> bool {
    let segments: Vec<String> = attr.path().segments.iter().map(|s| s.ident.to_string()).collect();
    matches!(segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["workflow"] | ["exactly", "workflow"])
}

fn returns_workflow_call(func: &ItemFn) -> bool {
    match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.to_token_stream().to_string().contains("WorkflowCall"),
        syn::ReturnType::Default => false,
    }
}

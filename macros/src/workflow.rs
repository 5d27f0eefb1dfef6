//! `#[workflow]`: an `async fn` becomes a function returning a `WorkflowCall`, plus a
//! registered `WorkflowSpec` whose `invoke` runs the body from recorded inputs.
//!
//! ```text
//! #[workflow] pub async fn process(id: String) -> exactly::Result<String> { BODY }
//! ```
//! becomes
//! ```text
//! pub fn process(id: String) -> ::exactly::WorkflowCall<exactly::Result<String>> {
//!     /* encode `id` with the codec from the `String: WorkflowInput` check */
//!     ::exactly::WorkflowCall::new(&__EXACTLY_WORKFLOW_process, inputs)
//! }
//! pub static __EXACTLY_WORKFLOW_process: WorkflowSpec = WorkflowSpec {
//!     name, location, max_recovery_attempts,
//!     invoke: { fn __invoke(inputs: String) -> BoxFuture<'static, Outcome> {
//!         async fn __body(id: String) -> exactly::Result<String> { BODY }
//!         /* decode the arguments, run __body, encode its outcome */
//!     } __invoke },
//! };
//! inventory::submit! { WorkflowRegistration(&__EXACTLY_WORKFLOW_process) }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Ident, ItemFn};

use crate::attr::WorkflowArgs;
use crate::error::Errors;
use crate::signature::{self, Arg, Kind, Output, span_range, tokens_to_string};

/// The name of the `static WorkflowSpec` that `#[workflow]` emits next to `function`.
///
/// A contract: attributes stacked above `#[workflow]` (the message consumers) refer
/// to the workflow through this static.
pub(crate) fn spec_ident(function: &Ident) -> Ident {
    format_ident!("__EXACTLY_WORKFLOW_{}", function.unraw(), span = function.span())
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    signature::expand_fn(Kind::Workflow, args, item, "#[workflow] async fn process(id: String) -> exactly::Result<()> { .. }", try_expand)
}

pub(crate) fn try_expand(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::new();
    let args = errors.ok(syn::parse2::<WorkflowArgs>(args));
    let sig = &func.sig;
    signature::reject_conflicting_attr(&func.attrs, Kind::Workflow, &mut errors);
    signature::require_async(sig, Kind::Workflow, &mut errors);
    let (receiver, inputs) = signature::args(sig);
    signature::reject_receiver(receiver, Kind::Workflow, &mut errors);
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "a workflow cannot be generic: on recovery its recorded arguments are decoded into one concrete signature; use concrete types",
        );
    }
    for arg in &inputs {
        if let Some(reference) = signature::find_reference(&arg.ty) {
            errors.spanned(
                reference,
                format!(
                    "workflow arguments are recorded as JSON and decoded again on recovery, so they must be owned values: take `{}` instead of `{}`",
                    tokens_to_string(&signature::owned(&arg.ty)),
                    tokens_to_string(&arg.ty),
                ),
            );
        } else if let Some(impl_trait) = signature::find_impl_trait(&arg.ty) {
            errors.spanned(
                impl_trait,
                "workflow arguments cannot be `impl Trait`: they are recorded as JSON and decoded on recovery into one concrete type; name the type",
            );
        }
    }
    let output = signature::output(sig, Kind::Workflow, &mut errors);
    errors.finish()?;
    let (Some(args), Some(output)) = (args, output) else { unreachable!("errors were reported") };
    Ok(generate(&args, func, &inputs, &output))
}

fn generate(args: &WorkflowArgs, func: &ItemFn, inputs: &[Arg], output: &Output) -> TokenStream {
    let sig = &func.sig;
    let vis = &func.vis;
    let ident = &sig.ident;
    let spec = spec_ident(ident);
    let (outer_attrs, inner_attrs) = signature::split_attrs(&func.attrs);
    let lints = signature::lint_attrs(&func.attrs);
    let cfgs: Vec<_> = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg")).collect();
    let where_clause = &sig.generics.where_clause;
    let body_params = &sig.inputs;
    let stmts = &func.block.stmts;
    let ret = &output.ty;
    let (ok, err) = (&output.ok, &output.err);

    let name = match &args.name {
        Some(name) => quote!(#name),
        None => {
            let suffix = format!("::{}", ident.unraw());
            quote!(::core::concat!(::core::module_path!(), #suffix))
        }
    };
    let max_recovery_attempts = match args.max_recovery_attempts {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };

    let local = |name: &str| Ident::new(name, Span::mixed_site());
    let (encoder, decoder, recorded) =
        (local("__exactly_encoder"), local("__exactly_decoder"), local("__exactly_inputs"));
    let (ok_codec, err_codec) = (local("__exactly_output"), local("__exactly_error"));
    let codecs: Vec<Ident> =
        (0..inputs.len()).map(|i| format_ident!("__exactly_input{}", i, span = Span::mixed_site())).collect();
    let values: Vec<Ident> =
        (0..inputs.len()).map(|i| format_ident!("__exactly_value{}", i, span = Span::mixed_site())).collect();
    // The same check in both functions, so that rustc reports a failure once.
    let input_checks: Vec<TokenStream> = inputs
        .iter()
        .zip(&codecs)
        .map(|(arg, codec)| {
            let ty = &arg.ty;
            let (first, _) = span_range(ty);
            let check = quote_spanned!(first=> ::exactly::__private::workflow_input::<#ty>());
            quote!(let #codec = #check;)
        })
        .collect();
    let outer_params = inputs.iter().map(Arg::outer_param);
    let bindings = inputs.iter().map(|arg| &arg.binding);
    let names = inputs.iter().map(Arg::display_name);
    let count = inputs.len();

    // Spanned on the name, so that a body whose future is not `Send` is reported there
    // (with rustc's own notes on which value is held across which `.await`, which a
    // marker trait's message would replace).
    let run = quote_spanned! {ident.span()=>
        ::std::boxed::Box::pin(async move {
            let mut #decoder = ::exactly::__private::InputsDecoder::new(#spec.name, &#recorded, #count)?;
            #(let #values = #codecs.decode(&mut #decoder, #names)?;)*
            #decoder.finish()?;
            ::exactly::__private::workflow_outcome(#spec.name, __body(#(#values),*).await, #ok_codec, #err_codec)
        })
    };

    quote! {
        #(#outer_attrs)*
        #vis fn #ident(#(#outer_params),*) -> ::exactly::WorkflowCall<#ret> #where_clause {
            #(#input_checks)*
            let mut #encoder = ::exactly::__private::InputsEncoder::new();
            #(#codecs.encode(&mut #encoder, &#bindings);)*
            ::exactly::WorkflowCall::new(&#spec, #encoder.finish(#spec.name))
        }

        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #vis static #spec: ::exactly::__private::WorkflowSpec = ::exactly::__private::WorkflowSpec {
            name: #name,
            location: ::exactly::__private::Location { file: ::core::file!(), line: ::core::line!() },
            max_recovery_attempts: #max_recovery_attempts,
            invoke: {
                fn __invoke(#recorded: ::std::string::String) -> ::exactly::__private::BoxFuture<'static, ::exactly::__private::Outcome> {
                    #(#lints)*
                    async fn __body(#body_params) -> #ret #where_clause {
                        #(#inner_attrs)*
                        #(#stmts)*
                    }
                    #(#input_checks)*
                    let #ok_codec = ::exactly::__private::workflow_output::<#ok>();
                    let #err_codec = ::exactly::__private::workflow_error::<#err>();
                    #run
                }
                __invoke
            },
        };

        #(#cfgs)*
        ::exactly::__private::inventory::submit! { ::exactly::__private::WorkflowRegistration(&#spec) }
    }
}

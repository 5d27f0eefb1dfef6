//! `#[step]`: the function keeps its signature; its body runs through
//! `exactly::run_step_with` with a registered `StepSpec`, so it is checkpointed.
//!
//! ```text
//! #[step(retries = 3)] async fn charge(order: &Order) -> exactly::Result<Receipt> { BODY }
//! ```
//! becomes
//! ```text
//! async fn charge(order: &Order) -> exactly::Result<Receipt> {
//!     static __EXACTLY_STEP: StepSpec = StepSpec { name, location, retries: 3, .. };
//!     inventory::submit! { StepRegistration(&__EXACTLY_STEP) }
//!     /* checks: Receipt: StepOutput, exactly::Error: StepError, &Order: RetriedStepArgument */
//!     /* ::exactly::run_step_with, through StepRunner: */ run(&__EXACTLY_STEP, move || {
//!         let order = clone(&order); // or, without retries, the arguments moved in once
//!         async move { BODY }
//!     }).await
//! }
//! ```
//! The body stays inside the function (in an `async` block, not a nested `fn`), so
//! generics, `Self` and the arguments' lifetimes mean what they meant.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Ident, ItemFn};

use crate::attr::{DEFAULT_BACKOFF_FACTOR, DEFAULT_BACKOFF_MS, DEFAULT_MAX_BACKOFF_MS, StepArgs};
use crate::error::Errors;
use crate::signature::{self, Arg, Kind, Output, span_range};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    signature::expand_fn(Kind::Step, args, item, "#[step] async fn charge(order: &Order) -> exactly::Result<Receipt> { .. }", try_expand)
}

pub(crate) fn try_expand(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::new();
    let args = errors.ok(syn::parse2::<StepArgs>(args));
    let sig = &func.sig;
    signature::reject_conflicting_attr(&func.attrs, Kind::Step, &mut errors);
    signature::require_async(sig, Kind::Step, &mut errors);
    let (receiver, inputs) = signature::args(sig);
    signature::reject_receiver(receiver, Kind::Step, &mut errors);
    let output = signature::output(sig, Kind::Step, &mut errors);
    errors.finish()?;
    let (Some(args), Some(output)) = (args, output) else { unreachable!("errors were reported") };
    Ok(generate(&args, func, &inputs, &output))
}

fn generate(args: &StepArgs, func: &ItemFn, inputs: &[Arg], output: &Output) -> TokenStream {
    let sig = &func.sig;
    let vis = &func.vis;
    let ident = &sig.ident;
    let (outer_attrs, inner_attrs) = signature::split_attrs(&func.attrs);
    let mut outer_sig = sig.clone();
    outer_sig.inputs = inputs.iter().map(Arg::outer_fn_arg).collect();
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
    let retries = args.retries.unwrap_or(0);
    let backoff_ms = args.backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS);
    let backoff_factor = args.backoff_factor.unwrap_or(DEFAULT_BACKOFF_FACTOR);
    let max_backoff_ms = args.max_backoff_ms.unwrap_or(DEFAULT_MAX_BACKOFF_MS);

    let spec = Ident::new("__EXACTLY_STEP", Span::mixed_site());
    let fake_return = Ident::new("__exactly_fake_return", Span::mixed_site());
    // Fixes the async block's output to the declared type before the body is checked,
    // so that `?` and `return` in the body convert as they did in the `async fn`
    // (the technique of tracing-attributes).
    let body = quote! {
        async move {
            #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::empty_loop, clippy::let_unit_value, clippy::needless_return)]
            if false {
                let #fake_return: #ret = loop {};
                return #fake_return;
            }
            #(#stmts)*
        }
    };
    let bindings: Vec<&Ident> = inputs.iter().map(|arg| &arg.binding).collect();
    let pats = inputs.iter().map(|arg| &arg.pat);
    let (setup, closure) = if inputs.is_empty() {
        (quote!(), quote!(move || #body))
    } else if retries == 0 {
        // One attempt: the arguments are handed over once, with no bound on them.
        let args = Ident::new("__exactly_args", Span::mixed_site());
        (
            quote!(let mut #args = ::core::option::Option::Some((#(#bindings,)*));),
            quote!(move || {
                let (#(#pats,)*) = #args.take().expect("exactly: a step without retries is run once");
                #body
            }),
        )
    } else {
        // Every attempt gets its own clone of the arguments.
        let clones: Vec<Ident> =
            (0..inputs.len()).map(|i| format_ident!("__exactly_clone{}", i, span = Span::mixed_site())).collect();
        let checks = inputs.iter().zip(&clones).map(|(arg, clone)| {
            let ty = &arg.ty;
            let binding = &arg.binding;
            let (first, _) = span_range(ty);
            let check = if signature::find_impl_trait(ty).is_some() {
                quote_spanned!(first=> ::exactly::__private::retried_step_argument_of(&#binding))
            } else {
                quote_spanned!(first=> ::exactly::__private::retried_step_argument::<#ty>())
            };
            quote!(let #clone = #check;)
        });
        (
            quote!(#(#checks)*),
            quote!(move || {
                #(let #pats = #clones(&#bindings);)*
                #body
            }),
        )
    };

    quote! {
        #(#outer_attrs)*
        #vis #outer_sig {
            #(#inner_attrs)*
            static #spec: ::exactly::__private::StepSpec = ::exactly::__private::StepSpec {
                name: #name,
                location: ::exactly::__private::Location { file: ::core::file!(), line: ::core::line!() },
                retries: #retries,
                backoff: ::core::time::Duration::from_millis(#backoff_ms),
                backoff_factor: #backoff_factor,
                max_backoff: ::core::time::Duration::from_millis(#max_backoff_ms),
            };
            ::exactly::__private::inventory::submit! { ::exactly::__private::StepRegistration(&#spec) }
            ::exactly::__private::step_output::<#ok>();
            ::exactly::__private::step_error::<#err>();
            #setup
            {
                // `run_step_with`, reached without repeating the checks' errors.
                #[allow(unused_imports)]
                use ::exactly::__private::{RunCheckedStep as _, RunUncheckedStep as _};
                (&::exactly::__private::StepRunner::<#ok, #err>::new()).run(&#spec, #closure).await
            }
        }
    }
}

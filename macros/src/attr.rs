//! The `key = value` arguments of `#[workflow(..)]` and `#[step(..)]`.
//!
//! Unknown keys are errors, not ignored: each option changes what is recorded or how
//! often a side effect may run, so a misspelt one must not pass silently. Errors in
//! values are collected, so one compile reports every bad argument.

use std::fmt::Display;
use std::str::FromStr;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Lookahead1, Parse, ParseStream};
use syn::{Expr, Ident, Lit, LitStr, Token, UnOp};

use crate::error::Errors;

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(max_recovery_attempts);
    syn::custom_keyword!(retries);
    syn::custom_keyword!(backoff_ms);
    syn::custom_keyword!(backoff_factor);
    syn::custom_keyword!(max_backoff_ms);
}

/// The arguments of `#[workflow(..)]`.
#[derive(Default)]
pub(crate) struct WorkflowArgs {
    /// The durable name; default `module_path!()::fn`.
    pub(crate) name: Option<LitStr>,
    /// Overrides the runtime's limit on recovery attempts.
    pub(crate) max_recovery_attempts: Option<u32>,
}

impl Parse for WorkflowArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = WorkflowArgs::default();
        let mut list = ArgList::new(&["name", "max_recovery_attempts"]);
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                let key: kw::name = input.parse()?;
                list.value(input, key.span, "name", &mut args.name, durable_name)?;
            } else if lookahead.peek(kw::max_recovery_attempts) {
                let key: kw::max_recovery_attempts = input.parse()?;
                list.value(input, key.span, "max_recovery_attempts", &mut args.max_recovery_attempts, |v, k| {
                    integer(v, k, "max_recovery_attempts = 5")
                })?;
            } else {
                list.unknown(input, lookahead)?;
            }
            list.separator(input)?;
        }
        list.finish()?;
        Ok(args)
    }
}

/// The arguments of `#[step(..)]`.
#[derive(Default)]
pub(crate) struct StepArgs {
    /// The recorded name; default `module_path!()::fn`.
    pub(crate) name: Option<LitStr>,
    /// Retries after the first failure.
    pub(crate) retries: Option<u32>,
    /// Delay before the first retry, in milliseconds.
    pub(crate) backoff_ms: Option<u64>,
    /// Factor applied to the delay after each retry.
    pub(crate) backoff_factor: Option<f64>,
    /// Upper bound on the delay, in milliseconds.
    pub(crate) max_backoff_ms: Option<u64>,
}

/// `StepSpec::named`'s defaults, which the expansion spells out.
pub(crate) const DEFAULT_BACKOFF_MS: u64 = 100;
pub(crate) const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;
pub(crate) const DEFAULT_MAX_BACKOFF_MS: u64 = 60_000;

impl Parse for StepArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = StepArgs::default();
        let mut list = ArgList::new(&["name", "retries", "backoff_ms", "backoff_factor", "max_backoff_ms"]);
        let mut max_backoff_span = Span::call_site();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                let key: kw::name = input.parse()?;
                list.value(input, key.span, "name", &mut args.name, durable_name)?;
            } else if lookahead.peek(kw::retries) {
                let key: kw::retries = input.parse()?;
                list.value(input, key.span, "retries", &mut args.retries, |v, k| integer(v, k, "retries = 3"))?;
            } else if lookahead.peek(kw::backoff_ms) {
                let key: kw::backoff_ms = input.parse()?;
                list.value(input, key.span, "backoff_ms", &mut args.backoff_ms, |v, k| {
                    integer(v, k, "backoff_ms = 500")
                })?;
            } else if lookahead.peek(kw::backoff_factor) {
                let key: kw::backoff_factor = input.parse()?;
                list.value(input, key.span, "backoff_factor", &mut args.backoff_factor, factor)?;
            } else if lookahead.peek(kw::max_backoff_ms) {
                let key: kw::max_backoff_ms = input.parse()?;
                max_backoff_span = key.span;
                list.value(input, key.span, "max_backoff_ms", &mut args.max_backoff_ms, |v, k| {
                    integer(v, k, "max_backoff_ms = 60000")
                })?;
            } else {
                list.unknown(input, lookahead)?;
            }
            list.separator(input)?;
        }
        let backoff = args.backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS);
        if let Some(max) = args.max_backoff_ms.filter(|&max| max < backoff) {
            list.errors.at(
                max_backoff_span,
                format!("`max_backoff_ms` ({max}) is less than the first delay, `backoff_ms` ({backoff}): raise it or lower `backoff_ms`"),
            );
        }
        list.finish()?;
        Ok(args)
    }
}

/// Bookkeeping while reading one attribute's arguments.
struct ArgList {
    expected: &'static [&'static str],
    seen: Vec<&'static str>,
    errors: Errors,
}

impl ArgList {
    fn new(expected: &'static [&'static str]) -> Self {
        ArgList { expected, seen: Vec::new(), errors: Errors::new() }
    }

    /// Reads `= value` after `key` into `slot`, unless `key` was given before.
    fn value<T>(
        &mut self,
        input: ParseStream,
        span: Span,
        key: &'static str,
        slot: &mut Option<T>,
        convert: impl FnOnce(&Expr, &str) -> syn::Result<T>,
    ) -> syn::Result<()> {
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        if self.seen.contains(&key) {
            self.errors.at(span, format!("`{key}` is set more than once; keep one of them"));
        } else {
            self.seen.push(key);
            *slot = self.errors.ok(convert(&value, key));
        }
        Ok(())
    }

    /// Records an unknown key and skips its value.
    fn unknown(&mut self, input: ParseStream, lookahead: Lookahead1) -> syn::Result<()> {
        if !input.peek(Ident::peek_any) {
            return Err(lookahead.error());
        }
        let key = Ident::parse_any(input)?;
        let expected = self.expected.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        self.errors.spanned(&key, format!("unknown attribute `{key}`; expected one of: {expected}"));
        if input.parse::<Option<Token![=]>>()?.is_some() {
            input.parse::<Expr>()?;
        }
        Ok(())
    }

    fn separator(&self, input: ParseStream) -> syn::Result<()> {
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
        Ok(())
    }

    fn finish(self) -> syn::Result<()> {
        self.errors.finish()
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

fn is_negative(value: &Expr) -> bool {
    match value {
        Expr::Unary(unary) => matches!(unary.op, UnOp::Neg(_)),
        Expr::Group(group) => is_negative(&group.expr),
        _ => false,
    }
}

fn durable_name(value: &Expr, key: &str) -> syn::Result<LitStr> {
    match literal(value) {
        Some(Lit::Str(name)) if name.value().trim().is_empty() => Err(syn::Error::new_spanned(
            name,
            format!(
                "`{key}` must not be empty: it is the key under which executions are recorded and found again on recovery"
            ),
        )),
        Some(Lit::Str(name)) => Ok(name.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!(
                "`{key}` expects a string literal, e.g. `{key} = \"orders.process\"`: it is recorded with every execution, so it must be fixed at compile time"
            ),
        )),
    }
}

fn integer<N>(value: &Expr, key: &str, example: &str) -> syn::Result<N>
where
    N: FromStr,
    N::Err: Display,
{
    let bits = std::any::type_name::<N>();
    match literal(value) {
        Some(Lit::Int(int)) => int
            .base10_parse::<N>()
            .map_err(|_| syn::Error::new_spanned(int, format!("`{key}` is too large: it must fit in a `{bits}`"))),
        _ if is_negative(value) => Err(syn::Error::new_spanned(value, format!("`{key}` cannot be negative"))),
        _ => Err(syn::Error::new_spanned(value, format!("`{key}` expects an integer literal, e.g. `{example}`"))),
    }
}

fn factor(value: &Expr, key: &str) -> syn::Result<f64> {
    let number = match literal(value) {
        Some(Lit::Float(float)) => float.base10_parse::<f64>()?,
        Some(Lit::Int(int)) => int.base10_parse::<f64>()?,
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                format!("`{key}` expects a number literal, e.g. `{key} = 2.0`"),
            ));
        }
    };
    if !number.is_finite() || number < 1.0 {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be at least 1.0: each retry waits at least as long as the one before"),
        ));
    }
    Ok(number)
}

//! What `#[workflow]` and `#[step]` require of the function they annotate, and the
//! parts of its signature that the expansions reuse.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{Attribute, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, Receiver, Signature, Type};

use crate::error::{Errors, with_item};

/// Which attribute is expanding, for the wording of errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Workflow,
    Step,
}

impl Kind {
    /// The attribute's name.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Kind::Workflow => "workflow",
            Kind::Step => "step",
        }
    }

    fn other(self) -> Kind {
        match self {
            Kind::Workflow => Kind::Step,
            Kind::Step => Kind::Workflow,
        }
    }
}

/// One argument of the annotated function.
pub(crate) struct Arg {
    /// The pattern as written (`order`, `mut order`, `(a, b)`), bound to the argument
    /// where the body runs.
    pub(crate) pat: Pat,
    pub(crate) ty: Type,
    /// The argument's name in the generated outer function: the pattern's own name if
    /// it is one, else a generated one.
    pub(crate) binding: Ident,
    pub(crate) attrs: Vec<Attribute>,
}

impl Arg {
    /// `binding: ty`, the parameter of the generated outer function.
    pub(crate) fn outer_param(&self) -> TokenStream {
        let Arg { attrs, binding, ty, .. } = self;
        quote!(#(#attrs)* #binding: #ty)
    }

    /// `binding: ty` as a syntax node, to build the outer function's signature.
    pub(crate) fn outer_fn_arg(&self) -> FnArg {
        FnArg::Typed(syn::PatType {
            attrs: self.attrs.clone(),
            pat: Box::new(Pat::Ident(syn::PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: self.binding.clone(),
                subpat: None,
            })),
            colon_token: Default::default(),
            ty: Box::new(self.ty.clone()),
        })
    }

    /// The name that errors and decode failures use for this argument.
    pub(crate) fn display_name(&self) -> String {
        match &self.pat {
            Pat::Ident(pat) => pat.ident.to_string(),
            pat => tokens_to_string(pat),
        }
    }
}

/// The receiver, if any, and the other arguments.
pub(crate) fn args(sig: &Signature) -> (Option<&Receiver>, Vec<Arg>) {
    let mut receiver = None;
    let mut args = Vec::new();
    for (index, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => receiver = Some(r),
            FnArg::Typed(typed) => {
                let binding = match &*typed.pat {
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => pat.ident.clone(),
                    _ => format_ident!("__exactly_arg{}", index, span = Span::mixed_site()),
                };
                args.push(Arg {
                    pat: (*typed.pat).clone(),
                    ty: (*typed.ty).clone(),
                    binding,
                    attrs: typed.attrs.clone(),
                });
            }
        }
    }
    (receiver, args)
}

/// The declared return type `Result<T, E>` and how the expansion names `T` and `E`.
pub(crate) struct Output {
    /// As declared (possibly an alias such as `exactly::Result<T>`).
    pub(crate) ty: Type,
    /// `T`, as `<Declared as ReturnsResult>::Ok`, spanned on `T` where it is written.
    pub(crate) ok: TokenStream,
    /// `E`, likewise; spanned on the whole type when the alias does not spell it.
    pub(crate) err: TokenStream,
}

/// The return type, or an error if it is missing or not a `Result`.
pub(crate) fn output(sig: &Signature, kind: Kind, errors: &mut Errors) -> Option<Output> {
    let why = match kind {
        Kind::Workflow => {
            "a workflow must return `Result<T, E>`: its output or its error is recorded as the outcome of the workflow"
        }
        Kind::Step => {
            "a step must return `Result<T, E>`: its output or its error is recorded, and replayed on recovery"
        }
    };
    let ty = match &sig.output {
        syn::ReturnType::Default => {
            let mut head = sig.fn_token.to_token_stream();
            sig.ident.to_tokens(&mut head);
            sig.paren_token.surround(&mut head, |tokens| sig.inputs.to_tokens(tokens));
            errors.spanned(head, format!("{why}; add a return type, e.g. `-> exactly::Result<()>`"));
            return None;
        }
        syn::ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let Some((ok, err)) = result_args(&ty) else {
        errors.spanned(
            &ty,
            format!(
                "{why}; return `exactly::Result<{}>` instead of `{}`",
                tokens_to_string(&ty),
                tokens_to_string(&ty)
            ),
        );
        return None;
    };
    let ok = projection(&ty, "Ok", ok.map_or(&ty, |t| t));
    let err = projection(&ty, "Err", err.map_or(&ty, |t| t));
    Some(Output { ty, ok, err })
}

/// The type arguments of a path type whose last segment names a `Result`: `T` and
/// `E` if written (`Result<T, E>`, `exactly::Result<T>`, `MyResult`).
fn result_args(ty: &Type) -> Option<(Option<&Type>, Option<&Type>)> {
    match ty {
        Type::Group(group) => result_args(&group.elem),
        Type::Paren(paren) => result_args(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            // `Result`, `exactly::Result`, `io::Result`, or an alias named like one
            // (`PaymentResult`); `ReturnsResult` checks the type itself.
            let last = path.path.segments.last()?;
            if !last.ident.to_string().ends_with("Result") {
                return None;
            }
            let mut types = match &last.arguments {
                PathArguments::AngleBracketed(args) => args
                    .args
                    .iter()
                    .filter_map(|arg| match arg {
                        GenericArgument::Type(ty) => Some(ty),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            }
            .into_iter();
            Some((types.next(), types.next()))
        }
        _ => None,
    }
}

/// `<ty as ::exactly::__private::ReturnsResult>::assoc`, spanned from the first to the
/// last token of `at`, so that a failed bound on it points at `at`.
fn projection(ty: &Type, assoc: &str, at: &impl ToTokens) -> TokenStream {
    let (first, last) = span_range(at);
    let open = quote_spanned!(first=> <);
    let assoc = Ident::new(assoc, last);
    quote!(#open #ty as ::exactly::__private::ReturnsResult>::#assoc)
}

/// The spans of the first and the last token.
pub(crate) fn span_range(tokens: &impl ToTokens) -> (Span, Span) {
    let mut iter = tokens.to_token_stream().into_iter();
    let first = iter.next().map_or_else(Span::call_site, |t| t.span());
    let last = iter.last().map_or(first, |t| t.span());
    (first, last)
}

pub(crate) fn require_async(sig: &Signature, kind: Kind, errors: &mut Errors) {
    if sig.asyncness.is_some() {
        return;
    }
    let message = match kind {
        Kind::Workflow => {
            "a workflow must be an `async fn`: it runs as a durable task that awaits its steps; write `async fn`"
        }
        Kind::Step => {
            "a step must be an `async fn`: the workflow awaits it and its outcome is recorded before the workflow goes on; write `async fn`"
        }
    };
    errors.spanned(sig.fn_token, message);
}

pub(crate) fn reject_receiver(receiver: Option<&Receiver>, kind: Kind, errors: &mut Errors) {
    let Some(receiver) = receiver else { return };
    let message = match kind {
        Kind::Workflow => {
            "a workflow cannot take `self`: on recovery it is started again from its recorded arguments alone, so it must be a free function; pass what it needs as arguments"
        }
        Kind::Step => {
            "a step must be a free function, not a method: on recovery a completed step is not run again (its recorded output is returned instead), so changes it made to `self` would be lost; pass what it needs as arguments"
        }
    };
    errors.spanned(receiver, message);
}

/// The index of the other attribute (`#[step]` on a workflow, `#[workflow]` on a step).
/// The common entry of `#[workflow]` and `#[step]`: parses the item as a function
/// and expands it with `try_expand`. On error the function is still emitted (without
/// the other attribute, which would report the same conflict again) followed by every
/// error, so the IDE keeps working inside it. `usage` is the example shown when the
/// item is not a function at all.
pub(crate) fn expand_fn(
    kind: Kind,
    args: TokenStream,
    item: TokenStream,
    usage: &str,
    try_expand: fn(TokenStream, &ItemFn) -> syn::Result<TokenStream>,
) -> TokenStream {
    let mut func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            let message = format!("`#[{}]` applies to an `async fn` with a body, e.g. `{usage}`", kind.attribute());
            return with_item(item, syn::Error::new(e.span(), message));
        }
    };
    match try_expand(args, &func) {
        Ok(tokens) => tokens,
        Err(error) => {
            if let Some(index) = conflicting_attr(&func.attrs, kind) {
                func.attrs.remove(index);
            }
            with_item(func, error)
        }
    }
}

pub(crate) fn conflicting_attr(attrs: &[Attribute], kind: Kind) -> Option<usize> {
    let other = kind.other().attribute();
    attrs.iter().position(|attr| {
        let segments: Vec<String> = attr.path().segments.iter().map(|s| s.ident.to_string()).collect();
        match segments.as_slice() {
            [name] => name == other,
            [krate, name] => krate == "exactly" && name == other,
            _ => false,
        }
    })
}

pub(crate) fn reject_conflicting_attr(attrs: &[Attribute], kind: Kind, errors: &mut Errors) {
    if let Some(index) = conflicting_attr(attrs, kind) {
        errors.spanned(
            &attrs[index],
            format!(
                "a function is either a workflow or a step, not both: a workflow is started and recovered as a whole, a step is one checkpoint inside a workflow; remove `#[{}]` or `#[{}]`",
                kind.other().attribute(),
                kind.attribute()
            ),
        );
    }
}

/// The attributes written before the function, and those inside its body (`#![..]`).
pub(crate) fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>) {
    attrs.iter().partition(|attr| matches!(attr.style, syn::AttrStyle::Outer))
}

/// Attributes that set lint levels; they are repeated on generated functions that
/// hold the user's code, so that `#[allow(..)]` keeps working there.
pub(crate) fn lint_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| {
        matches!(attr.style, syn::AttrStyle::Outer)
            && ["allow", "warn", "deny", "forbid"].iter().any(|lint| attr.path().is_ident(lint))
    })
}

/// The first reference inside `ty`, if any.
pub(crate) fn find_reference(ty: &Type) -> Option<&Type> {
    find(ty, &|ty| matches!(ty, Type::Reference(_)))
}

/// The first `impl Trait` inside `ty`, if any.
pub(crate) fn find_impl_trait(ty: &Type) -> Option<&Type> {
    find(ty, &|ty| matches!(ty, Type::ImplTrait(_)))
}

fn find<'a>(ty: &'a Type, matches: &dyn Fn(&Type) -> bool) -> Option<&'a Type> {
    if matches(ty) {
        return Some(ty);
    }
    match ty {
        Type::Reference(r) => find(&r.elem, matches),
        Type::Slice(s) => find(&s.elem, matches),
        Type::Array(a) => find(&a.elem, matches),
        Type::Paren(p) => find(&p.elem, matches),
        Type::Group(g) => find(&g.elem, matches),
        Type::Ptr(p) => find(&p.elem, matches),
        Type::Tuple(t) => t.elems.iter().find_map(|elem| find(elem, matches)),
        Type::Path(p) => p.qself.iter().find_map(|q| find(&q.ty, matches)).or_else(|| {
            p.path.segments.iter().find_map(|segment| match &segment.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                    GenericArgument::Type(ty) => find(ty, matches),
                    _ => None,
                }),
                _ => None,
            })
        }),
        _ => None,
    }
}

/// `ty` with every reference replaced by the owned type it borrows from: `&str` by
/// `String`, `&[T]` by `Vec<T>`, `&T` by `T`.
pub(crate) fn owned(ty: &Type) -> Type {
    let mut ty = ty.clone();
    make_owned(&mut ty);
    ty
}

fn make_owned(ty: &mut Type) {
    if let Type::Reference(r) = ty {
        let mut elem = (*r.elem).clone();
        make_owned(&mut elem);
        let owned: Type = match &elem {
            Type::Slice(slice) => {
                let elem = &slice.elem;
                syn::parse_quote!(Vec<#elem>)
            }
            Type::Path(path) if path.qself.is_none() => {
                let replacement =
                    ["str:String", "Path:PathBuf", "OsStr:OsString", "CStr:CString"].iter().find_map(|pair| {
                        let (borrowed, owned) = pair.split_once(':').expect("pairs");
                        path.path.is_ident(borrowed).then_some(owned)
                    });
                match replacement {
                    Some(owned) => {
                        Type::Path(syn::TypePath { qself: None, path: Ident::new(owned, Span::call_site()).into() })
                    }
                    None => elem,
                }
            }
            _ => elem,
        };
        *ty = owned;
        return;
    }
    match ty {
        Type::Slice(s) => make_owned(&mut s.elem),
        Type::Array(a) => make_owned(&mut a.elem),
        Type::Paren(p) => make_owned(&mut p.elem),
        Type::Group(g) => make_owned(&mut g.elem),
        Type::Tuple(t) => t.elems.iter_mut().for_each(make_owned),
        Type::Path(p) => {
            for segment in &mut p.path.segments {
                if let PathArguments::AngleBracketed(args) = &mut segment.arguments {
                    for arg in &mut args.args {
                        if let GenericArgument::Type(ty) = arg {
                            make_owned(ty);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Tokens as a person would write them: `Vec<&str>`, not `Vec < & str >`.
pub(crate) fn tokens_to_string(tokens: &impl ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.get(i + 1).copied();
            let glue_after = matches!(prev, Some('<' | '&' | '(' | '[' | ':' | '\''));
            let glue_before = matches!(next, Some('<' | '>' | ',' | ')' | ']' | ':'));
            let keep_for_keyword =
                prev.is_some_and(|p| p.is_alphanumeric()) && next.is_some_and(|n| n.is_alphanumeric());
            // `Fn(u8)`, `fn(u8)`, but `dyn (A)`, `&mut (u8, u8)`.
            let last_word = out.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or_default();
            let call_parens =
                next == Some('(') && !last_word.is_empty() && !["dyn", "impl", "mut", "as"].contains(&last_word);
            if ((glue_after || glue_before) && !keep_for_keyword) || call_parens {
                continue;
            }
        }
        out.push(c);
    }
    // `&'a str`, `dyn Trait`, `impl Trait`, `mut x` keep their spaces through the rule above.
    out.replace("->", " -> ").replace("  ", " ")
}

//! Attribute macros of `exactly`. Placeholder until the expansion lands.
use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn workflow(_args: TokenStream, item: TokenStream) -> TokenStream { item }

#[proc_macro_attribute]
pub fn step(_args: TokenStream, item: TokenStream) -> TokenStream { item }

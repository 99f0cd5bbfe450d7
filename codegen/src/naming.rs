//! Every name the generator writes: Rust identifiers as prost-build spells them, module paths, and
//! the names of generated items. One place, so the rules cannot drift apart.

use heck::{ToSnakeCase, ToUpperCamelCase};
use proc_macro2::TokenStream;
use quote::quote;

/// Escapes a Rust keyword the way prost-build does (`r#type`, `self_`, `_3d`).
pub fn sanitize(ident: &str) -> String {
    match ident {
        "as" | "break" | "const" | "continue" | "else" | "enum" | "false" | "fn" | "for" | "if"
        | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move" | "mut" | "pub" | "ref"
        | "return" | "static" | "struct" | "trait" | "true" | "type" | "unsafe" | "use"
        | "where" | "while" | "dyn" | "abstract" | "become" | "box" | "do" | "final" | "macro"
        | "override" | "priv" | "typeof" | "unsized" | "virtual" | "yield" | "async" | "await"
        | "try" | "gen" => format!("r#{ident}"),
        "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{ident}_"),
        s if s.starts_with(|c: char| c.is_numeric()) => format!("_{ident}"),
        _ => ident.to_owned(),
    }
}

/// A field, oneof or module name as prost-build spells it.
pub fn snake(name: &str) -> String {
    sanitize(&name.to_snake_case())
}

/// A type or variant name as prost-build spells it.
pub fn camel(name: &str) -> String {
    sanitize(&name.to_upper_camel_case())
}

/// Parses a (possibly raw) identifier produced by [`snake`] or [`camel`] into tokens.
pub fn ident(name: &str) -> syn::Ident {
    match name.strip_prefix("r#") {
        Some(raw) => syn::Ident::new_raw(raw, proc_macro2::Span::call_site()),
        None => syn::Ident::new(name, proc_macro2::Span::call_site()),
    }
}

/// The module path of a proto package, one module per dotted part.
pub fn package_modules(package: &str) -> Vec<String> {
    if package.is_empty() {
        Vec::new()
    } else {
        package.split('.').map(snake).collect()
    }
}

/// The file prost-build writes a package's messages to, and the one protogate writes beside it.
pub fn package_files(package: &str) -> (String, String) {
    // prost names the file after the module path, keywords escaped: `google.r#type.rs`.
    let modules = package_modules(package);
    let stem = if modules.is_empty() {
        "_".to_owned()
    } else {
        modules.join(".")
    };
    (format!("{stem}.rs"), format!("{stem}.protogate.rs"))
}

/// Tokens that climb `depth` modules up to the root of the generated module tree.
pub fn to_root(depth: usize) -> TokenStream {
    if depth == 0 {
        return quote!(self);
    }
    let supers = (0..depth).map(|_| quote!(super));
    quote!(#(#supers)::*)
}

/// How many modules deep a package's file is mounted.
pub fn package_depth(package: &str) -> usize {
    package_modules(package).len()
}

/// Where generated code is written: the module of a package, or a gateway module inside it.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The proto package whose module holds the code.
    pub package: &'a str,
    /// Modules between the root of the tree and the code.
    pub depth: usize,
}

impl<'a> Scope<'a> {
    /// Code in a package's own module.
    pub fn package(package: &'a str) -> Self {
        Scope {
            package,
            depth: package_depth(package),
        }
    }

    /// Code in a service's gateway module, one level below its package's module.
    pub fn service(package: &'a str) -> Self {
        Scope {
            package,
            depth: package_depth(package) + 1,
        }
    }
}

/// The path of a message, enum or oneof enum, written from `scope`: relative within the same
/// package, from the root of the tree otherwise. Nested types live in prost's snake-case modules
/// named after their parents; google.protobuf types are prost-types'.
pub fn type_path(scope: Scope<'_>, package: &str, full_name: &str) -> TokenStream {
    let local = full_name
        .strip_prefix(package)
        .map(|rest| rest.trim_start_matches('.'))
        .unwrap_or(full_name);
    let mut parts: Vec<&str> = local.split('.').collect();
    let name = ident(&camel(parts.pop().unwrap_or_default()));
    let nested = parts.iter().map(|parent| ident(&snake(parent)));
    if package == "google.protobuf" {
        return quote!(::prost_types #(:: #nested)* :: #name);
    }
    if package == scope.package {
        let up = scope.depth - package_depth(package);
        let supers = (0..up).map(|_| quote!(super::));
        return quote!(#(#supers)* #(#nested ::)* #name);
    }
    let root = to_root(scope.depth);
    let modules = package_modules(package).into_iter().map(|m| ident(&m));
    quote!(#root #(:: #modules)* #(:: #nested)* :: #name)
}

/// The Rust type of an RPC's request or response message: prost maps google.protobuf.Empty to
/// `()`; every other type is a message path.
pub fn rpc_type(scope: Scope<'_>, message: &prost_reflect::MessageDescriptor) -> TokenStream {
    if message.full_name() == "google.protobuf.Empty" {
        return quote!(());
    }
    type_path(scope, message.package_name(), message.full_name())
}

/// The Rust name prost gives a service (`IAMPolicy` becomes `IamPolicy`).
pub fn service_type(service: &str) -> String {
    camel(service)
}

/// tonic's module naming: an underscore before every uppercase letter of the service type name.
fn service_module_stem(service: &str) -> String {
    let name = service_type(service);
    let mut stem = String::with_capacity(name.len() + 4);
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        stem.push(c.to_ascii_lowercase());
        if chars.peek().is_some_and(|next| next.is_uppercase()) {
            stem.push('_');
        }
    }
    stem
}

/// The module generated for a service's gateway: `library_service_gateway`.
pub fn gateway_module(service: &str) -> syn::Ident {
    ident(&format!("{}_gateway", service_module_stem(service)))
}

/// The trait through which a service's gateway reaches it: `LibraryServiceBackend`.
pub fn backend_trait(service: &str) -> syn::Ident {
    ident(&format!("{}Backend", service_type(service)))
}

/// The tonic client type of a service, from inside its gateway module.
pub fn client_path(service: &str) -> TokenStream {
    let module = ident(&format!("{}_client", service_module_stem(service)));
    let client = ident(&format!("{}Client", service_type(service)));
    quote!(super::#module::#client)
}

/// The tonic server trait of a service, from inside its gateway module.
pub fn server_trait_path(service: &str) -> TokenStream {
    let module = ident(&format!("{}_server", service_module_stem(service)));
    let service = ident(&service_type(service));
    quote!(super::#module::#service)
}

/// The method name tonic generates for an RPC.
pub fn rpc_method(method: &str) -> syn::Ident {
    ident(&snake(method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_escaped_like_prost() {
        assert_eq!(snake("type"), "r#type");
        assert_eq!(snake("self"), "self_");
        assert_eq!(camel("self"), "Self_");
        assert_eq!(snake("pageSize"), "page_size");
        assert_eq!(camel("3d_model"), "_3dModel");
        assert_eq!(
            gateway_module("IAMPolicy").to_string(),
            "iam_policy_gateway"
        );
        assert_eq!(
            client_path("IAMPolicy").to_string(),
            "super :: iam_policy_client :: IamPolicyClient"
        );
    }

    #[test]
    fn type_paths_climb_to_the_root() {
        let same = type_path(Scope::service("acme.v1"), "acme.v1", "acme.v1.Book.Chapter");
        assert_eq!(same.to_string(), "super :: book :: Chapter");
        let other = type_path(Scope::package("acme.v1"), "other", "other.Thing");
        assert_eq!(other.to_string(), "super :: super :: other :: Thing");
        let root = type_path(Scope::package(""), "other", "other.Thing");
        assert_eq!(root.to_string(), "self :: other :: Thing");
    }
}

//! Gateway code for one service: the backend trait (remote tonic client or in-process service),
//! a static description of every binding, and the function that turns them into routes.

use heck::ToShoutySnakeCase;
use proc_macro2::TokenStream;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use quote::{format_ident, quote};

use super::json;
use crate::error::{LocatedError, RuleError};
use crate::model::{Binding, Body, Method, Service, Shape, WellKnown};
use crate::naming::{self, Scope};
use crate::template::FlatSegment;

/// Options that change what is generated for a service.
#[derive(Clone, Copy, Debug)]
pub struct GatewayOptions {
    /// tonic generated the server trait, so an in-process backend can be offered.
    pub server: bool,
}

/// The gateway module of one service.
pub fn service_module(
    service: &Service,
    options: GatewayOptions,
) -> Result<TokenStream, Box<LocatedError>> {
    let descriptor = &service.descriptor;
    let package = descriptor.package_name();
    // Items live one module below the package module.
    let depth = Scope::service(package);
    let module = naming::gateway_module(descriptor.name());
    let backend = naming::backend_trait(descriptor.name());
    let client = naming::client_path(descriptor.name());
    let server = naming::server_trait_path(descriptor.name());
    let service_name = descriptor.full_name();
    let root = naming::to_root(depth.depth);

    let mut statics = Vec::new();
    let mut trait_methods = Vec::new();
    let mut client_methods = Vec::new();
    let mut remote_methods = Vec::new();
    let mut local_methods = Vec::new();
    let mut routes = Vec::new();
    let mut infos = Vec::new();

    for method in &service.methods {
        let md = &method.descriptor;
        let rpc = naming::rpc_method(md.name());
        let calls = BackendCalls::new(depth, method, &client, &server);
        trait_methods.push(calls.trait_method);
        client_methods.push(calls.client_method);
        remote_methods.push(calls.remote_method);
        local_methods.push(calls.local_method);
        let input = naming::rpc_type(depth, &md.input());
        let output = naming::rpc_type(depth, &md.output());
        let constructor = match method.shape() {
            Shape::Unary => quote!(unary),
            Shape::ServerStreaming => quote!(server_streaming),
            Shape::ClientStreaming => quote!(client_streaming),
            Shape::BidiStreaming => quote!(bidi_streaming),
        };
        for (index, binding) in method.bindings.iter().enumerate() {
            let base = format!("{}_{index}", md.name().to_shouty_snake_case());
            let route_ident = format_ident!("ROUTE_{}", base);
            let binding_ident = format_ident!("BINDING_{}", base);
            let route_info = route_info(binding, md.full_name());
            statics.push(quote!(static #route_ident: __codegen::RouteInfo = #route_info;));
            infos.push(quote!(&#route_ident));
            let described =
                describe_binding(depth, method, binding, &route_ident).map_err(|error| {
                    LocatedError {
                        location: binding.location.clone(),
                        error,
                    }
                })?;
            statics.push(quote!(
                static #binding_ident: __codegen::Binding<#input, #output> = #described;
            ));
            routes.push(quote!(
                __codegen::Route::#constructor(&#binding_ident, {
                    let backend = ::core::clone::Clone::clone(&backend);
                    move |request| #backend::#rpc(&backend, request)
                })
            ));
        }
    }

    let module_doc = format!(" The HTTP/JSON gateway of `{service_name}`.");
    let trait_doc = format!(
        " How the gateway reaches `{service_name}`: a tonic client over a channel, an in-process \
         implementation, or anything else that answers its RPCs."
    );
    let local = if options.server {
        quote! {
            impl<T: #server> #backend for __codegen::Local<T> {
                #(#local_methods)*
            }

            /// Routes served by an in-process implementation of the service, with no network hop.
            pub fn local<T: #server>(implementation: T) -> __codegen::Service {
                service(__codegen::Local::new(implementation))
            }
        }
    } else {
        quote!()
    };

    let policies: Vec<TokenStream> = service
        .methods
        .iter()
        .filter(|method| !method.policy.is_empty())
        .map(declared_policy)
        .collect();

    Ok(quote! {
        #[doc = #module_doc]
        #[allow(clippy::all, deprecated, unused_imports, unused_variables)]
        pub mod #module {
            use ::protogate::__codegen;

            #[doc = #trait_doc]
            pub trait #backend:
                ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync + 'static
            {
                #(#trait_methods)*
            }

            impl<T: __codegen::GrpcTransport> #backend for #client<T> {
                #(#client_methods)*
            }

            impl #backend for __codegen::Remote {
                #(#remote_methods)*
            }

            #local

            /// Routes forwarding every binding to the service at `upstream`, under its
            /// deadlines (the upstream holds response messages to its own size limit).
            pub fn remote(upstream: __codegen::Upstream) -> __codegen::Service {
                let deadlines = upstream.deadlines();
                service(__codegen::Remote::new(upstream)).upstream_deadlines(deadlines)
            }

            /// Routes forwarding every binding over `transport`: a tonic `Channel`, or any
            /// tower stack of your own.
            pub fn remote_with<T: __codegen::GrpcTransport>(transport: T) -> __codegen::Service {
                service(#client::new(transport))
            }

            /// Routes forwarding every binding to `backend`.
            pub fn service<B: #backend>(backend: B) -> __codegen::Service {
                __codegen::Service::new(
                    &INFO,
                    &#root::__PROTOGATE_REGISTRY,
                    ::std::vec::Vec::from([#(#routes),*]),
                )
            }

            /// The service's name and its bindings, for route listings and documentation.
            pub static INFO: __codegen::ServiceInfo = __codegen::ServiceInfo {
                name: #service_name,
                routes: &[#(#infos),*],
                remote,
                policies: &[#(#policies),*],
            };

            #(#statics)*
        }
    })
}

/// The `DeclaredPolicy` of a method that declares one.
fn declared_policy(method: &Method) -> TokenStream {
    let rpc = method.descriptor.full_name();
    let policy = &method.policy;
    let access = format_ident!(
        "{}",
        match policy.access {
            crate::policy::Access::Unspecified => "Unspecified",
            crate::policy::Access::Public => "Public",
            crate::policy::Access::Authenticated => "Authenticated",
        }
    );
    let scopes = &policy.scopes;
    let rate_limit = match &policy.rate_limit {
        Some(limit) => {
            let (requests, burst) = (limit.requests, limit.burst);
            let (seconds, nanos) = (limit.period.as_secs(), limit.period.subsec_nanos());
            quote! {
                ::core::option::Option::Some(__codegen::DeclaredRateLimit {
                    requests: #requests,
                    period: ::core::time::Duration::new(#seconds, #nanos),
                    burst: #burst,
                })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        __codegen::DeclaredPolicy {
            rpc: #rpc,
            access: __codegen::Access::#access,
            scopes: &[#(#scopes),*],
            rate_limit: #rate_limit,
        }
    }
}

/// The static `RouteInfo` of a binding: method, compiled template, RPC, and whether it is an
/// unbound route.
fn route_info(binding: &Binding, rpc: &str) -> TokenStream {
    let method = &binding.http_method;
    let unbound = binding.unbound;
    let text = &binding.template_text;
    let segments = binding
        .template
        .flat()
        .into_iter()
        .map(|segment| match segment {
            FlatSegment::Literal(literal) => quote!(__codegen::Seg::Literal(#literal)),
            FlatSegment::Wildcard => quote!(__codegen::Seg::Any),
            FlatSegment::DoubleWildcard => quote!(__codegen::Seg::Rest),
        });
    let verb = match &binding.template.verb {
        Some(verb) => quote!(::core::option::Option::Some(#verb)),
        None => quote!(::core::option::Option::None),
    };
    let vars = binding.template.variables().into_iter().map(|var| {
        let field = &var.field_path;
        let start = var.start;
        let end = var.end;
        quote!(__codegen::Var { field: #field, start: #start, end: #end })
    });
    quote! {
        __codegen::RouteInfo {
            method: #method,
            rpc: #rpc,
            template: __codegen::Template {
                text: #text,
                segments: &[#(#segments),*],
                verb: #verb,
                vars: &[#(#vars),*],
            },
            unbound: #unbound,
        }
    }
}

/// The trait method of one RPC, and its implementations for a tonic client and for an in-process
/// service, by streaming shape.
struct BackendCalls {
    trait_method: TokenStream,
    /// Over any tonic transport, through tonic's client.
    client_method: TokenStream,
    /// Over the built-in upstream: unary calls straight onto it, streams through tonic's
    /// framing with buffers that start empty (the upstream holds response messages to its own
    /// size limit).
    remote_method: TokenStream,
    local_method: TokenStream,
}

impl BackendCalls {
    fn new(depth: Scope<'_>, method: &Method, client: &TokenStream, server: &TokenStream) -> Self {
        let md = &method.descriptor;
        let rpc = naming::rpc_method(md.name());
        let input = naming::rpc_type(depth, &md.input());
        let output = naming::rpc_type(depth, &md.output());
        let shape = method.shape();
        // An in-process service reads a request stream through tonic's own `Streaming`.
        let (request, local_request) = if shape.streams_requests() {
            (
                quote!(__codegen::RequestStream<#input>),
                quote!(__codegen::local_request(request)),
            )
        } else {
            (input, quote!(request))
        };
        let (answer, adapt) = if shape.streams_responses() {
            (
                quote!(__codegen::StreamFuture<#output>),
                quote!(.map(__codegen::boxed_response)),
            )
        } else {
            (quote!(__codegen::UnaryFuture<#output>), quote!())
        };
        let doc = format!(" Calls `{}`.", md.full_name());
        let path = format!("/{}/{}", md.parent_service().full_name(), md.name());
        let remote_call = match shape {
            Shape::Unary => quote!(unary),
            Shape::ServerStreaming => quote!(server_streaming),
            Shape::ClientStreaming => quote!(client_streaming),
            Shape::BidiStreaming => quote!(streaming),
        };
        let remote_method = quote! {
            fn #rpc(&self, request: __codegen::tonic::Request<#request>) -> #answer {
                __codegen::Remote::#remote_call(self, #path, request)
            }
        };
        BackendCalls {
            remote_method,
            trait_method: quote! {
                #[doc = #doc]
                fn #rpc(&self, request: __codegen::tonic::Request<#request>) -> #answer;
            },
            client_method: quote! {
                fn #rpc(&self, request: __codegen::tonic::Request<#request>) -> #answer {
                    // The inherent tonic method, not this trait's method of the same name.
                    let mut client = ::core::clone::Clone::clone(self);
                    ::std::boxed::Box::pin(async move {
                        #client::<T>::#rpc(&mut client, request).await #adapt
                    })
                }
            },
            local_method: quote! {
                fn #rpc(&self, request: __codegen::tonic::Request<#request>) -> #answer {
                    let service = self.shared();
                    ::std::boxed::Box::pin(async move {
                        <T as #server>::#rpc(&service, #local_request).await #adapt
                    })
                }
            },
        }
    }
}

/// The static `Binding` of a binding: how to build the request and shape the response.
fn describe_binding(
    depth: Scope<'_>,
    method: &Method,
    binding: &Binding,
    route: &syn::Ident,
) -> Result<TokenStream, RuleError> {
    let md = &method.descriptor;
    let input = naming::rpc_type(depth, &md.input());
    let output = naming::rpc_type(depth, &md.output());

    let mut skip = Vec::new();
    let body = match &binding.body {
        Body::None => quote!(__codegen::BodyRule::None),
        Body::Whole if is_http_body(&md.input()) => {
            quote!(__codegen::BodyRule::Raw {
                set: |m: &mut #input, content_type: &str, data: &[u8]| {
                    m.content_type = ::std::borrow::ToOwned::to_owned(content_type);
                    m.data = ::std::borrow::ToOwned::to_owned(data);
                },
                whole: true,
            })
        }
        Body::Whole => quote!(__codegen::BodyRule::Whole),
        Body::Field(field) => {
            skip.extend(names(std::slice::from_ref(field)));
            match field.kind() {
                Kind::Message(message) if is_http_body(&message) && !field.is_list() => {
                    let path =
                        naming::type_path(depth, message.package_name(), message.full_name());
                    let slot = field_slot(field);
                    quote!(__codegen::BodyRule::Raw {
                        set: |m: &mut #input, content_type: &str, data: &[u8]| {
                            let body = __codegen::message_mut::<#path, _>(&mut #slot);
                            body.content_type = ::std::borrow::ToOwned::to_owned(content_type);
                            body.data = ::std::borrow::ToOwned::to_owned(data);
                        },
                        whole: false,
                    })
                }
                _ => {
                    let name = field.name();
                    let read = json::read_into(depth, field, field_slot(field))?;
                    let array_value = field.is_list()
                        || matches!(field.kind(), Kind::Message(m)
                            if matches!(WellKnown::of(m.full_name()), Some(WellKnown::ListValue | WellKnown::Value)));
                    quote!(__codegen::BodyRule::Field {
                        name: #name,
                        read: |m: &mut #input, r: &mut __codegen::Reader<'_>| #read,
                        array_value: #array_value,
                    })
                }
            }
        }
    };
    let mut setters = Vec::new();
    for variable in &binding.variables {
        skip.extend(names(&variable.fields));
        setters.push(path_setter(depth, &input, &variable.fields)?);
    }
    skip.sort();
    skip.dedup();
    let raw = quote!(__codegen::RawBody {
        content_type: body.content_type,
        data: body.data,
    });
    let response = match &binding.response_body {
        None if is_http_body(&md.output()) => {
            quote!(__codegen::ResponseRule::Raw(|body: #output| #raw))
        }
        None => quote!(__codegen::ResponseRule::Message),
        Some(field) => match field.kind() {
            Kind::Message(message) if is_http_body(&message) && !field.is_list() => {
                let ident = naming::ident(&naming::snake(field.name()));
                quote!(__codegen::ResponseRule::Raw(|m: #output| match m.#ident {
                    ::core::option::Option::Some(body) => #raw,
                    ::core::option::Option::None => ::core::default::Default::default(),
                }))
            }
            _ => {
                let write = json::write_bare(depth, field)?;
                quote!(__codegen::ResponseRule::Field(
                    |m: &#output, w: &mut __codegen::Writer<'_>| #write
                ))
            }
        },
    };
    Ok(quote! {
        __codegen::Binding {
            route: &#route,
            body: #body,
            query_skip: &[#(#skip),*],
            path: &[#(#setters),*],
            response: #response,
        }
    })
}

/// Whether a message is `google.api.HttpBody`, whose bytes travel raw.
fn is_http_body(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.api.HttpBody"
}

/// `m.field` for a top-level request field.
fn field_slot(field: &FieldDescriptor) -> TokenStream {
    let ident = naming::ident(&naming::snake(field.name()));
    quote!(m.#ident)
}

/// The dotted paths under which a chain of fields may appear in a query: proto and JSON names.
fn names(fields: &[FieldDescriptor]) -> Vec<String> {
    let proto: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let json: Vec<&str> = fields.iter().map(|f| f.json_name()).collect();
    vec![proto.join("."), json.join(".")]
}

/// A function setting the field at the end of `fields` from a path value.
fn path_setter(
    depth: Scope<'_>,
    input: &TokenStream,
    fields: &[FieldDescriptor],
) -> Result<TokenStream, RuleError> {
    let (last, parents) = fields
        .split_last()
        .ok_or_else(|| RuleError::MissingPattern {
            rpc: String::new(),
            message: "empty path variable".into(),
        })?;
    let mut owner = quote!(m);
    for parent in parents {
        let ident = naming::ident(&naming::snake(parent.name()));
        let Kind::Message(message) = parent.kind() else {
            return Err(RuleError::UnsupportedFieldType {
                field: parent.full_name().to_owned(),
                type_name: "a scalar inside a path".into(),
            });
        };
        let path = naming::type_path(depth, message.package_name(), message.full_name());
        owner = quote!(__codegen::message_mut::<#path, _>(&mut #owner.#ident));
    }
    let set = json::text_setter(depth, last, owner)?;
    Ok(quote!(
        |m: &mut #input, text: &str| -> ::core::result::Result<(), __codegen::JsonError> { #set }
    ))
}

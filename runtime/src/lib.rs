#![doc = include_str!("../README.md")]

mod abort;
mod auth;
mod binding;
mod call;
mod compression;
mod cors;
mod deadline;
mod declared;
mod drain;
mod error;
mod error_body;
mod external_auth;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod json;
mod limits;
mod metadata;
pub mod observe;
mod openapi;
mod percent;
mod principal;
mod query;
mod ratelimit;
mod respond;
mod route;
mod select;
mod service;
mod status;
mod stream;
pub mod trace;
mod trace_context;
mod unary;
mod upstream;

pub use auth::{
    ApiKey, ApiKeys, Auth, AuthBuilder, AuthError, AuthService, JwtAlgorithm, JwtProvider,
    RedisSessions, Requirement,
};
pub use binding::RawBody;
pub use call::RouteInfo;
pub use compression::{
    Compression, CompressionLayer, CompressionService, Encoding, UnknownEncoding,
};
pub use cors::{Cors, CorsBuilder, CorsError, CorsLayer, CorsService};
pub use deadline::Deadlines;
pub use declared::{Access, DeclaredPolicy, DeclaredRateLimit};
pub use drain::Drain;
pub use error::{BoxError, GatewayError, QueryNameError};
pub use error_body::ErrorBody;
pub use external_auth::{
    CheckRequest, CheckResponse, CredentialSource, ExternalAuth, ExternalAuthBuilder,
    ExternalAuthService,
};
pub use gateway::{Gateway, RouteService};
pub use json::{JsonError, JsonMessage, JsonOptions, decode_message, encode_message};
pub use limits::{Limits, LimitsLayer, LimitsService};
pub use metadata::{HeaderMapping, MetadataError};
pub use principal::Principal;
pub use ratelimit::{
    ClientKey, ClientPrefixes, IpNetwork, Limit, NetworkError, OnRedisFailure, RATELIMIT,
    RATELIMIT_POLICY, RateLimit, RateLimitBuilder, RateLimitError, RateLimitService,
    RateLimitStats, RedisLimits,
};
pub use route::Conflict;
pub use select::{PerRoute, RouteSelector, SelectorError};
pub use service::{Local, Route, Service, ServiceInfo, UnknownMethod};
pub use status::Failure;
pub use stream::{RequestStream, ResponseStream, StreamFuture};
pub use upstream::{
    Balance, Bulkhead, Ejection, GrpcTransport, HealthCheck, Keepalive, Resolve, ResponseBody,
    RetryBudget, SystemResolver, Upstream, UpstreamBuilder, UpstreamError, UpstreamTls,
    UpstreamTlsError, UpstreamUrlError,
};

/// Mounts the code protogate-build generated: one module per proto package, a `SERVICES` list,
/// and the type registry. Use it inside a module of your own:
///
/// ```ignore
/// pub mod pb {
///     ::protogate::include_gateway!();
/// }
/// ```
#[macro_export]
macro_rules! include_gateway {
    () => {
        include!(concat!(env!("OUT_DIR"), "/protogate.rs"));
    };
}

/// The surface generated code uses. Not for hand-written code: it may change in any release.
#[doc(hidden)]
pub mod __codegen {
    pub use ::tonic;

    pub use crate::binding::{
        Binding, BodyRule, RawBody, ResponseRule, body_default, body_map, body_message,
        body_optional, body_repeated, body_value, message_mut,
    };
    pub use crate::call::{RouteInfo, UnaryFuture};
    pub use crate::declared::{Access, DeclaredPolicy, DeclaredRateLimit};
    pub use crate::json::{
        Any, AnyType, Bool, Bytes, Codec, Duration, Empty, Enum, F32, F64, FieldKey, FieldMask,
        I32, I64, JsonError, JsonMessage, ListValue, Msg, NullValue, ProtoEnum, Reader, Registry,
        Str, Struct, TextField, Timestamp, U32, U64, Value, Writer, parse_text, push_text,
        read_map, read_message, read_nullable, read_optional, read_repeated, read_singular,
        set_text, set_text_optional, write_map, write_message, write_optional, write_present,
        write_repeated, write_singular,
    };
    pub use crate::route::{Seg, Template, Var};
    pub use crate::service::{Local, Route, Service, ServiceInfo};
    pub use crate::stream::{
        RequestStream, ResponseStream, StreamFuture, boxed_response, local_request,
    };
    pub use crate::upstream::{GrpcTransport, Remote, Upstream};
}

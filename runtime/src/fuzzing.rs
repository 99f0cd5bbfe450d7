//! Entry points for the fuzz targets of `protogate-fuzz` (the repository's `fuzz/` directory),
//! which drive parts of the runtime that are private otherwise. Not for any other use: this
//! module may change in any release.
//!
//! Each item here is either a re-export of a crate-private type or a thin function that runs a
//! private piece of the runtime exactly as the gateway does, and reports the outcome in types
//! the fuzz targets can check.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::Method;

use crate::auth::jwks;
use crate::auth::jwt::{self, JwtAlgorithm, JwtProvider, TokenError};
use crate::binding::{Binding, MessageSource};
use crate::call::Settings;
use crate::json::{AnyType, JsonMessage, JsonOptions, Registry};
use crate::stream::{Splitter, close_frame, frame_message};

pub use crate::query::{apply as apply_query, refuse_fields as refuse_query_fields};
pub use crate::route::{Captures, Lookup, RouteTable};

/// The message types registered in `registry` (a generated build's `__PROTOGATE_REGISTRY`),
/// sorted by name: each reads a JSON object into the encoded message, and writes one back.
pub fn registry_types(registry: &Registry) -> &'static [AnyType] {
    registry.types()
}

/// Cuts a request body arriving in `chunks` into JSON values as a message stream does: `limit`
/// bytes at most per value, a top-level array holding the values when `arrays`. The values in
/// order, or the error that stopped the stream (with the values before it).
pub fn split_stream(
    chunks: &[&[u8]],
    limit: usize,
    arrays: bool,
) -> (Vec<Bytes>, Result<(), String>) {
    let mut splitter = Splitter::new(limit, arrays);
    let mut values = Vec::new();
    for chunk in chunks {
        splitter.push(chunk);
        loop {
            match splitter.next_value() {
                Ok(Some(value)) => values.push(value),
                Ok(None) => break,
                Err(error) => return (values, Err(error.to_string())),
            }
        }
    }
    match splitter.finish() {
        Ok(Some(value)) => values.push(value),
        Ok(None) => {}
        Err(error) => return (values, Err(error.to_string())),
    }
    (values, Ok(()))
}

/// What a WebSocket session does with one data frame of a request stream.
#[derive(Debug)]
pub enum Frame<Req> {
    /// The frame is the next request message.
    Message(Req),
    /// A blank frame: the request stream ends.
    EndOfRequests,
    /// The frame is refused: the session closes with this code and reason.
    Closed {
        /// 4000 + the gRPC code.
        code: u16,
        /// The google.rpc.Status JSON, at most 123 bytes.
        reason: String,
    },
}

/// Why a WebSocket request could not get as far as its frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameSetupError {
    /// The URI does not parse.
    #[error("the URI does not parse")]
    Uri,
    /// The binding's route does not match the URI's path.
    #[error("the path does not match the binding's route")]
    NoMatch,
}

/// Runs one data frame of a request stream (the `index`-th) through what a WebSocket session
/// does with it, for a request to `uri` on `binding` (its route's method is ignored): the
/// path's captures and the query are applied as they are to every message of the stream, and a
/// refused frame gives the close frame the session would send.
pub fn websocket_frame<Req: JsonMessage, Resp>(
    binding: &'static Binding<Req, Resp>,
    uri: &str,
    data: &[u8],
    index: usize,
    registry: &'static Registry,
) -> Result<Frame<Req>, FrameSetupError> {
    let request = http::Request::builder()
        .uri(uri)
        .body(())
        .map_err(|_| FrameSetupError::Uri)?;
    let (parts, ()) = request.into_parts();
    let mut table = RouteTable::new();
    table
        .insert(Method::GET, &binding.route.template, ())
        .map_err(|_| FrameSetupError::NoMatch)?;
    let captures = match table.find(&Method::GET, parts.uri.path()) {
        Lookup::Found { captures, .. } => captures,
        _ => return Err(FrameSetupError::NoMatch),
    };
    let settings = Arc::new(Settings {
        registry,
        ..Settings::default()
    });
    let source = MessageSource::new(binding, &parts, captures, settings);
    Ok(match frame_message(&source, data, index) {
        Ok(Some(message)) => Frame::Message(message),
        Ok(None) => Frame::EndOfRequests,
        Err(error) => {
            let close = close_frame(&error.into_status());
            Frame::Closed {
                code: close.code,
                reason: close.reason.as_str().to_owned(),
            }
        }
    })
}

/// The `alg`, `kid` and `iss` a bearer token shows before anything in it is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPeek {
    /// The header's `alg`.
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The payload's `iss`.
    pub iss: Option<String>,
}

/// Reads a token's header and issuer as the auth layer does first; the refusal's message when
/// it is not a well-formed JWT.
pub fn peek_token(token: &str) -> Result<TokenPeek, String> {
    jwt::peek(token)
        .map(|peek| TokenPeek {
            alg: peek.alg,
            kid: peek.kid,
            iss: peek.iss,
        })
        .map_err(token_error)
}

/// Verifies `token` as a provider for `issuer` with the shared `secret` and `algorithms` does
/// (peek, then signature, issuer and times): the claims, or the refusal's message.
pub fn verify_with_secret(
    issuer: &str,
    secret: &[u8],
    algorithms: &[JwtAlgorithm],
    token: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let verifier = JwtProvider::new(issuer)
        .secret(secret)
        .algorithms(algorithms.iter().copied())
        .build()
        .map_err(|error| error.to_string())?;
    let peek = jwt::peek(token).map_err(token_error)?;
    match now_or_never(verifier.verify(token, &peek)) {
        Some(result) => result.map_err(token_error),
        None => Err("the verification waited for keys a secret never fetches".to_owned()),
    }
}

/// One key of a parsed JWKS document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksKey {
    /// Its `kid`.
    pub kid: Option<String>,
    /// The algorithm it is published for.
    pub alg: Option<String>,
    /// What checking `token` with it under each signature algorithm of its family gave: the
    /// algorithm and whether the signature verified.
    pub checks: Vec<(String, bool)>,
}

/// Parses a JWKS document as a key set fetch does, then checks `token`'s signature with every
/// key under each algorithm the key fits (claims are not checked), as a verification would.
pub fn jwks_keys(document: &[u8], token: &str) -> Result<Vec<JwksKey>, String> {
    use jsonwebtoken::Algorithm;
    const ALGORITHMS: [Algorithm; 10] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ];
    let keys = jwks::parse_jwks(document)?;
    Ok(keys
        .iter()
        .map(|key| {
            let checks = ALGORITHMS
                .iter()
                .filter(|alg| key.fits(key.kid.as_deref(), **alg))
                .map(|alg| {
                    let mut validation = jsonwebtoken::Validation::new(*alg);
                    validation.validate_exp = false;
                    validation.validate_aud = false;
                    validation.required_spec_claims.clear();
                    let verified =
                        jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
                            .is_ok();
                    (format!("{alg:?}"), verified)
                })
                .collect();
            JwksKey {
                kid: key.kid.clone(),
                alg: key.alg.map(|alg| format!("{alg:?}")),
                checks,
            }
        })
        .collect())
}

/// The JSON options a fuzz input picks with the low four bits of `bits`.
pub fn json_options(bits: u8) -> JsonOptions {
    JsonOptions {
        emit_defaults: bits & 1 != 0,
        proto_names: bits & 2 != 0,
        enums_as_ints: bits & 4 != 0,
        ignore_unknown: bits & 8 != 0,
    }
}

fn token_error(error: TokenError) -> String {
    match error {
        TokenError::Invalid(message)
        | TokenError::Expired(message)
        | TokenError::KeysUnavailable(message) => message,
    }
}

/// The output of a future that is ready at its first poll.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let future = pin!(future);
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

//! Authentication at the edge: a route layer ([`Auth`]) that checks a request's credentials (a
//! JWT bearer token, an API key) against what its route requires ([`Requirement`], chosen per
//! route with [`PerRoute`]), puts the [`Principal`] in the request's extensions and forwards
//! chosen claims upstream as gRPC metadata.
//!
//! One concern per file: `jwt` (providers and token verification), `jwks` (key sets cached and
//! refreshed in the background), `api_key` (keys by hash, constant-time lookup); this file is
//! the layer, the requirements and the answers to refused requests.

mod api_key;
pub(crate) mod jwks;
pub(crate) mod jwt;
mod session;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use http::{HeaderName, HeaderValue, Request, header};

pub use self::api_key::{ApiKey, ApiKeys};
pub use self::jwt::{JwtAlgorithm, JwtProvider};
pub use self::session::RedisSessions;

use self::api_key::KeyTable;
use self::jwt::{TokenError, Verifier};
use crate::call::RouteInfo;
use crate::error::GatewayError;
use crate::external_auth::{ExternalAuth, Identified};
use crate::json::Registry;
use crate::metadata::METADATA_PREFIX;
use crate::principal::Principal;
use crate::select::PerRoute;

/// Why an [`Auth`] cannot be built, naming the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A JWT provider is incomplete or inconsistent.
    #[error("JWT provider `{issuer}`: {problem}")]
    Provider {
        /// Its issuer.
        issuer: String,
        /// What is wrong.
        problem: String,
    },
    /// Two JWT providers have one issuer.
    #[error("two JWT providers have the issuer `{issuer}`")]
    DuplicateIssuer {
        /// The issuer.
        issuer: String,
    },
    /// An algorithm name that is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256,
    /// ES384, EdDSA, HS256, HS384, HS512.
    #[error(
        "unknown JWT algorithm `{name}` (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512)"
    )]
    UnknownAlgorithm {
        /// The name given.
        name: String,
    },
    /// An API key's hash is not 64 hexadecimal digits.
    #[error("API key `{name}`: the SHA-256 must be 64 hexadecimal digits")]
    BadKeyHash {
        /// The key's name.
        name: String,
    },
    /// An API key without a name.
    #[error("an API key needs a name, which identifies its client")]
    EmptyKeyName,
    /// Two API keys with one name.
    #[error("two API keys are named `{name}`")]
    DuplicateKeyName {
        /// The name.
        name: String,
    },
    /// The header named for API keys is not a valid header name.
    #[error("`{name}` is not a valid header name")]
    BadHeaderName {
        /// The name given.
        name: String,
    },
    /// API keys are read from neither a header nor the query.
    #[error("API keys need a header or a query parameter to be read from")]
    NowhereForKeys,
    /// The query parameter named for API keys is empty.
    #[error("the query parameter for API keys has an empty name")]
    EmptyQueryName,
    /// A forwarded claim's metadata name is not a valid gRPC metadata key.
    #[error(
        "`{name}` is not a valid metadata name for a forwarded claim (lower-case letters, digits, `-`, `_`, `.`; not `grpc-…`)"
    )]
    BadMetadataName {
        /// The name given.
        name: String,
    },
    /// Neither a JWT provider nor API keys: nothing could ever authenticate.
    #[error("auth needs at least one JWT provider or API keys")]
    NoCredentials,
}

/// What a route asks of a request's credentials.
///
/// [`Requirement::public`] lets every request through; the others need credentials that check
/// out, and may need scopes (the token's `scope` or `scp` claim, as a space-separated string
/// or an array; an API key's own) and claim values. The default is
/// [`Requirement::authenticated`].
///
/// A public route still reads credentials when a request sends them: valid ones attach the
/// [`Principal`] and forward its claims, so one handler can serve guests and signed-in users
/// alike; invalid ones are ignored and the request goes on as a guest's (a public route never
/// refuses).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Requirement {
    public: bool,
    scopes: Vec<String>,
    claims: Vec<(String, serde_json::Value)>,
}

impl Requirement {
    /// No credentials needed.
    pub fn public() -> Self {
        Requirement {
            public: true,
            ..Requirement::default()
        }
    }

    /// Credentials that check out, of any client.
    pub fn authenticated() -> Self {
        Requirement::default()
    }

    /// And the scope `scope` granted (repeatable: every one is needed).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.public = false;
        self.scopes.push(scope.into());
        self
    }

    /// And the claim `name` equal to `value`, or, when the claim is an array, holding it
    /// (repeatable: every one is needed). `name` is a top-level claim.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.public = false;
        self.claims.push((name.into(), value.into()));
        self
    }

    /// Whether no credentials are needed.
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// The scopes needed.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether `principal` meets this requirement; if not, what it lacks.
    fn allows(&self, principal: &Principal) -> Result<(), Forbidden> {
        let missing: Vec<String> = self
            .scopes
            .iter()
            .filter(|scope| !principal.scopes.contains(scope))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|scope| format!("`{scope}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Forbidden {
                message: format!(
                    "this route needs the scope {list}, which the credentials do not grant"
                ),
                scopes: self.scopes.clone(),
            });
        }
        for (name, wanted) in &self.claims {
            let held = principal.claims.get(name).is_some_and(|value| {
                value == wanted
                    || value
                        .as_array()
                        .is_some_and(|items| items.iter().any(|item| item == wanted))
            });
            if !held {
                return Err(Forbidden {
                    message: format!("this route needs the claim `{name}` to be {wanted}"),
                    scopes: Vec::new(),
                });
            }
        }
        Ok(())
    }
}

struct Forbidden {
    message: String,
    /// The scopes the route needs, for the challenge.
    scopes: Vec<String>,
}

/// The scopes of a token's claims: `scope` and `scp`, each a space-separated string or an
/// array of strings.
pub(crate) fn scopes_of(claims: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(serde_json::Value::String(text)) => {
                scopes.extend(text.split_whitespace().map(str::to_owned));
            }
            Some(serde_json::Value::Array(items)) => scopes.extend(
                items
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    scopes.retain(|scope| seen.insert(scope.clone()));
    scopes
}

/// Builds an [`Auth`]; see there.
#[derive(Debug)]
pub struct AuthBuilder {
    providers: Vec<JwtProvider>,
    api_keys: Option<ApiKeys>,
    external: Vec<ExternalAuth>,
    requirements: PerRoute<Requirement>,
    forward: Vec<(String, String)>,
    forward_authorization: bool,
    realm: Option<String>,
    max_token_bytes: usize,
}

impl AuthBuilder {
    /// Accepts the credentials `checker` reads (an opaque token, a session cookie), asking the
    /// team's own auth service through it (repeatable; checked in the order given, before JWTs
    /// and API keys). Its refusals are 401, and 503 when it cannot answer and fails closed.
    pub fn external(mut self, checker: ExternalAuth) -> Self {
        self.external.push(checker);
        self
    }

    /// Accepts bearer tokens of `provider`'s issuer (repeatable; a token goes to the provider
    /// of its `iss`).
    pub fn jwt(mut self, provider: JwtProvider) -> Self {
        self.providers.push(provider);
        self
    }

    /// Accepts these API keys.
    pub fn api_keys(mut self, keys: ApiKeys) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// What each route requires ([`Requirement::authenticated`] for every route by default).
    pub fn requirements(mut self, requirements: PerRoute<Requirement>) -> Self {
        self.requirements = requirements;
        self
    }

    /// Sends the claim `claim` upstream as the metadata `metadata` (repeatable). A string
    /// goes as it is, a number or boolean as its JSON text, an array as its items joined with
    /// `,`, an object as JSON. A value that is not printable ASCII goes only under a `-bin`
    /// name (as its UTF-8 bytes). Headers a client sends under these names are dropped from
    /// every request, so a client cannot pose as someone else. An API key's principal has the
    /// claim `sub`, its name.
    pub fn forward_claim(mut self, claim: impl Into<String>, metadata: impl Into<String>) -> Self {
        self.forward.push((claim.into(), metadata.into()));
        self
    }

    /// Whether the credentials themselves travel upstream: the `Authorization` header (when
    /// JWT providers are configured) and the API key header. Off by default, as Envoy's
    /// `jwt_authn` does (`forward: false`): the gateway has checked them, and the upstream
    /// learns who called from the forwarded claims. Turn it on for upstreams that verify
    /// tokens themselves; `Authorization` then reaches them as grpc-gateway forwards it, as
    /// `authorization` and `grpcgateway-authorization` metadata.
    pub fn forward_authorization(mut self, forward: bool) -> Self {
        self.forward_authorization = forward;
        self
    }

    /// The `realm` the challenges of refused requests name (none by default).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The longest bearer token read, in bytes (8 KiB by default); a longer one is refused
    /// before it is parsed.
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// Checks everything and builds the layer. Nothing is fetched yet: each JWKS is fetched
    /// by the first request that needs it, which also starts its background refresh on that
    /// request's runtime.
    pub fn build(self) -> Result<Auth, AuthError> {
        if self.providers.is_empty() && self.api_keys.is_none() && self.external.is_empty() {
            return Err(AuthError::NoCredentials);
        }
        let mut verifiers: Vec<Verifier> = Vec::with_capacity(self.providers.len());
        for provider in self.providers {
            let verifier = provider.build()?;
            if verifiers.iter().any(|v| v.issuer == verifier.issuer) {
                return Err(AuthError::DuplicateIssuer {
                    issuer: verifier.issuer,
                });
            }
            verifiers.push(verifier);
        }
        let keys = self.api_keys.map(ApiKeys::build).transpose()?;
        let mut forward = Vec::with_capacity(self.forward.len());
        for (claim, name) in self.forward {
            let valid = !name.is_empty()
                && !name.starts_with("grpc-")
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                });
            let header = HeaderName::from_bytes(format!("{METADATA_PREFIX}{name}").as_bytes())
                .ok()
                .filter(|_| valid)
                .ok_or_else(|| AuthError::BadMetadataName { name: name.clone() })?;
            forward.push(Forward {
                claim,
                binary: name.ends_with("-bin"),
                header,
            });
        }
        let realm = self
            .realm
            .map(|realm| format!(" realm=\"{}\"", quoted(&realm)));
        let missing = missing_message(!verifiers.is_empty(), keys.as_ref(), &self.external);
        Ok(Auth {
            policy: Arc::new(Policy {
                verifiers,
                keys,
                external: self.external,
                requirements: self.requirements,
                forward,
                forward_authorization: self.forward_authorization,
                realm: realm.unwrap_or_default(),
                max_token_bytes: self.max_token_bytes,
                missing,
            }),
        })
    }
}

/// What a request without credentials is told to send.
fn missing_message(bearer: bool, keys: Option<&KeyTable>, external: &[ExternalAuth]) -> String {
    let mut ways: Vec<String> = external.iter().map(ExternalAuth::describe_source).collect();
    if bearer {
        ways.push("a bearer token in the `Authorization` header".to_owned());
    }
    if let Some(keys) = keys {
        if let Some(header) = &keys.header {
            ways.push(format!("an API key in the `{header}` header"));
        }
        if let Some(query) = &keys.query {
            ways.push(format!("an API key in the `{query}` query parameter"));
        }
    }
    format!("this route needs credentials: {}", ways.join(" or "))
}

/// Text fit for a quoted-string of a challenge.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect()
}

/// A claim forwarded upstream: the claim and the header (`grpc-metadata-<name>`) it goes in.
#[derive(Debug)]
struct Forward {
    claim: String,
    header: HeaderName,
    binary: bool,
}

/// The authentication layer: give it to [`Gateway::route_layer`](crate::Gateway::route_layer).
///
/// ```no_run
/// use protogate::{
///     ApiKey, ApiKeys, Auth, Gateway, JwtAlgorithm, JwtProvider, PerRoute, Requirement,
///     RouteSelector,
/// };
///
/// let auth = Auth::builder()
///     .jwt(
///         JwtProvider::new("https://login.example.com/")
///             .jwks_url("https://login.example.com/.well-known/jwks.json")
///             .audience("https://api.example.com")
///             .algorithms([JwtAlgorithm::RS256]),
///     )
///     .api_keys(ApiKeys::new().key(ApiKey::from_sha256_hex(
///         "nightly-export",
///         "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
///     )?))
///     .requirements(
///         PerRoute::new(Requirement::authenticated())
///             .rule("GET /v1/shelves/**".parse::<RouteSelector>()?, Requirement::public())
///             .rule(
///                 "acme.library.v1.Library.DeleteBook".parse::<RouteSelector>()?,
///                 Requirement::authenticated().scope("library.admin"),
///             ),
///     )
///     .forward_claim("sub", "x-user-id")
///     .build()?;
/// let gateway = Gateway::new().route_layer(auth);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// For each request, in order:
/// - headers a client sends under the names of forwarded claims are dropped, and so is the API
///   key query parameter (it never becomes a field of the request message);
/// - a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) goes on unchecked:
///   browsers send no credentials with it;
/// - a bearer token (`Authorization: Bearer …`) is verified when JWT providers are configured;
///   if there is none, an API key is looked up (header first, then query). A request with a
///   bearer token is judged by it alone;
/// - the route's [`Requirement`] decides: missing or invalid credentials get 401 with a
///   `WWW-Authenticate` challenge (RFC 6750's `error="invalid_token"` for a bad token) and a
///   `google.rpc.Status` of code 16 (UNAUTHENTICATED) saying what was wrong, never quoting
///   the credentials; missing scopes or claims get 403 with code 7 (PERMISSION_DENIED); an
///   issuer whose keys were never fetched gets 503 with code 14 (UNAVAILABLE);
/// - on success the [`Principal`] is put in the request's extensions, the forwarded claims
///   become `grpc-metadata-<name>` headers (which the gateway sends upstream as metadata
///   `<name>`), and the credentials are taken off the request unless
///   [`AuthBuilder::forward_authorization`] says otherwise.
#[derive(Clone)]
pub struct Auth {
    policy: Arc<Policy>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<&str> = self
            .policy
            .verifiers
            .iter()
            .map(|v| v.issuer.as_str())
            .collect();
        f.debug_struct("Auth")
            .field("issuers", &issuers)
            .field("api_keys", &self.policy.keys.is_some())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The OpenAPI document `document` with this layer's credentials as security schemes
    /// (`bearerAuth`, `apiKeyHeader`, `apiKeyQuery`, and one per external checker) and each
    /// operation's `security` as its route's requirement says: the schemes (with the scopes
    /// required) for a route that needs credentials, the same plus `{}` (none) for a public
    /// one. `routes` are the gateway's bindings (`Gateway::routes`),
    /// which tie an operation's RPC and method to the route the requirements are chosen by.
    pub fn openapi(&self, document: &str, routes: &[&'static RouteInfo]) -> String {
        let policy = &self.policy;
        let schemes = policy.security_schemes();
        let names: Vec<String> = schemes.keys().cloned().collect();
        crate::openapi::describe_security(document, schemes, |rpc, method| {
            let route = routes
                .iter()
                .find(|route| route.rpc == rpc && route.method.eq_ignore_ascii_case(method))?;
            let http_method = http::Method::from_bytes(route.method.as_bytes()).ok()?;
            let requirement =
                policy
                    .requirements
                    .get_parts(Some(route), &http_method, &sample_path(route));
            let scopes = requirement.scopes();
            let mut alternatives: Vec<serde_json::Value> = names
                .iter()
                .map(|name| serde_json::json!({ name.as_str(): scopes }))
                .collect();
            if requirement.is_public() {
                alternatives.insert(0, serde_json::json!({}));
            }
            Some(serde_json::Value::Array(alternatives))
        })
    }

    /// A builder with no credentials yet, every route requiring authentication, no claim
    /// forwarded and credentials kept from the upstream.
    pub fn builder() -> AuthBuilder {
        AuthBuilder {
            providers: Vec::new(),
            api_keys: None,
            external: Vec::new(),
            requirements: PerRoute::new(Requirement::authenticated()),
            forward: Vec::new(),
            forward_authorization: false,
            realm: None,
            max_token_bytes: 8 * 1024,
        }
    }

    /// Checks `request`'s credentials against its route's requirement. On success the
    /// request is ready to go on (principal attached, claims forwarded, credentials taken off
    /// as configured); otherwise the response to send instead.
    pub async fn check<B>(&self, request: &mut Request<B>) -> Result<(), Response> {
        let registry = crate::call::registry_of(request);
        match self.policy.check(request).await {
            Ok(()) => Ok(()),
            Err(rejection) => {
                if let Some(scope) = crate::observe::Scope::of(request) {
                    scope.set_auth_failure(rejection.reason());
                }
                Err(self.policy.respond(rejection, registry))
            }
        }
    }
}

struct Policy {
    verifiers: Vec<Verifier>,
    keys: Option<KeyTable>,
    external: Vec<ExternalAuth>,
    requirements: PerRoute<Requirement>,
    forward: Vec<Forward>,
    forward_authorization: bool,
    /// ` realm="…"`, or empty.
    realm: String,
    max_token_bytes: usize,
    /// What a request without credentials is told.
    missing: String,
}

/// Why a request is refused.
enum Rejection {
    /// No credentials.
    Missing,
    /// A bearer token that does not check out.
    InvalidToken(String),
    /// A bearer token that checked out once and has expired.
    ExpiredToken(String),
    /// An API key that does not check out.
    InvalidKey(String),
    /// Credentials that do not grant the route.
    Forbidden { forbidden: Forbidden, bearer: bool },
    /// The keys to check a token with cannot be had.
    Unavailable(String),
    /// An external check refused the credential, or could not check it: its answer.
    External(Response),
    /// A cookie credential on a cross-site request that can change something, and no other
    /// credential: why the request is taken as cross-site.
    CrossSite(String),
}

impl Rejection {
    /// Its reason as metrics and logs name it.
    fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::InvalidToken(_) => "invalid_token",
            Rejection::ExpiredToken(_) => "expired_token",
            Rejection::InvalidKey(_) => "invalid_key",
            Rejection::Forbidden { .. } => "forbidden",
            Rejection::Unavailable(_) => "unavailable",
            Rejection::External(_) => "external",
            Rejection::CrossSite(_) => "cross_site",
        }
    }
}

impl From<TokenError> for Rejection {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Invalid(message) => Rejection::InvalidToken(message),
            TokenError::Expired(message) => Rejection::ExpiredToken(message),
            TokenError::KeysUnavailable(message) => Rejection::Unavailable(message),
        }
    }
}

/// The credentials a request presents.
enum Presented {
    None,
    Bearer(String),
    Key(String),
    /// Credentials of a form this layer cannot read (an API key that is not text).
    Unreadable(String),
}

/// A path `route`'s template matches: its literals, `x` for each variable segment.
fn sample_path(route: &RouteInfo) -> String {
    let mut path = String::new();
    for segment in route.template.segments {
        path.push('/');
        path.push_str(match segment {
            crate::route::Seg::Literal(text) => text,
            crate::route::Seg::Any | crate::route::Seg::Rest => "x",
        });
    }
    if path.is_empty() {
        path.push('/');
    }
    if let Some(verb) = route.template.verb {
        path.push(':');
        path.push_str(verb);
    }
    path
}

impl Policy {
    /// The OpenAPI security schemes of the credentials this layer reads.
    fn security_schemes(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut schemes = serde_json::Map::new();
        if !self.verifiers.is_empty() {
            schemes.insert(
                "bearerAuth".to_owned(),
                serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
            );
        }
        if let Some(keys) = &self.keys {
            if let Some(header) = &keys.header {
                schemes.insert(
                    "apiKeyHeader".to_owned(),
                    serde_json::json!({"type": "apiKey", "in": "header", "name": header.as_str()}),
                );
            }
            if let Some(query) = &keys.query {
                schemes.insert(
                    "apiKeyQuery".to_owned(),
                    serde_json::json!({"type": "apiKey", "in": "query", "name": query}),
                );
            }
        }
        for (index, checker) in self.external.iter().enumerate() {
            let (name, scheme) = checker.security_scheme();
            let name = if index == 0 {
                name
            } else {
                format!("{name}{}", index + 1)
            };
            schemes.insert(name, scheme);
        }
        schemes
    }

    async fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
        for forward in &self.forward {
            request.headers_mut().remove(&forward.header);
        }
        let query_key = self.take_query_key(request);
        let preflight = request.method() == http::Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return Ok(());
        }
        let requirement = self.requirements.get(request);
        // The first external checker that finds its credential in the request decides.
        let mut found = self
            .external
            .iter()
            .find_map(|checker| Some((checker, checker.credential(request)?)));
        // A browser sends a cookie whatever page makes the request: on a cross-site request
        // that can change something, the cookie is not the user's say-so.
        let forged = found
            .as_ref()
            .and_then(|(checker, _)| checker.forged(request));
        if forged.is_some() {
            found = None;
        }
        let external = match found {
            None => None,
            Some((checker, credential)) => match checker.identify(credential).await {
                Identified::Nothing => None,
                Identified::Principal(principal) => Some(Ok(Some(principal))),
                Identified::Refused(response) => Some(Err(Rejection::External(response))),
            },
        };
        let presented = self.presented(request, query_key);
        let bearer = matches!(presented, Presented::Bearer(_));
        let outcome = match external {
            Some(outcome) => outcome,
            None => self.authenticate(presented).await,
        };
        if self.forward_authorization {
            self.forward_api_key(request);
        } else {
            self.take_credentials(request);
        }
        let principal = match outcome {
            Ok(Some(principal)) => principal,
            Ok(None) if requirement.is_public() => return Ok(()),
            Err(_) if requirement.is_public() => return Ok(()),
            Ok(None) => {
                return Err(match forged {
                    Some(why) => Rejection::CrossSite(why),
                    None => Rejection::Missing,
                });
            }
            Err(rejection) => return Err(rejection),
        };
        if let Err(forbidden) = requirement.allows(&principal) {
            return Err(Rejection::Forbidden { forbidden, bearer });
        }
        self.forward_claims(&principal, request);
        // Who the client is, for the access log.
        if let Some(scope) = crate::observe::Scope::of(request) {
            scope.set_subject(std::sync::Arc::clone(&principal.subject));
        }
        principal.attach(request);
        Ok(())
    }

    /// Takes the API key parameter out of the query; its value, if any.
    fn take_query_key<B>(&self, request: &mut Request<B>) -> Option<String> {
        let name = self.keys.as_ref()?.query.as_deref()?;
        let query = request.uri().query()?;
        let (value, rest, removed) = api_key::take_query_param(query, name);
        if removed {
            let path = request.uri().path();
            let path_and_query = match rest {
                Some(rest) => format!("{path}?{rest}"),
                None => path.to_owned(),
            };
            let mut parts = request.uri().clone().into_parts();
            if let Ok(rebuilt) = http::uri::PathAndQuery::try_from(path_and_query) {
                parts.path_and_query = Some(rebuilt);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
            }
        }
        value
    }

    fn presented<B>(&self, request: &Request<B>, query_key: Option<String>) -> Presented {
        if !self.verifiers.is_empty()
            && let Some(value) = request.headers().get(header::AUTHORIZATION)
        {
            let text = value.to_str().unwrap_or("");
            let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
            if scheme.eq_ignore_ascii_case("bearer") {
                return Presented::Bearer(rest.trim().to_owned());
            }
        }
        if let Some(keys) = &self.keys {
            if let Some(value) = keys
                .header
                .as_ref()
                .and_then(|name| request.headers().get(name))
            {
                return match value.to_str() {
                    Ok(text) => Presented::Key(text.trim().to_owned()),
                    Err(_) => Presented::Unreadable("the API key is not printable ASCII".into()),
                };
            }
            if let Some(key) = query_key {
                return Presented::Key(key);
            }
        }
        Presented::None
    }

    async fn authenticate(&self, presented: Presented) -> Result<Option<Principal>, Rejection> {
        match presented {
            Presented::None => Ok(None),
            Presented::Unreadable(message) => Err(Rejection::InvalidKey(message)),
            Presented::Key(key) => {
                let table = self.keys.as_ref().ok_or(Rejection::Missing)?;
                let found = table.find(&key).ok_or_else(|| {
                    Rejection::InvalidKey("the API key is not one this gateway accepts".into())
                })?;
                let mut claims = serde_json::Map::new();
                claims.insert(
                    "sub".to_owned(),
                    serde_json::Value::String(found.name().to_owned()),
                );
                Ok(Some(Principal {
                    subject: Arc::clone(found.name_arc()),
                    scheme: "api_key",
                    scopes: found.granted_scopes().into(),
                    claims: Arc::new(serde_json::Value::Object(claims)),
                }))
            }
            Presented::Bearer(token) => self.verify_token(&token).await.map(Some),
        }
    }

    async fn verify_token(&self, token: &str) -> Result<Principal, Rejection> {
        if token.is_empty() {
            return Err(Rejection::InvalidToken("the bearer token is empty".into()));
        }
        if token.len() > self.max_token_bytes {
            return Err(Rejection::InvalidToken(format!(
                "the bearer token is longer than {} bytes",
                self.max_token_bytes
            )));
        }
        let peek = jwt::peek(token)?;
        let verifier = match self.verifiers.as_slice() {
            [only] => only,
            several => several
                .iter()
                .find(|v| peek.iss.as_deref() == Some(v.issuer.as_str()))
                .ok_or_else(|| {
                    Rejection::InvalidToken(
                        "the token's issuer is not one this gateway trusts".into(),
                    )
                })?,
        };
        let claims = verifier.verify(token, &peek).await?;
        let subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        Ok(Principal {
            subject: subject.into(),
            scheme: "jwt",
            scopes: scopes_of(&claims).into(),
            claims: Arc::new(serde_json::Value::Object(claims)),
        })
    }

    /// Takes the credentials off a request that goes on without them, and an API key spelled
    /// as metadata (`Grpc-Metadata-X-Api-Key`), which would reach the upstream as the very key
    /// the gateway has just kept back. (`Grpc-Metadata-Authorization` never travels: the
    /// metadata rules keep `authorization` for the `Authorization` header.)
    fn take_credentials<B>(&self, request: &mut Request<B>) {
        let headers = request.headers_mut();
        if !self.verifiers.is_empty() {
            headers.remove(header::AUTHORIZATION);
        }
        if let Some(keys) = &self.keys {
            for name in keys.header.iter().chain(&keys.as_metadata) {
                headers.remove(name);
            }
        }
        for checker in &self.external {
            checker.take_credential(request);
        }
    }

    /// Sends the API key on as metadata under its header's name, for an upstream that checks
    /// keys itself ([`AuthBuilder::forward_authorization`]): the key's header is not one the
    /// default header rules forward.
    fn forward_api_key<B>(&self, request: &mut Request<B>) {
        let Some(keys) = &self.keys else { return };
        let (Some(header), Some(as_metadata)) = (&keys.header, &keys.as_metadata) else {
            return;
        };
        if let Some(value) = request.headers().get(header).cloned() {
            request.headers_mut().insert(as_metadata.clone(), value);
        }
    }

    fn forward_claims<B>(&self, principal: &Principal, request: &mut Request<B>) {
        for forward in &self.forward {
            let Some(value) = principal.claims.get(&forward.claim) else {
                continue;
            };
            match metadata_value(value, forward.binary) {
                Some(value) => {
                    request.headers_mut().insert(forward.header.clone(), value);
                }
                None => tracing::debug!(
                    claim = %forward.claim,
                    "a claim's value is not printable ASCII; forward it under a `-bin` name"
                ),
            }
        }
    }

    fn respond(&self, rejection: Rejection, registry: &Registry) -> Response {
        let (error, challenge) = match rejection {
            Rejection::Missing => (
                GatewayError::Unauthenticated(self.missing.clone()),
                self.challenges(None),
            ),
            Rejection::InvalidToken(message) | Rejection::ExpiredToken(message) => {
                let challenge = format!(
                    "Bearer{}{} error=\"invalid_token\", error_description=\"{}\"",
                    self.realm,
                    if self.realm.is_empty() { "" } else { "," },
                    quoted(&message)
                );
                (GatewayError::Unauthenticated(message), vec![challenge])
            }
            Rejection::InvalidKey(message) => (
                GatewayError::Unauthenticated(message),
                self.challenges(Some("api_key")),
            ),
            Rejection::Forbidden { forbidden, bearer } => {
                let challenge = bearer.then(|| {
                    format!(
                        "Bearer{}{} error=\"insufficient_scope\", scope=\"{}\"",
                        self.realm,
                        if self.realm.is_empty() { "" } else { "," },
                        quoted(&forbidden.scopes.join(" "))
                    )
                });
                (
                    GatewayError::PermissionDenied(forbidden.message),
                    challenge.into_iter().collect(),
                )
            }
            Rejection::Unavailable(message) => (GatewayError::AuthUnavailable(message), vec![]),
            Rejection::External(response) => return response,
            Rejection::CrossSite(why) => (
                GatewayError::PermissionDenied(format!(
                    "a cookie does not authenticate a cross-site request that can change \
                     something ({why}); send the credential in a header, or list the page's \
                     origin in `cross_site_origins`"
                )),
                vec![],
            ),
        };
        let mut response = error.into_response(registry);
        for challenge in challenge {
            if let Ok(value) = HeaderValue::try_from(challenge) {
                response
                    .headers_mut()
                    .append(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }

    /// The challenges of a 401: `Bearer` when tokens are accepted, `ApiKey` (with where keys
    /// go) when keys are.
    fn challenges(&self, only: Option<&str>) -> Vec<String> {
        let mut challenges = Vec::new();
        if !self.verifiers.is_empty() && only.is_none() {
            challenges.push(format!("Bearer{}", self.realm));
        }
        if let Some(keys) = &self.keys {
            let separator = if self.realm.is_empty() { " " } else { ", " };
            challenges.push(format!("ApiKey{}{separator}{}", self.realm, keys.places()));
        }
        challenges
    }
}

/// A claim's value as a metadata header's value; `None` when it cannot be one.
fn metadata_value(value: &serde_json::Value, binary: bool) -> Option<HeaderValue> {
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    if binary {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        return HeaderValue::try_from(encoded).ok();
    }
    if !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return None;
    }
    HeaderValue::try_from(text).ok()
}

impl<S> tower::Layer<S> for Auth {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            auth: self.clone(),
            inner,
        }
    }
}

/// [`Auth`] around a service: requests go on to it once their credentials check out.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    auth: Auth,
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<Request<ReqBody>, Response = http::Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<crate::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = crate::call::BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is the inner service's, checked by `oneshot` when the request goes on.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let auth = self.auth.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Err(response) = auth.check(&mut request).await {
                return Ok(response);
            }
            let response = tower::ServiceExt::oneshot(inner, request).await?;
            Ok(response.map(Body::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn an_expired_token_is_a_reason_of_its_own() {
        let reason = |error| Rejection::from(error).reason();
        assert_eq!(reason(TokenError::Expired("late".into())), "expired_token");
        assert_eq!(reason(TokenError::Invalid("bad".into())), "invalid_token");
        assert_eq!(
            reason(TokenError::KeysUnavailable("down".into())),
            "unavailable"
        );
    }

    #[test]
    fn scopes_come_from_scope_and_scp_strings_or_arrays() {
        assert_eq!(
            scopes_of(&claims(serde_json::json!({"scope": "read  write\tadmin"}))),
            ["read", "write", "admin"]
        );
        assert_eq!(
            scopes_of(&claims(serde_json::json!({"scp": ["read", 7, "write"]}))),
            ["read", "write"]
        );
        assert_eq!(
            scopes_of(&claims(
                serde_json::json!({"scope": "read", "scp": "read write"})
            )),
            ["read", "write"]
        );
        assert!(scopes_of(&claims(serde_json::json!({"scope": 3}))).is_empty());
    }

    fn principal(scopes: &[&str], claims: serde_json::Value) -> Principal {
        Principal {
            subject: "alice".into(),
            scheme: "jwt",
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            claims: Arc::new(claims),
        }
    }

    #[test]
    fn requirements_check_every_scope_and_claim() {
        let who = principal(
            &["read", "write"],
            serde_json::json!({"tenant": "acme", "groups": ["staff", "ops"], "level": 3}),
        );
        assert!(Requirement::authenticated().allows(&who).is_ok());
        assert!(
            Requirement::authenticated()
                .scope("read")
                .scope("write")
                .allows(&who)
                .is_ok()
        );
        let refused = Requirement::authenticated()
            .scope("read")
            .scope("admin")
            .allows(&who)
            .expect_err("admin is missing");
        assert!(refused.message.contains("`admin`"), "{}", refused.message);
        assert!(!refused.message.contains("`read`"), "{}", refused.message);
        assert_eq!(refused.scopes, ["read", "admin"]);
        assert!(
            Requirement::authenticated()
                .claim("tenant", "acme")
                .claim("groups", "ops")
                .claim("level", 3)
                .allows(&who)
                .is_ok()
        );
        assert!(
            Requirement::authenticated()
                .claim("tenant", "other")
                .allows(&who)
                .is_err()
        );
        assert!(
            Requirement::authenticated()
                .claim("missing", true)
                .allows(&who)
                .is_err()
        );
        assert!(!Requirement::public().scope("x").is_public());
    }

    #[test]
    fn claims_become_metadata_values() {
        let value = |json: serde_json::Value, binary| {
            metadata_value(&json, binary).map(|v| v.to_str().expect("ASCII").to_owned())
        };
        assert_eq!(
            value(serde_json::json!("alice"), false).as_deref(),
            Some("alice")
        );
        assert_eq!(value(serde_json::json!(42), false).as_deref(), Some("42"));
        assert_eq!(
            value(serde_json::json!(["a", "b", 1]), false).as_deref(),
            Some("a,b,1")
        );
        assert_eq!(
            value(serde_json::json!({"k": "v"}), false).as_deref(),
            Some(r#"{"k":"v"}"#)
        );
        assert_eq!(value(serde_json::json!("zoë"), false), None);
        assert_eq!(
            value(serde_json::json!("zoë"), true).as_deref(),
            Some("em/Dqw==")
        );
        assert_eq!(value(serde_json::json!("a\nb"), false), None);
    }

    #[test]
    fn forwarded_names_must_be_metadata_keys() {
        for name in ["X-User", "grpc-status", "", "a b", "ü"] {
            let error = Auth::builder()
                .api_keys(ApiKeys::new())
                .forward_claim("sub", name)
                .build()
                .expect_err(name);
            assert_eq!(
                error,
                AuthError::BadMetadataName {
                    name: name.to_owned()
                }
            );
        }
        assert!(
            Auth::builder()
                .api_keys(ApiKeys::new())
                .forward_claim("sub", "x-user.id_2-bin")
                .build()
                .is_ok()
        );
        assert_eq!(
            Auth::builder().build().err(),
            Some(AuthError::NoCredentials)
        );
    }

    async fn answer(auth: &Auth, request: Request<()>) -> Result<Request<()>, Response> {
        let mut request = request;
        auth.check(&mut request).await.map(|()| request)
    }

    #[tokio::test]
    async fn credentials_spelled_as_metadata_stay_back_and_forwarded_keys_travel_as_metadata() {
        let keys = || {
            ApiKeys::new().key(ApiKey::from_sha256_hex("ci", &ApiKey::hash("k1")).expect("hash"))
        };
        let request = || {
            Request::get("/v1/x")
                .header("x-api-key", "k1")
                .header("grpc-metadata-x-api-key", "smuggled")
                .body(())
                .expect("request")
        };

        // Kept at the gateway: the key, and the key as metadata.
        let kept = Auth::builder().api_keys(keys()).build().expect("valid");
        let passed = answer(&kept, request()).await.expect("accepted");
        assert!(passed.headers().get("x-api-key").is_none());
        assert!(passed.headers().get("grpc-metadata-x-api-key").is_none());

        // Forwarded: the checked key goes on under its header's name, in place of the client's.
        let forwarded = Auth::builder()
            .api_keys(keys())
            .forward_authorization(true)
            .build()
            .expect("valid");
        let passed = answer(&forwarded, request()).await.expect("accepted");
        assert_eq!(passed.headers()["grpc-metadata-x-api-key"], "k1");
    }

    #[tokio::test]
    async fn key_requests_are_checked_and_cleaned() {
        let auth = Auth::builder()
            .api_keys(
                ApiKeys::new().query("key").key(
                    ApiKey::from_sha256_hex("ci", &ApiKey::hash("k1"))
                        .expect("hash")
                        .scopes(["deploy"]),
                ),
            )
            .requirements(
                PerRoute::new(Requirement::authenticated())
                    .rule("/open/**".parse().expect("selector"), Requirement::public())
                    .rule(
                        "/admin/**".parse().expect("selector"),
                        Requirement::authenticated().scope("admin"),
                    ),
            )
            .forward_claim("sub", "x-client")
            .realm("test")
            .build()
            .expect("valid");

        let request = Request::get("/v1/x?a=1&key=k1")
            .header("grpc-metadata-x-client", "forged")
            .body(())
            .expect("request");
        let passed = answer(&auth, request).await.expect("accepted");
        assert_eq!(passed.uri(), "/v1/x?a=1");
        assert_eq!(passed.headers()["grpc-metadata-x-client"], "ci");
        let principal = Principal::of(&passed).expect("a principal");
        assert_eq!(&*principal.subject, "ci");
        assert_eq!(principal.scheme, "api_key");

        let missing = answer(&auth, Request::get("/v1/x").body(()).expect("request"))
            .await
            .expect_err("no key");
        assert_eq!(missing.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "ApiKey realm=\"test\", header=\"x-api-key\", query=\"key\""
        );

        let wrong = Request::get("/v1/x")
            .header("x-api-key", "k2")
            .body(())
            .expect("request");
        let wrong = answer(&auth, wrong).await.expect_err("wrong key");
        assert_eq!(wrong.status(), http::StatusCode::UNAUTHORIZED);

        // A public route: the forged header goes, no principal comes.
        let open = Request::get("/open/x")
            .header("grpc-metadata-x-client", "forged")
            .header("x-api-key", "wrong")
            .body(())
            .expect("request");
        let open = answer(&auth, open).await.expect("public");
        assert!(Principal::of(&open).is_none());
        assert!(open.headers().get("grpc-metadata-x-client").is_none());
        assert!(open.headers().get("x-api-key").is_none());

        let admin = Request::get("/admin/x")
            .header("x-api-key", "k1")
            .body(())
            .expect("request");
        let admin = answer(&auth, admin).await.expect_err("no admin scope");
        assert_eq!(admin.status(), http::StatusCode::FORBIDDEN);

        // A preflight goes on unchecked.
        let preflight = Request::options("/v1/x")
            .header("access-control-request-method", "POST")
            .body(())
            .expect("request");
        assert!(answer(&auth, preflight).await.is_ok());
    }
}

//! Cross-origin resource sharing: which web pages may call the gateway from a browser, per
//! route, as a layer for [`crate::Gateway::route_layer`].
//!
//! What the layer does for a route whose policy is set:
//! - a preflight (`OPTIONS` with `Access-Control-Request-Method`, routed by the gateway to the
//!   binding it asks about) is answered here and never reaches the upstream: `204 No Content`
//!   with the `Access-Control-Allow-*` headers when the origin, the method and every requested
//!   header are allowed; otherwise `403 Forbidden` with a google.rpc.Status body
//!   (`PERMISSION_DENIED`) saying what is not allowed, and no `Access-Control-*` header, so the
//!   browser fails the call it was about to make;
//! - every other response of the route, the gateway's errors included (a 401 or 429 of an inner
//!   layer, the upstream's 404), carries `Access-Control-Allow-Origin` (with
//!   `Access-Control-Allow-Credentials` and `Access-Control-Expose-Headers` when the policy says
//!   so) when its request came from an allowed origin, and `Vary: Origin` in any case;
//! - a WebSocket upgrade whose `Origin` is not allowed is refused with `403` and a Status body
//!   (browsers always send `Origin` on a WebSocket handshake; a client without one is let
//!   through).
//!
//! CORS is not access control: a request from an origin that is not allowed (a plain `GET`
//! needs no preflight) still reaches the upstream; its response carries no
//! `Access-Control-Allow-Origin`, so the browser keeps it from the page.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use tower::ServiceExt as _;

use crate::call::{BoxFuture, RouteInfo};
use crate::error::GatewayError;
use crate::json::Registry;
use crate::select::PerRoute;

/// A CORS policy: the origins allowed, what their preflights may ask for, and what their pages
/// may read. Built with [`Cors::builder`].
///
/// ```
/// use std::time::Duration;
///
/// let cors = protogate::Cors::builder()
///     .allow_origin("https://app.example.com")
///     .allow_origin("https://*.example.com")
///     .allow_headers(["content-type", "x-request-id"])
///     .expose_headers(["x-request-id"])
///     .allow_credentials(true)
///     .max_age(Duration::from_secs(600))
///     .build()?;
/// assert!(cors.allows_origin("https://docs.example.com"));
/// assert!(!cors.allows_origin("https://example.org"));
/// # Ok::<(), protogate::CorsError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Cors {
    origins: Origins,
    /// `None`: the method of the binding the preflight asks about.
    methods: Option<Vec<Method>>,
    headers: AllowedHeaders,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

#[derive(Clone, Debug)]
enum Origins {
    Any,
    Listed(Vec<OriginRule>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OriginRule {
    /// `scheme://host[:port]`, lower case.
    Exact(String),
    /// `scheme://*.domain[:port]`: any host under `domain` (one label or more before it).
    Subdomains {
        scheme: String,
        /// `.domain`, with its leading dot.
        suffix: String,
        port: Option<String>,
    },
}

#[derive(Clone, Debug)]
enum AllowedHeaders {
    /// Whatever the preflight asks for.
    Any,
    Listed(Vec<HeaderName>),
}

/// What [`CorsBuilder::build`] refuses: the setting at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct CorsError {
    setting: &'static str,
    problem: String,
}

impl CorsError {
    fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        CorsError {
            setting,
            problem: problem.into(),
        }
    }

    /// The setting at fault, as the builder method's name without `allow_`: `origins`,
    /// `methods`, `headers`, `expose_headers` or `credentials`.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// Builds a [`Cors`] policy; nothing is allowed until origins are given.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct CorsBuilder {
    origins: Vec<String>,
    methods: Option<Vec<String>>,
    headers: Option<Vec<String>>,
    expose: Vec<String>,
    credentials: bool,
    max_age: Option<Duration>,
}

impl CorsBuilder {
    /// Allows pages from `origin`: exactly (`https://app.example.com`,
    /// `http://127.0.0.1:8080`), every host under a domain (`https://*.example.com`: not the
    /// domain itself, and only that scheme and port), or `*` for any origin (which cannot go
    /// with credentials: browsers refuse it).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// [`CorsBuilder::allow_origin`] for each of `origins`.
    pub fn allow_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins.extend(origins.into_iter().map(Into::into));
        self
    }

    /// The methods a preflight may ask for (`GET`, `POST`…). By default, the method of the
    /// binding the preflight is routed to: any method the path serves.
    pub fn allow_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// The request headers a preflight may ask for, by name, or `*` for any (answered with the
    /// names asked for, which works with credentials too). `content-type` alone by default:
    /// what a JSON request needs.
    pub fn allow_headers<I, S>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.headers = Some(headers.into_iter().map(Into::into).collect());
        self
    }

    /// Response headers the page may read besides the CORS-safelisted ones (none by default).
    pub fn expose_headers<I, S>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expose.extend(headers.into_iter().map(Into::into));
        self
    }

    /// Lets pages send cookies and HTTP authentication and read the answers
    /// (`Access-Control-Allow-Credentials: true`); off by default.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// How long a browser may reuse a preflight's answer (`Access-Control-Max-Age`, whole
    /// seconds); the browser's own default (5 s in Chromium) if not given.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The policy, or the first setting that cannot work.
    pub fn build(self) -> Result<Cors, CorsError> {
        let origins = if self.origins.iter().any(|origin| origin.trim() == "*") {
            if self.origins.len() > 1 {
                return Err(CorsError::new(
                    "origins",
                    "`*` allows every origin: list no other",
                ));
            }
            if self.credentials {
                return Err(CorsError::new(
                    "credentials",
                    "browsers refuse credentials with any origin (`*`): list the origins",
                ));
            }
            Origins::Any
        } else {
            let rules = self
                .origins
                .iter()
                .map(|origin| {
                    OriginRule::parse(origin).map_err(|problem| {
                        CorsError::new("origins", format!("`{origin}`: {problem}"))
                    })
                })
                .collect::<Result<_, _>>()?;
            Origins::Listed(rules)
        };
        let methods = match self.methods {
            None => None,
            Some(methods) => Some(
                methods
                    .iter()
                    .map(|method| {
                        Method::from_bytes(method.trim().as_bytes()).map_err(|_| {
                            CorsError::new("methods", format!("`{method}` is not an HTTP method"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let headers = match self.headers {
            None => AllowedHeaders::Listed(vec![header::CONTENT_TYPE]),
            Some(names) if names.iter().any(|name| name.trim() == "*") => AllowedHeaders::Any,
            Some(names) => AllowedHeaders::Listed(header_names("headers", &names)?),
        };
        let expose = if self.expose.is_empty() {
            None
        } else {
            let names = header_names("expose_headers", &self.expose)?;
            Some(joined(names.iter().map(HeaderName::as_str)))
        };
        Ok(Cors {
            origins,
            methods,
            headers,
            expose,
            credentials: self.credentials,
            max_age: self.max_age.map(|age| HeaderValue::from(age.as_secs())),
        })
    }
}

fn header_names(setting: &'static str, names: &[String]) -> Result<Vec<HeaderName>, CorsError> {
    names
        .iter()
        .map(|name| {
            HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| CorsError::new(setting, format!("`{name}` is not a header name")))
        })
        .collect()
}

/// `a, b, c` as a header value; every part is a token, so it is a valid value.
fn joined<'a>(parts: impl Iterator<Item = &'a str>) -> HeaderValue {
    let text = parts.collect::<Vec<_>>().join(", ");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl OriginRule {
    fn parse(text: &str) -> Result<OriginRule, &'static str> {
        let text = text.trim().to_ascii_lowercase();
        let Some((scheme, authority)) = text.split_once("://") else {
            return Err("an origin is `scheme://host[:port]`");
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err("the scheme is not valid");
        }
        if authority.contains(['/', '?', '#', '@']) {
            return Err("an origin has no path, query or user: `scheme://host[:port]`");
        }
        let (host, port) = split_port(authority).ok_or("the port is not a number")?;
        if host.is_empty() {
            return Err("the host is empty");
        }
        match host.strip_prefix("*.") {
            Some(domain) => {
                if domain.is_empty() || domain.contains('*') || domain.starts_with('.') {
                    return Err("a pattern is `scheme://*.domain[:port]`, with one `*` first");
                }
                Ok(OriginRule::Subdomains {
                    scheme: scheme.to_owned(),
                    suffix: format!(".{domain}"),
                    port: port.map(str::to_owned),
                })
            }
            None if host.contains('*') => {
                Err("`*` may only stand for the first labels of the host: `https://*.example.com`")
            }
            None => Ok(OriginRule::Exact(text.clone())),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            OriginRule::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let origin = origin.to_ascii_lowercase();
                let Some((their_scheme, authority)) = origin.split_once("://") else {
                    return false;
                };
                let Some((host, their_port)) = split_port(authority) else {
                    return false;
                };
                their_scheme == scheme
                    && their_port == port.as_deref()
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && !host.contains(['/', '*', '@'])
            }
        }
    }
}

/// `host[:port]` (a bracketed IPv6 host included) as the host and the port; `None` when what
/// follows the last `:` is not a number.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |end| end + 1)
    } else {
        authority.rfind(':').unwrap_or(authority.len())
    };
    let (host, rest) = authority.split_at(host_end);
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Some((host, None)),
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some((host, Some(port)))
        }
        _ => None,
    }
}

impl Cors {
    /// A policy to build; see [`CorsBuilder`].
    pub fn builder() -> CorsBuilder {
        CorsBuilder::default()
    }

    /// Whether pages from `origin` (an `Origin` header's value) are allowed.
    pub fn allows_origin(&self, origin: &str) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::Listed(rules) => rules.iter().any(|rule| rule.matches(origin)),
        }
    }

    fn allowed_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        let text = origin.to_str().ok()?;
        if !self.allows_origin(text) {
            return None;
        }
        Some(match self.origins {
            Origins::Any if !self.credentials => HeaderValue::from_static("*"),
            _ => origin.clone(),
        })
    }

    /// The answer to a preflight routed to `route` (if the gateway routed it).
    fn preflight<B>(&self, request: &Request<B>) -> Response {
        let headers = request.headers();
        let origin = headers.get(header::ORIGIN);
        let Some(allow_origin) = self.allowed_origin(origin) else {
            let problem = match origin {
                None => "a preflight without an Origin header".to_owned(),
                Some(origin) => format!(
                    "origin `{}` is not allowed",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            };
            return refused(problem);
        };
        let asked = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|value| Method::from_bytes(value.as_bytes()).ok());
        let Some(asked) = asked else {
            return refused("the preflight names no valid method".to_owned());
        };
        let method_allowed = match &self.methods {
            Some(methods) => methods.contains(&asked),
            None => RouteInfo::of(request).is_none_or(|route| route.method == asked.as_str()),
        };
        if !method_allowed {
            return refused(format!("method {asked} is not allowed"));
        }
        let asked_headers: Vec<String> = headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        let allow_headers = match &self.headers {
            AllowedHeaders::Any => {
                if asked_headers
                    .iter()
                    .any(|name| HeaderName::from_bytes(name.as_bytes()).is_err())
                {
                    return refused("the preflight asks for an invalid header name".to_owned());
                }
                joined(asked_headers.iter().map(String::as_str))
            }
            AllowedHeaders::Listed(allowed) => {
                if let Some(name) = asked_headers.iter().find(|name| {
                    !allowed
                        .iter()
                        .any(|allowed| allowed.as_str() == name.as_str())
                }) {
                    return refused(format!("request header `{name}` is not allowed"));
                }
                joined(allowed.iter().map(HeaderName::as_str))
            }
        };
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let allow_methods = match &self.methods {
            Some(methods) => joined(methods.iter().map(Method::as_str)),
            None => joined(std::iter::once(asked.as_str())),
        };
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow_methods);
        if !allow_headers.is_empty() {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        }
        if let Some(max_age) = &self.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        vary_on_preflight(out);
        response
    }

    /// Adds the CORS headers of a response to a request from `origin`.
    fn decorate(&self, response: &mut Response, origin: Option<&HeaderValue>) {
        let headers = response.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        let Some(allow_origin) = self.allowed_origin(origin) else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

fn vary_on_preflight(headers: &mut http::HeaderMap) {
    headers.append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
}

/// A refused preflight or upgrade: 403, a Status body saying why, no `Access-Control-*` header.
fn refused(problem: String) -> Response {
    let mut response = GatewayError::CorsRefused(problem).into_response(&Registry::EMPTY);
    vary_on_preflight(response.headers_mut());
    response
}

/// The CORS policy of every route, as a layer for [`crate::Gateway::route_layer`]: one policy
/// for all (`CorsLayer::new(cors)`), or one per route, `None` where a route has none.
///
/// ```
/// use protogate::{Cors, CorsLayer, PerRoute, RouteSelector};
///
/// let public = Cors::builder().allow_origin("*").build()?;
/// let app = Cors::builder().allow_origin("https://app.example.com").build()?;
/// let layer = CorsLayer::per_route(
///     PerRoute::new(Some(app))
///         .rule("GET /v1/public/**".parse::<RouteSelector>()?, Some(public))
///         .rule("/v1/internal/**".parse::<RouteSelector>()?, None),
/// );
/// let gateway = protogate::Gateway::new().route_layer(layer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CorsLayer {
    policy: Arc<PerRoute<Option<Cors>>>,
}

impl CorsLayer {
    /// `cors` for every route.
    pub fn new(cors: Cors) -> Self {
        CorsLayer::per_route(PerRoute::new(Some(cors)))
    }

    /// A policy per route; a route whose value is `None` is served as if there were no layer.
    pub fn per_route(policy: PerRoute<Option<Cors>>) -> Self {
        CorsLayer {
            policy: Arc::new(policy),
        }
    }
}

impl fmt::Debug for CorsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsLayer").finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for CorsLayer {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> CorsService<S> {
        CorsService {
            policy: Arc::clone(&self.policy),
            inner,
        }
    }
}

/// The service of a [`CorsLayer`].
#[derive(Clone)]
pub struct CorsService<S> {
    policy: Arc<PerRoute<Option<Cors>>>,
    inner: S,
}

impl<S> fmt::Debug for CorsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsService").finish_non_exhaustive()
    }
}

impl<S> tower::Service<Request<Body>> for CorsService<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let inner = self.inner.clone();
        Box::pin(async move {
            let Some(cors) = policy.get(&request) else {
                return inner.oneshot(request).await;
            };
            if is_preflight(&request) {
                return Ok(cors.preflight(&request));
            }
            let origin = request.headers().get(header::ORIGIN).cloned();
            if crate::metadata::is_upgrade(request.headers()) {
                if let Some(origin) = &origin
                    && cors.allowed_origin(Some(origin)).is_none()
                {
                    return Ok(refused(format!(
                        "WebSocket from origin `{}` is not allowed",
                        String::from_utf8_lossy(origin.as_bytes())
                    )));
                }
                return inner.oneshot(request).await;
            }
            let mut response = inner.oneshot(request).await?;
            cors.decorate(&mut response, origin.as_ref());
            Ok(response)
        })
    }
}

fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> Cors {
        Cors::builder()
            .allow_origins(origins.iter().copied())
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn origins_match_exactly_or_under_a_domain() {
        let cors = policy(&["https://app.example.com", "https://*.example.org:8443"]);
        assert!(cors.allows_origin("https://app.example.com"));
        assert!(cors.allows_origin("HTTPS://APP.EXAMPLE.COM"));
        assert!(!cors.allows_origin("http://app.example.com"));
        assert!(!cors.allows_origin("https://app.example.com:444"));
        assert!(cors.allows_origin("https://a.example.org:8443"));
        assert!(cors.allows_origin("https://a.b.example.org:8443"));
        assert!(!cors.allows_origin("https://example.org:8443"));
        assert!(!cors.allows_origin("https://a.example.org"));
        assert!(!cors.allows_origin("https://aexample.org:8443"));
        assert!(!cors.allows_origin("null"));
        let ipv6 = policy(&["http://[::1]:8080"]);
        assert!(ipv6.allows_origin("http://[::1]:8080"));
        assert!(!ipv6.allows_origin("http://[::1]:8081"));
    }

    #[test]
    fn mistakes_name_the_setting() {
        let error = |builder: CorsBuilder| builder.build().expect_err("refused");
        let e = error(Cors::builder().allow_origin("*").allow_credentials(true));
        assert_eq!(e.setting(), "credentials");
        for bad in [
            "example.com",
            "https://a.example.com/path",
            "https://a.*.com",
            "https://",
        ] {
            let e = error(Cors::builder().allow_origin(bad));
            assert_eq!(e.setting(), "origins", "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        let e = error(
            Cors::builder()
                .allow_origin("*")
                .allow_origin("https://a.test"),
        );
        assert_eq!(e.setting(), "origins");
        let e = error(Cors::builder().allow_methods(["G T"]));
        assert_eq!(e.setting(), "methods");
        let e = error(Cors::builder().allow_headers(["x y"]));
        assert_eq!(e.setting(), "headers");
        let e = error(Cors::builder().expose_headers(["x:y"]));
        assert_eq!(e.setting(), "expose_headers");
    }

    fn preflight(origin: &str, method: &str, headers: &str) -> Request<()> {
        Request::options("/v1/x")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
            .body(())
            .expect("request")
    }

    #[test]
    fn any_origin_without_credentials_is_a_star_and_any_header_echoes() {
        let cors = Cors::builder()
            .allow_origin("*")
            .allow_headers(["*"])
            .build()
            .expect("valid");
        let response = cors.preflight(&preflight("https://x.test", "PUT", "X-A, x-b"));
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let headers = response.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "PUT");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS], "x-a, x-b");
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }
}

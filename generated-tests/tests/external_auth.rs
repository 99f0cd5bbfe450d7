//! Credentials checked by a team's own auth service (`protogate.api.ExternalAuth`), over real
//! sockets: one call per credential however many requests carry it, refusals cached, a bounded
//! number of calls in flight, and refusal (or, by setting, passage) when the service is down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt as _;
use generated_tests::pb::protogate::api::external_auth_server::{
    ExternalAuth as Check, ExternalAuthServer,
};
use generated_tests::pb::protogate::api::{CheckRequest, CheckResponse};
use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::{gateway_to, start_backend};
use protogate::{CredentialSource, ExternalAuth, Principal, RouteService, Upstream};
use tower::ServiceExt as _;

/// An auth service: credentials starting with `ok-` belong to the subject after the prefix;
/// it counts its calls, the most in flight at once, and the credentials it saw.
#[derive(Clone, Default)]
struct AuthService {
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    seen: Arc<Mutex<HashSet<String>>>,
    delay: Duration,
}

#[tonic::async_trait]
impl Check for AuthService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let request = request.into_inner();
        self.seen
            .lock()
            .expect("lock")
            .insert(format!("{} {}", request.source, request.credential));
        let answer = match request.credential.strip_prefix("ok-") {
            Some(subject) => CheckResponse {
                allowed: true,
                subject: subject.to_owned(),
                scopes: vec!["read".to_owned()],
                ..CheckResponse::default()
            },
            None => CheckResponse::default(),
        };
        Ok(tonic::Response::new(answer))
    }
}

async fn serve_auth(service: AuthService) -> std::net::SocketAddr {
    let routes = tonic::service::Routes::new(ExternalAuthServer::new(service));
    generated_tests::serve_routes(routes)
        .await
        .expect("auth service")
}

/// A route layer that answers with the principal's subject in `x-subject`.
fn subject_header() -> impl tower::Layer<RouteService, Service = RouteService> + Clone + Send + Sync
{
    tower::layer::layer_fn(|inner: RouteService| {
        RouteService::new(tower::service_fn(move |request: http::Request<Body>| {
            let subject = Principal::of(&request).map(|p| p.subject.to_string());
            let inner = inner.clone();
            async move {
                let mut response = inner.oneshot(request).await?;
                if let Some(subject) = subject.and_then(|s| http::HeaderValue::from_str(&s).ok()) {
                    response.headers_mut().insert("x-subject", subject);
                }
                Ok(response)
            }
        }))
    })
}

/// What a request carries.
enum Credential<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

/// `GET {base}{path}` with `credential`, on a client of the test's own (a new one for each
/// test: its connections live on the test's runtime).
async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    credential: Credential<'_>,
) -> reqwest::Response {
    let request = client.get(format!("{base}{path}"));
    let request = match credential {
        Credential::None => request,
        Credential::Bearer(token) => request.bearer_auth(token),
        Credential::Cookie(cookies) => request.header("cookie", cookies),
    };
    request.send().await.expect("answered")
}

async fn gateway(checker: ExternalAuth) -> String {
    let backend = start_backend().await.expect("backend");
    gateway_to(backend, binding_service_gateway::remote, move |gateway| {
        gateway.route_layer(checker).route_layer(subject_header())
    })
    .await
    .expect("gateway")
}

fn checker_for(auth: std::net::SocketAddr) -> protogate::ExternalAuthBuilder {
    ExternalAuth::builder(Upstream::lazy(&format!("http://{auth}")).expect("upstream"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_with_a_hundred_credentials_make_a_hundred_checks() {
    let client = reqwest::Client::new();
    let service = AuthService::default();
    let auth = serve_auth(service.clone()).await;
    let checker = checker_for(auth).build();
    let base = gateway(checker.clone()).await;

    let answers = futures_util::stream::iter(0..10_000)
        .map(|n| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let subject = format!("user{}", n % 100);
                let response = get(
                    &client,
                    &base,
                    "/v1/echo/x",
                    Credential::Bearer(&format!("ok-{subject}")),
                )
                .await;
                let seen = response
                    .headers()
                    .get("x-subject")
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                (response.status().as_u16(), seen == Some(subject))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    assert!(answers.iter().all(|(status, _)| *status == 200));
    assert!(
        answers.iter().all(|(_, subject)| *subject),
        "each request kept its own subject"
    );
    assert_eq!(
        service.calls.load(Ordering::SeqCst),
        100,
        "one check per credential"
    );
    assert_eq!(checker.calls(), 100);
    let seen = service.seen.lock().expect("lock");
    assert!(seen.contains("header:authorization ok-user7"), "{seen:?}");
}

#[tokio::test]
async fn a_refused_credential_gets_401_and_is_remembered() {
    let service = AuthService::default();
    let auth = serve_auth(service.clone()).await;
    let base = gateway(checker_for(auth).build()).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = get(&client, &base, "/v1/echo/x", Credential::Bearer("forged")).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["code"], 16);
        assert!(
            !body.to_string().contains("forged"),
            "the credential is not echoed"
        );
    }
    assert_eq!(service.calls.load(Ordering::SeqCst), 1);

    // No credential: let through without a principal, for the requirements to decide.
    let response = get(&client, &base, "/v1/echo/x", Credential::None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-subject").is_none());
}

#[tokio::test]
async fn session_cookies_are_credentials_too() {
    let client = reqwest::Client::new();
    let service = AuthService::default();
    let auth = serve_auth(service.clone()).await;
    let checker = checker_for(auth)
        .source(CredentialSource::Cookie("session".to_owned()))
        .build();
    let base = gateway(checker).await;
    let response = get(
        &client,
        &base,
        "/v1/echo/x",
        Credential::Cookie("theme=dark; session=ok-carol"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-subject"], "carol");
    assert!(
        service
            .seen
            .lock()
            .expect("lock")
            .contains("cookie:session ok-carol")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_in_flight_are_bounded() {
    let client = reqwest::Client::new();
    let service = AuthService {
        delay: Duration::from_millis(100),
        ..AuthService::default()
    };
    let auth = serve_auth(service.clone()).await;
    let base = gateway(checker_for(auth).max_concurrent(2).build()).await;
    let statuses = futures_util::future::join_all((0..10).map(|n| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            get(
                &client,
                &base,
                "/v1/echo/x",
                Credential::Bearer(&format!("ok-{n}")),
            )
            .await
            .status()
            .as_u16()
        }
    }))
    .await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(service.calls.load(Ordering::SeqCst), 10);
    assert!(service.most_in_flight.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn an_auth_service_that_is_down_fails_closed_unless_told_otherwise() {
    let client = reqwest::Client::new();
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };

    let base = gateway(
        checker_for(closed)
            .timeout(Duration::from_millis(500))
            .build(),
    )
    .await;
    let response = get(&client, &base, "/v1/echo/x", Credential::Bearer("ok-dave")).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 14);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("auth service")),
        "{body}"
    );

    let base = gateway(
        checker_for(closed)
            .timeout(Duration::from_millis(500))
            .fail_open(true)
            .build(),
    )
    .await;
    let response = get(&client, &base, "/v1/echo/x", Credential::Bearer("ok-dave")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-subject").is_none());
}

#[tokio::test]
async fn inside_auth_the_external_check_is_one_more_source_of_credentials() {
    let client = reqwest::Client::new();
    use protogate::{Auth, PerRoute, Requirement, RouteSelector};

    let service = AuthService::default();
    let auth_service = serve_auth(service.clone()).await;
    let sessions = checker_for(auth_service)
        .source(CredentialSource::Cookie("session".to_owned()))
        .build();
    let auth = Auth::builder()
        .external(sessions)
        .requirements(
            PerRoute::new(Requirement::authenticated().scope("read")).rule(
                "GET /v1/alt/*".parse::<RouteSelector>().expect("selector"),
                Requirement::public(),
            ),
        )
        .forward_claim("sub", "x-user")
        .build()
        .expect("auth");
    let backend = start_backend().await.expect("backend");
    let base = gateway_to(backend, binding_service_gateway::remote, move |gateway| {
        gateway.route_layer(auth)
    })
    .await
    .expect("gateway");

    let response = get(&client, &base, "/v1/metadata", Credential::None).await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("`session` cookie")),
        "{body}"
    );

    let response = get(
        &client,
        &base,
        "/v1/metadata",
        Credential::Cookie("theme=dark; session=ok-erin"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["received"]["x-user"], "erin", "{body}");
    // The session stays at the gateway; other cookies go on.
    assert!(!body.to_string().contains("ok-erin"), "{body}");
    assert_eq!(body["received"]["grpcgateway-cookie"], "theme=dark");

    let response = get(
        &client,
        &base,
        "/v1/metadata",
        Credential::Cookie("session=stolen"),
    )
    .await;
    assert_eq!(response.status(), 401);

    // A public route lets a refused credential through, unauthenticated.
    let response = get(
        &client,
        &base,
        "/v1/alt/x",
        Credential::Cookie("session=stolen"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        service.calls.load(Ordering::SeqCst),
        2,
        "each credential checked once"
    );
}

/// `POST {base}/v1/echo` with the session cookie of `ok-erin` and `headers`.
fn cookie_post(
    client: &reqwest::Client,
    base: &str,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(format!("{base}/v1/echo"))
        .header("cookie", "session=ok-erin")
        .header("content-type", "application/json")
        .body("{}");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

/// [`cookie_post`]'s status and body.
async fn post_with_cookie(
    client: &reqwest::Client,
    base: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let response = cookie_post(client, base, headers)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

#[tokio::test]
async fn a_cookie_does_not_authenticate_a_cross_site_request_that_can_change_something() {
    use protogate::Auth;
    let client = reqwest::Client::new();
    let service = AuthService::default();
    let sessions = checker_for(serve_auth(service.clone()).await)
        .source(CredentialSource::Cookie("session".to_owned()))
        .cross_site_origins(["https://app.example.com"])
        .build();
    let auth = Auth::builder().external(sessions).build().expect("auth");
    let backend = start_backend().await.expect("backend");
    let base = gateway_to(backend, binding_service_gateway::remote, move |gateway| {
        gateway.route_layer(auth)
    })
    .await
    .expect("gateway");
    let own_origin = base.clone();

    // Not from a browser, or from a page of this site: the cookie is the user's.
    for headers in [
        &[][..],
        &[("sec-fetch-site", "same-origin")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "none")],
        &[("origin", own_origin.as_str())],
    ] {
        assert_eq!(
            post_with_cookie(&client, &base, headers).await.0,
            200,
            "{headers:?}"
        );
    }
    // From a page of another site, as the browser says, or as its origin says when it does
    // not: refused, and the session is never looked up.
    let calls = service.calls.load(Ordering::SeqCst);
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
    ] {
        let (status, body) = post_with_cookie(&client, &base, headers).await;
        assert_eq!(status, 403, "{headers:?}");
        assert_eq!(body["code"], 7, "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("cross-site")),
            "{body}"
        );
    }
    assert_eq!(service.calls.load(Ordering::SeqCst), calls);
    // A listed origin may.
    let listed = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://app.example.com"),
    ];
    assert_eq!(post_with_cookie(&client, &base, &listed).await.0, 200);
    // Reading is not changing: a cross-site GET keeps its cookie.
    let response = client
        .get(format!("{base}/v1/echo/x"))
        .header("cookie", "session=ok-erin")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn as_a_layer_of_its_own_the_checker_leaves_a_cross_site_change_without_a_principal() {
    let client = reqwest::Client::new();
    let checker = checker_for(serve_auth(AuthService::default()).await)
        .source(CredentialSource::Cookie("session".to_owned()))
        .build();
    let base = gateway(checker).await;
    let subject = |headers: &'static [(&'static str, &'static str)]| {
        let request = cookie_post(&client, &base, headers);
        async move {
            let response = request.send().await.expect("answered");
            assert_eq!(response.status(), 200);
            response
                .headers()
                .get("x-subject")
                .map(|value| value.to_str().expect("text").to_owned())
        }
    };
    assert_eq!(subject(&[]).await.as_deref(), Some("erin"));
    assert_eq!(subject(&[("sec-fetch-site", "cross-site")]).await, None);
}

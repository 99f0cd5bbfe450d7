//! The auth layer (`protogate::Auth`) over real sockets: a gateway on 127.0.0.1 in front of the
//! tonic backend, JWKS documents served by a small axum server that counts its fetches, and
//! keys made here (RSA with the `rsa` crate, P-256 and Ed25519 with rcgen).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use base64::Engine as _;
use futures_util::StreamExt as _;
use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::{gateway_to, start_backend};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use protogate::{
    ApiKey, ApiKeys, Auth, AuthBuilder, JwtAlgorithm, JwtProvider, PerRoute, Principal,
    Requirement, RouteSelector, RouteService, UpstreamTls,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "library-api";
/// The longest any one step of these tests may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// A signing key, its `kid`, and its public half as a JWK.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
    /// The public key's DER (RSA keys only), for the algorithm-confusion attack.
    public_der: Vec<u8>,
}

impl Signer {
    fn rsa(kid: &str) -> Signer {
        use rsa::pkcs1::{EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _};
        let private = <rsa::PrivateKey as rsa::Generate>::generate();
        let der = private.to_pkcs1_der().expect("PKCS#1");
        let public_der = private
            .to_public_key()
            .to_pkcs1_der()
            .expect("PKCS#1")
            .as_bytes()
            .to_vec();
        Signer::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(der.as_bytes()),
            public_der,
        )
    }

    fn p256(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256");
        Signer::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(&pair.serialize_der()),
            Vec::new(),
        )
    }

    fn ed25519(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519");
        // rcgen (ring) writes PKCS#8 v2, with the public key; the RustCrypto signer reads v1,
        // the 32-byte seed alone behind a fixed prefix.
        let v2 = pair.serialize_der();
        let (seed, public) = (&v2[16..48], pair.public_key_raw());
        let mut v1 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v1.extend_from_slice(seed);
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        });
        Signer {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(&v1),
            jwk,
            public_der: Vec::new(),
        }
    }

    fn new(kid: &str, alg: Algorithm, key: EncodingKey, public_der: Vec<u8>) -> Signer {
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("a JWK");
        jwk.common.key_id = Some(kid.to_owned());
        Signer {
            kid: kid.to_owned(),
            alg,
            key,
            jwk: serde_json::to_value(jwk).expect("JSON"),
            public_der,
        }
    }

    /// A token of `claims` under this key's `kid`.
    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// A token of `claims` signed with this key under the key id `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signed")
    }
}

fn jwks(signers: &[&Signer]) -> Value {
    json!({ "keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>() })
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims that pass: the issuer, the audience, ten minutes to go; `changes` over them (a
/// `null` takes a claim out).
fn claims(changes: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now(), "exp": now() + 600,
        "scope": "items.read"
    });
    let object = claims.as_object_mut().expect("object");
    for (name, value) in changes.as_object().expect("object") {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A JWKS document served at `/jwks.json` that counts how often it is fetched; it can change
/// and go away.
struct JwksServer {
    url: String,
    fetches: Arc<AtomicUsize>,
    document: Arc<Mutex<Value>>,
    task: tokio::task::JoinHandle<()>,
    address: SocketAddr,
}

impl JwksServer {
    async fn start(document: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (router, fetches, document) = jwks_router(document);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        JwksServer {
            url: format!("http://{address}/jwks.json"),
            fetches,
            document,
            task,
            address,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn publish(&self, document: Value) {
        *self.document.lock().expect("lock") = document;
    }

    /// Stops serving; returns once connections to its port are refused.
    async fn stop(&self) {
        self.task.abort();
        tokio::time::timeout(PATIENCE, async {
            while tokio::net::TcpStream::connect(self.address).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the JWKS server stops");
    }
}

fn jwks_router(document: Value) -> (axum::Router, Arc<AtomicUsize>, Arc<Mutex<Value>>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let document = Arc::new(Mutex::new(document));
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get({
            let (fetches, document) = (Arc::clone(&fetches), Arc::clone(&document));
            move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = document.lock().expect("lock").to_string();
                async move { ([("content-type", "application/json")], body) }
            }
        }),
    );
    (router, fetches, document)
}

/// A route layer that answers with `x-principal: scheme:subject` when a principal came with
/// the request: what the layers after auth, and the handlers, see.
fn principal_echo()
-> impl tower::Layer<RouteService, Service = RouteService> + Clone + Send + Sync + 'static {
    tower::layer::layer_fn(|inner: RouteService| {
        RouteService::new(tower::service_fn(move |request: http::Request<Body>| {
            let inner = inner.clone();
            async move {
                let who = Principal::of(&request)
                    .map(|principal| format!("{}:{}", principal.scheme, principal.subject));
                let mut response = inner.oneshot(request).await?;
                if let Some(value) = who.and_then(|who| http::HeaderValue::try_from(who).ok()) {
                    response.headers_mut().insert("x-principal", value);
                }
                Ok(response)
            }
        }))
    })
}

/// A gateway wearing `auth` (and the principal echo inside it) in front of a fresh backend,
/// refusing query parameters that name no field.
async fn gateway(auth: Auth) -> String {
    let backend = start_backend().await.expect("backend");
    gateway_to(backend, binding_service_gateway::remote, |gateway| {
        gateway
            .reject_unknown_query_parameters(true)
            .route_layer(auth)
            .route_layer(principal_echo())
    })
    .await
    .expect("gateway")
}

fn provider(jwks: &JwksServer) -> JwtProvider {
    JwtProvider::new(ISSUER)
        .jwks_url(&jwks.url)
        .audience(AUDIENCE)
        .algorithms([JwtAlgorithm::RS256])
}

fn selector(text: &str) -> RouteSelector {
    text.parse().expect("selector")
}

/// Every route authenticated; deleting needs the `items.delete` scope.
fn requirements() -> PerRoute<Requirement> {
    PerRoute::new(Requirement::authenticated()).rule(
        selector("protogate.tests.v1.BindingService.Delete"),
        Requirement::authenticated().scope("items.delete"),
    )
}

fn builder() -> AuthBuilder {
    Auth::builder().requirements(requirements())
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("answered in time")
        .expect("answered")
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// Checks a 401 for a bad token: the challenge, RFC 6750's `invalid_token`, code 16; its
/// message, which must not quote `token`.
async fn refused(response: reqwest::Response, token: &str, what: &str) -> String {
    assert_eq!(response.status(), 401, "{what}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    let body = json_of(response).await;
    assert_eq!(body["code"], 16, "{what}: {body}");
    let message = body["message"].as_str().expect("a message").to_owned();
    let quoted = token.len().min(24);
    assert!(
        token.is_empty() || !message.contains(&token[token.len() - quoted..]),
        "{what}: the message quotes the token: {message}"
    );
    assert!(
        !challenge.contains(&token[token.len() - quoted..]) || token.is_empty(),
        "{what}: the challenge quotes the token"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_make_one_jwks_fetch() {
    let signer = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(jwks(&[&signer])).await;
    // An interval no run outlasts, however loaded the machine (the default, 30 s, is not).
    let provider = provider(&jwks).min_refresh_interval(Duration::from_secs(3600));
    let base = gateway(builder().jwt(provider).build().expect("auth")).await;
    let client = reqwest::Client::new();
    let tokens: Vec<String> = (0..10)
        .map(|n| signer.sign(&claims(json!({"sub": format!("user-{n}")}))))
        .collect();

    let statuses: Vec<(u16, usize)> = futures_util::stream::iter(0..10_000usize)
        .map(|n| {
            let request = client
                .get(format!("{base}/v1/echo/n{n}"))
                .bearer_auth(&tokens[n % tokens.len()]);
            async move { (send(request).await.status().as_u16(), n) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} refused, e.g. {:?}",
        failed.len(),
        &failed[..1]
    );
    assert_eq!(jwks.fetches(), 1, "one fetch for 10,000 requests");

    // A flood of unknown key ids within the minimum interval fetches nothing more: each is
    // refused with the keys at hand.
    let statuses: Vec<u16> = futures_util::stream::iter(0..500usize)
        .map(|n| {
            let token = signer.sign_as(&format!("forged-{n}"), &claims(json!({})));
            let request = client.get(format!("{base}/v1/echo/x")).bearer_auth(token);
            async move { send(request).await.status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|status| *status == 401));
    assert_eq!(jwks.fetches(), 1, "unknown key ids within the interval");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up() {
    let (old, new) = (Signer::rsa("rsa-old"), Signer::rsa("rsa-new"));
    let jwks_server = JwksServer::start(jwks(&[&old])).await;
    let auth = builder()
        .jwt(provider(&jwks_server).min_refresh_interval(Duration::ZERO))
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let client = reqwest::Client::new();
    let get = |token: &str| {
        client
            .get(format!("{base}/v1/echo/x"))
            .bearer_auth(token.to_owned())
    };

    assert_eq!(send(get(&old.sign(&claims(json!({}))))).await.status(), 200);
    assert_eq!(jwks_server.fetches(), 1);

    // The issuer rotates, the old key leaving as the new one comes in. The new kid is
    // unknown to the cache, which fetches once and finds it.
    let rotated = jwks(&[&new]);
    jwks_server.publish(rotated);
    let token = new.sign(&claims(json!({})));
    assert_eq!(send(get(&token)).await.status(), 200);
    assert_eq!(jwks_server.fetches(), 2);
    // Cached from then on.
    assert_eq!(send(get(&token)).await.status(), 200);
    assert_eq!(jwks_server.fetches(), 2);
}

#[tokio::test]
async fn a_jwks_file_is_read_and_read_again_for_a_new_key() {
    let (first, second) = (Signer::p256("ec-1"), Signer::p256("ec-2"));
    let path = std::env::temp_dir().join(format!(
        "protogate-auth-test-{}-jwks.json",
        std::process::id()
    ));
    std::fs::write(&path, jwks(&[&first]).to_string()).expect("JWKS file");
    let auth = builder()
        .jwt(
            JwtProvider::new(ISSUER)
                .jwks_file(&path)
                .audience(AUDIENCE)
                .algorithms([JwtAlgorithm::ES256])
                .min_refresh_interval(Duration::ZERO),
        )
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let client = reqwest::Client::new();
    let status = |token: String| {
        let request = client.get(format!("{base}/v1/echo/x")).bearer_auth(token);
        async move { send(request).await.status().as_u16() }
    };
    let before = status(first.sign(&claims(json!({})))).await;
    // The file is rotated in place; a token under the new kid has it read again.
    std::fs::write(&path, jwks(&[&first, &second]).to_string()).expect("JWKS file");
    let after = status(second.sign(&claims(json!({})))).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!((before, after), (200, 200));
}

#[tokio::test]
async fn a_jwks_server_that_goes_down_keeps_the_cached_keys_working() {
    let signer = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(jwks(&[&signer])).await;
    let auth = builder()
        .jwt(
            provider(&jwks)
                .refresh_interval(Duration::from_secs(1))
                .min_refresh_interval(Duration::ZERO)
                .fetch_timeout(Duration::from_secs(2)),
        )
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let client = reqwest::Client::new();
    let token = signer.sign(&claims(json!({})));
    let get = || {
        client
            .get(format!("{base}/v1/echo/x"))
            .bearer_auth(token.clone())
    };
    assert_eq!(send(get()).await.status(), 200);

    jwks.stop().await;
    // Background refreshes fail meanwhile (one a second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..20 {
        assert_eq!(send(get()).await.status(), 200);
    }
    // An unknown key id asks for a fetch, which fails: refused, and the cache stays.
    let unknown = signer.sign_as("rsa-2", &claims(json!({})));
    let message = refused(
        send(
            client
                .get(format!("{base}/v1/echo/x"))
                .bearer_auth(&unknown),
        )
        .await,
        &unknown,
        "unknown kid, JWKS down",
    )
    .await;
    assert!(message.contains("key id"), "{message}");
    assert_eq!(send(get()).await.status(), 200);
}

#[tokio::test]
async fn jwks_fetches_are_bounded_in_size_and_time() {
    let signer = Signer::ed25519("ed-1");
    let mut big = jwks(&[&signer]);
    big["padding"] = json!("x".repeat(64 * 1024));
    let router = axum::Router::new()
        .route(
            "/big.json",
            axum::routing::get(move || {
                let body = big.to_string();
                async move { body }
            }),
        )
        .route(
            "/slow.json",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "{}"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = reqwest::Client::new();
    let token = signer.sign(&claims(json!({})));
    for (what, path) in [("too large", "big.json"), ("too slow", "slow.json")] {
        let auth = builder()
            .jwt(
                JwtProvider::new(ISSUER)
                    .jwks_url(format!("http://{address}/{path}"))
                    .algorithms([JwtAlgorithm::EdDSA])
                    .max_jwks_bytes(16 * 1024)
                    .fetch_timeout(Duration::from_millis(300)),
            )
            .build()
            .expect("auth");
        let base = gateway(auth).await;
        let started = std::time::Instant::now();
        let response = send(client.get(format!("{base}/v1/echo/x")).bearer_auth(&token)).await;
        // The keys were never had: UNAVAILABLE, not a verdict on the token.
        assert_eq!(response.status(), 503, "{what}");
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        let body = json_of(response).await;
        assert_eq!(body["code"], 14, "{what}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("could not be fetched")),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn attacks_get_401_with_a_challenge_and_status_16() {
    let signer = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(jwks(&[&signer])).await;
    let auth = builder()
        .jwt(
            provider(&jwks)
                .leeway(Duration::from_secs(5))
                .min_refresh_interval(Duration::ZERO),
        )
        .realm("library")
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let client = reqwest::Client::new();
    let get = |token: &str| {
        client
            .get(format!("{base}/v1/echo/x"))
            .bearer_auth(token.to_owned())
    };
    // The set is fetched once, by a good token.
    assert_eq!(
        send(get(&signer.sign(&claims(json!({}))))).await.status(),
        200
    );
    assert_eq!(jwks.fetches(), 1);

    let b64 =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&claims(json!({})))
    );
    let confusion = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(&signer.public_der).expect("a secret"),
        )
        .expect("signed")
    };
    let tampered = {
        let good = signer.sign(&claims(json!({})));
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&claims(json!({"sub": "root"}))),
            parts[2]
        )
    };
    let huge = signer.sign(&claims(json!({"padding": "x".repeat(100 * 1024)})));
    let attacks = [
        ("alg none", alg_none, "algorithm `none`"),
        (
            "HS256 with the RSA public key",
            confusion,
            "algorithm `HS256`",
        ),
        (
            "expired",
            signer.sign(&claims(json!({"exp": now() - 60}))),
            "expired",
        ),
        (
            "not yet valid",
            signer.sign(&claims(json!({"nbf": now() + 60}))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            signer.sign(&claims(json!({"iss": "https://evil.test/"}))),
            "issuer",
        ),
        (
            "wrong audience",
            signer.sign(&claims(json!({"aud": "other-api"}))),
            "audience",
        ),
        ("bad signature", tampered, "signature"),
        ("a 100 KB token", huge, "longer than"),
        ("garbage", "not-a-jwt".to_owned(), "not a well-formed JWT"),
        (
            "no exp",
            signer.sign(&claims(json!({"exp": null}))),
            "`exp`",
        ),
    ];
    for (what, token, expected) in &attacks {
        let message = refused(send(get(token)).await, token, what).await;
        assert!(message.contains(expected), "{what}: {message}");
    }
    assert_eq!(jwks.fetches(), 1, "no attack above fetches the JWKS");

    // An unknown key id: one fetch, then refused.
    let unknown = signer.sign_as("rsa-9", &claims(json!({})));
    let message = refused(send(get(&unknown)).await, &unknown, "unknown kid").await;
    assert!(message.contains("key id"), "{message}");
    assert_eq!(jwks.fetches(), 2, "the unknown kid refreshed the set once");

    // No credentials at all: a challenge without an error code.
    let response = send(client.get(format!("{base}/v1/echo/x"))).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"library\""
    );
    let body = json_of(response).await;
    assert_eq!(body["code"], 16);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization")),
        "{body}"
    );

    // A scope the token lacks: 403, code 7; with it, the call goes through.
    let delete = |token: &str| {
        client
            .delete(format!("{base}/v1/items/x"))
            .bearer_auth(token.to_owned())
    };
    let response = send(delete(&signer.sign(&claims(json!({}))))).await;
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("items.delete"),
        "{challenge}"
    );
    let body = json_of(response).await;
    assert_eq!(body["code"], 7);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("`items.delete`")),
        "{body}"
    );
    let granted = signer.sign(&claims(json!({"scp": ["items.read", "items.delete"]})));
    assert_eq!(send(delete(&granted)).await.status(), 200);
}

#[tokio::test]
async fn api_keys_by_header_and_query_name_their_principal() {
    let (ci, nightly) = ("ci-secret-1", "nightly-secret-2");
    let auth = builder()
        .api_keys(
            ApiKeys::new()
                .header("x-api-key")
                .query("api_key")
                .key(ApiKey::from_sha256_hex("ci", &ApiKey::hash(ci)).expect("hash"))
                .key(ApiKey::from_sha256_hex("nightly", &ApiKey::hash(nightly)).expect("hash")),
        )
        .forward_claim("sub", "x-client")
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let client = reqwest::Client::new();

    let response = send(
        client
            .get(format!("{base}/v1/metadata"))
            .header("x-api-key", ci),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-principal"], "api_key:ci");
    let body = json_of(response).await;
    assert_eq!(body["received"]["x-client"], "ci");
    assert!(
        body["received"].get("x-api-key").is_none(),
        "the key stays at the gateway"
    );

    // In the query: the parameter is taken off, so it never reaches the message (unknown
    // parameters are refused by this gateway).
    let response = send(client.get(format!("{base}/v1/echo/x?number=5&api_key={nightly}"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-principal"], "api_key:nightly");
    let body = json_of(response).await;
    assert_eq!(body["number"], "5");
    assert_eq!(body["name"], "x");

    for (what, request) in [
        (
            "wrong header key",
            client
                .get(format!("{base}/v1/echo/x"))
                .header("x-api-key", "ci-secret-2"),
        ),
        (
            "wrong query key",
            client.get(format!("{base}/v1/echo/x?api_key=nope")),
        ),
    ] {
        let response = send(request).await;
        assert_eq!(response.status(), 401, "{what}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert_eq!(
            challenge, "ApiKey header=\"x-api-key\", query=\"api_key\"",
            "{what}"
        );
        let body = json_of(response).await;
        assert_eq!(body["code"], 16, "{what}");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains("API key"), "{what}: {message}");
        assert!(!message.contains("ci-secret-2") && !message.contains("nope"));
    }
}

#[tokio::test]
async fn claims_reach_the_backend_as_metadata_and_authorization_as_configured() {
    let signer = Signer::p256("ec-1");
    let jwks = JwksServer::start(jwks(&[&signer])).await;
    let token = signer.sign(&claims(
        json!({"tenant": "acme", "groups": ["staff", "ops"]}),
    ));
    let client = reqwest::Client::new();

    for forward in [false, true] {
        let auth = builder()
            .jwt(provider(&jwks).algorithms([JwtAlgorithm::ES256]))
            .forward_claim("sub", "x-user-id")
            .forward_claim("tenant", "x-tenant")
            .forward_claim("groups", "x-groups")
            .forward_authorization(forward)
            .build()
            .expect("auth");
        let base = gateway(auth).await;
        let response = send(
            client
                .get(format!("{base}/v1/metadata"))
                .bearer_auth(&token)
                // A client posing as someone else: dropped.
                .header("grpc-metadata-x-user-id", "mallory")
                // A token of its own past the check, and a header the gateway alone sets.
                .header("grpc-metadata-authorization", "Bearer smuggled")
                .header("grpc-metadata-grpcgateway-authorization", "Bearer smuggled"),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-principal"], "jwt:alice");
        let body = json_of(response).await;
        let received = &body["received"];
        assert_eq!(received["x-user-id"], "alice", "{body}");
        assert_eq!(received["x-tenant"], "acme");
        assert_eq!(received["x-groups"], "staff,ops");
        let bearer = format!("Bearer {token}");
        if forward {
            assert_eq!(received["authorization"], bearer.as_str());
            assert_eq!(received["grpcgateway-authorization"], bearer.as_str());
        } else {
            assert!(received.get("authorization").is_none(), "{body}");
            assert!(received.get("grpcgateway-authorization").is_none());
        }
    }
}

#[tokio::test]
async fn public_routes_take_valid_credentials_and_ignore_invalid_ones() {
    let signer = Signer::ed25519("ed-1");
    let jwks = JwksServer::start(jwks(&[&signer])).await;
    let auth = Auth::builder()
        .jwt(provider(&jwks).algorithms([JwtAlgorithm::EdDSA]))
        .requirements(
            PerRoute::new(Requirement::authenticated())
                .rule(selector("GET /v1/metadata"), Requirement::public()),
        )
        .forward_claim("sub", "x-user-id")
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let client = reqwest::Client::new();
    let metadata = || {
        client
            .get(format!("{base}/v1/metadata"))
            .header("grpc-metadata-x-user-id", "mallory")
    };

    let response = send(metadata().bearer_auth(signer.sign(&claims(json!({}))))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-principal"], "jwt:alice");
    assert_eq!(json_of(response).await["received"]["x-user-id"], "alice");

    for request in [
        metadata(),
        metadata().bearer_auth(signer.sign(&claims(json!({"exp": now() - 3600})))),
        metadata().bearer_auth("garbage"),
    ] {
        let response = send(request).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-principal").is_none());
        let body = json_of(response).await;
        assert!(body["received"].get("x-user-id").is_none(), "{body}");
        assert!(body["received"].get("authorization").is_none(), "{body}");
    }
    // Elsewhere the same expired token is refused.
    let expired = signer.sign(&claims(json!({"exp": now() - 3600})));
    let response = send(
        client
            .get(format!("{base}/v1/echo/x"))
            .bearer_auth(&expired),
    )
    .await;
    refused(response, &expired, "expired on a private route").await;
}

#[tokio::test]
async fn several_issuers_each_with_its_own_keys_and_algorithms() {
    let (ec, ed, rsa) = (
        Signer::p256("ec-1"),
        Signer::ed25519("ed-1"),
        Signer::rsa("rsa-1"),
    );
    // The JWKS also lists an RSA key, which this issuer does not use.
    let jwks = JwksServer::start(jwks(&[&ec, &ed, &rsa])).await;
    let local = "https://local.test/";
    let auth = builder()
        .jwt(provider(&jwks).algorithms([JwtAlgorithm::ES256, JwtAlgorithm::EdDSA]))
        .jwt(
            JwtProvider::new(local)
                .secret(b"a shared secret of some length".to_vec())
                .audience(AUDIENCE),
        )
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let client = reqwest::Client::new();
    let get = |token: &str| {
        client
            .get(format!("{base}/v1/echo/x"))
            .bearer_auth(token.to_owned())
    };
    let hmac = |secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({"iss": local})),
            &EncodingKey::from_secret(secret).expect("secret"),
        )
        .expect("signed")
    };

    assert_eq!(send(get(&ec.sign(&claims(json!({}))))).await.status(), 200);
    assert_eq!(send(get(&ed.sign(&claims(json!({}))))).await.status(), 200);
    assert_eq!(
        send(get(&hmac(b"a shared secret of some length")))
            .await
            .status(),
        200
    );
    for (what, token, expected) in [
        (
            "RS256 where only ES256 and EdDSA are used",
            rsa.sign(&claims(json!({}))),
            "algorithm `RS256`",
        ),
        ("the wrong secret", hmac(b"another secret"), "signature"),
        (
            "an issuer no provider has",
            ec.sign(&claims(json!({"iss": "https://evil.test/"}))),
            "not one this gateway trusts",
        ),
    ] {
        let message = refused(send(get(&token)).await, &token, what).await;
        assert!(message.contains(expected), "{what}: {message}");
    }
}

#[tokio::test]
async fn a_jwks_over_https_is_fetched_with_the_given_authority() {
    let signer = Signer::ed25519("ed-1");
    let (ca_pem, certificate, key) = issue_for_loopback();
    let (router, fetches, _) = jwks_router(jwks(&[&signer]));
    let address = serve_tls(router, &certificate, &key).await;
    let ca_file =
        std::env::temp_dir().join(format!("protogate-auth-test-{}-ca.pem", std::process::id()));
    std::fs::write(&ca_file, ca_pem).expect("CA file");

    let auth = builder()
        .jwt(
            JwtProvider::new(ISSUER)
                .jwks_url(format!("https://{address}/jwks.json"))
                .jwks_tls(UpstreamTls::new().ca_file(&ca_file))
                .audience(AUDIENCE)
                .algorithms([JwtAlgorithm::EdDSA]),
        )
        .build()
        .expect("auth");
    let base = gateway(auth).await;
    let response = send(
        reqwest::Client::new()
            .get(format!("{base}/v1/echo/x"))
            .bearer_auth(signer.sign(&claims(json!({})))),
    )
    .await;
    let _ = std::fs::remove_file(&ca_file);
    assert_eq!(response.status(), 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

/// A CA and a certificate it issued for 127.0.0.1: the CA's PEM, the certificate's, its key's.
fn issue_for_loopback() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(std::net::IpAddr::from([
        127, 0, 0, 1,
    ]))];
    let certificate = params.signed_by(&key, &issuer).expect("issued");
    (ca_pem, certificate.pem(), key.serialize_pem())
}

/// Serves `router` over TLS on 127.0.0.1 until the test's runtime ends; its address.
async fn serve_tls(router: axum::Router, certificate: &str, key: &str) -> SocketAddr {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("identity");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    address
}

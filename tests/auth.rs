//! `[auth]` through the real binary: a config with a JWT provider (its JWKS served by this test
//! on 127.0.0.1), an API key and per-route requirements; tokens accepted and refused, the key
//! accepted, a reloaded file's keys taking over, and mistakes in the section placed at their keys.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test/";
const API_KEY: &str = "the-ci-key";

/// Writes `text` to a file of this test's own.
fn file(name: &str, text: &str) -> PathBuf {
    support::test_file("auth-tests", name, text)
}

/// An Ed25519 key: what signs tokens, and its JWK under `kid`.
struct Signer {
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
}

fn signer(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519");
    // rcgen writes PKCS#8 v2; the signer reads v1: the seed behind a fixed prefix.
    let v2 = pair.serialize_der();
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(&v2[16..48]);
    Signer {
        key: jsonwebtoken::EncodingKey::from_ed_der(&v1),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
        }),
    }
}

fn token(signer: &Signer, kid: &str, changes: Value) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({
        "iss": ISSUER, "aud": "library", "sub": "alice", "exp": now + 600, "scope": "shelves.read"
    });
    for (name, value) in changes.as_object().expect("object") {
        claims[name] = value.clone();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &signer.key).expect("signed")
}

/// Serves `document` at `/jwks.json` on 127.0.0.1; its URL and a count of fetches.
async fn serve_jwks(document: Value) -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&fetches);
    let body = document.to_string();
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}/jwks.json"), fetches)
}

fn sha256_hex(text: &str) -> String {
    protogate::ApiKey::hash(text)
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .expect("answered in time")
        .expect("answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_checks_tokens_and_api_keys_by_route() {
    let signer = signer("ed-1");
    let (jwks_url, fetches) = serve_jwks(json!({ "keys": [signer.jwk.clone()] })).await;
    let config = file(
        "serve.toml",
        &format!(
            r#"
[auth]
realm = "library"
forward_claims = {{ sub = "x-user-id" }}

[[auth.jwt]]
issuer = "{ISSUER}"
audiences = ["library"]
algorithms = ["EdDSA"]
jwks_url = "{jwks_url}"

[auth.api_keys]
keys = [{{ name = "ci", sha256 = "{}" }}]

[[routes]]
match = "protogate.demo.v1.LibraryService.DeleteShelf"
auth = {{ scopes = ["shelves.delete"] }}

[[routes]]
match = "GET /demo/v1/shelves/*/books"
auth = "public"
"#,
            sha256_hex(API_KEY)
        ),
    );
    let running = support::start(&["--config", config.to_str().expect("UTF-8")]);
    let base = &running.base;
    let client = reqwest::Client::new();
    let shelves = format!("{base}/demo/v1/shelves");

    let good = token(&signer, "ed-1", json!({}));
    let response = send(client.get(&shelves).bearer_auth(&good)).await;
    assert_eq!(response.status(), 200, "a valid token");

    let response = send(client.get(&shelves)).await;
    assert_eq!(response.status(), 401, "no credentials");
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|value| value.to_str().expect("ASCII"))
        .collect();
    assert_eq!(
        challenges,
        [
            "Bearer realm=\"library\"",
            "ApiKey realm=\"library\", header=\"x-api-key\""
        ]
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 16);

    for (what, bad) in [
        (
            "expired",
            token(&signer, "ed-1", json!({"exp": 1_000_000_000})),
        ),
        (
            "another audience",
            token(&signer, "ed-1", json!({"aud": "billing"})),
        ),
        ("garbage", "garbage".to_owned()),
    ] {
        let response = send(client.get(&shelves).bearer_auth(&bad)).await;
        assert_eq!(response.status(), 401, "{what}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ASCII");
        assert!(challenge.contains("error=\"invalid_token\""), "{what}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["code"], 16, "{what}");
    }

    let response = send(client.get(&shelves).header("x-api-key", API_KEY)).await;
    assert_eq!(response.status(), 200, "the API key");
    let response = send(client.get(&shelves).header("x-api-key", "not-the-key")).await;
    assert_eq!(response.status(), 401, "a wrong API key");

    // A public route needs nothing; a scoped one needs its scope.
    let response = send(client.get(format!("{base}/demo/v1/shelves/1/books"))).await;
    assert_ne!(response.status(), 401, "public");
    let response = send(
        client
            .delete(format!("{base}/demo/v1/shelves/1"))
            .bearer_auth(&good),
    )
    .await;
    assert_eq!(response.status(), 403, "without the scope");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 7);

    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the JWKS fetched once");
}

#[test]
fn mistakes_in_auth_are_placed_at_their_keys() {
    let cases = [
        (
            "no-section.toml",
            "[[routes]]\nmatch = \"/demo/**\"\nauth = \"public\"\n",
            "no-section.toml:3:1: `routes[0].auth`: there is no [auth] section",
        ),
        (
            "algorithm.toml",
            "[[auth.jwt]]\nissuer = \"i\"\njwks_url = \"http://127.0.0.1:1/jwks\"\nalgorithms = [\"none\"]\n",
            "algorithm.toml:4:1: `auth.jwt[0].algorithms`: unknown JWT algorithm `none`",
        ),
        (
            "confusion.toml",
            "[[auth.jwt]]\nissuer = \"i\"\njwks_url = \"http://127.0.0.1:1/jwks\"\nalgorithms = [\"HS256\"]\n",
            "`auth.jwt[0]`: JWT provider `i`: HS256 needs a shared secret",
        ),
        (
            "keys.toml",
            "[[auth.jwt]]\nissuer = \"i\"\n",
            "`auth.jwt[0]`: give its keys",
        ),
        (
            "origin.toml",
            "[auth]\ncross_site_origins = [\"https://app.example.com/login\"]\n[auth.sessions]\n[redis]\nurl = \"redis://127.0.0.1:1\"\n",
            "`auth.cross_site_origins[0]`: `https://app.example.com/login` is not an origin",
        ),
        (
            "hash.toml",
            "[auth.api_keys]\nkeys = [{ name = \"ci\", sha256 = \"abc\" }]\n",
            "hash.toml:2:24: `auth.api_keys.keys[0].sha256`: API key `ci`: the SHA-256 must be 64",
        ),
        (
            "claim.toml",
            "[auth]\nforward_claims = { sub = \"X-User\" }\n[auth.api_keys]\n",
            "`auth.forward_claims.sub`: `X-User` is not a valid metadata name",
        ),
        (
            "forged.toml",
            "[gateway]\nrequest_headers = { \"x-user\" = \"x-user-id\" }\n[auth]\nforward_claims = { sub = \"x-user-id\" }\n[auth.api_keys]\n",
            "`auth.forward_claims.sub`: `x-user-id` is also where [gateway] request_headers puts the client's `x-user` header",
        ),
        (
            "route.toml",
            "[auth.api_keys]\n[[routes]]\nmatch = \"/demo/**\"\nauth = \"private\"\n",
            "route.toml:4:8: `routes[0].auth`: invalid value: string \"private\"",
        ),
        (
            "secret.toml",
            "[[auth.jwt]]\nissuer = \"i\"\nsecret_env = \"PROTOGATE_TEST_UNSET_SECRET\"\n",
            "`auth.jwt[0].secret_env`: the environment variable `PROTOGATE_TEST_UNSET_SECRET` is not set",
        ),
    ];
    for (name, text, expected) in cases {
        let path = file(name, text);
        let output = Command::new(support::binary())
            .args(["config", "check", path.to_str().expect("UTF-8")])
            .env_remove("PROTOGATE_TEST_UNSET_SECRET")
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{name}: accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn a_reloaded_config_brings_its_keys() {
    let config_with = |key: &str| {
        format!(
            "[auth.api_keys]\nkeys = [{{ name = \"ci\", sha256 = \"{}\" }}]\n",
            sha256_hex(key)
        )
    };
    let config = file("reload.toml", &config_with("old-key"));
    let running = support::start(&["--config", config.to_str().expect("UTF-8")]);
    let shelves = format!("{}/demo/v1/shelves", running.base);
    let client = reqwest::Client::new();
    let status = |key: &'static str| {
        let request = client.get(&shelves).header("x-api-key", key);
        async move { send(request).await.status().as_u16() }
    };
    assert_eq!(status("old-key").await, 200);
    assert_eq!(status("new-key").await, 401);

    // The file changes: the next plan's auth layer holds the new key only.
    std::fs::write(&config, config_with("new-key")).expect("rewritten");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status("new-key").await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status("old-key").await, 401);
}

/// The served document names the credentials the gateway takes and what each operation needs.
#[tokio::test]
async fn the_document_carries_the_security_schemes_and_each_operations_requirement() {
    let config = format!(
        "[auth.api_keys]\nheader = \"x-api-key\"\nquery = \"key\"\nkeys = [{{ name = \"ci\", sha256 = \"{}\" }}]\n\n[[routes]]\nmatch = \"GET /demo/v1/shelves\"\nauth = \"public\"\n\n[[routes]]\nmatch = \"protogate.demo.v1.LibraryService.DeleteShelf\"\nauth = {{ scopes = [\"shelves.admin\"] }}\n",
        sha256_hex(API_KEY)
    );
    let path = file("security.toml", &config);
    let gateway = support::start(&["--config", path.to_str().expect("UTF-8 path")]);
    let document = reqwest::get(format!("{}/openapi.json", gateway.base))
        .await
        .expect("answered")
        .text()
        .await
        .expect("body");
    let parsed: Value = serde_json::from_str(&document).expect("JSON");
    assert_eq!(
        parsed["components"]["securitySchemes"],
        json!({
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
        })
    );
    let paths = &parsed["paths"];
    assert_eq!(
        paths["/demo/v1/shelves"]["get"]["security"],
        json!([{}, {"apiKeyHeader": []}, {"apiKeyQuery": []}]),
        "public: credentials optional"
    );
    assert_eq!(
        paths["/demo/v1/shelves"]["post"]["security"],
        json!([{"apiKeyHeader": []}, {"apiKeyQuery": []}])
    );
    assert_eq!(
        paths["/demo/v1/shelves/{shelf}"]["delete"]["security"],
        json!([{"apiKeyHeader": ["shelves.admin"]}, {"apiKeyQuery": ["shelves.admin"]}])
    );
    if let Err(problems) = support::tools::validate_openapi(&document) {
        panic!("the document with security is not valid OpenAPI:\n{problems}");
    }
}

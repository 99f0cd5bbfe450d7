//! The stock gateway built with a team's own protos (`PROTOGATE_PROTO_DIR`) and nothing else:
//! it lists, documents and serves the team's service only, none of the demo's operations, and
//! `--upstream URL` forwards nothing but the team's calls.
//!
//! The gateway is built once, into a target dir of its own, from a tiny proto directory this
//! test writes; every test here shares that build.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

const SERVICE: &str = "acme.notes.v1.NoteService";

const NOTES_PROTO: &str = r#"syntax = "proto3";

package acme.notes.v1;

import "google/api/annotations.proto";

// Notes, as a team might keep them.
service NoteService {
  // One note.
  rpc GetNote(GetNoteRequest) returns (Note) {
    option (google.api.http) = {get: "/v1/{name=notes/*}"};
  }
  // Every note.
  rpc ListNotes(ListNotesRequest) returns (ListNotesResponse) {
    option (google.api.http) = {get: "/v1/notes"};
  }
}

message GetNoteRequest {
  string name = 1;
}

message Note {
  string name = 1;
  string text = 2;
}

message ListNotesRequest {}

message ListNotesResponse {
  repeated Note notes = 1;
}
"#;

/// The gateway built with the notes proto alone, built on first use.
fn gateway() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_gateway)
}

fn build_gateway() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = manifest.join("target/own-protos");
    let protos = target.join("proto");
    let file = protos.join("acme/notes/v1/notes.proto");
    // Written only when it differs: the build script reruns when the directory changes.
    if std::fs::read_to_string(&file).ok().as_deref() != Some(NOTES_PROTO) {
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("proto dir");
        std::fs::write(&file, NOTES_PROTO).expect("proto written");
    }
    support::build_gateway_with(&protos, &target, &[])
}

#[test]
fn routes_lists_the_teams_bindings_only() {
    let table = support::printed(gateway(), &["routes"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            [
                "GET",
                "/v1/{name=notes/*}",
                "acme.notes.v1.NoteService.GetNote"
            ],
            ["GET", "/v1/notes", "acme.notes.v1.NoteService.ListNotes"],
        ],
        "{table}"
    );
}

#[test]
fn openapi_documents_the_teams_operations_only() {
    let printed = support::printed(gateway(), &["openapi"]);
    let document: Value = serde_json::from_str(&printed).expect("JSON");
    let mut operations: Vec<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("a path item").values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    operations.sort_unstable();
    assert_eq!(
        operations,
        ["NoteService_GetNote", "NoteService_ListNotes"],
        "{printed}"
    );
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    assert!(
        schemas.keys().any(|name| name == "acme.notes.v1.Note"),
        "{printed}"
    );
    assert!(
        schemas
            .keys()
            .all(|name| !name.starts_with("protogate.demo")),
        "{printed}"
    );
    let yaml = support::printed(gateway(), &["openapi", "--yaml"]);
    assert!(yaml.contains("\"/v1/notes\""), "{yaml}");
    assert!(!yaml.contains("demo"), "{yaml}");
}

#[test]
fn the_banner_names_the_teams_service_only() {
    let banner = support::banner(gateway(), &[]);
    assert!(
        banner.contains(&format!("  {SERVICE} -> no upstream (503)")),
        "{banner}"
    );
    assert!(banner.contains("/docs in a browser"), "{banner}");
    assert!(!banner.contains("demo"), "{banner}");
    assert!(!banner.contains("LibraryService"), "{banner}");
}

#[test]
fn the_demo_service_cannot_be_given_an_upstream() {
    let output = Command::new(gateway())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "protogate.demo.v1.LibraryService=http://127.0.0.1:1",
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no service `protogate.demo.v1.LibraryService`"),
        "{stderr}"
    );
}

async fn get(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("answered");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The demo's paths: its API, its page.
const DEMO_PATHS: [&str; 3] = [
    "/demo/v1/shelves",
    "/demo/v1/shelves/fiction/books",
    "/demo/",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_upstream_only_the_teams_routes_answer() {
    let binary = tokio::task::spawn_blocking(gateway)
        .await
        .expect("build task");
    let bare = support::start_binary(binary, &[]);

    let (status, body) = get(format!("{}/v1/notes/n1", bare.base)).await;
    assert_eq!((status, &body["code"]), (503, &Value::from(14)), "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains(&format!("--upstream {SERVICE}=URL")),
        "{message}"
    );

    for path in DEMO_PATHS {
        let response = reqwest::get(format!("{}{path}", bare.base))
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }

    let served = reqwest::get(format!("{}/openapi.json", bare.base))
        .await
        .expect("answered")
        .text()
        .await
        .expect("body");
    assert_eq!(served, support::printed(binary, &["openapi"]));
    let docs = reqwest::get(format!("{}/docs", bare.base))
        .await
        .expect("answered");
    assert_eq!(docs.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_for_every_service_gets_the_teams_calls_only() {
    let binary = tokio::task::spawn_blocking(gateway)
        .await
        .expect("build task");
    let backend = notes::Backend::default();
    let address = backend.clone().serve().await;
    let gateway = support::start_binary(binary, &[&format!("--upstream=http://{address}")]);

    let (status, body) = get(format!("{}/v1/notes/n1", gateway.base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"name": "notes/n1", "text": "the text of notes/n1"})
    );
    for path in DEMO_PATHS {
        let response = reqwest::get(format!("{}{path}", gateway.base))
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
    assert_eq!(
        backend.calls(),
        ["/acme.notes.v1.NoteService/GetNote"],
        "the upstream was called for the demo"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstreams_with_several_endpoints_from_the_flags() {
    let binary = tokio::task::spawn_blocking(gateway)
        .await
        .expect("build task");
    // A CA made here, and a certificate from it for the name the flags ask to verify.
    let (ca_pem, certificate, key) = support::issue("notes.test");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("own-protos-tls");
    std::fs::create_dir_all(&dir).expect("directory");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("CA written");

    let tls = || {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&certificate, &key))
    };
    let (first, second) = (notes::Backend::default(), notes::Backend::default());
    let a = first.clone().serve_tls(tls()).await;
    let b = second.clone().serve_tls(tls()).await;
    let gateway = support::start_binary(
        binary,
        &[
            &format!("--upstream=https://{a},https://{b}"),
            &format!("--upstream-ca={}", ca_file.display()),
            "--upstream-server-name=notes.test",
        ],
    );
    for n in 0..20 {
        let (status, body) = get(format!("{}/v1/notes/n{n}", gateway.base)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(!first.calls().is_empty() && !second.calls().is_empty());

    // Without the CA the gateway cannot verify them: 503, naming the upstream.
    let untrusting = support::start_binary(binary, &[&format!("--upstream=https://{a}")]);
    let (status, body) = get(format!("{}/v1/notes/n1", untrusting.base)).await;
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains(&format!("upstream `https://{a}`")),
        "{message}"
    );
}

/// A gRPC server for the notes service, written with prost messages by hand: it answers
/// `GetNote` and records the path of every call it receives.
mod notes {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetNoteRequest {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Note {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub text: String,
    }

    /// The calls received, by gRPC path.
    #[derive(Clone, Default)]
    pub struct Backend {
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl Backend {
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().expect("calls").clone()
        }

        pub async fn serve(self) -> SocketAddr {
            super::support::serve_grpc(self.router()).await
        }

        /// Served behind TLS instead.
        pub async fn serve_tls(self, tls: tonic::transport::ServerTlsConfig) -> SocketAddr {
            super::support::serve_grpc_tls(self.router(), tls).await
        }

        fn router(self) -> axum::Router {
            axum::Router::new().fallback(move |request: http::Request<axum::body::Body>| {
                let calls = Arc::clone(&self.calls);
                async move {
                    let path = request.uri().path().to_owned();
                    calls.lock().expect("calls").push(path.clone());
                    if path != "/acme.notes.v1.NoteService/GetNote" {
                        return tonic::Status::unimplemented(path).into_http::<tonic::body::Body>();
                    }
                    let codec = tonic_prost::ProstCodec::<Note, GetNoteRequest>::default();
                    let get_note =
                        tower::service_fn(|request: tonic::Request<GetNoteRequest>| async {
                            let name = request.into_inner().name;
                            let text = format!("the text of {name}");
                            Ok::<_, tonic::Status>(tonic::Response::new(Note { name, text }))
                        });
                    tonic::server::Grpc::new(codec)
                        .unary(get_note, request)
                        .await
                }
            })
        }
    }
}

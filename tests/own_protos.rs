//! The stock gateway built with a team's own protos (`PROTOGATE_PROTO_DIR`) and nothing else:
//! it lists, documents and serves the team's service only, none of the demo's operations, and
//! `--upstream URL` forwards nothing but the team's calls. Its RPC without a rule is listed,
//! documented and served at its gRPC path only when `[gateway] unbound_methods` (or
//! `--unbound-methods`) turns unbound routes on.
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
  // Archives a note: no rule, so served only as an unbound route.
  rpc ArchiveNote(GetNoteRequest) returns (Note);
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
    let protos = manifest.join("target/own-protos/proto");
    let file = protos.join("acme/notes/v1/notes.proto");
    // Written only when it differs: the build script reruns when the directory changes.
    if std::fs::read_to_string(&file).ok().as_deref() != Some(NOTES_PROTO) {
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("proto dir");
        std::fs::write(&file, NOTES_PROTO).expect("proto written");
    }
    support::build_gateway_with(&protos, "own-protos", &[])
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

/// The unbound route of the RPC without a rule.
const ARCHIVE: &str = "/acme.notes.v1.NoteService/ArchiveNote";

/// `(method, template, rest)` of each line of `protogate routes` with `args`.
fn routes(args: &[&str]) -> Vec<Vec<String>> {
    let mut command = vec!["routes"];
    command.extend(args);
    support::printed(gateway(), &command)
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn routes_and_openapi_have_the_unbound_route_only_when_it_is_on() {
    let on = support::test_file(
        "own-protos",
        "unbound-on.toml",
        "[gateway]\nunbound_methods = true\n",
    );
    let off = support::test_file(
        "own-protos",
        "unbound-off.toml",
        "[gateway]\nunbound_methods = false\n",
    );
    let unbound_row = vec![
        "POST".to_owned(),
        ARCHIVE.to_owned(),
        "acme.notes.v1.NoteService.ArchiveNote".to_owned(),
        "(unbound)".to_owned(),
    ];
    for (args, listed) in [
        (vec![], false),
        (vec!["--config", off.to_str().expect("UTF-8")], false),
        (vec!["--config", on.to_str().expect("UTF-8")], true),
        (vec!["--unbound-methods"], true),
    ] {
        let rows = routes(&args);
        assert_eq!(rows.len(), if listed { 3 } else { 2 }, "{args:?}: {rows:?}");
        assert_eq!(rows.contains(&unbound_row), listed, "{args:?}: {rows:?}");

        let mut command = vec!["openapi"];
        command.extend(&args);
        let document: Value =
            serde_json::from_str(&support::printed(gateway(), &command)).expect("JSON");
        let operation = &document["paths"][ARCHIVE]["post"];
        if listed {
            assert_eq!(
                operation["operationId"], "NoteService_ArchiveNote",
                "{args:?}"
            );
            assert_eq!(operation["x-protogate-unbound"], true, "{args:?}");
        } else {
            assert!(operation.is_null(), "{args:?}: {operation}");
        }
    }
}

#[test]
fn a_method_section_for_the_unbound_rpc_needs_unbound_routes_on() {
    let method =
        "\n[services.\"acme.notes.v1.NoteService\".methods.ArchiveNote]\ntimeout = \"1s\"\n";
    for (on, valid) in [(false, false), (true, true)] {
        let text = format!("[gateway]\nunbound_methods = {on}\n{method}");
        let path = support::test_file("own-protos", &format!("method-{on}.toml"), &text);
        let output = Command::new(gateway())
            .args(["config", "check", path.to_str().expect("UTF-8")])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.success(), valid, "{text}: {stderr}");
        if !valid {
            // Placed at the section's line (the fourth).
            assert!(
                stderr.contains(":4:")
                    && stderr.contains("`services.acme.notes.v1.NoteService.methods.ArchiveNote`"),
                "{stderr}"
            );
            assert!(stderr.contains("unbound_methods = true"), "{stderr}");
        }
    }
}

/// `POST path` with a JSON body; the status and the answer.
async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_key_turns_the_unbound_route_on_and_off() {
    let binary = tokio::task::spawn_blocking(gateway)
        .await
        .expect("build task");
    let backend = notes::Backend::default();
    let address = backend.clone().serve().await;
    let config = |on: bool| {
        support::test_file(
            "own-protos",
            &format!("unbound-{on}.toml"),
            &format!(
                "[defaults]\nupstream = \"notes\"\n\n[upstreams.notes]\nendpoints = [\"http://{address}\"]\n\n[gateway]\nunbound_methods = {on}\n"
            ),
        )
    };
    let note = serde_json::json!({"name": "notes/n7"});

    let on = config(true);
    let served = support::start_binary(binary, &[&format!("--config={}", on.display())]);
    let (status, body) = post(format!("{}{ARCHIVE}", served.base), note.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"name": "notes/n7", "text": "archived notes/n7"})
    );
    let document: Value = reqwest::get(format!("{}/openapi.json", served.base))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        document["paths"][ARCHIVE]["post"]["x-protogate-unbound"],
        true
    );
    // The annotated routes are served as ever beside it.
    let (status, _) = get(format!("{}/v1/notes/n1", served.base)).await;
    assert_eq!(status, 200);
    assert_eq!(
        backend.calls(),
        [ARCHIVE, "/acme.notes.v1.NoteService/GetNote"],
        "what reached the upstream"
    );

    let off = config(false);
    let unserved = support::start_binary(binary, &[&format!("--config={}", off.display())]);
    let (status, body) = post(format!("{}{ARCHIVE}", unserved.base), note.clone()).await;
    assert_eq!((status, &body["code"]), (404, &Value::from(5)), "{body}");
    let document: Value = reqwest::get(format!("{}/openapi.json", unserved.base))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert!(document["paths"][ARCHIVE].is_null(), "{document}");

    // The flag turns it on over the file.
    let flagged = support::start_binary(
        binary,
        &[&format!("--config={}", off.display()), "--unbound-methods"],
    );
    let (status, body) = post(format!("{}{ARCHIVE}", flagged.base), note).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.calls().len(), 3, "{:?}", backend.calls());
}

/// A gRPC server for the notes service, written with prost messages by hand: it answers
/// `GetNote` and `ArchiveNote` and records the path of every call it receives.
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
                    let verb = match path.as_str() {
                        "/acme.notes.v1.NoteService/GetNote" => "the text of",
                        "/acme.notes.v1.NoteService/ArchiveNote" => "archived",
                        _ => {
                            return tonic::Status::unimplemented(path)
                                .into_http::<tonic::body::Body>();
                        }
                    };
                    let codec = tonic_prost::ProstCodec::<Note, GetNoteRequest>::default();
                    let get_note = tower::service_fn(
                        move |request: tonic::Request<GetNoteRequest>| async move {
                            let name = request.into_inner().name;
                            let text = format!("{verb} {name}");
                            Ok::<_, tonic::Status>(tonic::Response::new(Note { name, text }))
                        },
                    );
                    tonic::server::Grpc::new(codec)
                        .unary(get_note, request)
                        .await
                }
            })
        }
    }
}

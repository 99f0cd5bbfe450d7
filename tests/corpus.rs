//! Real protos nobody here wrote: the googleapis corpus in `../shared/corpus/googleapis`, plus a
//! few hard packages of the whole of googleapis (Firestore v1 and Discovery Engine v1, with `**`
//! followed by more segments; BigQuery Storage v1beta1, with two bindings matching the same
//! requests), compiled into the stock gateway through `PROTOGATE_PROTO_DIR`. Every non-streaming
//! binding must be in the route table (of two matching the same requests, the first declared),
//! a few routes are driven end to end against a real gRPC server, and the OpenAPI document passes
//! openapi-spec-validator.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes};
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Packages of the whole of googleapis built into the gateway beside the small corpus.
const HARD_PACKAGES: &[&str] = &[
    "google/firestore/v1",
    "google/cloud/discoveryengine/v1",
    "google/cloud/bigquery/storage/v1beta1",
];

fn shared(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(name);
    assert!(
        dir.is_dir(),
        "the googleapis corpus is expected at {}",
        dir.display()
    );
    dir.canonicalize().expect("corpus path")
}

/// The directory the gateway is built from (under `target/`): the small corpus, and the hard
/// packages with every file they import. Files are written only when changed, so cargo does not
/// rebuild the gateway for nothing.
fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/corpus-protos");
    let small = shared("googleapis");
    let mut files = Vec::new();
    collect(&small, &small, &mut files);
    for file in files {
        copy_if_changed(&small.join(&file), &dir.join(&file));
    }
    let all = shared("googleapis-all");
    let mut compiler = protox::Compiler::new([&all]).expect("compiler");
    compiler.include_imports(true);
    for package in HARD_PACKAGES {
        let mut protos = Vec::new();
        collect(&all, &all.join(package), &mut protos);
        compiler.open_files(&protos).expect("hard package compiles");
    }
    for file in compiler.files() {
        let source = all.join(file.name());
        if source.is_file() {
            copy_if_changed(&source, &dir.join(file.name()));
        }
    }
    dir.canonicalize().expect("corpus path")
}

fn copy_if_changed(from: &Path, to: &Path) {
    let contents = std::fs::read(from).expect("read proto");
    if std::fs::read(to).is_ok_and(|old| old == contents) {
        return;
    }
    std::fs::create_dir_all(to.parent().expect("a parent")).expect("create dir");
    std::fs::write(to, contents).expect("write proto");
}

/// Builds the stock gateway with the corpus compiled in. The demo is asked for too
/// (`PROTOGATE_DEMO=1`), which a build with a proto directory otherwise leaves out: this build
/// shows that it comes back.
fn build_gateway() -> PathBuf {
    support::build_gateway_with(&corpus(), "corpus", &[("PROTOGATE_DEMO", "1")])
}

/// The bindings of the corpus, read independently of protogate: (METHOD, template, rpc). Of two
/// with the same method and shape, only the first declared is expected.
fn expected_bindings() -> Vec<(String, String, String)> {
    let dir = corpus();
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    let mut compiler = protox::Compiler::new([&dir]).expect("compiler");
    compiler.include_imports(true);
    compiler.open_files(&files).expect("corpus compiles");
    let pool = DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice())
        .expect("descriptor pool");
    let http = pool
        .get_extension_by_name("google.api.http")
        .expect("google.api.http is defined");
    let mut out = Vec::new();
    let mut shapes = std::collections::HashSet::new();
    for service in pool.services() {
        for method in service.methods() {
            let streaming = method.is_client_streaming() || method.is_server_streaming();
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                continue;
            };
            let mut rules = vec![rule.clone()];
            if let Some(Value::List(extra)) = rule
                .get_field_by_name("additional_bindings")
                .map(|v| v.into_owned())
            {
                rules.extend(extra.into_iter().filter_map(|v| match v {
                    Value::Message(m) => Some(m),
                    _ => None,
                }));
            }
            for rule in rules {
                let (verb, template) = pattern(&rule);
                let shape = shape(&template);
                // A streaming binding still takes its shape first.
                if shapes.insert((verb.clone(), shape)) && !streaming {
                    out.push((verb, template, method.full_name().to_owned()));
                }
            }
        }
    }
    out
}

/// A template with each variable replaced by the segments it matches (`{name}` is `*`): two
/// templates match the same requests when their shapes are equal.
fn shape(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').expect("a closed variable");
        let inner = &rest[open + 1..close];
        out.push_str(inner.split_once('=').map_or("*", |(_, segments)| segments));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn pattern(rule: &DynamicMessage) -> (String, String) {
    for verb in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(verb)
            && let Some(Value::String(path)) = rule.get_field_by_name(verb).map(|v| v.into_owned())
        {
            return (verb.to_uppercase(), path);
        }
    }
    let Some(Value::Message(custom)) = rule.get_field_by_name("custom").map(|v| v.into_owned())
    else {
        panic!("rule without pattern: {rule:?}");
    };
    let field = |name| match custom.get_field_by_name(name).map(|v| v.into_owned()) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    (field("kind").to_uppercase(), field("path"))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read corpus dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path.strip_prefix(root).expect("under root").to_owned());
        }
    }
}

/// A gRPC server that answers every unary call with the request's own bytes. Google APIs put
/// `name` in field 1 of both the request and the resource, so a GET echoes the resource name.
mod echo {
    use super::*;

    #[derive(Clone, Copy, Default)]
    pub struct RawCodec;

    impl Codec for RawCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = RawCodec;
        type Decoder = RawCodec;
        fn encoder(&mut self) -> Self::Encoder {
            RawCodec
        }
        fn decoder(&mut self) -> Self::Decoder {
            RawCodec
        }
    }

    impl Encoder for RawCodec {
        type Item = Bytes;
        type Error = tonic::Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for RawCodec {
        type Item = Bytes;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }

    pub async fn serve() -> SocketAddr {
        let router =
            axum::Router::new().fallback(|request: http::Request<axum::body::Body>| async {
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                let echo = tower::service_fn(|request: tonic::Request<Bytes>| async move {
                    Ok::<_, tonic::Status>(tonic::Response::new(request.into_inner()))
                });
                grpc.unary(echo, request).await
            });
        super::support::serve_grpc(router).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_routes_and_end_to_end() {
    let binary = tokio::task::spawn_blocking(build_gateway)
        .await
        .expect("build task");

    // Every non-streaming binding is in the route table.
    let table = support::printed(&binary, &["routes"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expected = expected_bindings();
    assert!(
        expected.len() > 150,
        "only {} bindings found",
        expected.len()
    );
    for (verb, template, rpc) in &expected {
        assert!(
            rows.iter()
                .any(|r| r.len() == 3 && r[0] == verb && r[1] == template && r[2] == rpc),
            "missing from the route table: {verb} {template} {rpc}"
        );
    }

    // The demo asked for at build time is listed beside the corpus.
    assert!(
        rows.iter()
            .any(|r| r.len() == 3 && r[2] == "protogate.demo.v1.LibraryService.ListShelves"),
        "the demo is missing from the route table"
    );

    // The corpus's OpenAPI document is valid too.
    let document = support::printed(&binary, &["openapi"]);
    if let Err(problems) = support::tools::validate_openapi(&document) {
        panic!("openapi-spec-validator refused the corpus's document:\n{problems}");
    }

    // A few routes end to end, through a real gRPC server.
    let upstream = echo::serve().await;
    let gateway = support::start_binary(&binary, &[&format!("--upstream=http://{upstream}")]);
    let client = reqwest::Client::new();
    let base = &gateway.base;
    let get = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(path).send().await.expect("request");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("JSON body");
            (status, body)
        }
    };

    let (status, body) = get(format!("{base}/v1/projects/p1/locations/l1/jobs/j1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "projects/p1/locations/l1/jobs/j1");

    let (status, body) = get(format!(
        "{base}/v1/projects/p1/locations/us-east1/instances/cache%2D1"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["name"],
        "projects/p1/locations/us-east1/instances/cache-1"
    );

    let response = client
        .post(format!("{base}/v1/projects/p1/locations/l1/jobs/j1:pause"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("pause");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["name"], "projects/p1/locations/l1/jobs/j1");

    let response = client
        .delete(format!("{base}/v1/projects/p1/locations/l1/jobs/j1"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body, serde_json::json!({}));

    // `**` followed by more segments: Firestore's ListDocuments (the request's `parent`, field 1,
    // comes back as the response's first field, its documents: so only the status is checked)
    // and Discovery Engine's purge with a custom verb.
    let (status, body) = get(format!(
        "{base}/v1/projects/p/databases/d/documents/rooms/r1/messages"
    ))
    .await;
    assert_ne!(status, 404, "{body}");
    let route = |verb: &str, template: &str, rpc: &str| {
        assert!(
            rows.iter()
                .any(|r| r.len() == 3 && r[0] == verb && r[1] == template && r[2] == rpc),
            "missing from the route table: {verb} {template} {rpc}"
        );
    };
    route(
        "GET",
        "/v1/{parent=projects/*/databases/*/documents/*/**}/{collection_id}",
        "google.firestore.v1.Firestore.ListDocuments",
    );
    route(
        "POST",
        "/v1/{parent=projects/*/locations/*/dataStores/**}/suggestionDenyListEntries:purge",
        "google.cloud.discoveryengine.v1.CompletionService.PurgeSuggestionDenyListEntries",
    );
    // Of BigQuery Storage v1beta1's two bindings matching the same requests, the first serves.
    assert!(
        !table.contains("google.cloud.bigquery.storage.v1beta1.BigQueryStorage.SplitReadStream"),
        "the later duplicate binding is left out"
    );

    let (status, body) = get(format!("{base}/v1/no/such/route")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], 5);

    // Streaming-free corpus bindings with a wrong method get 405 and Allow.
    let response = client
        .put(format!("{base}/v1/projects/p1/locations/l1/jobs/j1:pause"))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status().as_u16(), 405);
    assert!(response.headers().contains_key("allow"));

    // Without an upstream, the corpus services answer 503 naming the flag to set; the demo,
    // asked for at build time, runs in-process beside them.
    let bare = support::start_binary(&binary, &[]);
    let (status, body) = get(format!("{}/v1/projects/p1/locations/l1/jobs/j1", bare.base)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14);
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("--upstream google.cloud.scheduler.v1.CloudScheduler=URL"),
        "{message}"
    );
    let (status, _) = get(format!("{}/demo/v1/shelves", bare.base)).await;
    assert_eq!(status, 200);
}

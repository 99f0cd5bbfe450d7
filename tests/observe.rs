//! What the gateway says about itself, through the real binary in front of a real tonic
//! backend: mixed traffic (two unary routes, an unrouted path, a gRPC error, an auth refusal, a
//! server stream as NDJSON, SSE and WebSocket), then `/metrics` scraped from the admin listener and
//! parsed with prometheus_client's OpenMetrics parser, the access log read off stdout, request
//! ids followed from the client to the backend and back, and reloads counted.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::tools::{Sample, parse_metrics};

const API_KEY: &str = "the-observed-key";

fn file(name: &str, text: &str) -> PathBuf {
    support::test_file("observe", name, text)
}

/// A gateway in front of the library backend at `backend`, with JSON access logs, an API key
/// that `/demo/v1/shelves` requires and every other demo route takes.
fn config(backend: std::net::SocketAddr) -> String {
    format!(
        r#"
[defaults]
upstream = "library"

[upstreams.library]
endpoints = ["http://{backend}"]

[log]
access = true
format = "json"

[auth.api_keys]
keys = [{{ name = "ci", sha256 = "{hash}" }}]

[[routes]]
match = "/demo/v1/shelves"
auth = "authenticated"

[[routes]]
match = "/demo/**"
auth = "public"
"#,
        hash = protogate::ApiKey::hash(API_KEY)
    )
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .expect("answered in time")
        .expect("answered")
}

/// The status, the `X-Request-Id` and the body of a GET.
async fn call(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let response = get(url, headers).await;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .expect("every answer has an id")
        .to_str()
        .expect("ASCII")
        .to_owned();
    (status, id, response.text().await.expect("body"))
}

/// The value of the sample `name` with exactly `labels` among its labels (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, want)| sample.labels.get(*key).map(String::as_str) == Some(*want))
        })
        .map(|sample| sample.value)
        .sum()
}

/// Scrapes until `ready` holds (the last requests end as their answers are sent), at most 10 s.
async fn scrape(admin: &str, ready: impl Fn(&[Sample]) -> bool) -> (String, Vec<Sample>) {
    let started = Instant::now();
    loop {
        let response = get(&format!("{admin}/metrics"), &[]).await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = response.text().await.expect("text");
        let samples = parse_metrics(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
        if ready(&samples) || started.elapsed() > Duration::from_secs(10) {
            return (text, samples);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The access log lines printed so far (waiting up to 10 s for `count` of them).
fn access_lines(gateway: &support::Administered, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while lines.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = gateway.lines.recv_timeout(left) else {
            break;
        };
        let Ok(object) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if object.get("request_id").is_some() {
            lines.push(object);
        }
    }
    lines
}

/// Opens a WebSocket at `url` and reads it to its close: the request id of its 101 answer, and
/// the messages received.
async fn websocket_messages(url: &str) -> (String, usize) {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let connecting = tokio_tungstenite::connect_async(url);
    let (mut socket, response) = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("in time")
        .expect("upgraded");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let mut messages = 0;
    let reading = async {
        while let Some(frame) = socket.next().await {
            match frame.expect("a frame") {
                Message::Text(_) => messages += 1,
                Message::Close(close) => {
                    assert_eq!(close.map(|close| u16::from(close.code)), Some(1000));
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("closed in time");
    (id, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_access_logs_and_request_ids_follow_the_traffic() {
    let backend = support::library::serve().await;
    let config = file("gateway.toml", &config(backend));
    let gateway = support::start_with_admin(&["--config", config.to_str().expect("UTF-8")]);
    let base = &gateway.base;
    let key = [("x-api-key", API_KEY)];

    // Request ids: generated, kept when sane, replaced when not; the backend sees each.
    let (status, made, body) = call(&format!("{base}/demo/v1/shelves/1"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(made.len(), 32, "{made}");
    let shelf: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(shelf["theme"], made.as_str(), "the backend saw the id");

    let sane = "client-id.42";
    let (_, kept, body) = call(
        &format!("{base}/demo/v1/shelves/2"),
        &[("x-request-id", sane), ("x-api-key", API_KEY)],
    )
    .await;
    assert_eq!(kept, sane);
    let shelf: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(shelf["theme"], sane);

    let (_, replaced, body) = call(
        &format!("{base}/demo/v1/shelves/3"),
        &[("x-request-id", "not sane {}")],
    )
    .await;
    assert_ne!(replaced, "not sane {}");
    assert_eq!(replaced.len(), 32);
    assert_ne!(replaced, made);
    let shelf: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(shelf["theme"], replaced.as_str());

    // The second route, twice with the key it needs and once without.
    for _ in 0..2 {
        assert_eq!(call(&format!("{base}/demo/v1/shelves"), &key).await.0, 200);
    }
    let (status, refused, _) = call(&format!("{base}/demo/v1/shelves"), &[]).await;
    assert_eq!(status, 401);
    // A path no route matches, a call the backend fails, a stream that ends.
    let (status, unrouted, _) = call(&format!("{base}/nowhere/at/all"), &[]).await;
    assert_eq!(status, 404);
    let (status, missing, _) = call(&format!("{base}/demo/v1/shelves/missing"), &[]).await;
    assert_eq!(status, 404);
    let (status, streamed, body) =
        call(&format!("{base}/demo/v1/shelves/ending/books:stream"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 1, "{body}");
    let events = [("accept", "text/event-stream")];
    let (status, _, body) = call(
        &format!("{base}/demo/v1/shelves/ending/books:stream"),
        &events,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.ends_with("event: end\ndata: {}\n\n"), "{body}");
    let socketed = websocket_messages(&format!(
        "{}/demo/v1/shelves/ending/books:stream",
        base.replacen("http://", "ws://", 1)
    ))
    .await;

    let requests = "protogate_http_requests_total";
    let (text, samples) = scrape(&gateway.admin, |samples| {
        value(samples, requests, &[]) >= 11.0
            && value(samples, "protogate_streams_ended_total", &[]) >= 3.0
    })
    .await;
    let get_shelf = "/demo/v1/{name=shelves/*}";
    let list = "/demo/v1/shelves";
    let stream = "/demo/v1/{parent=shelves/*}/books:stream";
    let ok = [("status", "200"), ("code", "OK"), ("method", "GET")];
    let count = |route: &str, rest: &[(&str, &str)]| {
        let mut labels = vec![("route", route)];
        labels.extend_from_slice(rest);
        value(&samples, requests, &labels)
    };
    assert_eq!(count(get_shelf, &ok), 3.0, "{text}");
    assert_eq!(count(list, &ok), 2.0, "{text}");
    assert_eq!(
        count(list, &[("status", "401"), ("code", "UNAUTHENTICATED")]),
        1.0
    );
    assert_eq!(
        count("unrouted", &[("status", "404"), ("code", "NOT_FOUND")]),
        1.0
    );
    assert_eq!(
        count(get_shelf, &[("status", "404"), ("code", "NOT_FOUND")]),
        1.0
    );
    assert_eq!(count(stream, &ok), 2.0);
    let upgraded = [("status", "101"), ("code", "OK")];
    assert_eq!(count(stream, &upgraded), 1.0, "{text}");
    assert_eq!(value(&samples, requests, &[]), 11.0, "nothing else: {text}");

    // Latency and sizes of the same requests; streams apart.
    let duration = "protogate_http_request_duration_seconds_count";
    assert_eq!(value(&samples, duration, &[("route", get_shelf)]), 4.0);
    assert_eq!(value(&samples, duration, &[("route", stream)]), 0.0);
    assert_eq!(
        value(&samples, "protogate_http_response_size_bytes_count", &[]),
        11.0
    );
    assert!(
        value(
            &samples,
            "protogate_http_response_size_bytes_sum",
            &[("route", list)]
        ) > 0.0
    );
    assert_eq!(
        value(&samples, "protogate_http_requests_in_flight", &[]),
        0.0
    );
    assert_eq!(socketed.1, 1, "one book over the WebSocket");
    // Each transport's stream: none open now, one ended well, its one message out.
    for transport in ["ndjson", "sse", "websocket"] {
        let open = value(
            &samples,
            "protogate_streams_open",
            &[("transport", transport)],
        );
        assert_eq!(open, 0.0, "{transport}");
        let ended = [("transport", transport), ("code", "OK")];
        let ended = value(&samples, "protogate_streams_ended_total", &ended);
        assert_eq!(ended, 1.0, "{transport}");
        let out = [("transport", transport), ("direction", "out")];
        let sent = value(&samples, "protogate_stream_messages_total", &out);
        // SSE's closing `end` event is not a message.
        assert_eq!(sent, 1.0, "{transport}");
    }
    let refusals = value(
        &samples,
        "protogate_auth_failures_total",
        &[("reason", "missing")],
    );
    assert_eq!(refusals, 1.0);

    // The upstream: one call per request that reached it, on one connection, its one endpoint up.
    let endpoint = backend.to_string();
    let at = [("upstream", "library"), ("endpoint", endpoint.as_str())];
    assert_eq!(
        value(
            &samples,
            "protogate_upstream_call_duration_seconds_count",
            &at
        ),
        9.0,
        "{text}"
    );
    assert!(value(&samples, "protogate_upstream_connections_opened_total", &at) >= 1.0);
    assert_eq!(value(&samples, "protogate_upstream_endpoint_up", &at), 1.0);
    let build = samples
        .iter()
        .find(|sample| sample.name == "protogate_build_info")
        .expect("build info");
    assert_eq!(build.labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(build.labels["rpcs"].parse::<usize>().expect("a number") > 0);

    // No label holds a path, an id or a client's address: routes are templates of this build.
    let templates: BTreeSet<String> = support::printed(support::binary(), &["routes"])
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .chain(["unrouted".to_owned()])
        .collect();
    let ids = [
        &made,
        &kept,
        &replaced,
        &refused,
        &unrouted,
        &missing,
        &streamed,
        &socketed.0,
    ];
    for sample in &samples {
        for (name, label) in &sample.labels {
            if name == "route" {
                assert!(templates.contains(label), "route label {label:?}");
            }
            for raw in [
                "/nowhere",
                "shelves/1",
                "shelves/missing",
                "shelves/ending",
                API_KEY,
            ] {
                assert!(!label.contains(raw), "{name}={label:?} holds {raw}");
            }
            assert!(!ids.iter().any(|id| label.contains(id.as_str())));
            if name != "endpoint" {
                assert!(!label.contains("127.0.0.1"), "{name}={label:?}");
            }
        }
    }

    // One access line per request, with its fields.
    let lines = access_lines(&gateway, 11);
    assert_eq!(lines.len(), 11, "{lines:#?}");
    let by_id: BTreeMap<&str, &Value> = lines
        .iter()
        .map(|line| (line["request_id"].as_str().expect("an id"), line))
        .collect();
    let line = by_id[sane];
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(
        line["client"]
            .as_str()
            .expect("client")
            .starts_with("127.0.0.1:")
    );
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], get_shelf);
    assert_eq!(line["rpc"], "protogate.demo.v1.LibraryService.GetShelf");
    assert_eq!(line["status"], 200);
    assert_eq!(line["code"], "OK");
    assert_eq!(line["bytes_in"], 0);
    assert!(line["bytes_out"].as_u64().expect("bytes") > 0);
    assert!(line["duration_ms"].as_f64().expect("ms") >= 0.0);
    assert_eq!(line["upstream"], "library");
    assert_eq!(line["endpoint"], endpoint.as_str());
    assert_eq!(line["subject"], "ci", "the key's name");

    let line = by_id[unrouted.as_str()];
    assert_eq!(
        (line["status"].as_u64(), line["code"].as_str()),
        (Some(404), Some("NOT_FOUND"))
    );
    assert!(line.get("route").is_none() && line.get("upstream").is_none());
    let line = by_id[refused.as_str()];
    assert_eq!(line["auth_failure"], "missing");
    assert!(line.get("upstream").is_none(), "refused before the call");
    let line = by_id[missing.as_str()];
    assert_eq!(line["code"], "NOT_FOUND");
    assert_eq!(line["upstream"], "library");
    let line = by_id[streamed.as_str()];
    assert_eq!(line["transport"], "ndjson");
    assert_eq!(
        (line["messages_in"].as_u64(), line["messages_out"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(
        by_id[made.as_str()].get("subject").is_none(),
        "no key, no subject"
    );
    let transports: BTreeSet<&str> = lines
        .iter()
        .filter_map(|line| line["transport"].as_str())
        .collect();
    assert_eq!(transports, BTreeSet::from(["ndjson", "sse", "websocket"]));
    let line = by_id[socketed.0.as_str()];
    assert_eq!(
        (line["status"].as_u64(), line["code"].as_str()),
        (Some(101), Some("OK"))
    );
    assert_eq!(line["messages_out"], 1);
    assert!(line["bytes_out"].as_u64().expect("bytes") > 0);

    // Reloads are counted: one that takes, one that does not; the counts survive them.
    let reloads = "protogate_config_reloads_total";
    let touched = format!("{}\n# touched\n", self::config(backend));
    let refused = "[server]\nno_such_key = 1\n".to_owned();
    for (contents, outcome) in [(touched, "ok"), (refused, "failed")] {
        std::fs::write(&config, contents).expect("written");
        let counted = [("outcome", outcome)];
        let (text, samples) = scrape(&gateway.admin, |samples| {
            value(samples, reloads, &counted) >= 1.0
        })
        .await;
        assert_eq!(value(&samples, reloads, &counted), 1.0, "{text}");
        assert_eq!(value(&samples, requests, &[]), 11.0, "{text}");
    }
}

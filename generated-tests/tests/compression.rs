//! Compression (`protogate::CompressionLayer`) over real sockets: JSON answers in the coding
//! the client prefers above the minimum size, NDJSON and SSE streams whose first message
//! arrives decompressible while the stream is still open, WebSocket upgrades left alone, and
//! compressed request bodies decoded within the body limit (a zip bomb gets 413, an unknown
//! coding 415).

use std::io::Write as _;
use std::time::Duration;

use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::streams::{StreamBackend, stream_gateway};
use generated_tests::{gateway_to, start_backend};
use protogate::{Compression, CompressionLayer, Encoding, Limits, LimitsLayer};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(10);

async fn gateway(configure: impl FnOnce(protogate::Gateway) -> protogate::Gateway) -> String {
    let backend = start_backend().await.expect("backend");
    gateway_to(backend, binding_service_gateway::remote, |gateway| {
        configure(gateway.route_layer(CompressionLayer::new(Compression::new().min_bytes(200))))
    })
    .await
    .expect("gateway")
}

/// A decoder fed piece by piece, holding what it has decoded so far.
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    fn new(encoding: &str) -> Self {
        match encoding {
            "gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            "br" => Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            "zstd" => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new()).expect("zstd")),
            other => panic!("no decoder for {other}"),
        }
    }

    /// Feeds `piece`; everything decoded so far.
    fn feed(&mut self, piece: &[u8]) -> &[u8] {
        match self {
            Decoder::Gzip(decoder) => {
                decoder.write_all(piece).expect("valid gzip");
                decoder.flush().expect("flush");
                decoder.get_ref()
            }
            Decoder::Brotli(decoder) => {
                decoder.write_all(piece).expect("valid br");
                decoder.flush().expect("flush");
                decoder.get_ref()
            }
            Decoder::Zstd(decoder) => {
                decoder.write_all(piece).expect("valid zstd");
                decoder.flush().expect("flush");
                decoder.get_ref()
            }
        }
    }
}

/// A whole compressed stream, decoded to its end.
fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut decoded = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(data)
            .read_to_end(&mut decoded)
            .map(drop),
        "br" => brotli::Decompressor::new(data, 4096)
            .read_to_end(&mut decoded)
            .map(drop),
        "zstd" => zstd::stream::read::Decoder::new(data)
            .and_then(|mut decoder| decoder.read_to_end(&mut decoded))
            .map(drop),
        other => panic!("no decoder for {other}"),
    }
    .unwrap_or_else(|error| panic!("a complete {encoding} stream: {error}"));
    decoded
}

fn encode(encoding: &str, data: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).expect("write");
            encoder.finish().expect("finish")
        }
        "br" => {
            let mut encoder = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
            encoder.write_all(data).expect("write");
            encoder.into_inner()
        }
        "zstd" => zstd::encode_all(data, 3).expect("zstd"),
        other => panic!("no encoder for {other}"),
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("text"))
}

#[tokio::test]
async fn json_is_compressed_in_the_coding_the_client_prefers() {
    let base = gateway(|gateway| gateway).await;
    let client = reqwest::Client::new();
    let name = "a-rather-long-name-".repeat(20);
    let expected = json!({"name": name});
    for (accept, encoding) in [
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("zstd", Some("zstd")),
        ("gzip, deflate, br, zstd", Some("br")),
        ("gzip;q=0.5, zstd;q=0.8, br;q=0.1", Some("zstd")),
        ("*;q=0.1, br;q=0", Some("zstd")),
        ("identity", None),
        ("deflate", None),
    ] {
        let response = client
            .get(format!("{base}/v1/echo/{name}"))
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200, "{accept}");
        assert_eq!(header(&response, "content-encoding"), encoding, "{accept}");
        assert_eq!(
            header(&response, "vary"),
            Some("accept-encoding"),
            "{accept}"
        );
        let sent = response.bytes().await.expect("body");
        let body = match encoding {
            Some(encoding) => {
                let mut decoder = Decoder::new(encoding);
                decoder.feed(&sent).to_vec()
            }
            None => sent.to_vec(),
        };
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body, expected, "{accept}");
        if encoding.is_some() {
            assert!(sent.len() < 200, "{accept}: {} bytes", sent.len());
        }
    }

    // Below the minimum size: as it is, with its length.
    let response = client
        .get(format!("{base}/v1/echo/short"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("answered");
    assert!(header(&response, "content-encoding").is_none());
    assert!(header(&response, "content-length").is_some());
    // Errors are JSON too, and compressed when large enough.
    let message = "m".repeat(300);
    let response = client
        .get(format!("{base}/v1/fail/5?message={message}"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "content-encoding"), Some("gzip"));
    let body = Decoder::new("gzip")
        .feed(&response.bytes().await.expect("body"))
        .to_vec();
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["message"], message.as_str());
}

/// Reads `response` until what is decoded so far holds `lines` complete lines (the bytes read
/// kept in `received`); those lines.
async fn decoded_lines(
    response: &mut reqwest::Response,
    decoder: &mut Decoder,
    received: &mut Vec<u8>,
    lines: usize,
) -> Vec<String> {
    let mut decoded = Vec::new();
    loop {
        let text = String::from_utf8(decoded.clone()).expect("UTF-8");
        if text.matches('\n').count() >= lines {
            return text.lines().map(str::to_owned).collect();
        }
        let chunk = tokio::time::timeout(PATIENCE, response.chunk())
            .await
            .expect("a chunk within the patience")
            .expect("body")
            .expect("the stream is still open");
        received.extend_from_slice(&chunk);
        decoded = decoder.feed(&chunk).to_vec();
    }
}

#[tokio::test]
async fn each_message_of_a_stream_arrives_decompressible_before_the_stream_ends() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |gateway| {
        gateway.route_layer(CompressionLayer::new(Compression::new()))
    })
    .await;
    let client = reqwest::Client::new();
    for (encoding, accept) in [
        ("gzip", "application/x-ndjson"),
        ("br", "application/x-ndjson"),
        ("zstd", "text/event-stream"),
        ("gzip", "text/event-stream"),
    ] {
        let name = format!("{encoding}-{}", accept.len());
        // Two ticks, the stream held open after the first until released.
        let mut response = client
            .get(format!(
                "{base}/v1/streams/{name}:count?count=2&gated=true&padding=40"
            ))
            .header("accept-encoding", encoding)
            .header("accept", accept)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-encoding"), Some(encoding));
        let mut decoder = Decoder::new(encoding);
        let padding = "p".repeat(40);
        let first = if accept == "text/event-stream" {
            format!("data: {}", json!({"name": name, "padding": padding}))
        } else {
            json!({"result": {"name": name, "padding": padding}}).to_string()
        };
        let mut received = Vec::new();
        let lines = decoded_lines(&mut response, &mut decoder, &mut received, 1).await;
        assert_eq!(
            lines.first(),
            Some(&first),
            "{encoding} {accept}: {lines:?}"
        );

        backend.observed.release(&name);
        while let Some(chunk) = tokio::time::timeout(PATIENCE, response.chunk())
            .await
            .expect("a chunk within the patience")
            .expect("body")
        {
            received.extend_from_slice(&chunk);
        }
        // The whole stream, a complete compressed stream.
        let text = String::from_utf8(decode(encoding, &received)).expect("UTF-8");
        assert!(text.starts_with(&first), "{encoding} {accept}: {text}");
        assert!(
            text.contains(r#""index":"1""#),
            "{encoding} {accept}: {text}"
        );
    }
}

#[tokio::test]
async fn websocket_upgrades_are_not_compressed() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |gateway| {
        gateway.route_layer(CompressionLayer::new(Compression::new().min_bytes(0)))
    })
    .await;
    let url = format!(
        "{}/v1/streams/w:count?count=1&padding=2000",
        base.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("a request");
    request.headers_mut().insert(
        "accept-encoding",
        "gzip, br, zstd".parse().expect("a value"),
    );
    let (mut socket, response) =
        tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .expect("in time")
            .expect("upgraded");
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("content-encoding").is_none());
    let frame = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("in time")
        .expect("a frame")
        .expect("valid");
    let text = frame.into_text().expect("a text frame");
    let tick: Value = serde_json::from_str(text.as_str()).expect("plain JSON");
    assert_eq!(tick["name"], "w");
}

#[tokio::test]
async fn compressed_request_bodies_are_decoded_within_the_body_limit() {
    let base =
        gateway(|gateway| gateway.route_layer(LimitsLayer::new(Limits::new().body_bytes(4096))))
            .await;
    let client = reqwest::Client::new();
    let post = |encoding: &str, body: Vec<u8>| {
        client
            .post(format!("{base}/v1/echo"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let body = json!({"name": "n".repeat(3000)}).to_string();
    // A bomb: a few kilobytes that inflate to 16 MiB of JSON whitespace.
    let bomb = vec![b' '; 16 << 20];
    for encoding in ["gzip", "br", "zstd"] {
        let response = post(encoding, encode(encoding, body.as_bytes()))
            .await
            .expect("answered");
        assert_eq!(response.status(), 200, "{encoding}");
        let echoed: Value = response.json().await.expect("JSON");
        assert_eq!(echoed["name"].as_str().map(str::len), Some(3000));

        let compressed = encode(encoding, &bomb);
        assert!(
            compressed.len() < 128 << 10,
            "{encoding}: {}",
            compressed.len()
        );
        let response = tokio::time::timeout(PATIENCE, post(encoding, compressed))
            .await
            .expect("refused in time")
            .expect("answered");
        assert_eq!(response.status(), 413, "{encoding}");
        let refusal: Value = response.json().await.expect("a Status");
        assert_eq!(refusal["code"], 8);
        assert_eq!(
            refusal["message"],
            "request body exceeds the limit of 4096 bytes"
        );
    }

    let response = post("gzip", b"not gzip at all".to_vec())
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    let refusal: Value = response.json().await.expect("a Status");
    assert_eq!(refusal["code"], 3);
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the request body is not valid gzip")),
        "{refusal}"
    );

    for coding in ["compress", "gzip, br"] {
        let response = post(coding, body.clone().into_bytes())
            .await
            .expect("answered");
        assert_eq!(response.status(), 415, "{coding}");
        assert_eq!(header(&response, "accept-encoding"), Some("gzip, br, zstd"));
        let refusal: Value = response.json().await.expect("a Status");
        assert_eq!(refusal["code"], 3);
        assert!(
            refusal["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("`{coding}`"))),
            "{refusal}"
        );
    }
    // `identity` is no coding at all.
    let response = post("identity", body.clone().into_bytes())
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_compressed_request_stream_is_decoded_as_it_arrives() {
    let backend = StreamBackend::default();
    let base = stream_gateway(&backend, true, |gateway| {
        gateway.route_layer(CompressionLayer::new(
            Compression::new().encodings([Encoding::Gzip]),
        ))
    })
    .await;
    let addends = "{\"value\":2}\n".repeat(500);
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/streams/sums/z"))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "zstd")
        .body(encode("zstd", addends.as_bytes()))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let total: Value = response.json().await.expect("JSON");
    assert_eq!(total, json!({"label": "z", "sum": "1000", "count": 500}));
}

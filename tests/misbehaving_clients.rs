//! Clients that misbehave, against the stock gateway on its demo over real sockets: requests
//! pipelined on one HTTP/1.1 connection, headers larger than any limit, bytes that are not UTF-8
//! wherever a client can put them, an HTTP/2 rapid reset (CVE-2023-44487's pattern) and a
//! CONTINUATION flood. Each gets a clear refusal or its answers in order, and a well-behaved
//! client beside it is served throughout.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

fn address(running: &support::Running) -> SocketAddr {
    running
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("an address")
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Sends `request` (raw bytes, `Connection: close` among its headers) and reads the whole
/// answer; its status and its body, as JSON when it is JSON.
fn exchange(address: SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut stream = connect(address);
    stream.write_all(request).expect("writes");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A well-behaved client's request, answered 200 quickly.
fn served_as_usual(address: SocketAddr) {
    let started = Instant::now();
    let (status, body) = exchange(
        address,
        b"GET /demo/v1/shelves HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["shelves"].is_array(), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let gateway = support::start(&[]);
    let address = address(&gateway);
    let mut stream = connect(address);
    stream
        .write_all(
            b"GET /demo/v1/shelves HTTP/1.1\r\nhost: demo\r\n\r\n\
              GET /demo/v1/shelves/no-such-shelf HTTP/1.1\r\nhost: demo\r\n\r\n\
              GET /demo/v1/nowhere HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n",
        )
        .expect("writes");
    let mut answers = String::new();
    stream
        .read_to_string(&mut answers)
        .expect("answered, then closed");
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "404"], "{answers}");
}

#[test]
fn headers_larger_than_any_limit_are_refused_and_others_are_served() {
    let gateway = support::start(&[]);
    let address = address(&gateway);
    let mut request =
        b"GET /demo/v1/shelves HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n".to_vec();
    for index in 0..600 {
        request.extend_from_slice(format!("x-filler-{index}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let mut stream = connect(address);
    // The gateway may close before it has read everything: a refusal or a reset, never an answer.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    served_as_usual(address);
}

#[test]
fn bytes_that_are_not_utf8_are_refused_with_the_place_named() {
    let gateway = support::start(&[]);
    let address = address(&gateway);
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "a path variable",
            b"GET /demo/v1/shelves/%FF HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n",
            "UTF-8",
        ),
        (
            "a query parameter",
            b"GET /demo/v1/shelves?pageToken=%FF HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n",
            "UTF-8",
        ),
        (
            "a JSON body",
            b"POST /demo/v1/shelves HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\
              content-type: application/json\r\ncontent-length: 13\r\n\r\n{\"theme\":\"\xff\"}",
            "UTF-8",
        ),
        (
            "a metadata header",
            b"GET /demo/v1/shelves HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\
              grpc-metadata-x-note: caf\xc3\xa9 \xff\r\n\r\n",
            "grpc-metadata-x-note",
        ),
    ];
    for (place, request, named) in cases {
        let (status, body) = exchange(address, request);
        assert_eq!(status, 400, "{place}: {body}");
        assert_eq!(body["code"], 3, "{place}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{place}: {body}");
    }
    // A byte that is not UTF-8 in the request line itself is refused by the HTTP parser.
    let (status, _) = exchange(
        address,
        b"GET /demo/v1/shelves/\xff HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n",
    );
    assert!(status == 400 || status == 404, "{status}");
    served_as_usual(address);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_leaves_other_clients_served() {
    let gateway = support::start(&[]);
    let address = address(&gateway);
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    let connection = tokio::spawn(connection);
    // Streams opened and reset at once, as fast as the connection takes them: bounded in count
    // and time, and stopped as soon as the gateway closes the connection.
    let started = Instant::now();
    let mut reset = 0;
    while reset < 10_000 && started.elapsed() < Duration::from_secs(10) {
        let Ok(mut ready) = client.clone().ready().await else {
            break;
        };
        let request = http::Request::get(format!("http://{address}/demo/v1/shelves"))
            .body(())
            .expect("request");
        let Ok((_, mut stream)) = ready.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        reset += 1;
    }
    assert!(reset > 0, "no stream opened");
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
    tokio::task::spawn_blocking(move || served_as_usual(address))
        .await
        .expect("served");
}

/// An HTTP/2 frame: length, type, flags, stream and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("small");
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HPACK literal header field without indexing, with a new name.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut field = vec![0x00];
    for text in [name, value] {
        // A 7-bit prefix integer, not Huffman-coded.
        let mut length = text.len();
        if length < 127 {
            field.push(u8::try_from(length).expect("small"));
        } else {
            field.push(127);
            length -= 127;
            while length >= 128 {
                field.push(u8::try_from(length % 128).expect("small") | 0x80);
                length /= 128;
            }
            field.push(u8::try_from(length).expect("small"));
        }
        field.extend_from_slice(text.as_bytes());
    }
    field
}

#[test]
fn a_continuation_flood_is_cut_off_and_others_are_served() {
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const CONTINUATION: u8 = 0x9;
    const END_STREAM: u8 = 0x1;

    let gateway = support::start(&[]);
    let address = address(&gateway);
    let mut stream = connect(address);
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(frame(SETTINGS, 0, 0, &[]));
    // :method GET, :scheme http, :path /, from HPACK's static table; no END_HEADERS.
    let mut block = vec![0x82, 0x86, 0x84];
    block.extend(literal(":authority", "demo"));
    opening.extend(frame(HEADERS, END_STREAM, 1, &block));
    stream.write_all(&opening).expect("writes");

    // CONTINUATION frames of 4 KiB of headers each, never the last: at most 16 MiB are offered,
    // and the gateway must stop reading long before.
    let piece = frame(CONTINUATION, 0, 1, &literal("x-flood", &"a".repeat(4_000)));
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < 16 << 20 && started.elapsed() < Duration::from_secs(20) {
        if stream.write_all(&piece).is_err() {
            break;
        }
        sent += piece.len();
    }
    // Whatever was written, the connection ends: a GOAWAY and a close, or a reset.
    let mut rest = Vec::new();
    let ended = stream.read_to_end(&mut rest).is_ok() || sent < 16 << 20;
    assert!(
        ended,
        "the connection stayed open after {sent} bytes of headers"
    );
    assert!(sent < 16 << 20, "all {sent} bytes of headers were taken");
    served_as_usual(address);
}

//! Unbound routes over real sockets: RPCs without `google.api.http` rules (the generated-tests
//! build turns `unbound_methods` on) served at `POST /{package}.{Service}/{Method}` with the whole
//! message as the body, in every streaming shape and over WebSocket, when the gateway's switch is
//! on; 404, unlisted and undocumented when it is off.

#[path = "../../tests/support/tools.rs"]
#[allow(dead_code)]
mod tools;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use generated_tests::pb;
use generated_tests::pb::protogate::tests::unbound::v1::{
    bare_service_gateway, unbound_service_gateway,
};
use generated_tests::unbound::remote_gateway;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(10);

const SERVICE: &str = "/protogate.tests.unbound.v1.UnboundService";

/// `POST base+path` with `body`; the status, the content type and the body (JSON when it is).
async fn post(url: &str, body: &str) -> (u16, String, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body.to_owned())
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, body)
}

/// The lines of an NDJSON body, each parsed.
fn lines(body: &Value) -> Vec<Value> {
    body.as_str()
        .expect("several lines, not one JSON value")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn unary_rpcs_take_the_whole_message_as_their_body() {
    let base = remote_gateway(true).await.expect("gateway");
    let note = json!({"name": "n1", "count": 2, "tags": ["a", "b"]});
    let (status, content_type, body) =
        post(&format!("{base}{SERVICE}/Echo"), &note.to_string()).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(body, note);

    // A service with no rule at all is served too.
    let (status, _, body) = post(
        &format!("{base}/protogate.tests.unbound.v1.BareService/Ping"),
        r#"{"name":"x"}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!({"name": "pong x"})));
}

#[tokio::test]
async fn an_annotated_rpc_keeps_its_rule_only() {
    let base = remote_gateway(true).await.expect("gateway");
    let response = reqwest::get(format!("{base}/unbound/v1/notes/n2"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"name": "n2"})
    );
    let (status, _, body) = post(&format!("{base}{SERVICE}/Annotated"), "{}").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], 5, "{body}");
}

#[tokio::test]
async fn server_streams_answer_ndjson_and_server_sent_events() {
    let base = remote_gateway(true).await.expect("gateway");
    let url = format!("{base}{SERVICE}/Repeat");
    let request = r#"{"note":{"name":"r"},"times":3}"#;
    let (status, content_type, body) = post(&url, request).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    assert_eq!(
        lines(&body),
        [
            json!({"result": {"name": "r"}}),
            json!({"result": {"name": "r", "count": 1}}),
            json!({"result": {"name": "r", "count": 2}}),
        ]
    );

    let events = reqwest::Client::new()
        .post(&url)
        .header("accept", "text/event-stream")
        .body(request)
        .send()
        .await
        .expect("answered");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = events.text().await.expect("body");
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect();
    assert_eq!(
        data,
        [
            r#"{"name":"r"}"#,
            r#"{"name":"r","count":1}"#,
            r#"{"name":"r","count":2}"#,
            "{}"
        ],
        "{text}"
    );
}

#[tokio::test]
async fn client_and_bidi_streams_read_ndjson_bodies() {
    let base = remote_gateway(true).await.expect("gateway");
    let notes = "{\"name\":\"a\"}\n{\"name\":\"b\",\"count\":7}\n";
    let (status, _, body) = post(&format!("{base}{SERVICE}/Collect"), notes).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"notes": [{"name": "a"}, {"name": "b", "count": 7}]})
    );

    let (status, _, body) = post(&format!("{base}{SERVICE}/Chat"), notes).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        lines(&body),
        [
            json!({"result": {"name": "A"}}),
            json!({"result": {"name": "B", "count": 7}}),
        ]
    );
}

#[tokio::test]
async fn bidi_streams_over_websocket() {
    let base = remote_gateway(true).await.expect("gateway");
    let url = format!("{}{SERVICE}/Chat", base.replace("http://", "ws://"));
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    assert_eq!(response.status(), 101);
    for name in ["one", "two"] {
        socket
            .send(Message::text(json!({ "name": name }).to_string()))
            .await
            .expect("send");
        let answer = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("a frame");
        let answer: Value = serde_json::from_str(answer.to_text().expect("text")).expect("JSON");
        assert_eq!(answer, json!({"name": name.to_uppercase()}));
    }
    // An empty frame ends the request stream, and the call ends cleanly.
    socket.send(Message::text("")).await.expect("half close");
    let close = loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the close in time")
            .expect("open")
            .expect("a frame");
        if let Message::Close(close) = frame {
            break close.map(|close| u16::from(close.code));
        }
    };
    assert_eq!(close, Some(1000));
}

#[tokio::test]
async fn a_bad_value_is_a_400_status_naming_the_field() {
    let base = remote_gateway(true).await.expect("gateway");
    let (status, _, body) = post(&format!("{base}{SERVICE}/Echo"), r#"{"count":"many"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 3, "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(message.contains("`count`"), "{message}");

    let (status, _, body) = post(
        &format!("{base}{SERVICE}/Collect"),
        "{\"name\":\"a\"}\n{\"tags\":\"not a list\"}\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(message.contains("tags"), "{message}");
}

#[tokio::test]
async fn with_the_switch_off_unbound_routes_are_not_there() {
    let base = remote_gateway(false).await.expect("gateway");
    for path in [
        format!("{SERVICE}/Echo"),
        format!("{SERVICE}/Repeat"),
        format!("{SERVICE}/Collect"),
        format!("{SERVICE}/Chat"),
        "/protogate.tests.unbound.v1.BareService/Ping".to_owned(),
    ] {
        let (status, _, body) = post(&format!("{base}{path}"), r#"{"name":"x"}"#).await;
        assert_eq!((status, &body["code"]), (404, &json!(5)), "{path}: {body}");
    }
    let upgrade = tokio_tungstenite::connect_async(format!(
        "{}{SERVICE}/Chat",
        base.replace("http://", "ws://")
    ))
    .await;
    assert!(upgrade.is_err(), "no WebSocket either");
    // The annotated binding of the same service is served as ever.
    let response = reqwest::get(format!("{base}/unbound/v1/notes/n3"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
}

/// `(method, template, unbound)` of every route a gateway of both services lists.
fn listed(unbound_methods: bool) -> Vec<(&'static str, &'static str, bool)> {
    let upstream = protogate::Upstream::lazy("http://127.0.0.1:1").expect("an address");
    let gateway = protogate::Gateway::new()
        .with(unbound_service_gateway::remote(upstream.clone()))
        .and_then(|gateway| gateway.with(bare_service_gateway::remote(upstream)))
        .expect("no conflict")
        // Set after the services: it applies to them all the same.
        .unbound_methods(unbound_methods);
    gateway
        .routes()
        .iter()
        .map(|route| (route.method, route.template.text, route.unbound))
        .collect()
}

#[test]
fn routes_are_marked_and_listed_only_when_served() {
    assert_eq!(listed(false), [("GET", "/unbound/v1/notes/{name}", false)]);
    assert_eq!(
        listed(true),
        [
            ("GET", "/unbound/v1/notes/{name}", false),
            (
                "POST",
                "/protogate.tests.unbound.v1.UnboundService/Echo",
                true
            ),
            (
                "POST",
                "/protogate.tests.unbound.v1.UnboundService/Repeat",
                true
            ),
            (
                "POST",
                "/protogate.tests.unbound.v1.UnboundService/Collect",
                true
            ),
            (
                "POST",
                "/protogate.tests.unbound.v1.UnboundService/Chat",
                true
            ),
            ("POST", "/protogate.tests.unbound.v1.BareService/Ping", true),
        ]
    );
    // protogate's own ExternalAuth, compiled into this build without a rule, is never unbound.
    assert!(
        pb::SERVICES
            .iter()
            .all(|service| service.name != "protogate.api.ExternalAuth"),
        "{:?}",
        pb::SERVICES.iter().map(|s| s.name).collect::<Vec<_>>()
    );
}

/// The operations of a document: `(path, method, operationId, unbound)`.
fn operations(document: &str) -> Vec<(String, String, String, bool)> {
    let document: Value = serde_json::from_str(document).expect("JSON");
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            found.push((
                path.clone(),
                method.clone(),
                operation["operationId"].as_str().expect("an id").to_owned(),
                operation["x-protogate-unbound"] == json!(true),
            ));
        }
    }
    found
}

#[test]
fn the_document_has_them_only_when_they_are_served_and_stays_valid() {
    let mut unbound: Vec<_> = operations(pb::OPENAPI)
        .into_iter()
        .filter(|(.., unbound)| *unbound)
        .map(|(path, method, id, _)| (path, method, id))
        .collect();
    unbound.sort();
    let op = |path: &str, id: &str| (path.to_owned(), "post".to_owned(), id.to_owned());
    assert_eq!(
        unbound,
        [
            op(
                "/protogate.tests.unbound.v1.BareService/Ping",
                "BareService_Ping"
            ),
            op(
                "/protogate.tests.unbound.v1.UnboundService/Chat",
                "UnboundService_Chat"
            ),
            op(
                "/protogate.tests.unbound.v1.UnboundService/Collect",
                "UnboundService_Collect"
            ),
            op(
                "/protogate.tests.unbound.v1.UnboundService/Echo",
                "UnboundService_Echo"
            ),
            op(
                "/protogate.tests.unbound.v1.UnboundService/Repeat",
                "UnboundService_Repeat"
            ),
        ]
    );
    let document: Value = serde_json::from_str(pb::OPENAPI).expect("JSON");
    let chat = &document["paths"]["/protogate.tests.unbound.v1.UnboundService/Chat"]["post"];
    assert_eq!(
        chat["requestBody"]["x-protogate-streaming"]["contentType"], "application/x-ndjson",
        "{chat}"
    );
    assert!(
        chat["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{chat}"
    );

    let gateway = |on: bool| {
        let upstream = protogate::Upstream::lazy("http://127.0.0.1:1").expect("an address");
        protogate::Gateway::new()
            .unbound_methods(on)
            .with(bare_service_gateway::remote(upstream))
            .expect("no conflict")
    };
    let served = gateway(true).openapi(pb::OPENAPI);
    assert_eq!(operations(&served), operations(pb::OPENAPI));
    let bound = gateway(false).openapi(pb::OPENAPI);
    let left = operations(&bound);
    assert!(left.iter().all(|(.., unbound)| !unbound), "{left:?}");
    assert_eq!(left.len(), operations(pb::OPENAPI).len() - unbound.len());
    let tags: Value = serde_json::from_str::<Value>(&bound).expect("JSON")["tags"].clone();
    assert!(!tags.to_string().contains("BareService"), "{tags}");
    assert!(tags.to_string().contains("UnboundService"), "{tags}");

    for document in [served, bound] {
        if let Err(problems) = tools::validate_openapi(&document) {
            panic!("openapi-spec-validator refused the document:\n{problems}");
        }
    }
}

//! The generated gateway over real sockets: a real HTTP client, the gateway on 127.0.0.1, and a
//! tonic backend behind it that echoes what it received.

mod client;

use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::{Backend, remote_gateway, serve_gateway, start_backend};
use protogate::{Gateway, JsonOptions};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use client::call;

async fn get(url: &str) -> (StatusCode, Value) {
    call(Method::GET, url, None).await
}

#[tokio::test]
async fn single_segment_variables_are_fully_decoded() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = get(&format!("{base}/v1/echo/hello%2Fworld%20x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"name": "hello/world x"}));
}

#[tokio::test]
async fn multi_segment_variables_keep_encoded_slashes() {
    let base = remote_gateway().await.expect("gateway");
    let (_, body) = get(&format!("{base}/v1/shelves/s1/books/b%2F2%20x")).await;
    assert_eq!(body, json!({"name": "shelves/s1/books/b%2F2 x"}));
    let (_, body) = get(&format!("{base}/v1/files/a/b/c.txt")).await;
    assert_eq!(body, json!({"rest": "files/a/b/c.txt"}));
    // `**` matches zero segments too.
    let (_, body) = get(&format!("{base}/v1/files")).await;
    assert_eq!(body, json!({"rest": "files"}));
}

#[tokio::test]
async fn nested_and_cross_package_path_fields() {
    let base = remote_gateway().await.expect("gateway");
    let (_, body) = get(&format!("{base}/v1/abc/nested")).await;
    assert_eq!(body, json!({"nested": {"name": "abc"}}));
    let (_, body) = get(&format!("{base}/v1/deep/inner/r-1")).await;
    assert_eq!(
        body,
        json!({"nested": {"deeper": {"name": "inner"}}, "remote": {"id": "r-1"}})
    );
}

#[tokio::test]
async fn typed_path_variables_and_their_errors() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = get(&format!("{base}/v1/alt2/-42/BLUE/true")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"number": "-42", "color": "BLUE", "flag": true})
    );
    let (_, body) = get(&format!("{base}/v1/alt2/7/2/false")).await;
    assert_eq!(body, json!({"number": "7", "color": "GREEN"}));

    let (status, body) = get(&format!("{base}/v1/alt2/seven/BLUE/true")).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 3);
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("`number`"), "{message}");
    let (status, body) = get(&format!("{base}/v1/alt2/1/PURPLE/true")).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().expect("message").contains("color"));
}

#[tokio::test]
async fn wildcards_outside_variables_and_precedence() {
    let base = remote_gateway().await.expect("gateway");
    let (_, body) = get(&format!("{base}/v1/wild/anything/x/7")).await;
    assert_eq!(body, json!({"id": "7"}));
    let (_, body) = get(&format!("{base}/v1/tail/9/a/b/c")).await;
    assert_eq!(body, json!({"id": "9"}));
    // Literal beats `**`.
    let (_, body) = get(&format!("{base}/v1/files/special")).await;
    assert_eq!(body, json!({"name": "literal"}));
    let (_, body) = get(&format!("{base}/v1/files/other")).await;
    assert_eq!(body, json!({"rest": "files/other"}));
}

#[tokio::test]
async fn query_parameters_of_every_type() {
    let base = remote_gateway().await.expect("gateway");
    let query = [
        "id=i",
        "number=-5",
        "color=GREEN",
        "flag=true",
        "nested.name=nn",
        "nested.count=3",
        "nested.deeper.name=dd",
        "tags=a",
        "tags=b+c",
        "ids=1",
        "ids=-2",
        "when=2024-01-02T03:04:05.5Z",
        "wait=1.5s",
        "mask=title,pageCount",
        "limit=7",
        "blob=-_8",
        "ratio=NaN",
        "score=-Infinity",
        "big=18446744073709551615",
        "maybe=",
        "customAlias=c",
        "colors=1",
        "colors=BLUE",
        "small=-3",
        "fixed=9",
        "pickText=pt",
        "remote.kind=FAR",
        "bogus=ignored",
    ]
    .join("&");
    let (status, body) = get(&format!("{base}/v1/echo/n?{query}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "name": "n",
            "id": "i",
            "number": "-5",
            "color": "GREEN",
            "flag": true,
            "nested": {"name": "nn", "count": 3, "deeper": {"name": "dd"}},
            "tags": ["a", "b c"],
            "ids": ["1", "-2"],
            "when": "2024-01-02T03:04:05.500Z",
            "wait": "1.500s",
            "mask": "title,pageCount",
            "limit": 7,
            "blob": "+/8=",
            "ratio": "NaN",
            "score": "-Infinity",
            "big": "18446744073709551615",
            "maybe": "",
            "customAlias": "c",
            "colors": ["RED", "BLUE"],
            "small": -3,
            "fixed": "9",
            "pickText": "pt",
            "remote": {"kind": "FAR"}
        })
    );
}

#[tokio::test]
async fn query_parameters_accept_proto_names() {
    let base = remote_gateway().await.expect("gateway");
    let (_, body) = get(&format!("{base}/v1/echo/n?custom_name=x&pick_number=4")).await;
    assert_eq!(
        body,
        json!({"name": "n", "customAlias": "x", "pickNumber": 4})
    );
}

#[tokio::test]
async fn bad_query_values_name_the_parameter() {
    let base = remote_gateway().await.expect("gateway");
    for (query, param) in [
        ("number=abc", "number"),
        ("limit=99999999999", "limit"),
        ("when=yesterday", "when"),
        ("flag=maybe", "flag"),
        ("nested.count=1.5", "nested.count"),
        ("blob=!!", "blob"),
    ] {
        let (status, body) = get(&format!("{base}/v1/echo/n?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], 3);
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("`{param}`")),
            "{query}: {message}"
        );
    }
}

#[tokio::test]
async fn unknown_query_parameters_can_be_rejected() {
    let backend = start_backend().await.expect("backend");
    let upstream = protogate::Upstream::lazy(&format!("http://{backend}")).expect("upstream URL");
    let gateway = Gateway::new()
        .reject_unknown_query_parameters(true)
        .with(binding_service_gateway::remote(upstream))
        .expect("routes");
    let base = serve_gateway(gateway).await.expect("gateway");
    let (status, body) = get(&format!("{base}/v1/echo/n?bogus=1")).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().expect("message").contains("bogus"));
    let (status, _) = get(&format!("{base}/v1/echo/n?id=1")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn whole_body_and_no_query() {
    let base = remote_gateway().await.expect("gateway");
    let sent = json!({
        "name": "b",
        "tags": ["x"],
        "nested": {"count": 2},
        "when": "2020-01-01T00:00:00Z",
        "limit": 3,
        "maybe": "",
        "remote": {"id": "r", "kind": "NEAR"}
    });
    let (status, body) = call(Method::POST, &format!("{base}/v1/echo"), Some(sent.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, sent);
    // The body carries every field: a query parameter naming one is refused, not ignored.
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1/echo?id=ignored"),
        Some(sent.clone()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("`id`"), "{message}");
}

#[tokio::test]
async fn path_values_must_agree_with_body_values() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1/alt/from-path"),
        Some(json!({"id": "from-path", "name": "n"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": "from-path", "name": "n"}));
    // A different value in the body is refused, not overwritten without a word.
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1/alt/from-path"),
        Some(json!({"id": "from-body", "name": "n"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("path variable `id`"), "{message}");
}

#[tokio::test]
async fn body_field_with_the_rest_from_the_query() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = call(
        Method::PUT,
        &format!("{base}/v1/items/i1?id=q"),
        Some(json!({"name": "sub", "count": 2})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"name": "items/i1", "id": "q", "nested": {"name": "sub", "count": 2}})
    );
    // A field inside the body field cannot also come from the query.
    let (status, body) = call(
        Method::PUT,
        &format!("{base}/v1/items/i1?nested.name=other"),
        Some(json!({"name": "sub"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("`nested.name`"), "{message}");
    let (_, body) = call(
        Method::PATCH,
        &format!("{base}/v1/items/i1/tags"),
        Some(json!(["a", "b"])),
    )
    .await;
    assert_eq!(body, json!({"name": "items/i1", "tags": ["a", "b"]}));
}

#[tokio::test]
async fn delete_custom_verbs_and_custom_methods() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = call(Method::DELETE, &format!("{base}/v1/items/i1"), None).await;
    assert_eq!((status.as_u16(), body), (200, json!({})));

    let (_, body) = call(
        Method::POST,
        &format!("{base}/v1/items/i1:frob"),
        Some(json!({"tags": ["t"]})),
    )
    .await;
    assert_eq!(body, json!({"name": "items/i1", "tags": ["t"]}));

    let (_, body) = call(
        Method::POST,
        &format!("{base}/v1/operations/a/b:cancel"),
        None,
    )
    .await;
    assert_eq!(body, json!({"rest": "operations/a/b"}));

    let options = Method::from_bytes(b"OPTIONS").expect("method");
    let (_, body) = call(options, &format!("{base}/v1/options/5"), None).await;
    assert_eq!(body, json!({"id": "5"}));
}

#[tokio::test]
async fn response_body_sends_one_field() {
    let base = remote_gateway().await.expect("gateway");
    let (_, body) = get(&format!("{base}/v1/items/i1/tags?tags=a&tags=b")).await;
    assert_eq!(body, json!(["a", "b"]));
    let (_, body) = get(&format!("{base}/v1/items/i1/tags")).await;
    assert_eq!(body, json!([]));
    let (_, body) = get(&format!("{base}/v1/items/i1/number?number=5")).await;
    assert_eq!(body, json!("5"));
    let (_, body) = get(&format!("{base}/v1/items/i1/number")).await;
    assert_eq!(body, json!("0"));
    let (_, body) = get(&format!("{base}/v1/items/i1/nested?nested.name=x")).await;
    assert_eq!(body, json!({"name": "x"}));
    let (_, body) = get(&format!("{base}/v1/items/i1/nested")).await;
    assert_eq!(body, json!({}));
    let (_, body) = get(&format!("{base}/v1/items/i1/text?pickText=hi")).await;
    assert_eq!(body, json!("hi"));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = get(&format!("{base}/v2/nothing")).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], 5);
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("/v2/nothing")
    );

    let response = Client::new()
        .delete(format!("{base}/v1/echo/x"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .map(|v| v.to_str().expect("ascii")),
        Some("GET")
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 12);
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_field() {
    let base = remote_gateway().await.expect("gateway");
    let post = |body: &'static str| {
        let url = format!("{base}/v1/echo");
        async move {
            let response = Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .expect("answered");
            let status = response.status();
            let value: Value = response.json().await.expect("JSON");
            (
                status,
                value["message"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    let (status, message) = post(r#"{"name": "x""#).await;
    assert_eq!(status, 400);
    assert!(message.contains("malformed JSON"), "{message}");
    let (status, message) = post(r#"{"nested": {"count": "many"}}"#).await;
    assert_eq!(status, 400);
    assert!(message.contains("`nested.count`"), "{message}");
    let (status, message) = post(r#"{"subs": [{}, {"count": 2147483648}]}"#).await;
    assert_eq!(status, 400);
    assert!(message.contains("`subs[1].count`"), "{message}");
    let (status, message) = post(r#"{"nmae": "typo"}"#).await;
    assert_eq!(status, 400);
    assert!(message.contains("unknown field `nmae`"), "{message}");
    let (status, message) = post(r#"{"pickText": "a", "pickNumber": 1}"#).await;
    assert_eq!(status, 400);
    assert!(message.contains("oneof `pick`"), "{message}");
    let (status, _) = post("").await;
    assert_eq!(status, 200, "an empty body is an empty message");
}

#[tokio::test]
async fn upstream_errors_map_to_http_with_details() {
    let base = remote_gateway().await.expect("gateway");
    let expected = [
        (1, 499),
        (2, 500),
        (3, 400),
        (4, 504),
        (5, 404),
        (6, 409),
        (7, 403),
        (8, 429),
        (9, 400),
        (10, 409),
        (11, 400),
        (12, 501),
        (13, 500),
        (14, 503),
        (15, 500),
        (16, 401),
    ];
    for (code, http) in expected {
        let response = Client::new()
            .get(format!("{base}/v1/fail/{code}?message=failed%20{code}"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), http, "code {code}");
        assert_eq!(
            response
                .headers()
                .get("grpc-trailer-x-failure")
                .map(|v| v.as_bytes()),
            Some(&b"yes"[..]),
            "code {code}"
        );
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["code"], code);
        assert_eq!(body["message"], format!("failed {code}"));
        let types: Vec<&str> = body["details"]
            .as_array()
            .expect("details")
            .iter()
            .map(|d| d["@type"].as_str().expect("@type"))
            .collect();
        assert!(
            types.contains(&"type.googleapis.com/google.rpc.BadRequest"),
            "{body}"
        );
        assert!(
            types.contains(&"type.googleapis.com/google.rpc.ResourceInfo"),
            "{body}"
        );
        if code == 3 {
            let bad_request = body["details"]
                .as_array()
                .expect("details")
                .iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
                .expect("BadRequest");
            assert_eq!(
                bad_request["fieldViolations"],
                json!([{"field": "code", "description": "asked to fail"}])
            );
        }
    }
}

#[tokio::test]
async fn grpc_timeout_sets_the_deadline() {
    let base = remote_gateway().await.expect("gateway");
    let started = std::time::Instant::now();
    let response = Client::new()
        .get(format!("{base}/v1/slow/5000"))
        .header("Grpc-Timeout", "100m")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 4);
    assert!(started.elapsed() < std::time::Duration::from_secs(4));

    let response = Client::new()
        .get(format!("{base}/v1/slow/1"))
        .header("Grpc-Timeout", "soon")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn unreachable_upstream_is_503() {
    // A port that was free a moment ago: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let upstream = protogate::Upstream::lazy(&format!("http://{address}")).expect("upstream URL");
    let gateway = Gateway::new()
        .with(binding_service_gateway::remote(upstream))
        .expect("routes");
    let base = serve_gateway(gateway).await.expect("gateway");
    let (status, body) = get(&format!("{base}/v1/echo/x")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14);
}

#[tokio::test]
async fn headers_become_metadata_and_back() {
    let base = remote_gateway().await.expect("gateway");
    let response = Client::new()
        .get(format!("{base}/v1/metadata"))
        .header("Grpc-Metadata-Tenant", "acme")
        .header("Grpc-Metadata-Trace-Bin", "AQID")
        .header("Authorization", "Bearer token")
        .header("User-Agent", "tests")
        .header("X-Not-Forwarded", "1")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("grpc-metadata-x-served-by")
            .map(|v| v.as_bytes()),
        Some(&b"backend"[..])
    );
    // Trailers come back apart from the headers.
    assert_eq!(
        response
            .headers()
            .get("grpc-trailer-x-trailer")
            .map(|v| v.as_bytes()),
        Some(&b"done"[..])
    );
    assert!(response.headers().get("grpc-metadata-x-trailer").is_none());
    let body: Value = response.json().await.expect("JSON");
    let received = &body["received"];
    assert_eq!(received["tenant"], "acme");
    assert_eq!(received["trace-bin"], "[1, 2, 3]");
    assert_eq!(received["authorization"], "Bearer token");
    assert_eq!(received["grpcgateway-user-agent"], "tests");
    let user_agent = received["user-agent"].as_str().unwrap_or_default();
    assert!(user_agent.starts_with("protogate/"), "{body}");
    assert_eq!(received["x-forwarded-for"], "127.0.0.1");
    assert!(received.get("x-not-forwarded").is_none(), "{body}");
}

#[tokio::test]
async fn output_options() {
    let backend = start_backend().await.expect("backend");
    let upstream = protogate::Upstream::lazy(&format!("http://{backend}")).expect("upstream URL");
    let gateway = Gateway::new()
        .json_output(JsonOptions {
            emit_defaults: true,
            proto_names: true,
            enums_as_ints: true,
            ..JsonOptions::default()
        })
        .ignore_unknown_fields(true)
        .with(binding_service_gateway::remote(upstream))
        .expect("routes");
    let base = serve_gateway(gateway).await.expect("gateway");
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1/echo"),
        Some(json!({"color": "BLUE", "customAlias": "c", "unknown": [1, 2]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["color"], 3);
    assert_eq!(body["custom_name"], "c");
    assert_eq!(body["number"], "0");
    assert_eq!(body["tags"], json!([]));
    assert_eq!(body["flag"], false);
    // Fields with presence stay absent when unset, as proto3 JSON says.
    assert!(body.get("maybe").is_none());
    assert!(body.get("nested").is_none());
}

#[tokio::test]
async fn in_process_backend_needs_no_network() {
    let gateway = Gateway::new()
        .with(binding_service_gateway::local(Backend))
        .expect("routes");
    let base = serve_gateway(gateway).await.expect("gateway");
    let (_, body) = get(&format!("{base}/v1/echo/local?number=3")).await;
    assert_eq!(body, json!({"name": "local", "number": "3"}));
    let (status, body) = get(&format!("{base}/v1/fail/7?message=no")).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], 7);
}

#[tokio::test]
async fn every_field_type_round_trips_through_the_backend() {
    let base = remote_gateway().await.expect("gateway");
    let sent = json!({
        "scalars": {
            "fInt32": -1, "fInt64": "-9223372036854775808", "fUint32": 4294967295u32,
            "fUint64": "18446744073709551615", "fSint32": -2, "fSint64": "-3",
            "fFixed32": 4, "fFixed64": "5", "fSfixed32": -6, "fSfixed64": "-7",
            "fFloat": 1.5, "fDouble": -2.25, "fBool": true, "fString": "s\u{e9}\n",
            "fBytes": "AAEC", "fColor": "RED"
        },
        "repeateds": {
            "rInt32": [1, -1], "rInt64": ["2"], "rUint32": [3], "rUint64": ["4"],
            "rSint32": [-5], "rSint64": ["-6"], "rFixed32": [7], "rFixed64": ["8"],
            "rSfixed32": [-9], "rSfixed64": ["-10"], "rFloat": [0.5, "NaN"], "rDouble": ["Infinity", 1e300],
            "rBool": [true, false], "rString": ["a", ""], "rBytes": ["", "/w=="],
            "rColor": ["BLUE", "RED"], "rScalars": [{}, {"fInt32": 1}],
            "rTimestamp": ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"]
        },
        "maps": {
            "mInt32": {"-1": "a"}, "mInt64": {"9000000000": 1}, "mUint32": {"1": "2"},
            "mUint64": {"18446744073709551615": true}, "mSint32": {"-3": 0.5},
            "mSint64": {"-4": 1.5}, "mFixed32": {"5": "AQ=="}, "mFixed64": {"6": "GREEN"},
            "mSfixed32": {"-7": {"fString": "x"}}, "mSfixed64": {"-8": "9"},
            "mBool": {"true": "t", "false": "f"}, "mString": {"k": {"fBool": true}},
            "mValue": {"v": [1.0, "two", null, {"three": false}]},
            "mTimestamp": {"t": "2000-01-01T00:00:00.001Z"}
        },
        "oneofs": {"oTimestamp": "2001-02-03T04:05:06Z", "after": "x"},
        "optionals": {"pInt32": 0, "pString": "", "pBool": false, "pColor": "COLOR_UNSPECIFIED"},
        "wellKnown": {
            "timestamp": "2024-02-29T12:00:00.123456Z", "duration": "-0.000000001s",
            "fieldMask": "a.bC,d", "struct": {"a": {"b": [1.0, true, null]}},
            "value": null, "listValue": [1.0, "x"], "doubleValue": "NaN", "floatValue": 2.5,
            "int64Value": "-1", "uint64Value": "2", "int32Value": 0, "uint32Value": 4,
            "boolValue": false, "stringValue": "", "bytesValue": "AA==", "empty": {},
            "any": {"@type": "type.googleapis.com/protogate.tests.v1.Scalars", "fInt32": 5},
            "anys": [
                {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"},
                {"@type": "type.googleapis.com/protogate.tests.other.v1.Remote", "id": "r"}
            ],
            "int32Values": [1, 2]
        },
        "recursive": {"child": {"child": {"depth": 2}}, "children": [{"depth": 1}],
                      "mutual": {"b": {"a": {"label": "deep"}, "count": "3"}},
                      "named": {"n": {"depth": 9}}},
        "keywords": {"type": "t", "self": 1, "async": true, "match": "m", "fn": "2", "mod": "x"},
        "jsonNames": {"renamedField": "r", "snakeCaseField": 1, "alreadyCamel": "c", "listOfThings": ["l"]},
        "remote": {"id": "id", "kind": "FAR"},
        "nested": {"inner": {"level": "HIGH", "note": "n", "deepest": {"value": 1}},
                   "inners": [{"level": "LOW"}]},
        "selfMessage": {"value": "self"}
    });
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1/everything"),
        Some(sent.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // "value": null is a Value holding null, which is written back as null.
    assert_eq!(body, sent);
}

//! What the gateway refuses instead of taking literally or dropping, over real sockets: a real
//! HTTP client, the generated gateway on 127.0.0.1, and a tonic backend that echoes requests.
//! Each refusal is a 400 with a google.rpc.Status body (code 3) whose message names the
//! segment, parameter or field.

mod client;

use generated_tests::strict::strict_gateway;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use client::call;

async fn gateway() -> String {
    strict_gateway(|g| g).await.expect("gateway")
}

/// GETs `path` and expects a 200; the echoed request.
async fn ok(base: &str, path: &str) -> Value {
    let (status, body) = call(Method::GET, &format!("{base}{path}"), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Expects a 400 with code 3 whose message contains every one of `names`.
fn assert_refused(what: &str, (status, body): (StatusCode, Value), names: &[&str]) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["code"], 3, "{what}: {body}");
    let message = body["message"].as_str().expect("a message");
    for name in names {
        assert!(
            message.contains(name),
            "{what}: {message:?} does not name {name}"
        );
    }
}

async fn refused(base: &str, path: &str, names: &[&str]) {
    let answer = call(Method::GET, &format!("{base}{path}"), None).await;
    assert_refused(path, answer, names);
}

#[tokio::test]
async fn malformed_percent_encoding_in_the_path_is_refused() {
    let base = gateway().await;
    for path in [
        "/strict/v1/echo/%",
        "/strict/v1/echo/ab%4",
        "/strict/v1/echo/a%zz",
    ] {
        refused(&base, path, &["`name`", "hexadecimal"]).await;
    }
    refused(&base, "/strict/v1/echo/%FF", &["`name`", "UTF-8"]).await;
    refused(&base, "/strict/v1/echo/%C3%28", &["`name`", "UTF-8"]).await;
    // In a `**` variable.
    refused(&base, "/strict/v1/tree/a/%G1/b", &["`id`", "hexadecimal"]).await;
    refused(&base, "/strict/v1/tree/a/b%FE", &["`id`", "UTF-8"]).await;
    // Before a custom verb.
    let answer = call(Method::POST, &format!("{base}/strict/v1/acts/a%:run"), None).await;
    assert_refused("custom verb", answer, &["`name`", "hexadecimal"]);
    // A bytes field's value is base64 text: UTF-8 as well.
    refused(&base, "/strict/v1/blob/%FF", &["`data`", "UTF-8"]).await;

    // Well-formed values still decode, `+` in a path being a plus.
    assert_eq!(
        ok(&base, "/strict/v1/echo/a%2Fb+c%20%E2%82%AC").await,
        json!({"name": "a/b+c €"})
    );
    assert_eq!(
        ok(&base, "/strict/v1/tree/a%2Fb/c%20d").await,
        json!({"id": "tree/a%2Fb/c d"})
    );
    let (status, body) = call(
        Method::POST,
        &format!("{base}/strict/v1/acts/a%20b:run"),
        None,
    )
    .await;
    assert_eq!((status.as_u16(), body), (200, json!({"name": "acts/a b"})));
    // Bytes in the path: either base64 alphabet, padded or not.
    assert_eq!(
        ok(&base, "/strict/v1/blob/-_8").await,
        json!({"data": "+/8="})
    );
    assert_eq!(
        ok(&base, "/strict/v1/blob/%2B%2F8%3D").await,
        json!({"data": "+/8="})
    );
}

#[tokio::test]
async fn malformed_percent_encoding_in_the_query_is_refused() {
    let base = gateway().await;
    for query in [
        "id=%",
        "id=%zz",
        "id=a%2",
        "id=%C3",
        "data=%FF",
        "mask=%E0%80",
    ] {
        let param = query.split('=').next().expect("a name");
        refused(
            &base,
            &format!("/strict/v1/echo/n?{query}"),
            &[&format!("`{param}`"), "percent-encoded UTF-8"],
        )
        .await;
    }
    refused(&base, "/strict/v1/echo/n?id%zz=1", &["`id%zz`", "name"]).await;
    // `+` is a space in a query, `%2B` a plus.
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?id=a+b%2B").await,
        json!({"name": "n", "id": "a b+"})
    );
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?data=%2B%2F8%3D").await,
        json!({"name": "n", "data": "+/8="})
    );
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?data=-_8").await,
        json!({"name": "n", "data": "+/8="})
    );
}

#[tokio::test]
async fn parameters_naming_what_the_query_cannot_set_are_refused() {
    let base = gateway().await;
    for (query, names) in [
        ("nested=x", &["`nested`", "is a message"][..]),
        ("items.label=x", &["`items`", "repeated message"]),
        ("items=x", &["`items`", "repeated message"]),
        ("nested.label.x=1", &["`nested.label`", "no fields"]),
        ("count.x=1", &["`count`", "no fields"]),
        ("count[k]=1", &["`count`", "not a map"]),
        ("nested[k]=1", &["`nested`", "not a map"]),
        ("extra=x", &["`extra`", "google.protobuf.Struct"]),
        ("at.seconds=1", &["`at`", "no fields"]),
    ] {
        refused(&base, &format!("/strict/v1/echo/n?{query}"), names).await;
    }
    assert_eq!(
        ok(
            &base,
            "/strict/v1/echo/n?nested.label=x&nested.size=3&at=1970-01-01T00:00:01Z"
        )
        .await,
        json!({"name": "n", "nested": {"label": "x", "size": 3}, "at": "1970-01-01T00:00:01Z"})
    );
}

#[tokio::test]
async fn maps_take_one_entry_per_parameter_with_every_key_type() {
    let base = gateway().await;
    let query = [
        "labels[a.b]=x",
        "labels[]=empty",
        "flags[true]=1",
        "levels[-3]=HIGH",
        "levels[4]=1",
        "weights[9007199254740993]=1.5",
        "switches[7]=true",
        "blobs[18446744073709551615]=AQID",
        "ratios[-1]=0.5",
        "totals[-9]=-10",
        "counts[4294967295]=4",
        "sizes[1]=18446744073709551615",
        "deltas[-2147483648]=-5",
        "offsets[-1]=-6",
        "fixed32s[a]=7",
        "fixed64s[a]=8",
        "sfixed32s[a]=-9",
        "sfixed64s[a]=-10",
        "times[t]=1970-01-01T00:00:01Z",
        "nested.label=n",
    ]
    .join("&");
    assert_eq!(
        ok(&base, &format!("/strict/v1/echo/n?{query}")).await,
        json!({
            "name": "n",
            "nested": {"label": "n"},
            "labels": {"a.b": "x", "": "empty"},
            "flags": {"true": 1},
            "levels": {"-3": "HIGH", "4": "LOW"},
            "weights": {"9007199254740993": 1.5},
            "switches": {"7": true},
            "blobs": {"18446744073709551615": "AQID"},
            "ratios": {"-1": 0.5},
            "totals": {"-9": "-10"},
            "counts": {"4294967295": 4},
            "sizes": {"1": "18446744073709551615"},
            "deltas": {"-2147483648": -5},
            "offsets": {"-1": "-6"},
            "fixed32s": {"a": 7},
            "fixed64s": {"a": "8"},
            "sfixed32s": {"a": -9},
            "sfixed64s": {"a": "-10"},
            "times": {"t": "1970-01-01T00:00:01Z"},
        })
    );
    // The key inside brackets may be percent-encoded like the rest of the name.
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?labels%5Bk%20%5D=v").await,
        json!({"name": "n", "labels": {"k ": "v"}})
    );

    for (query, names) in [
        ("labels=x", &["`labels`", "labels[key]=value"][..]),
        ("labels.key=x", &["`labels`", "labels[key]=value"]),
        ("flags[yes]=1", &["`flags[yes]`", "\"yes\""]),
        ("flags[1]=1", &["`flags[1]`", "\"1\""]),
        ("levels[1.5]=HIGH", &["`levels[1.5]`", "\"1.5\""]),
        ("levels[1]=PURPLE", &["`levels[1]`", "PURPLE"]),
        ("switches[-1]=true", &["`switches[-1]`", "\"-1\""]),
        ("counts[4294967296]=1", &["`counts[4294967296]`"]),
        ("totals[x]=1", &["`totals[x]`", "\"x\""]),
        ("weights[1]=heavy", &["`weights[1]`", "heavy"]),
        ("parts[a]=x", &["`parts`", "Part values"]),
        ("parts[a].label=x", &["`parts[a].label`", "`]`"]),
        ("labels[a=1", &["`labels[a`", "`]`"]),
        ("labels]=1", &["`labels]`", "`]`"]),
        (
            "labels[a]=1&labels[a]=2",
            &["`labels[a]`", "more than once"],
        ),
    ] {
        refused(&base, &format!("/strict/v1/echo/n?{query}"), names).await;
    }
}

#[tokio::test]
async fn two_members_of_a_oneof_are_refused_wherever_they_come_from() {
    let base = gateway().await;
    // Both from the query.
    refused(
        &base,
        "/strict/v1/echo/n?text=a&number=1",
        &["`number`", "oneof `choice`"],
    )
    .await;
    refused(
        &base,
        "/strict/v1/echo/n?part.label=x&text=a",
        &["`text`", "oneof `choice`"],
    )
    .await;
    // One from the path, one from the query.
    refused(
        &base,
        "/strict/v1/pick/a?number=1",
        &["`text`", "oneof `choice`"],
    )
    .await;
    refused(
        &base,
        "/strict/v1/pick/a?part.size=1",
        &["`text`", "oneof `choice`"],
    )
    .await;
    // Both in the body (as before).
    let answer = call(
        Method::PUT,
        &format!("{base}/strict/v1/things/n"),
        Some(json!({"text": "a", "number": "1"})),
    )
    .await;
    assert_refused("body", answer, &["oneof `choice`"]);

    // One member, set field by field, is fine.
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?part.label=x&part.size=2").await,
        json!({"name": "n", "part": {"label": "x", "size": 2}})
    );
    assert_eq!(
        ok(&base, "/strict/v1/pick/a?count=1").await,
        json!({"text": "a", "count": 1})
    );
}

#[tokio::test]
async fn field_masks_must_hold_field_paths() {
    let base = gateway().await;
    for mask in ["a..b", "a,,b", "a,", ".a", "a%00b", "a%20b", "a-b", "1a"] {
        refused(
            &base,
            &format!("/strict/v1/echo/n?mask={mask}"),
            &["`mask`", "not a field path"],
        )
        .await;
    }
    for mask in ["a..b", "a\u{0}b", "x y"] {
        let answer = call(
            Method::PUT,
            &format!("{base}/strict/v1/things/n"),
            Some(json!({"mask": mask})),
        )
        .await;
        assert_refused(mask, answer, &["`mask`", "not a field path"]);
    }
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?mask=label,nested.sizeLimit").await,
        json!({"name": "n", "mask": "label,nested.sizeLimit"})
    );
    // An empty mask is a mask with no paths.
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?mask=").await,
        json!({"name": "n", "mask": ""})
    );
}

#[tokio::test]
async fn nothing_sent_is_dropped_without_a_word() {
    let base = gateway().await;
    for (query, names) in [
        // A singular field given twice.
        ("count=1&count=2", &["`count`", "not a repeated field"][..]),
        ("nested.size=1&nested.size=1", &["`nested.size`", "again"]),
        // Both spellings of one field.
        ("display_name=a&displayName=b", &["`displayName`", "again"]),
        // A field the path sets.
        ("name=x", &["`name`", "from the path or the body"]),
        // Malformed names.
        ("=x", &["name ``", "empty"]),
        ("a..b=1", &["`a..b`", "empty"]),
        ("nested.=1", &["`nested.`", "empty"]),
        ("[k]=1", &["`[k]`", "empty"]),
    ] {
        refused(&base, &format!("/strict/v1/echo/n?{query}"), names).await;
    }
    // Repeated fields take one value per parameter; empty pairs carry nothing.
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?tags=a&&tags=b&").await,
        json!({"name": "n", "tags": ["a", "b"]})
    );
    // A field inside the body field.
    let answer = call(
        Method::PATCH,
        &format!("{base}/strict/v1/things/n?nested.label=q"),
        Some(json!({"label": "b"})),
    )
    .await;
    assert_refused(
        "body field",
        answer,
        &["`nested.label`", "path or the body"],
    );
    let (status, body) = call(
        Method::PATCH,
        &format!("{base}/strict/v1/things/n?count=2"),
        Some(json!({"label": "b"})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body),
        (
            200,
            json!({"name": "n", "nested": {"label": "b"}, "count": 2})
        )
    );
    // The path and the body: the same value is fine, a different one refused.
    let (status, body) = call(
        Method::PUT,
        &format!("{base}/strict/v1/things/n"),
        Some(json!({"name": "n", "count": 1})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body),
        (200, json!({"name": "n", "count": 1}))
    );
    let answer = call(
        Method::PUT,
        &format!("{base}/strict/v1/things/n"),
        Some(json!({"name": "m"})),
    )
    .await;
    assert_refused("path and body", answer, &["`name`", "different value"]);

    // With `body: "*"` the body carries every field: a parameter naming one is refused.
    let answer = call(
        Method::PUT,
        &format!("{base}/strict/v1/things/n?count=2"),
        Some(json!({"count": 1})),
    )
    .await;
    assert_refused("whole body", answer, &["`count`", "path or the body"]);
    let answer = call(
        Method::PUT,
        &format!("{base}/strict/v1/things/n?nested=x"),
        Some(json!({})),
    )
    .await;
    assert_refused("whole body", answer, &["`nested`", "is a message"]);
    let (status, body) = call(
        Method::PUT,
        &format!("{base}/strict/v1/things/n?utm_source=x"),
        Some(json!({"count": 1})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body),
        (200, json!({"name": "n", "count": 1}))
    );

    // Unknown parameters are the one thing ignored, unless the gateway is told otherwise.
    assert_eq!(
        ok(&base, "/strict/v1/echo/n?utm_source=x&nested.nope=1").await,
        json!({"name": "n"})
    );
    let strict = strict_gateway(|g| g.reject_unknown_query_parameters(true))
        .await
        .expect("gateway");
    refused(&strict, "/strict/v1/echo/n?utm_source=x", &["`utm_source`"]).await;
    refused(
        &strict,
        "/strict/v1/echo/n?nested.nope=1",
        &["`nested.nope`"],
    )
    .await;
}

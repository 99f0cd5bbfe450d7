//! `**` followed by more segments over real sockets: the shapes of Firestore, Discovery Engine
//! and Remote Workers, precedence beside ordinary routes, and the split rule (the segments after
//! the `**` match the path's last segments). Also api.proto / type.proto messages in bodies.

mod client;

use generated_tests::wildcards::remote_gateway;
use reqwest::{Client, Method};
use serde_json::json;

use client::call;

#[tokio::test]
async fn firestore_list_and_create_documents() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = call(
        Method::GET,
        &format!("{base}/v1/projects/p/databases/d/documents/rooms/r1/messages"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "rpc": "ListDocuments",
            "parent": "projects/p/databases/d/documents/rooms/r1",
            "collectionId": "messages"
        })
    );
    // The `**` takes nothing: the collection follows the document directly.
    let (_, body) = call(
        Method::GET,
        &format!("{base}/v1/projects/p/databases/d/documents/rooms/messages"),
        None,
    )
    .await;
    assert_eq!(body["parent"], "projects/p/databases/d/documents/rooms");
    assert_eq!(body["collectionId"], "messages");

    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1/projects/p/databases/d/documents/rooms"),
        Some(json!({"name": "new"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "rpc": "CreateDocument",
            "parent": "projects/p/databases/d/documents",
            "name": "new",
            "collectionId": "rooms"
        })
    );
}

#[tokio::test]
async fn precedence_beside_ordinary_routes() {
    let base = remote_gateway().await.expect("gateway");
    // The literal `meta` of the ordinary route beats the `**` at the same segment.
    let (_, body) = call(
        Method::GET,
        &format!("{base}/v1/projects/p/databases/d/documents/doc/meta"),
        None,
    )
    .await;
    assert_eq!(
        body,
        json!({"rpc": "GetMeta", "parent": "p", "name": "d", "document": "doc"})
    );
    // One segment further and `meta` is a collection id: the `**` route serves.
    let (_, body) = call(
        Method::GET,
        &format!("{base}/v1/projects/p/databases/d/documents/doc/x/meta"),
        None,
    )
    .await;
    assert_eq!(body["rpc"], "ListDocuments");
    assert_eq!(body["parent"], "projects/p/databases/d/documents/doc/x");
    // Too short for a template that continues after its `**`: the one ending in `**` serves.
    let (_, body) = call(
        Method::GET,
        &format!("{base}/v1/projects/p/databases/d/documents/doc"),
        None,
    )
    .await;
    assert_eq!(
        body,
        json!({"rpc": "GetDocument", "name": "projects/p/databases/d/documents/doc"})
    );
}

#[tokio::test]
async fn discovery_engine_purge_with_a_custom_verb() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = call(
        Method::POST,
        &format!(
            "{base}/v1/projects/p/locations/global/dataStores/ds/branches/b/suggestionDenyListEntries:purge"
        ),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "rpc": "Purge",
            "parent": "projects/p/locations/global/dataStores/ds/branches/b"
        })
    );
    // Without the verb nothing matches.
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1/projects/p/locations/global/dataStores/ds/suggestionDenyListEntries"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn bot_sessions_and_the_split_rule() {
    let base = remote_gateway().await.expect("gateway");
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1test2/farms/f1/bots/b1/botSessions"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"rpc": "CreateBotSession", "parent": "farms/f1/bots/b1"})
    );
    // The segments after the `**` match the path's last ones: the first `botSessions` is part
    // of the parent.
    let (_, body) = call(
        Method::POST,
        &format!("{base}/v1test2/botSessions/x/botSessions"),
        Some(json!({})),
    )
    .await;
    assert_eq!(body["parent"], "botSessions/x");
    let (status, body) = call(
        Method::PATCH,
        &format!("{base}/v1test2/farms/f1/botSessions/s1"),
        Some(json!({"document": "d"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"rpc": "UpdateBotSession", "name": "farms/f1/botSessions/s1", "document": "d"})
    );
    // A wrong method on a `**` route is 405 with the methods that are bound.
    let response = Client::new()
        .get(format!("{base}/v1test2/farms/f1/botSessions"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn encoded_slashes_in_a_double_wildcard_stay_encoded() {
    let base = remote_gateway().await.expect("gateway");
    let (_, body) = call(
        Method::POST,
        &format!("{base}/v1test2/farms%2Ff1/bots/b%20x/botSessions"),
        Some(json!({})),
    )
    .await;
    assert_eq!(body["parent"], "farms%2Ff1/bots/b x");
}

#[tokio::test]
async fn api_and_type_messages_travel_as_ordinary_json() {
    let base = remote_gateway().await.expect("gateway");
    let sent = json!({
        "api": {
            "name": "acme.Library",
            "methods": [{"name": "Get", "requestTypeUrl": "type.googleapis.com/acme.Req"}],
            "mixins": [{"name": "acme.Mixin", "root": "v1"}],
            "sourceContext": {"fileName": "acme.proto"},
            "syntax": "SYNTAX_PROTO3"
        },
        "type": {
            "name": "acme.Req",
            "fields": [{"kind": "TYPE_STRING", "cardinality": "CARDINALITY_OPTIONAL", "number": 1, "name": "id"}]
        }
    });
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1test2/a/botSessions"),
        Some(sent.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["api"], sent["api"]);
    assert_eq!(body["type"], sent["type"]);
    // A bad enum name inside them is a 400 naming the field.
    let (status, body) = call(
        Method::POST,
        &format!("{base}/v1test2/a/botSessions"),
        Some(json!({"type": {"fields": [{"kind": "TYPE_NOPE"}]}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("type.fields"),
        "{body}"
    );
}

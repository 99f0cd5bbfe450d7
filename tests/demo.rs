//! The stock gateway's demo, end to end: the real binary on 127.0.0.1, a real HTTP client.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::start;

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON")
    };
    (status, body)
}

#[tokio::test]
async fn demo_library_end_to_end() {
    let gateway = start(&[]);
    let client = reqwest::Client::new();
    let base = &gateway.base;

    let (status, body) = send(client.get(format!("{base}/demo/v1/shelves"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shelves"].as_array().map(Vec::len), Some(2));

    let (status, body) = send(client.get(format!(
        "{base}/demo/v1/shelves/fiction/books?genre=FICTION&pageSize=1"
    )))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["books"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["nextPageToken"], "1");

    let (status, body) = send(
        client
            .post(format!("{base}/demo/v1/shelves?shelfId=poetry"))
            .json(&json!({"theme": "Verse"})),
    )
    .await;
    assert_eq!((status, &body["name"]), (200, &json!("shelves/poetry")));

    let (status, body) = send(
        client
            .post(format!("{base}/demo/v1/shelves/poetry/books"))
            .json(
                &json!({"title": "Odes", "pageCount": 120, "publishTime": "1819-05-01T00:00:00Z"}),
            ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "shelves/poetry/books/odes");

    let (status, body) = send(
        client
            .patch(format!(
                "{base}/demo/v1/shelves/poetry/books/odes?updateMask=author"
            ))
            .json(&json!({"author": "John Keats", "title": "ignored"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["author"], &body["title"]),
        (&json!("John Keats"), &json!("Odes"))
    );

    let (status, body) = send(
        client
            .post(format!("{base}/demo/v1/shelves/poetry/books/odes:archive"))
            .json(&json!({"reason": "demo"})),
    )
    .await;
    assert_eq!((status, &body["archived"]), (200, &json!(true)));

    let (status, body) =
        send(client.get(format!("{base}/demo/v1/shelves/fiction/books/dune/tags"))).await;
    assert_eq!((status, body), (200, json!(["classic", "fiction"])));

    let (status, body) = send(client.get(format!("{base}/demo/v1/isbn/9780345539434"))).await;
    assert_eq!((status, &body["title"]), (200, &json!("Cosmos")));

    let (status, body) =
        send(client.get(format!("{base}/demo/v1/archive/2024/q1/report.pdf"))).await;
    assert_eq!(
        (status, &body["path"]),
        (200, &json!("archive/2024/q1/report.pdf"))
    );

    let (status, body) = send(client.get(format!("{base}/demo/v1/shelves/nowhere"))).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], 5);
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ResourceInfo"
    );

    let (status, body) = send(
        client
            .post(format!("{base}/demo/v1/shelves?shelfId=Bad!"))
            .json(&json!({"theme": "x"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["field"],
        "shelf_id"
    );

    let response = client
        .head(format!("{base}/demo/v1/shelves/science"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(response.status(), 200);

    let (status, _) = send(client.delete(format!("{base}/demo/v1/shelves/poetry"))).await;
    assert_eq!(status, 200);
    let (status, _) = send(client.get(format!("{base}/demo/v1/shelves/poetry"))).await;
    assert_eq!(status, 404);
}

/// The values of a newline-delimited JSON body.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn demo_streams_books_and_discusses_them() {
    let running = start(&[]);
    let base = &running.base;
    let client = reqwest::Client::new();

    let text = client
        .get(format!("{base}/demo/v1/shelves/fiction/books:stream"))
        .send()
        .await
        .expect("stream")
        .text()
        .await
        .expect("body");
    let lines = json_lines(&text);
    assert!(!lines.is_empty(), "{text}");
    assert!(lines.iter().all(|line| {
        line["result"]["name"]
            .as_str()
            .is_some_and(|name| name.starts_with("shelves/fiction/books/"))
    }));

    let response = client
        .get(format!("{base}/demo/v1/shelves/fiction/books:stream"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("events");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = response.text().await.expect("body");
    assert_eq!(events.matches("data: {\"name\"").count(), lines.len());
    assert!(events.ends_with("event: end\ndata: {}\n\n"), "{events}");

    let (status, body) =
        send(client.get(format!("{base}/demo/v1/shelves/nowhere/books:stream"))).await;
    assert_eq!((status, &body["code"]), (404, &json!(5)));

    let text = client
        .post(format!("{base}/demo/v1/shelves/fiction/books/dune:discuss"))
        .body("{\"reader\":\"ann\",\"text\":\"spice\"}\n{\"reader\":\"bo\",\"text\":\"worms\"}\n")
        .send()
        .await
        .expect("discussion")
        .text()
        .await
        .expect("body");
    let answers = json_lines(&text);
    assert_eq!(
        answers,
        [
            json!({"result": {"book": "shelves/fiction/books/dune", "reader": "library", "text": "ann said: spice", "seq": "1"}}),
            json!({"result": {"book": "shelves/fiction/books/dune", "reader": "library", "text": "bo said: worms", "seq": "2"}}),
        ]
    );
}

#[test]
fn unknown_service_in_upstream_flag_is_refused() {
    let output = Command::new(support::binary())
        .args(["serve", "--upstream", "no.such.Service=http://127.0.0.1:1"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no service `no.such.Service`"), "{stderr}");
}

#[test]
fn the_demo_runs_in_process_unless_it_has_an_upstream_of_its_own() {
    let banner = support::banner(support::binary(), &[]);
    assert!(
        banner.contains("  protogate.demo.v1.LibraryService -> in-process\n"),
        "{banner}"
    );
    assert!(
        banner.contains("/demo/v1/shelves/fiction/books"),
        "{banner}"
    );
    let banner = support::banner(
        support::binary(),
        &["--upstream", "protogate.demo.v1.LibraryService=127.0.0.1:1"],
    );
    assert!(
        banner.contains("  protogate.demo.v1.LibraryService -> http://127.0.0.1:1\n"),
        "{banner}"
    );
}

#[test]
fn routes_command_lists_every_binding() {
    let table = support::printed(support::binary(), &["routes"]);
    assert!(
        table.contains("POST    /demo/v1/{name=shelves/*/books/*}:archive"),
        "{table}"
    );
}

//! The client side of the end-to-end tests: one HTTP request, its status and its JSON answer.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Sends `method url`, with `body` as JSON when given, and returns the status and the answer
/// (`null` for an empty body). An answer that is not JSON fails the test, quoting it.
pub async fn call(method: Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request is answered");
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, value)
}

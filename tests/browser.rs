//! The demo page in a real headless Chromium (Debian's, installed by
//! `tests/support/install-chromium.sh`): it reads a server stream with `EventSource` and holds a
//! bidi chat over WebSocket through the stock gateway, and the test reads what the page got.
//! The browser is driven over the Chrome DevTools Protocol on 127.0.0.1.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(60);

/// Headless Chromium with a fresh profile, stopped and cleaned up when dropped.
struct Chromium {
    child: Child,
    profile: std::path::PathBuf,
    /// The browser's DevTools WebSocket URL.
    devtools: String,
}

impl Chromium {
    fn launch() -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/install-chromium.sh"
        );
        let installed = Command::new("bash")
            .arg(script)
            .stderr(Stdio::inherit())
            .output()
            .expect("the install script runs");
        assert!(
            installed.status.success(),
            "Chromium could not be installed"
        );
        let binary = String::from_utf8(installed.stdout).expect("a path");
        let profile =
            std::env::temp_dir().join(format!("protogate-chromium-{}", std::process::id()));
        let mut child = Command::new(binary.trim())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Chromium starts");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            // Keep reading to the end, so Chromium never writes to a closed pipe.
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let devtools = address
            .recv_timeout(PATIENCE)
            .expect("Chromium prints its DevTools address");
        Chromium {
            child,
            profile,
            devtools,
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A DevTools Protocol connection: commands and their answers, events skipped.
struct DevTools {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl DevTools {
    async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("DevTools connection");
        DevTools { socket, next_id: 0 }
    }

    /// Sends a command (to a page's session, if given) and returns its result, or its error.
    async fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let mut command = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("send a command");
        loop {
            let frame = self.socket.next().await.expect("open").expect("a frame");
            let Message::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if answer["id"] != json!(self.next_id) {
                continue;
            }
            return match answer.get("error") {
                Some(error) => Err(error.clone()),
                None => Ok(answer["result"].clone()),
            };
        }
    }

    /// Evaluates `expression` in the page, awaiting it if it is a promise.
    async fn evaluate(&mut self, session: &str, expression: &str) -> Result<Value, Value> {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params, Some(session)).await?;
        match result.get("exceptionDetails") {
            Some(exception) => Err(exception.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }
}

#[tokio::test]
async fn the_demo_page_streams_books_and_chats_in_a_real_browser() {
    let gateway = support::start(&[]);
    let chromium = Chromium::launch();
    let outcome = tokio::time::timeout(PATIENCE, async {
        let mut devtools = DevTools::connect(&chromium.devtools).await;
        let page = format!("{}/demo/", gateway.base);
        let target = devtools
            .call("Target.createTarget", json!({"url": page}), None)
            .await
            .expect("a new tab");
        let attached = devtools
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                None,
            )
            .await
            .expect("attached");
        let session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        // Wait for the demo page itself (the tab starts on about:blank), then for its result.
        loop {
            let ready = devtools
                .evaluate(
                    &session,
                    "location.pathname === '/demo/' && !!window.demoResult",
                )
                .await;
            if ready == Ok(json!(true)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let result = devtools
            .evaluate(&session, "window.demoResult")
            .await
            .expect("the page's result");
        let status = devtools
            .evaluate(&session, "document.getElementById('status').textContent")
            .await
            .expect("the page's status line");
        (result, status)
    })
    .await;
    let (result, status) = outcome.expect("the page finished within the patience");

    // The titles the page received are the shelf's, as the JSON API lists them.
    let listed: Value = reqwest::get(format!(
        "{}/demo/v1/shelves/fiction/books?pageSize=100",
        gateway.base
    ))
    .await
    .expect("list")
    .json()
    .await
    .expect("JSON");
    let titles: Vec<Value> = listed["books"]
        .as_array()
        .expect("books")
        .iter()
        .map(|book| book["title"].clone())
        .collect();
    assert!(!titles.is_empty());
    assert_eq!(result["books"], json!(titles), "{result}");
    assert_eq!(
        result["chat"],
        json!([
            "1: page said: Is the spice worth it?",
            "2: page said: What about the worms?"
        ]),
        "{result}"
    );
    assert_eq!(result["closeCode"], 1000, "{result}");
    assert_eq!(result["errors"], json!([]), "{result}");
    assert_eq!(status, "done");
}

//! Headless Chromium (Debian's, installed by `tests/support/install-chromium.sh` at the
//! workspace root) driven over the DevTools Protocol on 127.0.0.1: open a page, wait until it
//! is ready, evaluate expressions in it and read their values back.

#[path = "../../../tests/support/tools.rs"]
#[allow(dead_code)]
mod tools;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long launching the browser, or one page with all its expressions, may take.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A headless Chromium with a fresh profile, stopped and its profile removed when dropped.
pub struct Chromium {
    child: Child,
    profile: std::path::PathBuf,
    devtools: String,
}

impl Chromium {
    /// Installs Chromium if needed and starts it.
    pub fn launch() -> Self {
        let binary = tools::install("install-chromium.sh")
            .unwrap_or_else(|error| panic!("Chromium could not be installed: {error}"));
        static LAUNCHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LAUNCHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = std::env::temp_dir().join(format!(
            "protogate-generated-chromium-{}-{n}",
            std::process::id()
        ));
        let mut child = Command::new(&binary)
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
            // Read to the end, so Chromium never writes to a closed pipe.
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

    /// Opens `page` in a new tab, waits until `ready` (a JavaScript expression) is true there,
    /// then evaluates each of `expressions` in turn (awaiting promises): each one's value, or
    /// the exception it threw. All within the patience.
    pub async fn in_page(
        &self,
        page: &str,
        ready: &str,
        expressions: &[&str],
    ) -> Vec<Result<Value, Value>> {
        let run = async {
            let mut devtools = DevTools::connect(&self.devtools).await;
            let session = devtools.open(page, ready).await;
            let mut results = Vec::with_capacity(expressions.len());
            for expression in expressions {
                results.push(devtools.evaluate(&session, expression).await);
            }
            results
        };
        tokio::time::timeout(PATIENCE, run)
            .await
            .unwrap_or_else(|_| panic!("{page} finished within the patience"))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

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

    /// Sends a command (to a tab's session, if given) and returns its result or its error;
    /// events are skipped.
    async fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
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
            if answer["id"] != json!(id) {
                continue;
            }
            return match answer.get("error") {
                Some(error) => Err(error.clone()),
                None => Ok(answer["result"].clone()),
            };
        }
    }

    async fn open(&mut self, url: &str, ready: &str) -> String {
        let target = self
            .call("Target.createTarget", json!({"url": "about:blank"}), None)
            .await
            .expect("a new tab");
        let attached = self
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
        self.call("Page.navigate", json!({"url": url}), Some(&session))
            .await
            .expect("navigated");
        while self.evaluate(&session, ready).await != Ok(json!(true)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        session
    }

    async fn evaluate(&mut self, session: &str, expression: &str) -> Result<Value, Value> {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params, Some(session)).await?;
        match result.get("exceptionDetails") {
            Some(exception) => Err(exception.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }
}

//! The stock gateway's pages in a real headless Chromium (Debian's, installed by
//! `tests/support/install-chromium.sh`), driven over the Chrome DevTools Protocol on 127.0.0.1:
//! the demo page reads a server stream with `EventSource` and holds a bidi chat over WebSocket;
//! the /docs page (Swagger UI, from the binary itself) lists every operation and tries one with
//! every request that would leave the gateway refused.

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
    /// Opens `page` in a fresh tab, waits until `ready` holds there, then evaluates each of
    /// `expressions` in turn, all within the patience.
    async fn in_page(
        &self,
        page: &str,
        ready: &str,
        expressions: &[&str],
    ) -> Vec<Result<Value, Value>> {
        self.in_page_offline(page, ready, expressions, None).await.0
    }

    /// [`Chromium::in_page`], with every request of the tab to a host other than those in
    /// `hosts` (when given) refused as if the machine had no network; also the URLs refused.
    async fn in_page_offline(
        &self,
        page: &str,
        ready: &str,
        expressions: &[&str],
        hosts: Option<&[&str]>,
    ) -> (Vec<Result<Value, Value>>, Vec<String>) {
        let run = async {
            let mut devtools = DevTools::connect(&self.devtools).await;
            devtools.allowed_hosts =
                hosts.map(|hosts| hosts.iter().map(|h| h.to_string()).collect());
            let session = devtools.open(page, ready).await;
            let mut results = Vec::with_capacity(expressions.len());
            for expression in expressions {
                results.push(devtools.evaluate(&session, expression).await);
            }
            (results, devtools.refused)
        };
        tokio::time::timeout(PATIENCE, run)
            .await
            .unwrap_or_else(|_| panic!("{page} finished within the patience"))
    }

    fn launch() -> Self {
        let binary = support::tools::install("install-chromium.sh")
            .unwrap_or_else(|error| panic!("Chromium could not be installed: {error}"));
        // One profile per browser: the tests of this binary run side by side.
        static LAUNCHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LAUNCHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("protogate-chromium-{}-{n}", std::process::id()));
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
                // A name for the loopback gateway, so the docs page is not served from an
                // address Swagger UI treats as local.
                &format!("--host-resolver-rules=MAP {DOCS_HOST} 127.0.0.1"),
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

/// A DevTools Protocol connection: commands and their answers; events skipped, except paused
/// requests when the tab is offline.
struct DevTools {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    /// When set, the tab is offline but for these hosts: its requests to any other are refused.
    allowed_hosts: Option<Vec<String>>,
    /// The URLs refused.
    refused: Vec<String>,
}

impl DevTools {
    async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("DevTools connection");
        DevTools {
            socket,
            next_id: 0,
            allowed_hosts: None,
            refused: Vec::new(),
        }
    }

    /// Sends a command (to a page's session, if given) and returns its result, or its error.
    async fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, Value> {
        let id = self.send(method, params, session).await;
        loop {
            let frame = self.socket.next().await.expect("open").expect("a frame");
            let Message::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if answer["method"] == "Fetch.requestPaused" {
                self.decide(&answer).await;
                continue;
            }
            if answer["id"] != json!(id) {
                continue;
            }
            return match answer.get("error") {
                Some(error) => Err(error.clone()),
                None => Ok(answer["result"].clone()),
            };
        }
    }

    /// Sends a command without waiting for its answer; its id.
    async fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> u64 {
        self.next_id += 1;
        let mut command = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("send a command");
        self.next_id
    }

    /// Lets a paused request go on if its host is allowed; refuses it, as a machine with no
    /// network would, and records it, if not.
    async fn decide(&mut self, paused: &Value) {
        let params = &paused["params"];
        let url = params["request"]["url"].as_str().unwrap_or_default();
        let host = url
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .split(['/', ':', '?', '#'])
            .next()
            .unwrap_or_default();
        let allowed = self
            .allowed_hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|h| h == host));
        let session = paused["sessionId"].as_str().map(str::to_owned);
        let request = json!({"requestId": params["requestId"]});
        if allowed {
            self.send("Fetch.continueRequest", request, session.as_deref())
                .await;
        } else {
            self.refused.push(url.to_owned());
            let mut refusal = request;
            refusal["errorReason"] = json!("InternetDisconnected");
            self.send("Fetch.failRequest", refusal, session.as_deref())
                .await;
        }
    }

    /// Opens `url` in a new tab (offline but for the allowed hosts, if they are set) and waits
    /// until `ready` (a JavaScript expression) is true there; the tab's session.
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
        if self.allowed_hosts.is_some() {
            // Every request of the tab pauses until `decide` lets it go on or refuses it.
            self.call(
                "Fetch.enable",
                json!({"patterns": [{"urlPattern": "*"}]}),
                Some(&session),
            )
            .await
            .expect("requests intercepted");
        }
        self.call("Page.navigate", json!({"url": url}), Some(&session))
            .await
            .expect("navigated");
        // The tab starts on about:blank: wait for the page itself.
        while self.evaluate(&session, ready).await != Ok(json!(true)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        session
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
    let page = format!("{}/demo/", gateway.base);
    let outcome = chromium
        .in_page(
            &page,
            "location.pathname === '/demo/' && !!window.demoResult",
            &[
                "window.demoResult",
                "document.getElementById('status').textContent",
            ],
        )
        .await;
    let [result, status] = <[_; 2]>::try_from(outcome).expect("two answers");
    let result = result.expect("the page's result");
    let status = status.expect("the page's status line");

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

/// Runs in the /docs page: waits for Swagger UI to list the operations, then opens
/// `ListShelves`, presses "Try it out" and "Execute", and reads the status of the answer.
const TRY_LIST_SHELVES: &str = r##"(async () => {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const find = async (selector, root = document) => {
    for (let i = 0; i < 800; i++) {
      const found = root.querySelector(selector);
      if (found) return found;
      await sleep(25);
    }
    throw new Error(`nothing matches ${selector}`);
  };
  await find(".opblock");
  const operations = document.querySelectorAll(".opblock").length;
  const block = await find("#operations-LibraryService-LibraryService_ListShelves");
  (await find(".opblock-summary-control", block)).click();
  (await find(".try-out__btn", block)).click();
  (await find(".execute", block)).click();
  const status = await find(".live-responses-table tr.response .response-col_status", block);
  return { operations, status: status.textContent.trim() };
})()"##;

/// The name the docs page is opened under (mapped to 127.0.0.1 in the browser), so the page
/// runs as a reader of a real deployment gets it: Swagger UI skips some outside requests (its
/// validator badge) for documents on `localhost` or `127.0.0.1`.
const DOCS_HOST: &str = "docs.test";

#[tokio::test]
async fn the_docs_page_works_offline_lists_every_operation_and_tries_one() {
    let gateway = support::start(&[]);
    let chromium = Chromium::launch();
    let port = gateway.base.rsplit(':').next().expect("a port");
    let page = format!("http://{DOCS_HOST}:{port}/docs");
    let (mut outcome, refused) = chromium
        .in_page_offline(
            &page,
            "location.pathname === '/docs' && typeof SwaggerUIBundle === 'function'",
            &[TRY_LIST_SHELVES],
            Some(&[DOCS_HOST]),
        )
        .await;
    let result = outcome
        .remove(0)
        .unwrap_or_else(|error| panic!("the docs page failed: {error}"));

    let document: Value =
        serde_json::from_str(protogate_gateway::docs::openapi()).expect("the document");
    let operations: usize = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().expect("a path item").len())
        .sum();
    assert_eq!(result["operations"], json!(operations), "{result}");
    assert_eq!(result["status"], "200", "{result}");
    // Nothing the page did asked anyone but the gateway.
    assert_eq!(refused, Vec::<String>::new());
}

#[tokio::test]
async fn the_docs_assets_are_the_embedded_files_and_nothing_else() {
    let gateway = support::start(&[]);
    let get = |path: &str| reqwest::get(format!("{}{path}", gateway.base));
    let page = get("/docs")
        .await
        .expect("the page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("/docs/assets/swagger-ui-bundle.js"), "{page}");
    assert!(!page.contains("https://"), "{page}");
    let script = get("/docs/assets/swagger-ui-bundle.js")
        .await
        .expect("the script");
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-type"], "text/javascript");
    assert!(
        script
            .text()
            .await
            .expect("text")
            .contains("SwaggerUIBundle")
    );
    let style = get("/docs/assets/swagger-ui.css").await.expect("the style");
    assert_eq!(style.status(), 200);
    assert_eq!(style.headers()["content-type"], "text/css");
    for missing in [
        "/docs/assets/",
        "/docs/assets/openapi.yaml",
        "/docs/assets/index.html",
    ] {
        assert_eq!(
            get(missing).await.expect("an answer").status(),
            404,
            "{missing}"
        );
    }
}

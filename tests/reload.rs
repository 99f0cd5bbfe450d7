//! Hot reload, through the real binary: a config file changed under load takes effect with no
//! request failing, and an invalid one (also asked for with SIGHUP) changes nothing and is
//! logged with its place.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_protogate");

/// The demo's page of books: the JSON field name tells which config is in effect.
const PATH: &str = "/demo/v1/shelves/fiction/books?pageSize=1";

struct Gateway {
    child: support::Process,
    base: String,
    stderr: Arc<Mutex<String>>,
}

fn start(config: &Path) -> Gateway {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a banner");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr");
    let sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("stderr")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let base = first.trim().rsplit(' ').next().expect("address").to_owned();
    Gateway {
        child: support::Process(child),
        base,
        stderr,
    }
}

async fn field_names(client: &reqwest::Client, base: &str) -> &'static str {
    let body: serde_json::Value = client
        .get(format!("{base}{PATH}"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    if body.get("next_page_token").is_some() {
        "proto"
    } else if body.get("nextPageToken").is_some() {
        "json"
    } else {
        panic!("no page token: {body}")
    }
}

/// Polls until `check` holds, up to 10 s.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never came about"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_takes_effect_under_load_and_an_invalid_one_changes_nothing() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reload-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "[gateway]\nproto_names = false\n").expect("written");
    let gateway = start(&config);
    let client = reqwest::Client::new();
    assert_eq!(field_names(&client, &gateway.base).await, "json");

    // Load from four clients, on kept-alive connections, while the config changes.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{}{PATH}", gateway.base));
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(20)
                    && sent.load(Ordering::Relaxed) < 20_000
                {
                    let ok = client
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    std::fs::write(&config, "[gateway]\nproto_names = true\n").expect("rewritten");
    eventually(|| async { field_names(&client, &gateway.base).await == "proto" }).await;

    // An invalid config, asked for with SIGHUP too: logged with its place, nothing changes.
    std::fs::write(&config, "[gateway]\nproto_names = \"yes\"\n").expect("rewritten");
    let hangup = Command::new("kill")
        .args(["-HUP", &gateway.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hangup.success());
    eventually(|| async {
        gateway
            .stderr
            .lock()
            .expect("stderr")
            .contains("config not reloaded")
    })
    .await;
    let log = gateway.stderr.lock().expect("stderr").clone();
    assert!(log.contains("gateway.toml:2:"), "{log}");
    assert!(log.contains("gateway.proto_names"), "{log}");
    assert_eq!(field_names(&client, &gateway.base).await, "proto");

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("a load task");
    }
    assert!(sent.load(Ordering::Relaxed) > 10, "the load ran");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
}

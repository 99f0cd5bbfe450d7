//! The public listeners, through the real binary: a cleartext one (HTTP/1.1 and HTTP/2 with
//! prior knowledge) and a TLS one (HTTP/2 and HTTP/1.1 by ALPN) on one gateway, the TLS
//! certificate replaced on disk and served without a restart, and unusable files refused at
//! start naming the file.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_protogate");

fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("listener-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    dir
}

/// A client that trusts only `ca`.
fn client(ca: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("a CA"))
}

struct Gateway {
    _child: support::Process,
    addresses: Vec<String>,
}

/// The gateway with `config`; the addresses its banner gives, first the public one.
fn start(config: &Path) -> Gateway {
    let mut child = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addresses = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        let line = line.trim();
        let Some(address) = line
            .strip_prefix("protogate listening on ")
            .or_else(|| line.strip_prefix("also listening on "))
        else {
            break;
        };
        addresses.push(address.to_owned());
    }
    std::thread::spawn(move || lines.for_each(drop));
    Gateway {
        _child: support::Process(child),
        addresses,
    }
}

#[tokio::test]
async fn cleartext_and_tls_listeners_serve_http1_and_http2_and_a_new_certificate_needs_no_restart()
{
    let (ca, cert, key) = support::issue("localhost");
    let dir = dir();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_file, &cert).expect("written");
    std::fs::write(&key_file, &key).expect("written");
    let config = dir.join("listeners.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert_file.display(),
            key_file.display()
        ),
    )
    .expect("written");
    let gateway = start(&config);
    let [plain, secure] = &gateway.addresses[..] else {
        panic!("two listeners: {:?}", gateway.addresses);
    };
    assert!(plain.starts_with("http://") && secure.starts_with("https://"));
    // Certificates name `localhost`.
    let secure = secure.replace("127.0.0.1", "localhost");
    let path = "/demo/v1/shelves";

    for (client, base, version) in [
        (
            reqwest::Client::builder().http1_only(),
            plain,
            http::Version::HTTP_11,
        ),
        (
            reqwest::Client::builder().http2_prior_knowledge(),
            plain,
            http::Version::HTTP_2,
        ),
        (client(&ca), &secure, http::Version::HTTP_2),
        (client(&ca).http1_only(), &secure, http::Version::HTTP_11),
    ] {
        let response = client
            .build()
            .expect("a client")
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200, "{base} {version:?}");
        assert_eq!(response.version(), version, "{base}");
    }

    // A new certificate from another CA, written in place: served within a few seconds.
    let (new_ca, new_cert, new_key) = support::issue("localhost");
    std::fs::write(&key_file, &new_key).expect("written");
    std::fs::write(&cert_file, &new_cert).expect("written");
    let started = Instant::now();
    loop {
        let answer = client(&new_ca)
            .build()
            .expect("a client")
            .get(format!("{secure}{path}"))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = client(&ca)
        .build()
        .expect("a client")
        .get(format!("{secure}{path}"))
        .send()
        .await;
    assert!(old.is_err(), "the old CA no longer verifies it");
}

#[test]
fn an_unusable_certificate_stops_the_start_naming_the_file() {
    let dir = dir();
    let config = dir.join("missing.toml");
    std::fs::write(
        &config,
        "[[listeners]]\nlisten = \"127.0.0.1:0\"\ntls = { cert = \"/nonexistent/server.pem\", key = \"/nonexistent/server.key\" }\n",
    )
    .expect("written");
    let output = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/server.pem"), "{stderr}");
}

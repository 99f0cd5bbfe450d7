//! The admin listener, through the real binary: alive, ready while the upstream in use has an
//! endpoint that can take calls and not once it has none, the metrics that say why, the config
//! in effect, and none of it on the public port.

mod support;

use std::path::Path;

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.expect("answered");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

#[tokio::test]
async fn health_readiness_and_config_on_the_admin_listener_only() {
    // An upstream on a port where nothing listens, ejected at its first failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nupstream = \"main\"\n\n[upstreams.main]\nendpoints = [\"http://127.0.0.1:{port}\"]\nejection = {{ consecutive_failures = 1, base = \"30s\", max = \"30s\" }}\n"
        ),
    )
    .expect("written");
    let gateway = support::start_with_admin(&["--config", config.to_str().expect("UTF-8")]);

    assert_eq!(get(format!("{}/healthz", gateway.admin)).await.0, 200);
    // Not tried yet: the endpoint may take calls.
    let (status, text) = get(format!("{}/readyz", gateway.admin)).await;
    assert_eq!(status, 200, "{text}");

    // A call fails and ejects the only endpoint: not ready, naming the upstream.
    let (status, _) = get(format!("{}/demo/v1/shelves", gateway.base)).await;
    assert_eq!(status, 503);
    let (status, text) = get(format!("{}/readyz", gateway.admin)).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("upstream `main`: 0 endpoint(s) available"),
        "{text}"
    );
    assert_eq!(get(format!("{}/healthz", gateway.admin)).await.0, 200);

    // The metrics say why: the endpoint refused its connection and is down.
    let (status, text) = get(format!("{}/metrics", gateway.admin)).await;
    assert_eq!(status, 200);
    let endpoint = format!("upstream=\"main\",endpoint=\"127.0.0.1:{port}\"");
    for sample in [
        format!("protogate_upstream_connect_failures_total{{{endpoint}}} 1"),
        format!("protogate_upstream_endpoint_up{{{endpoint}}} 0"),
    ] {
        assert!(
            text.lines().any(|line| line == sample),
            "{sample} in\n{text}"
        );
    }

    let (status, text) = get(format!("{}/config", gateway.admin)).await;
    assert_eq!(status, 200);
    let shown: toml::Table = toml::from_str(&text).expect("TOML");
    assert_eq!(
        shown["upstreams"]["main"]["endpoints"][0].as_str(),
        Some(format!("http://127.0.0.1:{port}").as_str())
    );

    for path in ["/healthz", "/readyz", "/config", "/metrics"] {
        let (status, _) = get(format!("{}{path}", gateway.base)).await;
        assert_eq!(status, 404, "{path} on the public port");
    }
}

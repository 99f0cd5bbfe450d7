//! Sessions shared across replicas, through the real binary: two gateway processes with
//! `[auth.sessions]` and one real redis-server. A session the login service writes signs the
//! client in on both; deleting it signs the client out of both. A page of another site cannot
//! make the browser's cookie change anything.

mod support;

#[path = "support/redis.rs"]
mod redis_server;

use std::path::Path;
use std::time::Duration;

use redis_server::RedisServer;

/// The status of a request to the demo's shelves with `session` as the session cookie.
async fn status(base: &str, session: &str) -> u16 {
    let request = reqwest::Client::new()
        .get(format!("{base}/demo/v1/shelves"))
        .header("cookie", format!("session={session}"));
    support::status_of(request).await
}

#[tokio::test]
async fn two_gateway_processes_share_sign_in_and_sign_out_through_redis() {
    let binary = support::tools::install("install-redis.sh").expect("redis-server installed");
    let redis = RedisServer::start(Path::new(&binary));
    let config = format!(
        "[auth.sessions]\ncookie = \"session\"\ncache = \"200ms\"\n\n[redis]\nurl = \"{}\"\n",
        redis.url()
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("session-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let path = dir.join("sessions.toml");
    std::fs::write(&path, config).expect("written");
    let path = path.to_str().expect("UTF-8 path");
    let (first, second) = (
        support::start(&["--config", path]),
        support::start(&["--config", path]),
    );

    assert_eq!(status(&first.base, "s-9").await, 401);
    redis
        .command(&["SET", "session:s-9", r#"{"sub": "hana"}"#])
        .expect("SET");
    // Past the refusal each replica keeps for a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&first.base, "s-9").await, 200);
    assert_eq!(status(&second.base, "s-9").await, 200);

    redis.command(&["DEL", "session:s-9"]).expect("DEL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&first.base, "s-9").await, 401);
    assert_eq!(status(&second.base, "s-9").await, 401);
}

/// `POST {base}/demo/v1/shelves?shelfId={id}` with `session` as the session cookie and
/// `headers`.
async fn create_shelf(base: &str, id: &str, session: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/demo/v1/shelves?shelfId={id}"))
        .header("cookie", format!("session={session}"))
        .header("content-type", "application/json")
        .body(r#"{"theme": "tides"}"#);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    support::status_of(request).await
}

#[tokio::test]
async fn a_session_cookie_changes_nothing_from_a_page_of_another_site() {
    let binary = support::tools::install("install-redis.sh").expect("redis-server installed");
    let redis = RedisServer::start(Path::new(&binary));
    redis
        .command(&["SET", "session:s-1", r#"{"sub": "ines"}"#])
        .expect("SET");
    let config = format!(
        "[auth]\ncross_site_origins = [\"https://app.example.com\"]\n\n[auth.sessions]\n\n[redis]\nurl = \"{}\"\n",
        redis.url()
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("session-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let path = dir.join("cross-site.toml");
    std::fs::write(&path, config).expect("written");
    let gateway = support::start(&["--config", path.to_str().expect("UTF-8 path")]);

    let created = create_shelf(
        &gateway.base,
        "tides",
        "s-1",
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert!((200..300).contains(&created), "{created}");
    let cross_site = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ];
    assert_eq!(
        create_shelf(&gateway.base, "forged", "s-1", &cross_site).await,
        403
    );
    let listed = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://app.example.com"),
    ];
    let created = create_shelf(&gateway.base, "listed", "s-1", &listed).await;
    assert!((200..300).contains(&created), "{created}");
    // Reading from another site is not changing anything.
    let read = reqwest::Client::new()
        .get(format!("{}/demo/v1/shelves", gateway.base))
        .header("cookie", "session=s-1")
        .header("sec-fetch-site", "cross-site");
    assert_eq!(support::status_of(read).await, 200);
}

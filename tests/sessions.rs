//! Sessions shared across replicas, through the real binary: two gateway processes with
//! `[auth.sessions]` and one real redis-server. A session the login service writes signs the
//! client in on both; deleting it signs the client out of both.

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
        .header("cookie", format!("session={session}"))
        .send();
    tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("answered in time")
        .expect("answered")
        .status()
        .as_u16()
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

//! Sessions shared through a real redis-server (`protogate::RedisSessions`): two gateways
//! resolve the same session cookie, a session deleted at login's end is refused by both once
//! their short caches let go, and a Redis that is down fails closed until it is back.

#[path = "../../tests/support/redis.rs"]
mod redis_server;
#[path = "../../tests/support/tools.rs"]
#[allow(dead_code)]
mod tools;

use std::path::PathBuf;
use std::time::Duration;

use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::{gateway_to, start_backend};
use protogate::{Auth, PerRoute, RedisSessions, Requirement};
use redis_server::RedisServer;

fn redis_binary() -> PathBuf {
    PathBuf::from(tools::install("install-redis.sh").expect("redis-server installed"))
}

/// A gateway whose routes need a session of the Redis at `url`, forwarding `sub` as `x-user`.
async fn gateway(url: &str) -> String {
    let sessions = RedisSessions::new(url)
        .expect("a Redis URL")
        .command_timeout(Duration::from_millis(300))
        .checker("session")
        .ttl(Duration::from_millis(300))
        .timeout(Duration::from_secs(1))
        .build();
    let auth = Auth::builder()
        .external(sessions)
        .requirements(PerRoute::new(Requirement::authenticated()))
        .forward_claim("sub", "x-user")
        .build()
        .expect("auth");
    let backend = start_backend().await.expect("backend");
    gateway_to(backend, binding_service_gateway::remote, move |gateway| {
        gateway.route_layer(auth)
    })
    .await
    .expect("gateway")
}

/// The status and the `x-user` the backend received, for a request with `session`.
async fn call(base: &str, session: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/metadata"))
        .header("cookie", format!("session={session}"))
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("JSON");
    let user = body["received"]["x-user"].as_str().unwrap_or_default();
    (status, user.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_sessions_through_redis() {
    let mut redis = RedisServer::start(&redis_binary());
    let (first, second) = (gateway(&redis.url()).await, gateway(&redis.url()).await);

    // Before login: refused by both.
    assert_eq!(call(&first, "s-1").await.0, 401);
    assert_eq!(call(&second, "s-1").await.0, 401);

    // The login service writes the session; both replicas know the client.
    let session = r#"{"sub": "fran", "scope": "read"}"#;
    assert_eq!(
        redis
            .command(&["SET", "session:s-1", session])
            .expect("SET"),
        "+OK"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cached refusal
    assert_eq!(call(&first, "s-1").await, (200, "fran".to_owned()));
    assert_eq!(call(&second, "s-1").await, (200, "fran".to_owned()));

    // Logout deletes it: refused again once the short caches let go.
    assert_eq!(redis.command(&["DEL", "session:s-1"]).expect("DEL"), ":1");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(call(&first, "s-1").await.0, 401);
    assert_eq!(call(&second, "s-1").await.0, 401);

    // Redis down: a session not in the cache cannot be checked, and the gateway says so.
    assert_eq!(
        redis
            .command(&["SET", "session:s-2", r#"{"sub": "gus"}"#])
            .expect("SET"),
        "+OK"
    );
    redis.stop();
    let (status, _) = call(&first, "s-2").await;
    assert_eq!(status, 503);

    // Back (empty, as a restarted cache is): the session written again works on both.
    redis.restart();
    assert_eq!(
        redis
            .command(&["SET", "session:s-2", r#"{"sub": "gus"}"#])
            .expect("SET"),
        "+OK"
    );
    let mut answered = (0, String::new());
    for _ in 0..30 {
        answered = call(&first, "s-2").await;
        if answered.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answered, (200, "gus".to_owned()));
    assert_eq!(call(&second, "s-2").await, (200, "gus".to_owned()));
}

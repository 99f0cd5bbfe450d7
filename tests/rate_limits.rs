//! Rate limits in the stock gateway, through the real binary: `[rate_limit]`, a `[[routes]]`
//! rule's `rate_limit`, and two gateway processes sharing one limit through a real redis-server
//! that is then killed and restarted under them; mistakes named by key.

mod support;

#[path = "support/redis.rs"]
mod redis_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use redis_server::RedisServer;

/// Writes `text` to a file of this test's own.
fn file(name: &str, text: &str) -> PathBuf {
    support::test_file("rate-limit-tests", name, text)
}

/// `protogate serve --config FILE` with `text` as the file.
fn serve(name: &str, text: &str) -> support::Running {
    let path = file(name, text);
    support::start(&["--config", path.to_str().expect("UTF-8 path")])
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    support::status_of(client.get(url)).await
}

/// Sends `count` requests to the shelves of the demo, alternating between the gateways; how many
/// each let through.
async fn alternate(bases: [&str; 2], count: usize) -> [usize; 2] {
    let client = reqwest::Client::new();
    let mut allowed = [0, 0];
    for i in 0..count {
        match status(&client, &format!("{}/demo/v1/shelves", bases[i % 2])).await {
            200 => allowed[i % 2] += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    allowed
}

#[tokio::test]
async fn two_gateway_processes_share_one_limit_through_redis_and_outlive_its_restart() {
    let binary = support::tools::install("install-redis.sh").expect("redis-server installed");
    let mut redis = RedisServer::start(Path::new(&binary));
    let config = format!(
        "[rate_limit]\nrequests = 4\nper = \"10m\"\nkey = \"ip\"\n\n\
         [redis]\nurl = \"{}\"\nconnect_timeout = \"500ms\"\ncommand_timeout = \"300ms\"\n",
        redis.url()
    );
    let one = serve("shared-one.toml", &config);
    let two = serve("shared-two.toml", &config);
    let bases = [one.base.as_str(), two.base.as_str()];

    // One limit of 4 for the client, wherever its requests land.
    assert_eq!(alternate(bases, 12).await, [2, 2]);
    assert_eq!(redis.command(&["DBSIZE"]).expect("DBSIZE"), ":1");

    // Redis killed: both go on serving, each with its own limit of 4.
    redis.stop();
    let started = Instant::now();
    assert_eq!(alternate(bases, 12).await, [4, 4]);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "12 requests took {:?} without Redis",
        started.elapsed()
    );

    // Redis back, empty: once both decide through it again, a round lets 2 through each (their
    // own buckets are spent, so whatever they let through was counted in Redis).
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(redis.command(&["FLUSHALL"]).expect("flush"), "+OK");
        let allowed = alternate(bases, 12).await;
        if allowed == [2, 2] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "limits not shared again: {allowed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_route_rule_lifts_or_sets_the_limit_in_memory() {
    let gateway = serve(
        "routes.toml",
        "[rate_limit]\nrequests = 2\nper = \"1m\"\n\n\
         [[routes]]\nmatch = \"protogate.demo.v1.LibraryService.ListShelves\"\nrate_limit = false\n\n\
         [[routes]]\nmatch = \"GET /demo/v1/shelves/*/books\"\nrate_limit = { requests = 1, per = \"1h\", key = \"route\", name = \"books\" }\n",
    );
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let response = client
            .get(format!("{}/demo/v1/shelves", gateway.base))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit").is_none());
    }
    let books = format!("{}/demo/v1/shelves/fiction/books", gateway.base);
    let response = client.get(&books).send().await.expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"books\";q=1;w=3600"
    );
    let refused = client.get(&books).send().await.expect("answered");
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(body["code"], 8);
    // The default limit for the rest.
    let shelf = format!("{}/demo/v1/shelves/fiction", gateway.base);
    assert_eq!(status(&client, &shelf).await, 200);
    assert_eq!(status(&client, &shelf).await, 200);
    assert_eq!(status(&client, &shelf).await, 429);
}

#[tokio::test]
async fn an_ipv6_client_is_counted_by_the_prefix_the_config_gives() {
    // A /56 here: two /64s of it are one client.
    let gateway = serve(
        "prefix.toml",
        "[rate_limit]\nrequests = 1\nper = \"1h\"\ntrusted_proxies = [\"127.0.0.1\"]\nipv6_prefix = 56\n",
    );
    let client = reqwest::Client::new();
    let url = format!("{}/demo/v1/shelves", gateway.base);
    let status_from = |address: &'static str| {
        support::status_of(client.get(&url).header("x-forwarded-for", address))
    };
    assert_eq!(status_from("2001:db8:0:100::1").await, 200);
    assert_eq!(status_from("2001:db8:0:1ff::1").await, 429);
    assert_eq!(status_from("2001:db8:0:200::1").await, 200);
}

#[test]
fn rate_limit_mistakes_are_named_by_key() {
    let cases = [
        (
            "zero.toml",
            "[rate_limit]\nrequests = 0\n",
            "`rate_limit.requests`: allows no request",
        ),
        (
            "proxy.toml",
            "[rate_limit]\nrequests = 5\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0/8\"]\n",
            "`rate_limit.trusted_proxies[1]`: `10.0.0/8` is not a network",
        ),
        (
            "key.toml",
            "[rate_limit]\nrequests = 5\nkey = \"user\"\n",
            "`rate_limit.key`: unknown variant `user`",
        ),
        (
            "ipv6.toml",
            "[rate_limit]\nrequests = 5\nipv6_prefix = 129\n",
            "`rate_limit.ipv6_prefix`: 129 is not the length of an IPv6 prefix (1 to 128)",
        ),
        (
            "per.toml",
            "[rate_limit]\nper = \"1s\"\n",
            "`rate_limit.requests`: `per` and `burst` describe the default limit",
        ),
        (
            "url.toml",
            "[rate_limit]\nrequests = 5\n\n[redis]\nurl = \"http://cache:6379\"\n",
            "`redis.url`: invalid Redis URL",
        ),
        (
            "failure.toml",
            "[rate_limit]\nrequests = 5\non_redis_failure = \"refuse\"\n",
            "`rate_limit.on_redis_failure`: there is no [redis] section",
        ),
        (
            "rule.toml",
            "[[routes]]\nmatch = \"/demo/**\"\nrate_limit = { requests = 5, burst = 0 }\n",
            "`routes[0].rate_limit.burst`: a burst of 0 allows no request",
        ),
        (
            "typo.toml",
            "[[routes]]\nmatch = \"/demo/**\"\nrate_limit = { request = 5 }\n",
            "unknown field `request`",
        ),
        (
            "true.toml",
            "[[routes]]\nmatch = \"/demo/**\"\nrate_limit = true\n",
            "write `false` for no limit",
        ),
    ];
    for (name, text, expected) in cases {
        let path = file(name, text);
        let output = Command::new(support::binary())
            .args(["config", "check", path.to_str().expect("UTF-8 path")])
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{name} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

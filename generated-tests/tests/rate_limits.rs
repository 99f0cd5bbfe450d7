//! Rate limits (`protogate::RateLimit`) on a generated gateway in front of a tonic backend, over
//! real sockets: by client address, behind trusted proxies, by principal, routes without a limit,
//! the refusal's status, body and fields, memory over many clients; and limits shared by two
//! gateways through a real redis-server, which is killed, restarted and frozen under them.

#[path = "../../tests/support/redis.rs"]
mod redis_server;
#[path = "../../tests/support/tools.rs"]
#[allow(dead_code)]
mod tools;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::{gateway_to, start_backend};
use protogate::{
    ClientKey, ClientPrefixes, Limit, OnRedisFailure, PerRoute, Principal, RateLimit, RedisLimits,
    RouteSelector, RouteService,
};
use redis_server::RedisServer;
use tower::ServiceExt as _;

/// A gateway in front of a fresh backend, wearing `rate_limit` (after a layer that makes the
/// `x-user` header the request's principal, as an authentication layer would).
async fn gateway(rate_limit: RateLimit) -> String {
    let backend = start_backend().await.expect("backend");
    gateway_to(backend, binding_service_gateway::remote, |gateway| {
        gateway
            .route_layer(principal_from_header())
            .route_layer(rate_limit)
    })
    .await
    .expect("gateway")
}

fn principal_from_header()
-> impl tower::Layer<RouteService, Service = RouteService> + Clone + Send + Sync + 'static {
    tower::layer::layer_fn(|inner: RouteService| {
        RouteService::new(tower::service_fn(
            move |mut request: http::Request<Body>| {
                let inner = inner.clone();
                let user = request
                    .headers()
                    .get("x-user")
                    .and_then(|user| user.to_str().ok())
                    .map(str::to_owned);
                if let Some(user) = user {
                    Principal {
                        subject: user.into(),
                        scheme: "api_key",
                        scopes: Vec::new().into(),
                        claims: serde_json::json!({}).into(),
                    }
                    .attach(&mut request);
                }
                inner.oneshot(request)
            },
        ))
    })
}

fn selector(text: &str) -> RouteSelector {
    text.parse().expect("a selector")
}

/// A client whose connections come from `address` (any of 127.0.0.0/8).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().expect("an address"))
        .build()
        .expect("client")
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(Duration::from_secs(10), request.send())
        .await
        .expect("answered in time")
        .expect("answered")
}

async fn status(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> u16 {
    get(client, url, headers).await.status().as_u16()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .expect("text")
}

#[tokio::test]
async fn limits_by_client_address_with_the_fields_and_a_status_on_refusal() {
    let rate_limit = RateLimit::builder()
        .limits(PerRoute::new(Some(Limit::new(3, Duration::from_secs(60)))))
        .build()
        .expect("limits");
    let base = gateway(rate_limit).await;
    let url = format!("{base}/v1/echo/hello");
    let first = client_from("127.0.0.1");

    for remaining in [2, 1, 0] {
        let response = get(&first, &url, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"default\";q=3;w=60"
        );
        // One request is earned every 20 s.
        assert_eq!(
            header(&response, "ratelimit"),
            format!("\"default\";r={remaining};t=20")
        );
    }

    let refused = get(&first, &url, &[]).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().expect("seconds");
    assert!(
        (1..=20).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(header(&refused, "ratelimit-policy"), "\"default\";q=3;w=60");
    assert_eq!(
        header(&refused, "ratelimit"),
        format!("\"default\";r=0;t={retry_after}")
    );
    assert_eq!(header(&refused, "content-type"), "application/json");
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(body["code"], 8, "RESOURCE_EXHAUSTED: {body}");
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains("rate limit \"default\" (3 per 60s, per ip) exceeded"),
        "{message}"
    );
    // When to come back, in the body too, rendered with the gateway's type registry.
    assert_eq!(
        body["details"][0]["@type"], "type.googleapis.com/google.rpc.RetryInfo",
        "{body}"
    );

    // Another address has a bucket of its own.
    let second = client_from("127.0.0.2");
    assert_eq!(status(&second, &url, &[]).await, 200);
    assert_eq!(status(&first, &url, &[]).await, 429);
}

#[tokio::test]
async fn limits_by_principal_and_by_address_without_one() {
    let rate_limit = RateLimit::builder()
        .limits(PerRoute::new(Some(
            Limit::per_minute(2)
                .key(ClientKey::Principal)
                .named("per-user"),
        )))
        .build()
        .expect("limits");
    let base = gateway(rate_limit).await;
    let url = format!("{base}/v1/echo/x");
    let client = client_from("127.0.0.1");

    let alice = [("x-user", "alice")];
    assert_eq!(status(&client, &url, &alice).await, 200);
    assert_eq!(status(&client, &url, &alice).await, 200);
    let refused = get(&client, &url, &alice).await;
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"per-user\"") && m.contains("per principal")),
        "{body}"
    );
    // Bob, from the same address, is another client.
    assert_eq!(status(&client, &url, &[("x-user", "bob")]).await, 200);
    // Without a principal: counted by address, apart from alice and bob.
    assert_eq!(status(&client, &url, &[]).await, 200);
    assert_eq!(status(&client, &url, &[]).await, 200);
    assert_eq!(status(&client, &url, &[]).await, 429);
    assert_eq!(status(&client, &url, &alice).await, 429);
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_client_address() {
    let rate_limit = RateLimit::builder()
        .limits(PerRoute::new(Some(Limit::per_minute(1))))
        .trusted_proxies(["127.0.0.1".parse().expect("network")])
        .build()
        .expect("limits");
    let base = gateway(rate_limit).await;
    let url = format!("{base}/v1/echo/x");
    let proxy = client_from("127.0.0.1");
    let forwarded = |chain| [("x-forwarded-for", chain)];

    assert_eq!(status(&proxy, &url, &forwarded("198.51.100.1")).await, 200);
    assert_eq!(status(&proxy, &url, &forwarded("198.51.100.1")).await, 429);
    assert_eq!(status(&proxy, &url, &forwarded("198.51.100.2")).await, 200);
    // A client cannot get a fresh bucket by prepending an address of its choice: the
    // right-most address the proxy did not add is the client.
    assert_eq!(
        status(&proxy, &url, &forwarded("6.6.6.6, 198.51.100.1")).await,
        429
    );
    // A chain of trusted proxies is walked through.
    assert_eq!(
        status(&proxy, &url, &forwarded("198.51.100.3, 127.0.0.1")).await,
        200
    );
    assert_eq!(status(&proxy, &url, &forwarded("198.51.100.3")).await, 429);
    // Without the header, the proxy is the client.
    assert_eq!(status(&proxy, &url, &[]).await, 200);
    assert_eq!(status(&proxy, &url, &[]).await, 429);
}

#[tokio::test]
async fn an_ipv6_client_is_counted_by_its_64_not_by_each_address_of_it() {
    let limited = |prefixes| {
        RateLimit::builder()
            .limits(PerRoute::new(Some(Limit::per_minute(1))))
            .trusted_proxies(["127.0.0.1".parse().expect("network")])
            .client_prefixes(prefixes)
            .build()
            .expect("limits")
    };
    let proxy = client_from("127.0.0.1");
    let forwarded = |chain| [("x-forwarded-for", chain)];

    let base = gateway(limited(ClientPrefixes::DEFAULT)).await;
    let url = format!("{base}/v1/echo/x");
    assert_eq!(
        status(&proxy, &url, &forwarded("2001:db8:1:2::1")).await,
        200
    );
    // Another address of the same /64 is the same client, whatever its interface bits.
    assert_eq!(
        status(&proxy, &url, &forwarded("2001:db8:1:2:9f3c:41ab:7e02:1")).await,
        429
    );
    assert_eq!(
        status(&proxy, &url, &forwarded("2001:db8:1:3::1")).await,
        200
    );
    // IPv4 clients stay apart, one per address.
    assert_eq!(status(&proxy, &url, &forwarded("198.51.100.1")).await, 200);
    assert_eq!(status(&proxy, &url, &forwarded("198.51.100.2")).await, 200);

    // With whole addresses, each is a client of its own.
    let whole = ClientPrefixes::new(32, 128).expect("prefixes");
    let base = gateway(limited(whole)).await;
    let url = format!("{base}/v1/echo/x");
    assert_eq!(
        status(&proxy, &url, &forwarded("2001:db8:1:2::1")).await,
        200
    );
    assert_eq!(
        status(&proxy, &url, &forwarded("2001:db8:1:2::2")).await,
        200
    );
    assert_eq!(
        status(&proxy, &url, &forwarded("2001:db8:1:2::1")).await,
        429
    );
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let rate_limit = RateLimit::builder()
        .limits(PerRoute::new(Some(Limit::per_minute(1))))
        .trusted_proxies(["10.0.0.0/8".parse().expect("network")])
        .build()
        .expect("limits");
    let base = gateway(rate_limit).await;
    let url = format!("{base}/v1/echo/x");
    let client = client_from("127.0.0.3");

    assert_eq!(
        status(&client, &url, &[("x-forwarded-for", "198.51.100.1")]).await,
        200
    );
    assert_eq!(
        status(&client, &url, &[("x-forwarded-for", "198.51.100.2")]).await,
        429
    );
    assert_eq!(status(&client, &url, &[]).await, 429);
}

#[tokio::test]
async fn a_rule_may_lift_the_limit_or_set_its_own() {
    let limits = PerRoute::new(Some(Limit::per_minute(1)))
        .rule(selector("protogate.tests.v1.BindingService.Get"), None)
        .rule(
            selector("POST /v1/echo"),
            Some(Limit::per_minute(2).key(ClientKey::Route)),
        );
    let rate_limit = RateLimit::builder().limits(limits).build().expect("limits");
    let base = gateway(rate_limit).await;
    let client = client_from("127.0.0.1");

    // No limit: never refused, and no fields.
    for _ in 0..10 {
        let response = get(&client, &format!("{base}/v1/echo/free"), &[]).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit").is_none());
        assert!(response.headers().get("ratelimit-policy").is_none());
    }
    // The rule's own limit, named by its selector, one bucket for every client.
    let post = |client: reqwest::Client| {
        let url = format!("{base}/v1/echo");
        async move { client.post(url).body("{}").send().await.expect("answered") }
    };
    let response = post(client.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "ratelimit-policy"),
        "\"POST /v1/echo\";q=2;w=60"
    );
    assert_eq!(post(client_from("127.0.0.2")).await.status(), 200);
    assert_eq!(post(client_from("127.0.0.3")).await.status(), 429);
    // The default covers the rest.
    let everything = format!("{base}/v1/everything");
    assert_eq!(status(&client, &everything, &[]).await, 200);
    assert_eq!(status(&client, &everything, &[]).await, 429);
}

#[tokio::test]
async fn memory_stays_bounded_over_many_clients() {
    // Each client's bucket is full again (idle, and forgotten) 200 ms after its request.
    let rate_limit = RateLimit::builder()
        .limits(PerRoute::new(Some(Limit::new(
            5,
            Duration::from_millis(200),
        ))))
        .trusted_proxies(["127.0.0.1".parse().expect("network")])
        .build()
        .expect("limits");
    let base = gateway(rate_limit.clone()).await;
    let url = format!("{base}/v1/echo/x");
    let client = client_from("127.0.0.1");

    // New clients, 16 at a time, for 2.5 s: idle buckets are swept every second meanwhile.
    let started = Instant::now();
    let (mut sent, mut most_held) = (0u32, 0usize);
    while started.elapsed() < Duration::from_millis(2500) && sent < 40_000 {
        let batch: Vec<_> = (0..16)
            .map(|i| {
                let n = sent + i;
                let address = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    status(&client, &url, &[("x-forwarded-for", &address)]).await
                })
            })
            .collect();
        for answer in batch {
            assert_eq!(answer.await.expect("request"), 200);
        }
        sent += 16;
        most_held = most_held.max(rate_limit.buckets_in_memory());
    }
    assert!(sent >= 160, "only {sent} requests in 2.5 s");
    assert!(
        most_held < usize::try_from(sent).expect("count"),
        "{most_held} buckets held for {sent} clients"
    );
    // Once every bucket is idle, the next request's sweep leaves its own alone.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        status(&client, &url, &[("x-forwarded-for", "192.0.2.1")]).await,
        200
    );
    assert_eq!(rate_limit.buckets_in_memory(), 1);
}

// Shared limits through Redis.

fn redis_binary() -> PathBuf {
    PathBuf::from(tools::install("install-redis.sh").expect("redis-server installed"))
}

fn shared(redis: &RedisServer, limit: Limit, on_failure: OnRedisFailure) -> RateLimit {
    let store = RedisLimits::new(&redis.url())
        .expect("URL")
        .connect_timeout(Duration::from_millis(500))
        .command_timeout(Duration::from_millis(300))
        .retry_interval(Duration::from_millis(200));
    RateLimit::builder()
        .limits(PerRoute::new(Some(limit)))
        .redis(store)
        .on_redis_failure(on_failure)
        .build()
        .expect("limits")
}

/// Sends `count` requests, alternating between the gateways; how many each let through.
async fn alternate(bases: [&str; 2], count: usize) -> [usize; 2] {
    let client = client_from("127.0.0.1");
    let mut allowed = [0, 0];
    for i in 0..count {
        let url = format!("{}/v1/echo/x", bases[i % 2]);
        match status(&client, &url, &[]).await {
            200 => allowed[i % 2] += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    allowed
}

#[tokio::test]
async fn two_gateways_hold_one_limit_through_redis() {
    let redis = RedisServer::start(&redis_binary());
    let limit = || Limit::new(10, Duration::from_secs(600));
    let (one, two) = (
        shared(&redis, limit(), OnRedisFailure::Local),
        shared(&redis, limit(), OnRedisFailure::Local),
    );
    let bases = [gateway(one.clone()).await, gateway(two.clone()).await];
    let client = client_from("127.0.0.1");

    // 40 requests at once, 20 to each: 10 let through in all.
    let round = || async {
        let requests: Vec<_> = (0..40)
            .map(|i| {
                let (client, url) = (client.clone(), format!("{}/v1/echo/x", bases[i % 2]));
                tokio::spawn(async move { status(&client, &url, &[]).await })
            })
            .collect();
        let mut allowed = 0;
        for request in requests {
            match request.await.expect("request") {
                200 => allowed += 1,
                429 => {}
                other => panic!("status {other}"),
            }
        }
        allowed
    };
    assert_eq!(round().await, 10);
    assert_eq!(redis.command(&["DBSIZE"]).expect("DBSIZE"), ":1");

    // A Redis that lost its scripts (and its keys) gets the script again with the next call.
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]).expect("flush"), "+OK");
    assert_eq!(redis.command(&["FLUSHALL"]).expect("flush"), "+OK");
    assert_eq!(round().await, 10);
    for gateway in [&one, &two] {
        assert_eq!(gateway.stats().redis_errors(), 0);
        assert_eq!(gateway.stats().unshared_decisions(), 0);
        assert_eq!(gateway.redis_is_up(), Some(true));
    }
}

#[tokio::test]
async fn requests_go_on_while_redis_is_down_and_limits_are_shared_again_once_it_is_back() {
    let mut redis = RedisServer::start(&redis_binary());
    let limit = || Limit::new(4, Duration::from_secs(600));
    let (one, two) = (
        shared(&redis, limit(), OnRedisFailure::Local),
        shared(&redis, limit(), OnRedisFailure::Local),
    );
    let bases = [gateway(one.clone()).await, gateway(two.clone()).await];
    let bases = [bases[0].as_str(), bases[1].as_str()];

    assert_eq!(alternate(bases, 12).await, [2, 2]);

    // Killed: each gateway decides alone, with its own buckets (4 each), and answers at once.
    redis.stop();
    let started = Instant::now();
    assert_eq!(alternate(bases, 12).await, [4, 4]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "12 requests took {:?}",
        started.elapsed()
    );
    for gateway in [&one, &two] {
        assert!(gateway.stats().redis_errors() >= 1);
        assert!(gateway.stats().unshared_decisions() >= 6);
        assert_eq!(gateway.redis_is_up(), Some(false));
    }

    // Back, empty: within a few seconds both gateways decide through it again. Their own
    // buckets are spent, so a round that lets 2 through each (4 in all) was decided in Redis.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(one.redis_is_up(), Some(true));
    assert_eq!(two.redis_is_up(), Some(true));
}

#[tokio::test]
async fn with_refusal_on_failure_an_unreachable_redis_means_503() {
    let mut redis = RedisServer::start(&redis_binary());
    let rate_limit = shared(&redis, Limit::per_minute(100), OnRedisFailure::Refuse);
    let base = gateway(rate_limit.clone()).await;
    let url = format!("{base}/v1/echo/x");
    let client = client_from("127.0.0.1");
    assert_eq!(status(&client, &url, &[]).await, 200);

    redis.stop();
    let refused = get(&client, &url, &[]).await;
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(body["code"], 14, "UNAVAILABLE: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limits cannot be checked")),
        "{body}"
    );
    assert!(rate_limit.stats().unshared_decisions() >= 1);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&client, &url, &[]).await != 200 {
        assert!(
            Instant::now() < deadline,
            "still refused once Redis is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_frozen_redis_delays_no_request_beyond_the_timeouts() {
    let redis = RedisServer::start(&redis_binary());
    let rate_limit = shared(&redis, Limit::per_minute(100), OnRedisFailure::Local);
    let base = gateway(rate_limit.clone()).await;
    let url = format!("{base}/v1/echo/x");
    let client = client_from("127.0.0.1");
    assert_eq!(status(&client, &url, &[]).await, 200);

    redis.freeze();
    // Connect (500 ms) and command (300 ms) timeouts at most, with room for a loaded machine.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(status(&client, &url, &[]).await, 200);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a request took {:?}",
            started.elapsed()
        );
    }
    assert!(rate_limit.stats().redis_errors() >= 1);
    redis.thaw();
    let deadline = Instant::now() + Duration::from_secs(15);
    while rate_limit.redis_is_up() != Some(true) {
        assert!(
            Instant::now() < deadline,
            "Redis not used again once thawed"
        );
        assert_eq!(status(&client, &url, &[]).await, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

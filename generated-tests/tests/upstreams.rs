//! Upstreams a production team can point at, over real sockets with real tonic backends: TLS
//! and mutual TLS with a CA made here, Unix domain sockets, a tonic `Channel` in place of the
//! built-in upstream, several endpoints balanced (one killed, one hung, one shut down during
//! load), DNS names whose addresses change, health checks, bulkheads, deadlines, retry budgets
//! and response size limits.

mod backends;

use std::time::Duration;

use backends::{Pki, Relay, Table, get, tagged, tls_backend};
use generated_tests::pb::protogate::tests::v1::binding_service_gateway;
use generated_tests::serve_gateway;
use protogate::{
    Balance, Bulkhead, Deadlines, Ejection, Gateway, HealthCheck, Keepalive, RetryBudget, Upstream,
    UpstreamTls,
};
use serde_json::json;

/// A gateway serving the binding service from `upstream`; its base URL.
async fn gateway_for(upstream: Upstream) -> String {
    let gateway = Gateway::new()
        .with(binding_service_gateway::remote(upstream))
        .expect("routes");
    serve_gateway(gateway).await.expect("gateway")
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends `count` GETs of `path`, `concurrency` at a time; calls `midway` once half are done.
/// Returns the statuses and tags of every answer, in no particular order.
async fn load(
    base: &str,
    path: &str,
    count: usize,
    concurrency: usize,
    midway: impl FnOnce(),
) -> Vec<(u16, Option<String>)> {
    use futures_util::StreamExt;
    let client = client();
    let url = format!("{base}{path}");
    let mut midway = Some(midway);
    let mut answers = Vec::with_capacity(count);
    let mut pending = futures_util::stream::iter(0..count)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let (status, _, tag) = get(&client, &url).await;
                (status, tag)
            }
        })
        .buffer_unordered(concurrency);
    while let Some(answer) = pending.next().await {
        answers.push(answer);
        if answers.len() == count / 2
            && let Some(midway) = midway.take()
        {
            midway();
        }
    }
    answers
}

fn served_by(answers: &[(u16, Option<String>)], tag: &str) -> usize {
    answers
        .iter()
        .filter(|(_, t)| t.as_deref() == Some(tag))
        .count()
}

#[tokio::test]
async fn tls_upstreams_are_verified_against_the_given_ca() {
    let pki = Pki::new(&["backend.test", "localhost"]);
    let backend = tls_backend(&pki, "tls", false).await;

    // By IP, with the certificate's name given as the server name.
    let upstream = Upstream::builder("secure")
        .endpoint(format!("https://{backend}"))
        .tls(
            UpstreamTls::new()
                .ca_file(&pki.ca)
                .server_name("backend.test"),
        )
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, body, tag) = get(&client(), &format!("{base}/v1/echo/hello")).await;
    assert_eq!((status, &body), (200, &json!({"name": "hello"})), "{body}");
    assert_eq!(tag.as_deref(), Some("tls"));

    // By name: the name is resolved, sent in SNI and checked against the certificate.
    let names = Table::default();
    names.set("backend.test", &[backend]);
    let upstream = Upstream::builder("by-name")
        .endpoint(format!("https://backend.test:{}", backend.port()))
        .resolver(names)
        .tls(UpstreamTls::new().ca_file(&pki.ca))
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, body, _) = get(&client(), &format!("{base}/v1/echo/by-name")).await;
    assert_eq!(status, 200, "{body}");

    // A certificate the gateway cannot verify: refused, and said so.
    let stranger = Pki::new(&["backend.test"]);
    let upstream = Upstream::builder("untrusted")
        .endpoint(format!("https://{backend}"))
        .tls(
            UpstreamTls::new()
                .ca_file(&stranger.ca)
                .server_name("backend.test"),
        )
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, body, _) = get(&client(), &format!("{base}/v1/echo/x")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("upstream `untrusted`"), "{message}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // The wrong name for the certificate: refused too.
    let upstream = Upstream::builder("wrong-name")
        .endpoint(format!("https://{backend}"))
        .tls(
            UpstreamTls::new()
                .ca_file(&pki.ca)
                .server_name("other.test"),
        )
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, _, _) = get(&client(), &format!("{base}/v1/echo/x")).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn mutual_tls_is_accepted_with_the_right_client_certificate_only() {
    let pki = Pki::new(&["backend.test"]);
    let backend = tls_backend(&pki, "mtls", true).await;
    let tls = UpstreamTls::new()
        .ca_file(&pki.ca)
        .server_name("backend.test");
    let with = |tls: UpstreamTls| {
        Upstream::builder("mtls")
            .endpoint(format!("https://{backend}"))
            .tls(tls)
            .build()
            .expect("upstream")
    };

    let base = gateway_for(with(
        tls.clone()
            .client_identity(&pki.client_cert, &pki.client_key),
    ))
    .await;
    let (status, body, tag) = get(&client(), &format!("{base}/v1/echo/mutual")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tag.as_deref(), Some("mtls"));

    for refused in [
        tls.clone(),
        tls.clone()
            .client_identity(&pki.stranger_cert, &pki.stranger_key),
    ] {
        let base = gateway_for(with(refused)).await;
        let (status, body, _) = get(&client(), &format!("{base}/v1/echo/x")).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], 14);
    }
}

#[tokio::test]
async fn tls_files_that_cannot_be_used_fail_the_build_naming_the_file() {
    let pki = Pki::new(&["backend.test"]);
    let build = |tls: UpstreamTls| {
        Upstream::builder("files")
            .endpoint("https://127.0.0.1:1")
            .tls(tls)
            .build()
            .expect_err("bad TLS files")
            .to_string()
    };
    let missing = pki.path("missing.pem");
    let error = build(UpstreamTls::new().ca_file(&missing));
    assert!(error.contains("missing.pem"), "{error}");

    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let error = build(UpstreamTls::new().ca_file(&garbage));
    assert!(error.contains("garbage.pem"), "{error}");

    // A key that does not match its certificate: refused, and the key's text never shown.
    let error = build(
        UpstreamTls::new()
            .ca_file(&pki.ca)
            .client_identity(&pki.client_cert, &pki.stranger_key),
    );
    let key_text = std::fs::read_to_string(&pki.stranger_key).unwrap();
    assert!(!error.contains(key_text.lines().nth(1).unwrap()), "{error}");
    assert!(
        error.contains("client.pem") || error.contains("stranger.key"),
        "{error}"
    );

    // TLS settings for cleartext endpoints are a mistake worth saying.
    let error = Upstream::builder("plain")
        .endpoint("http://127.0.0.1:1")
        .tls(UpstreamTls::new().ca_file(&pki.ca))
        .build()
        .expect_err("no https endpoint")
        .to_string();
    assert!(error.contains("no https:// endpoint"), "{error}");
}

#[cfg(unix)]
#[tokio::test]
async fn unix_domain_sockets_reach_a_local_service() {
    let pki = Pki::new(&["unused"]);
    let path = pki.path("backend.sock");
    backends::unix_backend(&path);
    let upstream = Upstream::lazy(&format!("unix://{}", path.display())).expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, body, tag) = get(&client(), &format!("{base}/v1/echo/local")).await;
    assert_eq!((status, &body), (200, &json!({"name": "local"})), "{body}");
    assert_eq!(tag.as_deref(), Some("unix"));
}

#[tokio::test]
async fn the_authority_of_requests_can_be_set_apart_from_the_endpoints() {
    let backend = tagged("authority").await;
    let seen = |upstream: Upstream| async move {
        let base = gateway_for(upstream).await;
        let (status, body, _) = get(&client(), &format!("{base}/v1/metadata")).await;
        assert_eq!(status, 200, "{body}");
        body["received"]["x-seen-authority"]
            .as_str()
            .map(str::to_owned)
    };
    let url = format!("http://{}", backend.address);
    let plain = seen(Upstream::lazy(&url).unwrap()).await;
    let overridden = seen(
        Upstream::builder("routed")
            .endpoint(&url)
            .authority("orders.mesh.internal")
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(plain, Some(backend.address.to_string()));
    assert_eq!(overridden.as_deref(), Some("orders.mesh.internal"));
    assert!(
        Upstream::builder("bad")
            .endpoint(&url)
            .authority("no spaces allowed")
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_tonic_channel_can_stand_in_for_the_built_in_upstream() {
    let backend = tagged("channel").await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", backend.address))
        .expect("endpoint")
        .connect_lazy();
    let gateway = Gateway::new()
        .with(binding_service_gateway::remote_with(channel))
        .expect("routes");
    let base = serve_gateway(gateway).await.expect("gateway");
    let (status, body, tag) = get(&client(), &format!("{base}/v1/echo/chan")).await;
    assert_eq!((status, &body), (200, &json!({"name": "chan"})), "{body}");
    assert_eq!(tag.as_deref(), Some("channel"));
}

#[tokio::test]
async fn calls_spread_over_three_endpoints_and_a_killed_one_costs_only_its_calls_in_flight() {
    let backends = [tagged("a").await, tagged("b").await, tagged("c").await];
    let relays = [
        Relay::to(backends[0].address).await,
        Relay::to(backends[1].address).await,
        Relay::to(backends[2].address).await,
    ];
    let upstream = Upstream::builder("three")
        .endpoints(
            relays
                .iter()
                .map(|relay| format!("http://{}", relay.address)),
        )
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;

    let concurrency = 8;
    let answers = load(&base, "/v1/echo/x", 600, concurrency, || relays[1].cut()).await;
    let failed = answers.iter().filter(|(status, _)| *status != 200).count();
    assert!(
        failed <= concurrency,
        "{failed} calls failed: only those in flight on the killed endpoint may"
    );
    for tag in ["a", "b", "c"] {
        assert!(served_by(&answers, tag) > 0, "{tag} served nothing");
    }

    // After: the killed endpoint gets no more calls, and nothing fails.
    let after = load(&base, "/v1/echo/x", 100, concurrency, || ()).await;
    assert!(after.iter().all(|(status, _)| *status == 200), "{after:?}");
    assert_eq!(served_by(&after, "b"), 0);
    assert!(served_by(&after, "a") > 0 && served_by(&after, "c") > 0);
}

#[tokio::test]
async fn an_endpoint_that_stops_answering_pings_is_closed_and_marked_down() {
    let backends = [tagged("live").await, tagged("hung").await];
    let relays = [
        Relay::to(backends[0].address).await,
        Relay::to(backends[1].address).await,
    ];
    let upstream = Upstream::builder("pinged")
        .endpoints(
            relays
                .iter()
                .map(|relay| format!("http://{}", relay.address)),
        )
        .balance(Balance::RoundRobin)
        .keepalive(Some(Keepalive {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
        }))
        .connect_timeout(Duration::from_millis(300))
        .ejection(Ejection {
            consecutive_failures: 1,
            base: Duration::from_secs(30),
            max: Duration::from_secs(30),
        })
        .build()
        .expect("upstream");
    let probe = upstream.clone();
    let base = gateway_for(upstream).await;
    let warm = load(&base, "/v1/echo/x", 4, 1, || ()).await;
    assert_eq!(served_by(&warm, "hung"), 2, "{warm:?}");

    relays[1].freeze();
    // Within a PING round or two, the hung connection is found out and its endpoint ejected.
    let started = std::time::Instant::now();
    while probe.available_endpoints().await != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the hung endpoint was never ejected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client();
    for _ in 0..10 {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            get(&client, &format!("{base}/v1/echo/x")),
        )
        .await
        .expect("no call waits on the hung endpoint");
        assert_eq!(answer.0, 200, "{answer:?}");
        assert_eq!(answer.2.as_deref(), Some("live"));
    }
}

#[tokio::test]
async fn an_endpoint_shut_down_during_load_finishes_its_calls_and_the_rest_go_elsewhere() {
    let mut leaving = tagged("leaving").await;
    let staying = tagged("staying").await;
    let upstream = Upstream::builder("goaway")
        .endpoint(format!("http://{}", leaving.address))
        .endpoint(format!("http://{}", staying.address))
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    // The slow calls are in flight on both when the GOAWAY comes: they finish.
    let answers = load(&base, "/v1/slow/20", 400, 16, || leaving.stop()).await;
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(served_by(&answers, "leaving") > 0);
    let _ = (&mut leaving.server).await;
    let after = load(&base, "/v1/echo/x", 50, 8, || ()).await;
    assert!(
        after
            .iter()
            .all(|(s, t)| *s == 200 && t.as_deref() == Some("staying"))
    );
}

#[tokio::test]
async fn a_dns_name_follows_its_addresses_and_drains_the_old_ones() {
    let (old, new) = (tagged("old").await, tagged("new").await);
    let names = Table::default();
    names.set("svc.test", &[old.address]);
    let upstream = Upstream::builder("named")
        .endpoint("http://svc.test")
        .resolver(names.clone())
        .resolve_every(Duration::from_millis(100))
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let client = client();
    let (status, _, tag) = get(&client, &format!("{base}/v1/echo/x")).await;
    assert_eq!((status, tag.as_deref()), (200, Some("old")));

    // A call in flight on the old address when the name moves finishes there.
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), format!("{base}/v1/slow/700"));
        async move { get(&client, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    names.set("svc.test", &[new.address]);
    let mut moved = false;
    for _ in 0..50 {
        let (status, _, tag) = get(&client, &format!("{base}/v1/echo/x")).await;
        assert_eq!(status, 200);
        if tag.as_deref() == Some("new") {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "the new address never took calls");
    let (status, _, tag) = slow.await.expect("slow call");
    assert_eq!((status, tag.as_deref()), (200, Some("old")));
    let after = load(&base, "/v1/echo/x", 20, 4, || ()).await;
    assert_eq!(served_by(&after, "new"), 20, "{after:?}");
}

#[tokio::test]
async fn health_checks_take_a_not_serving_endpoint_out_until_it_serves_again() {
    const SERVICE: &str = "protogate.tests.v1.BindingService";
    let (reporter, health) = tonic_health::server::health_reporter();
    let checked = backends::health_backend("checked", health).await;
    let (other_reporter, health) = tonic_health::server::health_reporter();
    let other = backends::health_backend("other", health).await;
    for reporter in [&reporter, &other_reporter] {
        reporter
            .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
            .await;
    }
    let upstream = Upstream::builder("checked")
        .endpoint(format!("http://{checked}"))
        .endpoint(format!("http://{other}"))
        .balance(Balance::RoundRobin)
        .health_check(HealthCheck {
            service: SERVICE.to_owned(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
        })
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let before = load(&base, "/v1/echo/x", 10, 1, || ()).await;
    assert!(served_by(&before, "checked") > 0, "{before:?}");

    // Within a few check rounds, every call goes to the other endpoint, and none fails.
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    let during = until(
        |answers| served_by(answers, "other") == answers.len(),
        &base,
    )
    .await;
    assert!(during.iter().all(|(s, _)| *s == 200), "{during:?}");

    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let after = until(|answers| served_by(answers, "checked") > 0, &base).await;
    assert!(after.iter().all(|(s, _)| *s == 200), "{after:?}");
}

/// Rounds of 10 sequential calls until `done` holds for one (at most 10 s); that round.
async fn until(
    done: impl Fn(&[(u16, Option<String>)]) -> bool,
    base: &str,
) -> Vec<(u16, Option<String>)> {
    let started = std::time::Instant::now();
    loop {
        let answers = load(base, "/v1/echo/x", 10, 1, || ()).await;
        if done(&answers) {
            return answers;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never came about: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_endpoint_down_is_503_naming_the_upstream() {
    let dead = |port| format!("http://127.0.0.1:{port}");
    let ports: Vec<u16> = {
        let listeners: Vec<_> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    };
    let upstream = Upstream::builder("gone")
        .endpoints(ports.iter().map(|port| dead(*port)))
        .ejection(Ejection {
            consecutive_failures: 1,
            ..Ejection::default()
        })
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let client = client();
    let (status, body, _) = get(&client, &format!("{base}/v1/echo/x")).await;
    assert_eq!((status, body["code"].clone()), (503, json!(14)), "{body}");
    // Both are ejected now: the next call fails at once, saying why.
    let (status, body, _) = get(&client, &format!("{base}/v1/echo/x")).await;
    assert_eq!(status, 503);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("upstream `gone`: no endpoint is available"),
        "{message}"
    );
    for port in ports {
        assert!(message.contains(&port.to_string()), "{message}");
    }
}

#[tokio::test]
async fn a_bulkhead_sheds_a_hung_upstreams_excess_and_leaves_the_others_alone() {
    let hung = tagged("hung").await;
    let healthy = tagged("healthy").await;
    let a = Upstream::builder("a")
        .endpoint(format!("http://{}", hung.address))
        .bulkhead(Bulkhead {
            max_in_flight: 2,
            queue: 1,
            queue_timeout: Duration::from_millis(200),
        })
        .build()
        .expect("upstream a");
    let b = Upstream::builder("b")
        .endpoint(format!("http://{}", healthy.address))
        .bulkhead(Bulkhead::new(64))
        .build()
        .expect("upstream b");
    let base_a = gateway_for(a).await;
    let base_b = gateway_for(b).await;
    let client = client();

    // Upstream A hangs every call (10 s): two take its places, one waits, the rest are shed.
    let hanging: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{base_a}/v1/slow/10000"));
            tokio::spawn(async move {
                let response = client.get(&url).send().await.expect("answered");
                let retry_after = response.headers().get("retry-after").cloned();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.expect("JSON");
                (status, retry_after, body)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Meanwhile upstream B answers every call.
    let answers = load(&base_b, "/v1/echo/x", 50, 8, || ()).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");

    // Within the queue timeout, all but the two in flight have been shed.
    let mut shed = 0;
    for call in hanging {
        if let Ok(answer) = tokio::time::timeout(Duration::from_secs(3), call).await {
            let (status, retry_after, body) = answer.expect("call");
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["code"], 14);
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("upstream `a` is at its limit of 2 calls in flight"),
                "{body}"
            );
            assert_eq!(retry_after.expect("Retry-After"), "1");
            shed += 1;
        }
    }
    assert_eq!(
        shed, 6,
        "two calls hold A's places; every other one is shed"
    );
}

#[tokio::test]
async fn retries_of_calls_never_started_are_bounded_by_the_budget() {
    let live = tagged("live").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let upstream = |budget: RetryBudget| {
        Upstream::builder("budgeted")
            // The dead endpoint first: round robin sends every other call to it first.
            .endpoint(format!("http://{dead}"))
            .endpoint(format!("http://{}", live.address))
            .balance(Balance::RoundRobin)
            .ejection(Ejection {
                consecutive_failures: 1_000_000,
                ..Ejection::default()
            })
            .retry_budget(budget)
            .build()
            .expect("upstream")
    };
    let count_failures =
        |answers: Vec<(u16, Option<String>)>| answers.iter().filter(|(s, _)| *s != 200).count();

    // No budget: every call that tried the dead endpoint first fails.
    let base = gateway_for(upstream(RetryBudget {
        ratio: 0.0,
        min_per_second: 0,
    }))
    .await;
    assert_eq!(
        count_failures(load(&base, "/v1/echo/x", 10, 1, || ()).await),
        5
    );

    // Half a retry per call: only the first call finds the budget empty.
    let base = gateway_for(upstream(RetryBudget {
        ratio: 0.5,
        min_per_second: 0,
    }))
    .await;
    assert_eq!(
        count_failures(load(&base, "/v1/echo/x", 10, 1, || ()).await),
        1
    );

    // The default budget covers an occasional refused connection.
    let base = gateway_for(upstream(RetryBudget::default())).await;
    assert_eq!(
        count_failures(load(&base, "/v1/echo/x", 10, 1, || ()).await),
        0
    );
}

#[tokio::test]
async fn a_response_larger_than_the_upstreams_limit_is_resource_exhausted() {
    let backend = tagged("big").await;
    let upstream = Upstream::builder("small")
        .endpoint(format!("http://{}", backend.address))
        .max_response_bytes(64)
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    let client = client();
    let (status, _, _) = get(&client, &format!("{base}/v1/echo/short")).await;
    assert_eq!(status, 200);
    let long = "x".repeat(100);
    let (status, body, _) = get(&client, &format!("{base}/v1/echo/{long}")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], 8);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("upstream `small`"), "{message}");
    assert!(message.contains("limit of 64 bytes"), "{message}");
}

#[tokio::test]
async fn deadlines_come_from_method_service_upstream_and_cap_the_clients() {
    let backend = tagged("slow").await;
    let upstream = Upstream::builder("timed")
        .endpoint(format!("http://{}", backend.address))
        .deadlines(Deadlines {
            default: Some(Duration::from_millis(200)),
            max: Some(Duration::from_millis(600)),
        })
        .build()
        .expect("upstream");
    let client = client();
    let slow = |base: &str, millis: u64| format!("{base}/v1/slow/{millis}");

    // The upstream's default, and its cap on what the client asks for.
    let base = gateway_for(upstream.clone()).await;
    let (status, body, _) = get(&client, &slow(&base, 1000)).await;
    assert_eq!((status, body["code"].clone()), (504, json!(4)), "{body}");
    let response = client
        .get(slow(&base, 1000))
        .header("grpc-timeout", "10S")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504, "capped at 600 ms");
    let (status, _, _) = get(&client, &slow(&base, 10)).await;
    assert_eq!(status, 200);

    // A method's own default wins over the upstream's (the upstream's cap still applies).
    let service = binding_service_gateway::remote(upstream.clone())
        .method_deadlines(
            "Slow",
            Deadlines {
                default: Some(Duration::from_secs(2)),
                max: None,
            },
        )
        .expect("a method of the service");
    let base = serve_gateway(Gateway::new().with(service).unwrap())
        .await
        .unwrap();
    let (status, _, _) = get(&client, &slow(&base, 250)).await;
    assert_eq!(
        status, 200,
        "the method's 2 s default, under the 600 ms cap"
    );
    let (status, _, _) = get(&client, &slow(&base, 1000)).await;
    assert_eq!(status, 504);

    assert!(
        binding_service_gateway::remote(upstream)
            .method_deadlines("NoSuchMethod", Deadlines::NONE)
            .is_err()
    );
}

/// An HTTP/2 server that refuses every stream (REFUSED_STREAM), as an overloaded or restarting
/// upstream does: the calls it refuses were never processed.
async fn refusing() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn calls_refused_before_processing_are_sent_to_another_endpoint() {
    let refusing = refusing().await;
    let live = tagged("accepting").await;
    let upstream = Upstream::builder("refused")
        .endpoint(format!("http://{refusing}"))
        .endpoint(format!("http://{}", live.address))
        .balance(Balance::RoundRobin)
        .build()
        .expect("upstream");
    let base = gateway_for(upstream).await;
    // Half the calls go to the refusing endpoint first; every one is answered by the other.
    let answers = load(&base, "/v1/echo/x", 20, 1, || ()).await;
    assert!(
        answers
            .iter()
            .all(|(status, tag)| *status == 200 && tag.as_deref() == Some("accepting")),
        "{answers:?}"
    );

    // Alone, the refusing endpoint's refusal is the answer: UNAVAILABLE, naming the upstream.
    let alone = Upstream::lazy(&format!("http://{refusing}")).expect("upstream");
    let base = gateway_for(alone).await;
    let (status, body, _) = get(&client(), &format!("{base}/v1/echo/x")).await;
    assert_eq!((status, body["code"].clone()), (503, json!(14)), "{body}");
}

/// An endpoint whose first connection sends GOAWAY as soon as a call comes, leaving that call
/// out (last stream 0) with `reason`; every later connection is relayed to `backend`.
async fn going_away_once(reason: u32, backend: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let Ok((mut first, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            // An empty SETTINGS, then frames are read until the first HEADERS.
            let _ = first.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
            let mut preface = [0; 24];
            if first.read_exact(&mut preface).await.is_err() {
                return;
            }
            loop {
                let mut head = [0; 9];
                if first.read_exact(&mut head).await.is_err() {
                    return;
                }
                let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0; length];
                if first.read_exact(&mut payload).await.is_err() {
                    return;
                }
                if head[3] == 0x1 {
                    break;
                }
            }
            let mut goaway = vec![0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            goaway.extend_from_slice(&reason.to_be_bytes());
            let _ = first.write_all(&goaway).await;
            let _ = first.shutdown().await;
        });
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_call_left_out_by_a_goaway_is_sent_again_even_with_one_endpoint() {
    // Whatever the GOAWAY's reason (here the one a server's own rapid-reset guard gives), a
    // call it leaves out was never processed.
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    let backend = tagged("after").await;
    let endpoint = going_away_once(ENHANCE_YOUR_CALM, backend.address).await;
    let upstream = Upstream::lazy(&format!("http://{endpoint}")).expect("upstream");
    let base = gateway_for(upstream).await;
    let (status, body, tag) = get(&client(), &format!("{base}/v1/echo/again")).await;
    assert_eq!((status, &body), (200, &json!({"name": "again"})), "{body}");
    assert_eq!(tag.as_deref(), Some("after"));
}

/// One canned unary answer of [`answering`]: its HTTP status, the headers, the data and the
/// trailers (none: the stream ends with the headers or the data).
struct Canned {
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    data: Vec<u8>,
    trailers: Option<&'static [(&'static str, &'static str)]>,
}

/// A gRPC message frame around `payload`, `flag` its compression flag.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![flag];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HTTP/2 server that answers its calls with `answers`, one each, in order.
async fn answering(answers: Vec<Canned>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let answers = std::sync::Arc::new(std::sync::Mutex::new(answers.into_iter()));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    let Some(canned) = answers.lock().expect("answers").next() else {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    };
                    let mut head = http::Response::builder().status(canned.status);
                    for (name, value) in canned.headers {
                        head = head.header(*name, *value);
                    }
                    let ends_now = canned.data.is_empty() && canned.trailers.is_none();
                    let Ok(mut send) =
                        respond.send_response(head.body(()).expect("head"), ends_now)
                    else {
                        continue;
                    };
                    if !canned.data.is_empty() {
                        let _ = send.send_data(canned.data.into(), canned.trailers.is_none());
                    }
                    if let Some(trailers) = canned.trailers {
                        let mut map = http::HeaderMap::new();
                        for (name, value) in trailers {
                            map.insert(*name, http::HeaderValue::from_static(value));
                        }
                        let _ = send.send_trailers(map);
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn malformed_unary_answers_are_errors_that_say_what_was_wrong() {
    const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc")];
    const OK: Option<&[(&str, &str)]> = Some(&[("grpc-status", "0")]);
    // What each answer is, and the status, code and words the client gets for it.
    let cases: Vec<(Canned, u16, i32, &str)> = vec![
        (
            Canned {
                status: 200,
                headers: GRPC,
                data: [frame(0, b""), frame(0, b"")].concat(),
                trailers: OK,
            },
            500,
            13,
            "more than one message",
        ),
        (
            Canned {
                status: 200,
                headers: GRPC,
                data: frame(0, b"\xff"),
                trailers: OK,
            },
            500,
            13,
            "not valid protobuf",
        ),
        (
            Canned {
                status: 200,
                headers: GRPC,
                data: frame(1, b"\x0a\x01x"),
                trailers: OK,
            },
            500,
            13,
            "compressed",
        ),
        (
            Canned {
                status: 200,
                headers: GRPC,
                data: frame(0, b"")[..3].to_vec(),
                trailers: OK,
            },
            500,
            13,
            "inside a frame header",
        ),
        (
            Canned {
                status: 200,
                headers: GRPC,
                data: frame(0, b""),
                trailers: None,
            },
            500,
            13,
            "without a grpc-status",
        ),
        (
            Canned {
                status: 200,
                headers: GRPC,
                data: Vec::new(),
                trailers: OK,
            },
            500,
            13,
            "without a message",
        ),
        (
            Canned {
                status: 503,
                headers: &[],
                data: Vec::new(),
                trailers: None,
            },
            503,
            14,
            "HTTP 503",
        ),
        (
            Canned {
                status: 200,
                headers: &[
                    ("content-type", "application/grpc"),
                    ("grpc-status", "5"),
                    ("grpc-message", "no such thing"),
                ],
                data: Vec::new(),
                trailers: None,
            },
            404,
            5,
            "no such thing",
        ),
        (
            Canned {
                status: 200,
                headers: GRPC,
                data: frame(0, b""),
                trailers: Some(&[("grpc-status", "9"), ("grpc-message", "not now")]),
            },
            400,
            9,
            "not now",
        ),
    ];
    let mut expected = Vec::new();
    let mut answers = Vec::new();
    for (canned, status, code, words) in cases {
        answers.push(canned);
        expected.push((status, code, words));
    }
    let address = answering(answers).await;
    let upstream = Upstream::lazy(&format!("http://{address}")).expect("upstream");
    let base = gateway_for(upstream).await;
    let client = client();
    for (status, code, words) in expected {
        let (got, body, _) = get(&client, &format!("{base}/v1/echo/x")).await;
        assert_eq!(
            (got, body["code"].clone()),
            (status, json!(code)),
            "{words}: {body}"
        );
        let message = body["message"].as_str().expect("a message");
        assert!(message.contains(words), "{words}: {message}");
    }
    // The same server answering well-formed: a success, so the cases above fail for what
    // they hold, not for how the server sends them.
    let address = answering(vec![Canned {
        status: 200,
        headers: GRPC,
        data: frame(0, b""),
        trailers: OK,
    }])
    .await;
    let base = gateway_for(Upstream::lazy(&format!("http://{address}")).expect("upstream")).await;
    let (got, body, _) = get(&client, &format!("{base}/v1/echo/x")).await;
    assert_eq!(got, 200, "{body}");
}

//! The edge policies of the config (`[[routes]]` and each policy's section), built once per
//! plan and worn by every worker's gateway as route layers (`protogate::Gateway::route_layer`).
//!
//! State that must outlive a worker's router (key caches, rate-limit counters, connections to
//! Redis) is built here once and shared by every worker.

use std::time::Duration;

use protogate::{
    ClientKey, Compression, CompressionLayer, Cors, CorsLayer, DeclaredPolicy, Encoding, Gateway,
    Limit, Limits, LimitsLayer, OnRedisFailure, PerRoute, RateLimit, RedisLimits, RouteSelector,
};

use crate::config::{
    CompressionSection, Config, CorsSection, KeyName, LimitsSection, RedisFailure, RouteCors,
    RouteLimit, RouteRateLimit, Span,
};

/// Every edge policy of a config, ready to wear.
pub struct Edge {
    /// The `[[routes]]` selectors, in order, parsed.
    selectors: Vec<RouteSelector>,
    /// `[cors]` and the rules' `cors`, if any says something.
    cors: Option<CorsLayer>,
    /// `[limits]` and the rules' `limits`, if any says something.
    limits: Option<LimitsLayer>,
    /// `[compression]`, if present.
    compression: Option<CompressionLayer>,
    /// `[auth]` and the rules' `auth`: one layer (its key caches) for every worker.
    auth: Option<protogate::Auth>,
    /// Rate limits (`[rate_limit]`, `[redis]`, the rules' `rate_limit`): one layer whose
    /// buckets (and Redis connection) every worker shares.
    rate_limit: Option<RateLimit>,
}

/// A mistake in the edge policy of a config: the key it is at, and what is wrong.
#[derive(Debug)]
pub struct EdgeError {
    /// The key, as `routes[2].match`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Edge {
    /// Checks and builds the edge policies of `config`; `rpcs` are the full names of the RPCs
    /// this build serves, which an RPC selector must cover one of, and `declared` the policies
    /// their protos declare, which apply under the config's own rules.
    pub fn new(
        config: &Config,
        rpcs: &[&str],
        declared: &[DeclaredPolicy],
    ) -> Result<Edge, EdgeError> {
        let mut selectors = Vec::with_capacity(config.routes.len());
        for (index, rule) in config.routes.iter().enumerate() {
            let key = format!("routes[{index}].match");
            let selector: RouteSelector =
                rule.selector
                    .parse()
                    .map_err(|error: protogate::SelectorError| EdgeError {
                        key: key.clone(),
                        message: error.to_string(),
                    })?;
            if let Some(pattern) = selector.rpc_pattern()
                && !rpcs.iter().any(|rpc| selector.covers_rpc(rpc))
            {
                return Err(EdgeError {
                    key,
                    message: format!(
                        "`{pattern}` covers no RPC of this build (see `protogate routes`)"
                    ),
                });
            }
            selectors.push(selector);
        }
        let cors = cors_layer(config, &selectors)?;
        let limits = limits_layer(config, &selectors)?;
        let compression = config
            .compression
            .as_ref()
            .map(compression)
            .transpose()?
            .map(CompressionLayer::new);
        let auth = crate::auth::build(config, &selectors, declared)?;
        let rate_limit = rate_limit(config, &selectors, declared)?;
        Ok(Edge {
            selectors,
            cors,
            limits,
            auth,
            rate_limit,
            compression,
        })
    }

    /// The selector of rule `index` of `[[routes]]`.
    pub fn selector(&self, index: usize) -> &RouteSelector {
        &self.selectors[index]
    }

    /// `gateway` wearing every policy, in the order they apply to a request: CORS first (it
    /// answers preflights, and its headers reach every answer below it, refusals included),
    /// then limits, auth, rate limits (which count by the principal auth found), and
    /// compression last, nearest the handler (which reads the decoded body, so the body limits
    /// count decoded bytes).
    pub fn wear(&self, mut gateway: Gateway) -> Gateway {
        if let Some(cors) = &self.cors {
            gateway = gateway.route_layer(cors.clone());
        }
        if let Some(limits) = &self.limits {
            gateway = gateway.route_layer(limits.clone());
        }
        if let Some(auth) = &self.auth {
            gateway = gateway.route_layer(auth.clone());
        }
        if let Some(rate_limit) = &self.rate_limit {
            gateway = gateway.route_layer(rate_limit.clone());
        }
        if let Some(compression) = &self.compression {
            gateway = gateway.route_layer(compression.clone());
        }
        gateway
    }

    /// The auth layer, when the config has `[auth]`.
    pub fn auth(&self) -> Option<&protogate::Auth> {
        self.auth.as_ref()
    }

    /// The rate limit layer, when the config has rate limits.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }
}

fn mistake(key: impl Into<String>, message: impl Into<String>) -> EdgeError {
    EdgeError {
        key: key.into(),
        message: message.into(),
    }
}

/// The rate limit layer of `config`: `None` without `[rate_limit]` or a rule's `rate_limit`.
fn rate_limit(
    config: &Config,
    selectors: &[RouteSelector],
    declared: &[DeclaredPolicy],
) -> Result<Option<RateLimit>, EdgeError> {
    let ruled = config.routes.iter().any(|rule| rule.rate_limit.is_some())
        || declared.iter().any(|policy| policy.rate_limit.is_some());
    if config.rate_limit.is_none() && !ruled {
        return Ok(None);
    }
    let section = config.rate_limit.clone().unwrap_or_default();
    let key = section.key.map_or(ClientKey::Ip, client_key);
    let default = match section.requests {
        Some(requests) => Some(limit(
            "rate_limit",
            &RouteLimit {
                requests,
                per: section.per,
                burst: section.burst,
                key: None,
                name: None,
            },
            key,
        )?),
        None if section.per.is_some() || section.burst.is_some() => {
            return Err(mistake(
                "rate_limit.requests",
                "`per` and `burst` describe the default limit: give `requests` too",
            ));
        }
        None => None,
    };
    let mut limits = PerRoute::new(default);
    for (index, rule) in config.routes.iter().enumerate() {
        let value = match &rule.rate_limit {
            None => continue,
            Some(RouteRateLimit::Off(_)) => None,
            Some(RouteRateLimit::Limit(own)) => {
                Some(limit(&format!("routes[{index}].rate_limit"), own, key)?)
            }
        };
        limits = limits.rule(selectors[index].clone(), value);
    }
    // What the protos declare, under the config's own rules.
    for policy in declared {
        let Some(declared_limit) = policy.rate_limit else {
            continue;
        };
        let own = RouteLimit {
            requests: declared_limit.requests,
            per: Some(Span(declared_limit.period)),
            burst: (declared_limit.burst > 0).then_some(declared_limit.burst),
            key: None,
            name: Some(policy.rpc.to_owned()),
        };
        let built = limit(&format!("the proto of {}", policy.rpc), &own, key)?;
        limits = limits.rule(crate::auth::rpc_selector(policy.rpc), Some(built));
    }
    let mut trusted = Vec::with_capacity(section.trusted_proxies.len());
    for (index, network) in section.trusted_proxies.iter().enumerate() {
        trusted.push(network.parse().map_err(|error: protogate::NetworkError| {
            mistake(
                format!("rate_limit.trusted_proxies[{index}]"),
                error.to_string(),
            )
        })?);
    }
    let mut prefixes = protogate::ClientPrefixes::DEFAULT;
    if let Some(bits) = section.ipv4_prefix {
        prefixes = prefixes.with_ipv4(bits).ok_or_else(|| {
            mistake(
                "rate_limit.ipv4_prefix",
                format!("{bits} is not the length of an IPv4 prefix (1 to 32)"),
            )
        })?;
    }
    if let Some(bits) = section.ipv6_prefix {
        prefixes = prefixes.with_ipv6(bits).ok_or_else(|| {
            mistake(
                "rate_limit.ipv6_prefix",
                format!("{bits} is not the length of an IPv6 prefix (1 to 128)"),
            )
        })?;
    }
    let mut builder = RateLimit::builder()
        .limits(limits)
        .trusted_proxies(trusted)
        .client_prefixes(prefixes);
    match &config.redis {
        Some(redis) => {
            let mut store = RedisLimits::new(&redis.url)
                .map_err(|error| mistake("redis.url", error.to_string()))?;
            if let Some(Span(timeout)) = redis.connect_timeout {
                store = store.connect_timeout(timeout);
            }
            if let Some(Span(timeout)) = redis.command_timeout {
                store = store.command_timeout(timeout);
            }
            if let Some(prefix) = &section.redis_key_prefix {
                store = store.key_prefix(prefix.clone());
            }
            builder = builder
                .redis(store)
                .on_redis_failure(match section.on_redis_failure {
                    Some(RedisFailure::Refuse) => OnRedisFailure::Refuse,
                    Some(RedisFailure::Local) | None => OnRedisFailure::Local,
                });
        }
        None => {
            for (given, name) in [
                (section.on_redis_failure.is_some(), "on_redis_failure"),
                (section.redis_key_prefix.is_some(), "redis_key_prefix"),
            ] {
                if given {
                    return Err(mistake(
                        format!("rate_limit.{name}"),
                        "there is no [redis] section: limits are counted in memory",
                    ));
                }
            }
        }
    }
    builder
        .build()
        .map(Some)
        .map_err(|error| mistake("rate_limit", error.to_string()))
}

fn client_key(name: KeyName) -> ClientKey {
    match name {
        KeyName::Ip => ClientKey::Ip,
        KeyName::Principal => ClientKey::Principal,
        KeyName::Route => ClientKey::Route,
    }
}

/// The limit at `key` (`rate_limit` or `routes[N].rate_limit`), checked; `default_key` when it
/// names none.
fn limit(key: &str, limit: &RouteLimit, default_key: ClientKey) -> Result<Limit, EdgeError> {
    if limit.requests == 0 {
        return Err(mistake(
            format!("{key}.requests"),
            "allows no request: give at least 1",
        ));
    }
    if limit.burst == Some(0) {
        return Err(mistake(
            format!("{key}.burst"),
            "a burst of 0 allows no request: give at least 1",
        ));
    }
    let per = limit.per.map_or(Duration::from_secs(1), |Span(per)| per);
    if per < Duration::from_millis(1) {
        return Err(mistake(
            format!("{key}.per"),
            "the period is shorter than 1 ms",
        ));
    }
    if limit.name.as_deref().is_some_and(str::is_empty) {
        return Err(mistake(format!("{key}.name"), "the name is empty"));
    }
    let mut built = Limit::new(limit.requests, per).key(limit.key.map_or(default_key, client_key));
    if let Some(burst) = limit.burst {
        built = built.burst(burst);
    }
    if let Some(name) = &limit.name {
        built = built.named(name.clone());
    }
    Ok(built)
}

/// The CORS policy of a section (a rule's merged over `[cors]`), its mistakes placed under
/// `key`.
fn cors_policy(section: &CorsSection, key: &str) -> Result<Cors, EdgeError> {
    let mut builder =
        Cors::builder().allow_origins(section.allow_origins.clone().unwrap_or_default());
    if let Some(methods) = &section.allow_methods {
        builder = builder.allow_methods(methods.iter().cloned());
    }
    if let Some(headers) = &section.allow_headers {
        builder = builder.allow_headers(headers.iter().cloned());
    }
    if let Some(expose) = &section.expose_headers {
        builder = builder.expose_headers(expose.iter().cloned());
    }
    if let Some(credentials) = section.allow_credentials {
        builder = builder.allow_credentials(credentials);
    }
    if let Some(max_age) = section.max_age {
        builder = builder.max_age(max_age.0);
    }
    if section.allow_origins.as_ref().is_none_or(Vec::is_empty) {
        return Err(EdgeError {
            key: format!("{key}.allow_origins"),
            message: "CORS needs the origins it allows (`*` for any)".to_owned(),
        });
    }
    builder.build().map_err(|error| {
        let field = match error.setting() {
            "origins" => "allow_origins",
            "methods" => "allow_methods",
            "headers" => "allow_headers",
            "credentials" => "allow_credentials",
            other => other,
        };
        EdgeError {
            key: format!("{key}.{field}"),
            message: error.problem().to_owned(),
        }
    })
}

fn cors_layer(
    config: &Config,
    selectors: &[RouteSelector],
) -> Result<Option<CorsLayer>, EdgeError> {
    let any_rule = config.routes.iter().any(|rule| rule.cors.is_some());
    if config.cors.is_none() && !any_rule {
        return Ok(None);
    }
    let section = config.cors.clone().unwrap_or_default();
    let default = match &config.cors {
        Some(section) => Some(cors_policy(section, "cors")?),
        None => None,
    };
    let mut policy = PerRoute::new(default.clone());
    for (index, (rule, selector)) in config.routes.iter().zip(selectors).enumerate() {
        let value = match &rule.cors {
            None => continue,
            Some(RouteCors::Switch(false)) => None,
            Some(RouteCors::Switch(true)) => match &default {
                Some(default) => Some(default.clone()),
                None => {
                    return Err(EdgeError {
                        key: format!("routes[{index}].cors"),
                        message: "`cors = true` means the [cors] section, and there is none"
                            .to_owned(),
                    });
                }
            },
            Some(RouteCors::Policy(own)) => Some(cors_policy(
                &own.over(&section),
                &format!("routes[{index}].cors"),
            )?),
        };
        policy = policy.rule(selector.clone(), value);
    }
    Ok(Some(CorsLayer::per_route(policy)))
}

fn limits_of(section: &LimitsSection) -> Limits {
    let mut limits = Limits::new();
    if let Some(bytes) = section.body_bytes {
        limits = limits.body_bytes(bytes);
    }
    if let Some(bytes) = section.header_bytes {
        limits = limits.header_bytes(bytes);
    }
    if let Some(bytes) = section.url_bytes {
        limits = limits.url_bytes(bytes);
    }
    if let Some(bytes) = section.stream_bytes {
        limits = limits.stream_bytes(bytes);
    }
    limits
}

fn limits_layer(
    config: &Config,
    selectors: &[RouteSelector],
) -> Result<Option<LimitsLayer>, EdgeError> {
    let any_rule = config.routes.iter().any(|rule| rule.limits.is_some());
    if config.limits.is_none() && !any_rule {
        return Ok(None);
    }
    let section = config.limits.unwrap_or_default();
    if section.body_bytes.is_some() && config.gateway.max_body_bytes.is_some() {
        return Err(EdgeError {
            key: "limits.body_bytes".to_owned(),
            message:
                "[gateway] max_body_bytes sets the same limit for every route: give one of them"
                    .to_owned(),
        });
    }
    let mut limits = PerRoute::new(limits_of(&section));
    for (rule, selector) in config.routes.iter().zip(selectors) {
        if let Some(own) = &rule.limits {
            limits = limits.rule(selector.clone(), limits_of(&own.over(&section)));
        }
    }
    Ok(Some(LimitsLayer::per_route(limits)))
}

fn compression(section: &CompressionSection) -> Result<Compression, EdgeError> {
    let mut compression = Compression::new();
    if let Some(bytes) = section.min_bytes {
        compression = compression.min_bytes(bytes);
    }
    if let Some(names) = &section.encodings {
        let encodings = names
            .iter()
            .map(|name| name.parse::<Encoding>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| EdgeError {
                key: "compression.encodings".to_owned(),
                message: error.to_string(),
            })?;
        compression = compression.encodings(encodings);
    }
    if let Some(level) = section.gzip_level {
        compression = compression.gzip_level(level);
    }
    if let Some(quality) = section.brotli_quality {
        compression = compression.brotli_quality(quality);
    }
    if let Some(level) = section.zstd_level {
        compression = compression.zstd_level(level);
    }
    if let Some(on) = section.decompress_requests {
        compression = compression.decompress_requests(on);
    }
    Ok(compression)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protogate::{Access, DeclaredPolicy, DeclaredRateLimit};

    use super::*;

    const RPC: &str = "acme.library.v1.Library.DeleteShelf";

    fn config(text: &str) -> Config {
        crate::config::load_text(text, crate::config::Format::Toml, "gw.toml", Vec::new())
            .expect("a valid config")
    }

    fn declared(access: Access, rate_limit: Option<DeclaredRateLimit>) -> [DeclaredPolicy; 1] {
        [DeclaredPolicy {
            rpc: RPC,
            access,
            scopes: &[],
            rate_limit,
        }]
    }

    const KEYS: &str = "[auth.api_keys]\nkeys = [{ name = \"ci\", sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\" }]\n";

    #[test]
    fn a_proto_that_asks_for_credentials_needs_an_auth_section() {
        let error = Edge::new(&config(""), &[RPC], &declared(Access::Authenticated, None))
            .err()
            .expect("refused");
        assert_eq!(error.key, "auth");
        assert!(error.message.contains(RPC), "{}", error.message);
        // Public and undeclared access need nothing.
        Edge::new(&config(""), &[RPC], &declared(Access::Public, None)).expect("built");
        let edge = Edge::new(
            &config(KEYS),
            &[RPC],
            &declared(Access::Authenticated, None),
        )
        .expect("built");
        assert!(edge.auth.is_some());
    }

    #[test]
    fn a_declared_rate_limit_turns_rate_limits_on() {
        let limit = DeclaredRateLimit {
            requests: 5,
            period: Duration::from_secs(1),
            burst: 0,
        };
        let edge = Edge::new(
            &config(""),
            &[RPC],
            &declared(Access::Unspecified, Some(limit)),
        )
        .expect("built");
        assert!(edge.rate_limit().is_some());
        assert!(
            Edge::new(&config(""), &[RPC], &[])
                .expect("built")
                .rate_limit()
                .is_none()
        );
    }

    #[test]
    fn client_prefixes_are_read_and_checked() {
        let limited = |extra: &str| config(&format!("[rate_limit]\nrequests = 5\n{extra}"));
        for extra in [
            "",
            "ipv4_prefix = 24\nipv6_prefix = 48\n",
            "ipv6_prefix = 128\n",
        ] {
            Edge::new(&limited(extra), &[RPC], &[]).expect(extra);
        }
        for (extra, key) in [
            ("ipv4_prefix = 33\n", "rate_limit.ipv4_prefix"),
            ("ipv4_prefix = 0\n", "rate_limit.ipv4_prefix"),
            ("ipv6_prefix = 129\n", "rate_limit.ipv6_prefix"),
        ] {
            let error = Edge::new(&limited(extra), &[RPC], &[]).err().expect(extra);
            assert_eq!(error.key, key);
            assert!(error.message.contains("prefix"), "{}", error.message);
        }
    }

    #[test]
    fn sessions_and_the_external_check_say_what_they_lack() {
        let sessions = format!("{KEYS}[auth.sessions]\ncookie = \"sid\"\n");
        let error = Edge::new(&config(&sessions), &[RPC], &[])
            .err()
            .expect("refused");
        assert_eq!(error.key, "auth.sessions");
        assert!(error.message.contains("[redis]"), "{}", error.message);
        let with_redis = format!("{sessions}[redis]\nurl = \"redis://127.0.0.1:1\"\n");
        Edge::new(&config(&with_redis), &[RPC], &[]).expect("built without connecting");

        let external = "[auth.external]\nupstream = \"idp\"\n";
        let error = Edge::new(&config(external), &[RPC], &[])
            .err()
            .expect("refused");
        assert_eq!(error.key, "auth.external.upstream");
        let defined = format!("{external}[upstreams.idp]\nendpoints = [\"http://127.0.0.1:1\"]\n");
        Edge::new(&config(&defined), &[RPC], &[]).expect("an external check alone is enough");
        let both = defined.replace(
            "upstream = \"idp\"\n",
            "upstream = \"idp\"\nheader = \"x-token\"\ncookie = \"a\"\n",
        );
        let error = Edge::new(&config(&both), &[RPC], &[]).err();
        assert!(error.is_some_and(|e| e.message.contains("not both")));
    }
}

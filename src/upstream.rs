//! Which upstream serves which service, from the config (the file, the environment and the
//! flags, merged by the command line): every `[upstreams.NAME]` built once with its settings over
//! `[defaults.upstream_settings]`; every service forwarded to its upstream (or the default one)
//! under its deadlines; an in-process implementation (the binary's demo, when it is built in) for
//! a service with neither; and UNAVAILABLE for a service with none of these.
//!
//! This is the one place where the config meets the runtime's builders.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use protogate::{
    Balance, Bulkhead, Deadlines, Ejection, Gateway, HeaderMapping, HealthCheck, JsonOptions,
    Keepalive, RetryBudget, ServiceInfo, Upstream, UpstreamTls,
};

use crate::config::{self, Config, ConfigError, KeepaliveSection};
use crate::edge::Edge;
use crate::pb;

/// Makes the routes of a service implemented in this process; called once per gateway built.
pub type InProcess = Arc<dyn Fn() -> protogate::Service + Send + Sync>;

/// Where a config came from, so that its mistakes can be placed.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file's name, as errors say it.
    pub origin: String,
    /// Its text.
    pub text: String,
    /// Its form.
    pub format: config::Format,
}

impl Document {
    /// A mistake at `key`, placed in this document when it is one.
    fn error(document: Option<&Document>, key: &str, message: String) -> ConfigError {
        match document {
            Some(document) => ConfigError::at(
                &document.origin,
                &document.text,
                document.format,
                key,
                message,
            ),
            None => ConfigError {
                origin: "the command line".to_owned(),
                key: key.to_owned(),
                position: None,
                message,
            },
        }
    }
}

/// A service's upstream and deadlines, as the config gives them.
#[derive(Debug, Default)]
struct ServicePlan {
    upstream: Option<String>,
    deadlines: Deadlines,
    methods: Vec<(String, MethodPlan)>,
}

/// A method's deadlines and success status, as the config gives them.
#[derive(Debug, Clone, Copy)]
struct MethodPlan {
    deadlines: Deadlines,
    status: Option<axum::http::StatusCode>,
}

/// The services of this build, where each is served from, and the gateway's options.
pub struct Plan {
    upstreams: BTreeMap<String, Built>,
    default: Option<String>,
    services: BTreeMap<String, ServicePlan>,
    gateway: config::GatewaySection,
    in_process: BTreeMap<&'static str, InProcess>,
    /// The edge policies every worker's gateway wears.
    edge: Edge,
    /// `[gateway] request_headers` and `response_headers`.
    headers: HeaderMapping,
    /// `[tracing]`, checked.
    tracing: Option<crate::traces::TracingPlan>,
    /// `[gateway] unbound_methods`: the unbound routes are served.
    unbound: bool,
}

/// An upstream built from the config, with its endpoints as written.
struct Built {
    upstream: Upstream,
    endpoints: Vec<String>,
}

impl Plan {
    /// Checks `config` against this build and builds its upstreams. Every mistake names its key
    /// (and, in a file, its line and column): a service or method this build does not serve, an
    /// upstream no one refers to or that is not defined, a bad address, an unusable TLS file.
    pub fn new(config: &Config, document: Option<&Document>) -> Result<Plan, ConfigError> {
        Plan::counted(config, document, None)
    }

    /// [`Plan::new`], with the upstreams counting into `metrics`.
    pub fn counted(
        config: &Config,
        document: Option<&Document>,
        metrics: Option<&protogate::observe::Metrics>,
    ) -> Result<Plan, ConfigError> {
        let error = |key: &str, message: String| Document::error(document, key, message);
        let unbound = config.gateway.serves_unbound();
        if config.server.listen.is_some() && !config.listeners.is_empty() {
            return Err(error(
                "listeners",
                "give [server] listen or [[listeners]], not both".to_owned(),
            ));
        }
        if !config.defaults.upstream_settings.endpoints.is_empty() {
            return Err(error(
                "defaults.upstream_settings.endpoints",
                "defaults have no endpoints: give them in an [upstreams.NAME] section".to_owned(),
            ));
        }
        let defined = |name: &str, key: &str| -> Result<(), ConfigError> {
            if config.upstreams.contains_key(name) {
                Ok(())
            } else {
                Err(error(key, format!("no upstream `{name}` is defined")))
            }
        };
        if let Some(name) = &config.defaults.upstream {
            defined(name, "defaults.upstream")?;
        }
        let mut services = BTreeMap::new();
        for (name, section) in &config.services {
            let key = format!("services.{name}");
            let Some(info) = pb::SERVICES.iter().find(|s| s.name == name) else {
                return Err(error(
                    &key,
                    format!("no service `{name}` in this build (see `protogate routes`)"),
                ));
            };
            if let Some(upstream) = &section.upstream {
                defined(upstream, &format!("{key}.upstream"))?;
            }
            let mut methods = Vec::new();
            for (method, rules) in &section.methods {
                let mut routes = info
                    .routes
                    .iter()
                    .filter(|route| route.rpc.rsplit('.').next() == Some(method.as_str()))
                    .peekable();
                let compiled = routes.peek().is_some();
                if !routes.any(|route| served(route, unbound)) {
                    let message = if compiled {
                        format!(
                            "`{name}` has no HTTP binding for `{method}` unless unbound methods are served (`[gateway] unbound_methods = true`)"
                        )
                    } else {
                        format!(
                            "`{name}` has no method `{method}` with an HTTP binding in this build (routes are compiled in: a config cannot add one)"
                        )
                    };
                    return Err(error(&format!("{key}.methods.{method}"), message));
                }
                let status = match rules.status {
                    None => None,
                    Some(code @ 200..=299) => axum::http::StatusCode::from_u16(code).ok(),
                    Some(code) => {
                        return Err(error(
                            &format!("{key}.methods.{method}.status"),
                            format!("a success status is 200 to 299, not {code}"),
                        ));
                    }
                };
                methods.push((
                    method.clone(),
                    MethodPlan {
                        deadlines: deadlines(rules.timeout, rules.max_timeout),
                        status,
                    },
                ));
            }
            services.insert(
                name.clone(),
                ServicePlan {
                    upstream: section.upstream.clone(),
                    deadlines: deadlines(section.timeout, section.max_timeout),
                    methods,
                },
            );
        }
        let mut upstreams = BTreeMap::new();
        for (name, section) in &config.upstreams {
            let key = format!("upstreams.{name}");
            let referred = config.defaults.upstream.as_deref() == Some(name.as_str())
                || config
                    .services
                    .values()
                    .any(|service| service.upstream.as_deref() == Some(name.as_str()))
                || config
                    .auth
                    .as_ref()
                    .and_then(|auth| auth.external.as_ref())
                    .is_some_and(|external| external.upstream == *name);
            if !referred {
                return Err(error(
                    &key,
                    format!(
                        "no service refers to upstream `{name}`: name it in [defaults] upstream or a service's upstream"
                    ),
                ));
            }
            let settings = section.over(&config.defaults.upstream_settings);
            let upstream = build(name, &settings, metrics)
                .map_err(|(part, message)| error(&format!("{key}.{part}"), message))?;
            upstreams.insert(
                name.clone(),
                Built {
                    upstream,
                    endpoints: settings.endpoints,
                },
            );
        }
        // Route rules and declared policies concern the RPCs served: unbound ones only when on.
        let rpcs: Vec<&str> = pb::SERVICES
            .iter()
            .flat_map(|service| service.routes.iter())
            .filter(|route| served(route, unbound))
            .map(|route| route.rpc)
            .collect();
        let declared: Vec<protogate::DeclaredPolicy> = pb::SERVICES
            .iter()
            .flat_map(|service| service.policies.iter().copied())
            .filter(|policy| rpcs.contains(&policy.rpc))
            .collect();
        let edge = Edge::new(config, &rpcs, &declared).map_err(|e| error(&e.key, e.message))?;
        let headers =
            header_mapping(&config.gateway).map_err(|(key, message)| error(&key, message))?;
        let tracing = config
            .tracing
            .as_ref()
            .map(crate::traces::plan)
            .transpose()
            .map_err(|(key, message)| error(&key, message))?;
        Ok(Plan {
            upstreams,
            default: config.defaults.upstream.clone(),
            services,
            gateway: config.gateway.clone(),
            in_process: BTreeMap::new(),
            edge,
            headers,
            tracing,
            unbound,
        })
    }

    /// `[tracing]`, checked, if the config has it.
    pub fn tracing(&self) -> Option<&crate::traces::TracingPlan> {
        self.tracing.as_ref()
    }

    /// Serves `service` with `routes` in this process when no upstream is given for it (neither
    /// its own nor a default one). The service must be one this binary serves.
    pub fn serve_in_process(
        &mut self,
        service: &'static str,
        routes: InProcess,
    ) -> Result<(), String> {
        if !pb::SERVICES.iter().any(|s| s.name == service) {
            return Err(format!(
                "no service `{service}` in this build to serve in-process"
            ));
        }
        self.in_process.insert(service, routes);
        Ok(())
    }

    /// The compiled services with at least one route served: every annotated one, and with
    /// `[gateway] unbound_methods` those whose RPCs have no rule too.
    fn served_services(&self) -> impl Iterator<Item = &'static ServiceInfo> + '_ {
        pb::SERVICES
            .iter()
            .copied()
            .filter(|info| info.routes.iter().any(|route| served(route, self.unbound)))
    }

    /// Where `service` is served from, if anywhere.
    fn target(&self, service: &ServiceInfo) -> Target<'_> {
        let named = self
            .services
            .get(service.name)
            .and_then(|plan| plan.upstream.as_ref())
            .or(self.default.as_ref());
        if let Some((name, built)) = named.and_then(|name| self.upstreams.get_key_value(name)) {
            Target::Remote(name, built)
        } else if let Some(routes) = self.in_process.get(service.name) {
            Target::InProcess(routes)
        } else {
            Target::Missing
        }
    }

    /// A gateway for one worker: its own connections to each upstream (one per endpoint),
    /// shared by every service behind it; endpoints' health, bulkheads and retry budgets shared
    /// with the other workers. Call it on the runtime that will serve the gateway, where the
    /// connections run.
    pub fn gateway(&self) -> Result<Gateway, Box<dyn std::error::Error + Send + Sync>> {
        let mut upstreams: BTreeMap<&str, Upstream> = BTreeMap::new();
        let mut gateway = self.options(Gateway::new());
        for info in pb::SERVICES {
            let service = match self.target(info) {
                Target::Remote(name, built) => {
                    let upstream = upstreams
                        .entry(name)
                        .or_insert_with(|| built.upstream.for_worker())
                        .clone();
                    self.shape(info, (info.remote)(upstream))?
                }
                Target::InProcess(routes) => self.shape(info, routes())?,
                Target::Missing => protogate::Service::unavailable(
                    info,
                    &pb::__PROTOGATE_REGISTRY,
                    format!(
                        "no upstream is configured for {0}: start protogate with --upstream {0}=URL (or --upstream URL for every service)",
                        info.name
                    ),
                ),
            };
            gateway.add(service)?;
        }
        Ok(self.edge.wear(gateway))
    }

    /// `service` with the deadlines and success statuses the config gives it and its methods.
    fn shape(
        &self,
        info: &ServiceInfo,
        mut service: protogate::Service,
    ) -> Result<protogate::Service, protogate::UnknownMethod> {
        let Some(plan) = self.services.get(info.name) else {
            return Ok(service);
        };
        service = service.deadlines(plan.deadlines);
        for (method, rules) in &plan.methods {
            service = service.method_deadlines(method, rules.deadlines)?;
            if let Some(status) = rules.status {
                service = service.method_status(method, status)?;
            }
        }
        Ok(service)
    }

    /// The OpenAPI document as the gateway built for this plan serves it: the answers its
    /// methods give (`gateway`), its credentials and each route's requirement, its error body.
    pub fn openapi(&self, gateway: &Gateway, document: &str) -> String {
        let mut document = gateway.openapi(document);
        if let Some(auth) = self.edge.auth() {
            document = auth.openapi(&document, &gateway.routes());
        }
        if let Some(error_body) = self.error_body() {
            document = error_body.openapi(&document);
        }
        document
    }

    /// How error responses are written, when not as google.rpc.Status.
    pub fn error_body(&self) -> Option<protogate::ErrorBody> {
        match self.gateway.error_format {
            Some(config::ErrorFormat::Problem) => Some(protogate::ErrorBody::problem_json()),
            Some(config::ErrorFormat::Status) | None => None,
        }
    }

    /// The `[gateway]` options on `gateway`.
    fn options(&self, mut gateway: Gateway) -> Gateway {
        let options = &self.gateway;
        let defaults = JsonOptions::default();
        gateway = gateway.json_output(JsonOptions {
            emit_defaults: options.emit_defaults.unwrap_or(defaults.emit_defaults),
            proto_names: options.proto_names.unwrap_or(defaults.proto_names),
            enums_as_ints: options.enums_as_ints.unwrap_or(defaults.enums_as_ints),
            ..defaults
        });
        if let Some(ignore) = options.ignore_unknown_fields {
            gateway = gateway.ignore_unknown_fields(ignore);
        }
        if let Some(reject) = options.reject_unknown_query_parameters {
            gateway = gateway.reject_unknown_query_parameters(reject);
        }
        if let Some(limit) = options.max_body_bytes {
            gateway = gateway.max_body_bytes(limit);
        }
        if let Some(limit) = options.body_timeout {
            gateway = gateway.body_timeout(limit.0);
        }
        if let Some(limit) = options.max_message_bytes {
            gateway = gateway.max_message_bytes(limit);
        }
        if let Some(limit) = options.stream_idle_timeout {
            gateway = gateway.stream_idle_timeout(Some(limit.0));
        }
        if let Some(limit) = options.stream_max_duration {
            gateway = gateway.stream_max_duration(Some(limit.0));
        }
        if let Some(yes) = options.empty_as_no_content {
            gateway = gateway.empty_as_no_content(yes);
        }
        gateway
            .unbound_methods(self.unbound)
            .header_mapping(self.headers.clone())
            .deadlines(deadlines(options.timeout, options.max_timeout))
    }

    /// The upstreams some service forwards to, by name.
    pub fn upstreams_in_use(&self) -> Vec<(&str, &Upstream)> {
        self.upstreams
            .iter()
            .filter(|(name, _)| {
                self.served_services().any(
                    |info| matches!(self.target(info), Target::Remote(used, _) if used == *name),
                )
            })
            .map(|(name, built)| (name.as_str(), &built.upstream))
            .collect()
    }

    /// One line per service served saying where it is served from.
    pub fn describe(&self) -> Vec<String> {
        self.served_services()
            .map(|info| match self.target(info) {
                Target::Remote(name, built) if built.endpoints.join(",") == *name => {
                    format!("{} -> {name}", info.name)
                }
                Target::Remote(name, built) => {
                    format!("{} -> {name} ({})", info.name, built.endpoints.join(", "))
                }
                Target::InProcess(_) => format!("{} -> in-process", info.name),
                Target::Missing => format!("{} -> no upstream (503)", info.name),
            })
            .collect()
    }
}

/// `[gateway] request_headers` and `response_headers`; a mistake names its key.
fn header_mapping(options: &config::GatewaySection) -> Result<HeaderMapping, (String, String)> {
    let mut mapping = HeaderMapping::default();
    for (header, key) in &options.request_headers {
        mapping = mapping.request_header(header, key).map_err(|e| {
            (
                format!("gateway.request_headers.{header}"),
                format!("`{header}` cannot be forwarded as metadata `{key}`: {e}"),
            )
        })?;
    }
    for (key, header) in &options.response_headers {
        mapping = mapping.response_header(key, header).map_err(|e| {
            (
                format!("gateway.response_headers.{key}"),
                format!("metadata `{key}` cannot be written as header `{header}`: {e}"),
            )
        })?;
    }
    Ok(mapping)
}

fn deadlines(timeout: Option<config::Span>, max: Option<config::Span>) -> Deadlines {
    Deadlines {
        default: timeout.map(|span| span.0),
        max: max.map(|span| span.0),
    }
}

/// The upstream `name` with `settings` (defaults merged in); a mistake names the part of the
/// section it is in.
pub(crate) fn build(
    name: &str,
    settings: &config::UpstreamSettings,
    metrics: Option<&protogate::observe::Metrics>,
) -> Result<Upstream, (&'static str, String)> {
    if settings.endpoints.is_empty() {
        return Err(("endpoints", format!("upstream `{name}` has no endpoint")));
    }
    let mut builder = Upstream::builder(name)
        .endpoints(settings.endpoints.iter().cloned())
        .deadlines(deadlines(settings.timeout, settings.max_timeout));
    let any_https = settings
        .endpoints
        .iter()
        .any(|url| url.starts_with("https://"));
    if let Some(tls) = settings.tls.as_ref().filter(|_| any_https) {
        let mut options = UpstreamTls::new();
        for ca in &tls.ca {
            options = options.ca_file(ca);
        }
        match (&tls.cert, &tls.key) {
            (Some(certificate), Some(key)) => options = options.client_identity(certificate, key),
            (None, None) => {}
            _ => return Err(("tls", "cert and key go together".to_owned())),
        }
        if let Some(server_name) = &tls.server_name {
            options = options.server_name(server_name);
        }
        builder = builder.tls(options);
    }
    if let Some(authority) = &settings.authority {
        builder = builder.authority(authority.clone());
    }
    if let Some(timeout) = settings.connect_timeout {
        builder = builder.connect_timeout(timeout.0);
    }
    if let Some(balance) = settings.balance {
        builder = builder.balance(match balance {
            config::BalanceName::LeastRequests => Balance::LeastRequests,
            config::BalanceName::RoundRobin => Balance::RoundRobin,
        });
    }
    if let Some(every) = settings.resolve_every {
        builder = builder.resolve_every(every.0);
    }
    if let Some(keepalive) = &settings.keepalive {
        builder = builder.keepalive(match keepalive {
            KeepaliveSection::Off(false) => None,
            KeepaliveSection::Off(true) => Some(Keepalive::default()),
            KeepaliveSection::Every { interval, timeout } => Some(Keepalive {
                interval: interval.0,
                timeout: timeout.0,
            }),
        });
    }
    if let Some(ejection) = &settings.ejection {
        builder = builder.ejection(Ejection {
            consecutive_failures: ejection.consecutive_failures,
            base: ejection.base.0,
            max: ejection.max.0,
        });
    }
    if let Some(check) = &settings.health_check {
        let mut health = HealthCheck::new(check.service.clone());
        if let Some(interval) = check.interval {
            health.interval = interval.0;
        }
        if let Some(timeout) = check.timeout {
            health.timeout = timeout.0;
        }
        builder = builder.health_check(health);
    }
    if let Some(limit) = settings.max_in_flight {
        builder = builder.bulkhead(Bulkhead::new(limit.get()));
    }
    if let Some(budget) = &settings.retry_budget {
        builder = builder.retry_budget(RetryBudget {
            ratio: budget.ratio,
            min_per_second: budget.min_per_second,
        });
    }
    if let Some(limit) = settings.max_response_bytes {
        builder = builder.max_response_bytes(limit);
    }
    if let Some(window) = settings.stream_window {
        builder = builder.stream_window(window);
    }
    if let Some(metrics) = metrics {
        builder = builder.metrics(metrics);
    }
    builder.build().map_err(|e| {
        let part = match e {
            protogate::UpstreamError::Tls { .. }
            | protogate::UpstreamError::TlsWithoutHttps { .. } => "tls",
            protogate::UpstreamError::BadAuthority { .. } => "authority",
            protogate::UpstreamError::StreamWindow { .. } => "stream_window",
            _ => "endpoints",
        };
        (part, e.to_string())
    })
}

/// Adds the `--upstream` flags to `config`: `URL[,URL…]` becomes the default upstream,
/// `package.Service=URL[,URL…]` one service's; each upstream is named by its endpoints as
/// written.
pub fn apply_upstream_flags(config: &mut Config, flags: &[String]) -> Result<(), String> {
    let mut default_given = false;
    for flag in flags {
        let (service, urls) = match flag.split_once('=') {
            Some((service, urls)) if !service.contains(':') => (Some(service), urls),
            _ => (None, flag.as_str()),
        };
        let endpoints = urls
            .split(',')
            .map(|url| normalize(url.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let name = endpoints.join(",");
        config.upstreams.entry(name.clone()).or_default().endpoints = endpoints;
        match service {
            Some(service) => {
                if !pb::SERVICES.iter().any(|s| s.name == service) {
                    return Err(format!(
                        "--upstream {flag}: no service `{service}` in this build (see `protogate routes`)"
                    ));
                }
                config
                    .services
                    .entry(service.to_owned())
                    .or_default()
                    .upstream = Some(name);
            }
            None => {
                if default_given {
                    return Err(format!(
                        "--upstream given twice without a service name: {} and {flag}",
                        config.defaults.upstream.as_deref().unwrap_or_default()
                    ));
                }
                default_given = true;
                config.defaults.upstream = Some(name);
            }
        }
    }
    Ok(())
}

enum Target<'a> {
    Remote(&'a String, &'a Built),
    InProcess(&'a InProcess),
    Missing,
}

/// An endpoint's URL, `http://` assumed when no scheme is given (`localhost:50051`).
fn normalize(url: &str) -> Result<String, String> {
    if url.is_empty() {
        return Err("--upstream: an empty endpoint URL".to_owned());
    }
    Ok(if url.contains("://") || url.starts_with("unix:") {
        url.to_owned()
    } else {
        format!("http://{url}")
    })
}

/// Whether a gateway serves `route`: an annotated one always, an unbound one when `unbound`.
fn served(route: &protogate::RouteInfo, unbound: bool) -> bool {
    unbound || !route.unbound
}

/// The route table of every compiled service, one binding per line, as a gateway that serves
/// no unbound routes has it.
pub fn route_table() -> String {
    route_table_of(false)
}

/// The route table of every compiled service, one binding per line; with `unbound_methods`, the
/// unbound routes too, marked `(unbound)`.
pub fn route_table_of(unbound_methods: bool) -> String {
    let mut out = String::new();
    for service in pb::SERVICES {
        for route in service
            .routes
            .iter()
            .filter(|route| served(route, unbound_methods))
        {
            let mark = if route.unbound { " (unbound)" } else { "" };
            let _ = writeln!(
                out,
                "{:<7} {:<60} {}{mark}",
                route.method, route.template.text, route.rpc
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A service compiled into this build, whichever protos it was built with.
    fn compiled() -> &'static ServiceInfo {
        pb::SERVICES.first().expect("at least one compiled service")
    }

    /// The plan of `flags` alone.
    fn parse(flags: &[String]) -> Result<Plan, String> {
        let mut config = Config::default();
        apply_upstream_flags(&mut config, flags)?;
        Plan::new(&config, None).map_err(|e| e.to_string())
    }

    /// The plan of a TOML config, or its first mistake.
    fn from_toml(text: &str) -> Result<Plan, ConfigError> {
        let document = Document {
            origin: "gw.toml".to_owned(),
            text: text.to_owned(),
            format: config::Format::Toml,
        };
        let config = config::load_text(text, document.format, &document.origin, Vec::new())?;
        Plan::new(&config, Some(&document))
    }

    #[test]
    fn flags_parse_into_default_and_per_service_upstreams() {
        let service = compiled().name;
        let plan = parse(&[
            "localhost:50051".to_owned(),
            format!("{service}=http://library.internal:8080, 10.0.0.2:8080"),
        ])
        .expect("valid flags");
        assert_eq!(plan.default.as_deref(), Some("http://localhost:50051"));
        assert!(
            plan.describe().contains(&format!(
                "{service} -> http://library.internal:8080,http://10.0.0.2:8080"
            )),
            "{:?}",
            plan.describe()
        );
        assert!(parse(&["a:1".to_owned(), "b:2".to_owned()]).is_err());
        assert!(parse(&["x.Y=http://h:1".to_owned()]).is_err());
        assert!(parse(&["a:1,".to_owned()]).is_err());
        let ftp = parse(&["ftp://library.internal:21".to_owned()]).err();
        assert!(ftp.is_some_and(|e| e.contains("must start with http://")));
        let unix = parse(&["unix:///run/library.sock".to_owned()]).expect("a socket");
        assert_eq!(unix.default.as_deref(), Some("unix:///run/library.sock"));
    }

    #[test]
    fn a_config_names_upstreams_and_services_and_its_mistakes_are_placed() {
        let service = compiled().name;
        let method = compiled().routes[0].rpc.rsplit('.').next().unwrap();
        let good = format!(
            "[defaults]\nupstream = \"main\"\n\n[defaults.upstream_settings]\ntimeout = \"5s\"\n\n[upstreams.main]\nendpoints = [\"http://10.0.0.1:50051\", \"http://10.0.0.2:50051\"]\nmax_in_flight = 100\nstream_window = 65536\n\n[services.\"{service}\"]\ntimeout = \"2s\"\n\n[services.\"{service}\".methods.{method}]\ntimeout = \"1s\"\n"
        );
        let plan = from_toml(&good).expect("a valid config");
        assert!(
            plan.describe().contains(&format!(
                "{service} -> main (http://10.0.0.1:50051, http://10.0.0.2:50051)"
            )),
            "{:?}",
            plan.describe()
        );
        plan.gateway().expect("a gateway");

        let status_key = format!("methods.{method}.status");
        let mistakes = [
            (
                good.replace(&format!("\"{service}\""), "\"no.such.Service\""),
                "services.no.such.Service",
                "no service `no.such.Service`",
            ),
            (
                good.replace(&format!(".methods.{method}]"), ".methods.NoSuchMethod]"),
                "methods.NoSuchMethod",
                "cannot add one",
            ),
            (
                good.replace("upstream = \"main\"", "upstream = \"other\""),
                "defaults.upstream",
                "no upstream `other` is defined",
            ),
            (
                format!("{good}\n[upstreams.spare]\nendpoints = [\"http://10.0.0.3:1\"]\n"),
                "upstreams.spare",
                "no service refers to upstream `spare`",
            ),
            (
                good.replace("http://10.0.0.2:50051", "ftp://10.0.0.2:50051"),
                "upstreams.main.endpoints",
                "must start with http://",
            ),
            (
                good.replace("stream_window = 65536", "stream_window = 1000"),
                "upstreams.main.stream_window",
                "outside HTTP/2's 65535..=2147483647",
            ),
            (
                format!(
                    "{good}\n[[routes]]\nmatch = \"/v1/**\"\n\n[[routes]]\nmatch = \"no.such.*\"\n"
                ),
                "routes[1].match",
                "covers no RPC",
            ),
            (
                good.replace("timeout = \"1s\"", "timeout = \"1s\"\nstatus = 404"),
                status_key.as_str(),
                "200 to 299",
            ),
            (
                format!("{good}\n[gateway]\nresponse_headers = {{ \"grpc-status\" = \"X\" }}\n"),
                "gateway.response_headers.grpc-status",
                "cannot be written",
            ),
            (
                format!("{good}\n[[routes]]\nmatch = \"/v1/**/x\"\n"),
                "routes[0].match",
                "`**` may only end",
            ),
        ];
        for (text, key, message) in mistakes {
            let error = from_toml(&text).err().expect(key);
            assert!(error.key.ends_with(key), "{key}: {error}");
            assert!(error.message.contains(message), "{key}: {error}");
            let (line, _) = error.position.expect("placed in the file");
            let written = text.lines().nth(line - 1).unwrap();
            let last = key.rsplit('.').next().unwrap();
            assert!(written.contains(last), "{key} placed on `{written}`");
        }
    }

    /// A plan from `flags` serving the compiled service in-process, and how many times its
    /// routes were made.
    fn in_process_plan(flags: &[String]) -> (Plan, Arc<AtomicUsize>) {
        let made = Arc::new(AtomicUsize::new(0));
        let mut plan = parse(flags).expect("valid flags");
        let counter = Arc::clone(&made);
        let routes: InProcess = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let info = compiled();
            protogate::Service::unavailable(
                info,
                &pb::__PROTOGATE_REGISTRY,
                "in-process stand-in".to_owned(),
            )
        });
        plan.serve_in_process(compiled().name, routes)
            .expect("a compiled service");
        (plan, made)
    }

    #[test]
    fn an_in_process_service_serves_only_without_an_upstream_for_it() {
        let service = compiled().name;
        let (plan, made) = in_process_plan(&[]);
        assert!(
            plan.describe()
                .contains(&format!("{service} -> in-process")),
            "{:?}",
            plan.describe()
        );
        plan.gateway().expect("a gateway");
        plan.gateway().expect("a second gateway");
        assert_eq!(
            made.load(Ordering::SeqCst),
            2,
            "routes made once per gateway"
        );

        let (plan, _) = in_process_plan(&[format!("{service}=http://library.internal:8080")]);
        assert!(
            plan.describe()
                .contains(&format!("{service} -> http://library.internal:8080"))
        );
        let (plan, _) = in_process_plan(&["localhost:50051".to_owned()]);
        assert!(
            plan.describe()
                .contains(&format!("{service} -> http://localhost:50051"))
        );
    }

    #[test]
    fn only_a_compiled_service_is_served_in_process() {
        let mut plan = parse(&[]).expect("no flags");
        let routes: InProcess = Arc::new(|| {
            protogate::Service::unavailable(
                compiled(),
                &pb::__PROTOGATE_REGISTRY,
                "unused".to_owned(),
            )
        });
        let error = plan
            .serve_in_process("no.such.Service", routes)
            .expect_err("not compiled");
        assert!(error.contains("no service `no.such.Service`"), "{error}");
        assert!(
            plan.describe()
                .iter()
                .all(|line| !line.ends_with("-> in-process")),
            "{:?}",
            plan.describe()
        );
    }
}

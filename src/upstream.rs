//! Which upstream serves which service: `--upstream URL[,URL…]` for all, `--upstream
//! Svc=URL[,URL…]` for one, an in-process implementation (the binary's demo, when it is built in)
//! for a service with neither, and UNAVAILABLE for a service with none of these. Every upstream
//! takes its TLS, limits and deadlines from the `--upstream-…` flags ([`UpstreamSettings`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protogate::{
    Balance, Bulkhead, Deadlines, Gateway, HealthCheck, ServiceInfo, Upstream, UpstreamTls,
};

use crate::pb;

/// Makes the routes of a service implemented in this process; called once per gateway built.
pub type InProcess = Arc<dyn Fn() -> protogate::Service + Send + Sync>;

/// What every upstream of the stock gateway is built with, from the `--upstream-…` flags.
#[derive(Clone, Debug, Default)]
pub struct UpstreamSettings {
    /// CA files that `https://` upstreams are verified against (the system's roots if none).
    pub ca_files: Vec<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The TLS server name to ask for and verify, instead of each URL's host.
    pub server_name: Option<String>,
    /// The `:authority` of requests, instead of each URL's.
    pub authority: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Option<Duration>,
    /// The bulkhead: calls in flight per upstream, past which calls are shed.
    pub max_in_flight: Option<usize>,
    /// Deadlines of calls whose client sends no `Grpc-Timeout`, and the most a client may ask.
    pub deadlines: Deadlines,
    /// The largest response message accepted.
    pub max_response_bytes: Option<usize>,
    /// The service name to health-check each endpoint for (`""`: the whole server).
    pub health_check: Option<String>,
    /// How calls spread over each upstream's endpoints.
    pub balance: Balance,
}

impl UpstreamSettings {
    /// The upstream named `name` with `urls` as its endpoints.
    fn build(&self, name: &str, urls: &[String]) -> Result<Upstream, String> {
        let mut builder = Upstream::builder(name)
            .endpoints(urls.iter().cloned())
            .balance(self.balance)
            .deadlines(self.deadlines);
        let wants_tls = !self.ca_files.is_empty()
            || self.client_identity.is_some()
            || self.server_name.is_some();
        if wants_tls && urls.iter().any(|url| url.starts_with("https://")) {
            let mut tls = UpstreamTls::new();
            for ca in &self.ca_files {
                tls = tls.ca_file(ca);
            }
            if let Some((certificate, key)) = &self.client_identity {
                tls = tls.client_identity(certificate, key);
            }
            if let Some(name) = &self.server_name {
                tls = tls.server_name(name);
            }
            builder = builder.tls(tls);
        }
        if let Some(authority) = &self.authority {
            builder = builder.authority(authority.clone());
        }
        if let Some(timeout) = self.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(limit) = self.max_in_flight {
            builder = builder.bulkhead(Bulkhead::new(limit));
        }
        if let Some(limit) = self.max_response_bytes {
            builder = builder.max_response_bytes(limit);
        }
        if let Some(service) = &self.health_check {
            builder = builder.health_check(HealthCheck::new(service.clone()));
        }
        builder.build().map_err(|e| format!("--upstream {name}: {e}"))
    }
}

/// An upstream as the flags give it: its endpoints as written, and the upstream built from them.
struct Given {
    urls: String,
    upstream: Upstream,
}

/// The parsed `--upstream` flags, and the services this process can serve itself.
pub struct Plan {
    default: Option<Given>,
    per_service: BTreeMap<String, Given>,
    in_process: BTreeMap<&'static str, InProcess>,
}

impl Plan {
    /// Parses `URL[,URL…]` and `package.Service=URL[,URL…]` flags into upstreams built with
    /// `settings`; a service name must be one this binary serves. The same endpoints given twice
    /// are one upstream, its connections shared by the services behind it.
    pub fn parse(flags: &[String], settings: &UpstreamSettings) -> Result<Plan, String> {
        let mut plan = Plan {
            default: None,
            per_service: BTreeMap::new(),
            in_process: BTreeMap::new(),
        };
        let mut built: BTreeMap<String, Upstream> = BTreeMap::new();
        let mut given = |urls: &str| -> Result<Given, String> {
            let urls = urls
                .split(',')
                .map(|url| normalize(url.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let key = urls.join(",");
            let upstream = match built.get(&key) {
                Some(upstream) => upstream.clone(),
                None => {
                    let upstream = settings.build(&key, &urls)?;
                    built.insert(key.clone(), upstream.clone());
                    upstream
                }
            };
            Ok(Given {
                urls: key,
                upstream,
            })
        };
        for flag in flags {
            match flag.split_once('=') {
                Some((service, urls)) if !service.contains(':') => {
                    if !pb::SERVICES.iter().any(|s| s.name == service) {
                        return Err(format!(
                            "--upstream {flag}: no service `{service}` in this build (see `protogate routes`)"
                        ));
                    }
                    plan.per_service.insert(service.to_owned(), given(urls)?);
                }
                _ => {
                    let upstream = given(flag)?;
                    if let Some(previous) = plan.default.replace(upstream) {
                        return Err(format!(
                            "--upstream given twice without a service name: {} and {flag}",
                            previous.urls
                        ));
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Serves `service` with `routes` in this process when no upstream is given for it (neither
    /// `--upstream URL` nor `--upstream service=URL`). The service must be one this binary
    /// serves.
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

    /// Where `service` is served from, if anywhere.
    fn target(&self, service: &ServiceInfo) -> Target<'_> {
        if let Some(given) = self.per_service.get(service.name) {
            Target::Remote(given)
        } else if let Some(given) = &self.default {
            Target::Remote(given)
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
        let mut gateway = Gateway::new();
        for info in pb::SERVICES {
            let service = match self.target(info) {
                Target::Remote(given) => {
                    let upstream = upstreams
                        .entry(&given.urls)
                        .or_insert_with(|| given.upstream.for_worker())
                        .clone();
                    (info.remote)(upstream)
                }
                Target::InProcess(routes) => routes(),
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
        Ok(gateway)
    }

    /// One line per service saying where it is served from.
    pub fn describe(&self) -> Vec<String> {
        pb::SERVICES
            .iter()
            .map(|info| match self.target(info) {
                Target::Remote(given) => format!("{} -> {}", info.name, given.urls),
                Target::InProcess(_) => format!("{} -> in-process", info.name),
                Target::Missing => format!("{} -> no upstream (503)", info.name),
            })
            .collect()
    }
}

enum Target<'a> {
    Remote(&'a Given),
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

/// The route table of every compiled service, one binding per line.
pub fn route_table() -> String {
    let mut out = String::new();
    for service in pb::SERVICES {
        for route in service.routes {
            let _ = writeln!(
                out,
                "{:<7} {:<60} {}",
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

    #[test]
    fn flags_parse_into_default_and_per_service_upstreams() {
        let service = compiled().name;
        let parse = |flags: &[String]| Plan::parse(flags, &UpstreamSettings::default());
        let plan = parse(&[
            "localhost:50051".to_owned(),
            format!("{service}=http://library.internal:8080, 10.0.0.2:8080"),
        ])
        .expect("valid flags");
        let urls = |given: Option<&Given>| given.map(|g| g.urls.clone());
        assert_eq!(
            urls(plan.default.as_ref()).as_deref(),
            Some("http://localhost:50051")
        );
        assert_eq!(
            urls(plan.per_service.get(service)).as_deref(),
            Some("http://library.internal:8080,http://10.0.0.2:8080")
        );
        assert!(parse(&["a:1".to_owned(), "b:2".to_owned()]).is_err());
        assert!(parse(&["x.Y=http://h:1".to_owned()]).is_err());
        assert!(parse(&["a:1,".to_owned()]).is_err());
        let ftp = parse(&["ftp://library.internal:21".to_owned()]).err();
        assert!(ftp.is_some_and(|e| e.contains("must start with http://")));
        let unix = parse(&["unix:///run/library.sock".to_owned()]).expect("a socket");
        assert_eq!(
            urls(unix.default.as_ref()).as_deref(),
            Some("unix:///run/library.sock")
        );
    }

    /// A plan from `flags` serving the compiled service in-process, and how many times its
    /// routes were made.
    fn in_process_plan(flags: &[String]) -> (Plan, Arc<AtomicUsize>) {
        let made = Arc::new(AtomicUsize::new(0));
        let mut plan = Plan::parse(flags, &UpstreamSettings::default()).expect("valid flags");
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
        let mut plan = Plan::parse(&[], &UpstreamSettings::default()).expect("no flags");
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

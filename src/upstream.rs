//! Which upstream serves which service: `--upstream URL` for all, `--upstream Svc=URL` for one,
//! an in-process implementation (the binary's demo, when it is built in) for a service with
//! neither, and UNAVAILABLE for a service with none of these.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use protogate::{Gateway, ServiceInfo, Upstream};

use crate::pb;

/// Makes the routes of a service implemented in this process; called once per gateway built.
pub type InProcess = Arc<dyn Fn() -> protogate::Service + Send + Sync>;

/// The parsed `--upstream` flags, and the services this process can serve itself.
pub struct Plan {
    default: Option<String>,
    per_service: BTreeMap<String, String>,
    in_process: BTreeMap<&'static str, InProcess>,
}

impl Plan {
    /// Parses `URL` and `package.Service=URL` flags; a service name must be one this binary
    /// serves.
    pub fn parse(flags: &[String]) -> Result<Plan, String> {
        let mut plan = Plan {
            default: None,
            per_service: BTreeMap::new(),
            in_process: BTreeMap::new(),
        };
        for flag in flags {
            match flag.split_once('=') {
                Some((service, url)) if !service.contains("://") => {
                    if !pb::SERVICES.iter().any(|s| s.name == service) {
                        return Err(format!(
                            "--upstream {flag}: no service `{service}` in this build (see `protogate routes`)"
                        ));
                    }
                    let url = normalize(url)?;
                    plan.per_service.insert(service.to_owned(), url);
                }
                _ => {
                    let url = normalize(flag)?;
                    if let Some(previous) = plan.default.replace(url) {
                        return Err(format!(
                            "--upstream given twice without a service name: {previous} and {flag}"
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
        if let Some(url) = self.per_service.get(service.name) {
            Target::Remote(url)
        } else if let Some(url) = &self.default {
            Target::Remote(url)
        } else if let Some(routes) = self.in_process.get(service.name) {
            Target::InProcess(routes)
        } else {
            Target::Missing
        }
    }

    /// A gateway: one shared connection per distinct upstream URL, reused by every service behind
    /// it. Call it on the runtime that will serve the gateway, where the connections run.
    pub fn gateway(&self) -> Result<Gateway, Box<dyn std::error::Error + Send + Sync>> {
        let mut upstreams: BTreeMap<&str, Upstream> = BTreeMap::new();
        let mut gateway = Gateway::new();
        for info in pb::SERVICES {
            let service = match self.target(info) {
                Target::Remote(url) => {
                    let upstream = match upstreams.get(url) {
                        Some(upstream) => upstream.clone(),
                        None => {
                            let upstream = Upstream::lazy(url)?;
                            upstreams.insert(url, upstream.clone());
                            upstream
                        }
                    };
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
                Target::Remote(url) => format!("{} -> {url}", info.name),
                Target::InProcess(_) => format!("{} -> in-process", info.name),
                Target::Missing => format!("{} -> no upstream (503)", info.name),
            })
            .collect()
    }
}

enum Target<'a> {
    Remote(&'a str),
    InProcess(&'a InProcess),
    Missing,
}

/// The upstream's URL, `http://` assumed when no scheme is given (`localhost:50051`).
fn normalize(url: &str) -> Result<String, String> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    Upstream::lazy(&url)
        .map(|_| url.clone())
        .map_err(|e| format!("--upstream: {e}"))
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
        let plan = Plan::parse(&[
            "localhost:50051".to_owned(),
            format!("{service}=http://library.internal:8080"),
        ])
        .expect("valid flags");
        assert_eq!(plan.default.as_deref(), Some("http://localhost:50051"));
        assert_eq!(
            plan.per_service.get(service).map(String::as_str),
            Some("http://library.internal:8080")
        );
        assert!(Plan::parse(&["a:1".to_owned(), "b:2".to_owned()]).is_err());
        assert!(Plan::parse(&["x.Y=http://h:1".to_owned()]).is_err());
        let tls = Plan::parse(&["https://library.internal:443".to_owned()]).err();
        assert!(tls.is_some_and(|e| e.contains("must start with http://")));
    }

    /// A plan from `flags` serving the compiled service in-process, and how many times its
    /// routes were made.
    fn in_process_plan(flags: &[String]) -> (Plan, Arc<AtomicUsize>) {
        let made = Arc::new(AtomicUsize::new(0));
        let mut plan = Plan::parse(flags).expect("valid flags");
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
        let mut plan = Plan::parse(&[]).expect("no flags");
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

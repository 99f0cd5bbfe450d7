//! Which upstream serves which service: `--upstream URL` for all, `--upstream Svc=URL` for one,
//! the in-process demo when there is no default, and UNAVAILABLE for a service with none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use protogate::{Gateway, ServiceInfo, Upstream};

use crate::demo::Library;
use crate::pb;

/// The parsed `--upstream` flags.
pub struct Plan {
    default: Option<String>,
    per_service: BTreeMap<String, String>,
    /// The in-process demo's state, shared by every gateway built from this plan.
    demo: Arc<Library>,
}

impl Plan {
    /// Parses `URL` and `package.Service=URL` flags; a service name must be one this binary
    /// serves.
    pub fn parse(flags: &[String]) -> Result<Plan, String> {
        let mut plan = Plan {
            default: None,
            per_service: BTreeMap::new(),
            demo: Arc::new(Library::seeded()),
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

    /// Where `service` is served from, if anywhere.
    fn target(&self, service: &ServiceInfo) -> Target<'_> {
        if let Some(url) = self.per_service.get(service.name) {
            Target::Remote(url)
        } else if let Some(url) = &self.default {
            Target::Remote(url)
        } else if service.name == crate::demo::SERVICE_NAME {
            Target::Demo
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
                Target::Demo => crate::demo::service(&self.demo),
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
                Target::Demo => format!("{} -> in-process demo", info.name),
                Target::Missing => format!("{} -> no upstream (503)", info.name),
            })
            .collect()
    }
}

enum Target<'a> {
    Remote(&'a str),
    Demo,
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

    #[test]
    fn flags_parse_into_default_and_per_service_upstreams() {
        let plan = Plan::parse(&[
            "localhost:50051".to_owned(),
            format!("{}=http://library.internal:8080", crate::demo::SERVICE_NAME),
        ])
        .expect("valid flags");
        assert_eq!(plan.default.as_deref(), Some("http://localhost:50051"));
        assert_eq!(
            plan.per_service
                .get(crate::demo::SERVICE_NAME)
                .map(String::as_str),
            Some("http://library.internal:8080")
        );
        assert!(Plan::parse(&["a:1".to_owned(), "b:2".to_owned()]).is_err());
        assert!(Plan::parse(&["x.Y=http://h:1".to_owned()]).is_err());
        let tls = Plan::parse(&["https://library.internal:443".to_owned()]).err();
        assert!(tls.is_some_and(|e| e.contains("must start with http://")));
    }
}

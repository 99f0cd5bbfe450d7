//! The edge policies of the config (`[[routes]]` and each policy's section), built once per
//! plan and worn by every worker's gateway as route layers (`protogate::Gateway::route_layer`).
//!
//! State that must outlive a worker's router (key caches, rate-limit counters, connections to
//! Redis) is built here once and shared by every worker.

use protogate::{
    Compression, CompressionLayer, Cors, CorsLayer, Encoding, Gateway, Limits, LimitsLayer,
    PerRoute, RouteSelector,
};

use crate::config::{CompressionSection, Config, CorsSection, LimitsSection, RouteCors};

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
    /// this build serves, which an RPC selector must cover one of.
    pub fn new(config: &Config, rpcs: &[&str]) -> Result<Edge, EdgeError> {
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
        Ok(Edge {
            selectors,
            cors,
            limits,
            compression,
        })
    }

    /// The selector of rule `index` of `[[routes]]`.
    pub fn selector(&self, index: usize) -> &RouteSelector {
        &self.selectors[index]
    }

    /// `gateway` wearing every policy, in the order they apply to a request: CORS first (it
    /// answers preflights, and its headers reach every answer below it, refusals included),
    /// then limits, and compression last, nearest the handler (which reads the decoded body,
    /// so the body limits count decoded bytes).
    pub fn wear(&self, mut gateway: Gateway) -> Gateway {
        if let Some(cors) = &self.cors {
            gateway = gateway.route_layer(cors.clone());
        }
        if let Some(limits) = &self.limits {
            gateway = gateway.route_layer(limits.clone());
        }
        if let Some(compression) = &self.compression {
            gateway = gateway.route_layer(compression.clone());
        }
        gateway
    }
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

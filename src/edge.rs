//! The edge policies of the config (`[[routes]]` and each policy's section), built once per
//! plan and worn by every worker's gateway as route layers (`protogate::Gateway::route_layer`).
//!
//! State that must outlive a worker's router (key caches, rate-limit counters, connections to
//! Redis) is built here once and shared by every worker.

use protogate::{Gateway, RouteSelector};

use crate::config::Config;

/// Every edge policy of a config, ready to wear.
pub struct Edge {
    /// The `[[routes]]` selectors, in order, parsed.
    selectors: Vec<RouteSelector>,
    /// `[auth]` and the rules' `auth`: one layer (its key caches) for every worker.
    auth: Option<protogate::Auth>,
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
        let auth = crate::auth::build(config.auth.as_ref(), &config.routes, &selectors)?;
        Ok(Edge { selectors, auth })
    }

    /// The selector of rule `index` of `[[routes]]`.
    pub fn selector(&self, index: usize) -> &RouteSelector {
        &self.selectors[index]
    }

    /// `gateway` wearing every policy, in the order they apply to a request.
    pub fn wear(&self, mut gateway: Gateway) -> Gateway {
        if let Some(auth) = &self.auth {
            gateway = gateway.route_layer(auth.clone());
        }
        gateway
    }
}

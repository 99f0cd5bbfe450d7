//! Edge policy declared in the protos with `(protogate.api.policy)`: who may call a method and
//! how often. protogate-build writes it into each service's `ServiceInfo`;
//! whoever assembles the gateway's edge policies (the stock gateway does, under its config's
//! own rules) turns it into route rules.

use std::time::Duration;

/// What one method declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredPolicy {
    /// The RPC's full name, `package.Service.Method`.
    pub rpc: &'static str,
    /// Who may call.
    pub access: Access,
    /// Scopes the caller's credentials must all grant; any implies [`Access::Authenticated`].
    pub scopes: &'static [&'static str],
    /// How often one client may call.
    pub rate_limit: Option<DeclaredRateLimit>,
}

impl DeclaredPolicy {
    /// Whether the method asks for credentials: [`Access::Authenticated`], or scopes.
    pub fn requires_credentials(&self) -> bool {
        self.access == Access::Authenticated || !self.scopes.is_empty()
    }
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Not declared: the gateway's default.
    Unspecified,
    /// Anyone, with or without credentials.
    Public,
    /// Callers with valid credentials only.
    Authenticated,
}

/// `requests` per `period` for each client, `burst` of them at once (`requests` when 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredRateLimit {
    /// Calls allowed per period (more than zero).
    pub requests: u32,
    /// The period (more than zero).
    pub period: Duration,
    /// Calls a client may make at once after a quiet spell; 0 for `requests`.
    pub burst: u32,
}

//! Who sent a request, once an authentication layer has established it.

use std::sync::Arc;

/// The client a request comes from, as an authentication layer established it. The layer puts
/// it in the request's extensions; the layers after it (rate limits keyed by client, access
/// logs) and the handlers read it with [`Principal::of`].
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// Who the client is: a token's `sub` (empty when it has none), an API key's name, what an
    /// external check answered.
    pub subject: Arc<str>,
    /// How it was established: `"jwt"`, `"api_key"`, `"external"`, `"session"`.
    pub scheme: &'static str,
    /// The scopes granted.
    pub scopes: Arc<[String]>,
    /// Every claim, as JSON (an object; for an API key, `{"sub": name}`).
    pub claims: Arc<serde_json::Value>,
}

impl Principal {
    /// The principal of `request`, if an authentication layer established one.
    pub fn of<B>(request: &http::Request<B>) -> Option<&Principal> {
        request.extensions().get::<Principal>()
    }

    /// Sets `self` as the principal of `request` (and its subject as the request's in its
    /// [`Scope`](crate::observe::Scope), for access logs).
    pub fn attach<B>(self, request: &mut http::Request<B>) {
        if let Some(scope) = crate::observe::Scope::of(request) {
            scope.set_subject(Arc::clone(&self.subject));
        }
        request.extensions_mut().insert(self);
    }
}

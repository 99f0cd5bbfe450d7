//! `[auth]`: who may call. JWT providers (`[[auth.jwt]]`), API keys (`[auth.api_keys]`), the
//! claims forwarded upstream, and the requirement of routes that no `[[routes]]` rule's `auth`
//! sets. `src/edge.rs` maps it onto `protogate::Auth`.
//!
//! No secret is written in the file in clear: API keys are given by their SHA-256, and an
//! HMAC secret by the environment variable or file that holds it (`config show` and the admin
//! listener's `/config` print the file's settings as they are).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Span;

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// What routes require when no `[[routes]]` rule's `auth` covers them (`"authenticated"`
    /// by default).
    pub default: Option<RouteAuth>,
    /// The issuers whose bearer tokens are accepted.
    pub jwt: Vec<JwtSection>,
    /// The API keys accepted, and where requests carry them.
    pub api_keys: Option<ApiKeysSection>,
    /// Claims sent upstream as gRPC metadata: claim name → metadata name
    /// (`{ sub = "x-user-id" }`).
    pub forward_claims: BTreeMap<String, String>,
    /// Whether the credentials themselves (`Authorization`, the API key header) travel
    /// upstream too (off by default).
    pub forward_authorization: Option<bool>,
    /// The realm the challenges of refused requests name.
    pub realm: Option<String>,
    /// The longest bearer token read, in bytes (8192 by default).
    pub max_token_bytes: Option<usize>,
    /// Origins of pages on other sites (`https://app.example.com`) whose requests that can
    /// change something may still be authenticated by a cookie (`[auth.sessions]`, or
    /// `[auth.external]` with `cookie`). None by default: such a request from another site is
    /// refused (403) unless it carries another credential.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cross_site_origins: Vec<String>,
    /// Session cookies resolved through the `[redis]` server, shared by every replica.
    pub sessions: Option<SessionsSection>,
    /// Credentials checked by the team's own `protogate.api.ExternalAuth` service.
    pub external: Option<ExternalSection>,
}

/// `[auth.sessions]`: a session cookie whose value names a key in Redis holding the session's
/// JSON (`{"sub": …, "scope": …, …claims}`), written there by the team's login service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    /// The cookie (`session` by default).
    pub cookie: Option<String>,
    /// The prefix of session keys (`session:` by default).
    pub prefix: Option<String>,
    /// How long each replica keeps an answer (5 s by default): a logout takes this long to
    /// reach every replica.
    pub cache: Option<Span>,
}

/// `[auth.external]`: the team's auth service, one of `[upstreams]`, asked once per credential.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalSection {
    /// The `[upstreams.NAME]` serving `protogate.api.ExternalAuth`.
    pub upstream: String,
    /// The header holding the credential (`authorization` by default) …
    pub header: Option<String>,
    /// … after this scheme (`Bearer` for `authorization`, none otherwise) …
    pub scheme: Option<String>,
    /// … or the cookie holding it, instead of a header.
    pub cookie: Option<String>,
    /// How long an answer is kept (60 s by default; the service's `cache_for` may shorten it).
    pub cache: Option<Span>,
    /// How long a refusal is kept (10 s by default).
    pub refused_cache: Option<Span>,
    /// How long one check may take (2 s by default).
    pub timeout: Option<Span>,
    /// Checks in flight towards the service at most (32 by default).
    pub max_concurrent: Option<usize>,
    /// Let requests through unauthenticated when the service cannot answer, instead of 503.
    pub fail_open: Option<bool>,
}

/// `[[auth.jwt]]`: one issuer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSection {
    /// The `iss` of its tokens.
    pub issuer: String,
    /// The `aud` values accepted (any one suffices); none: the audience is not checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The algorithms accepted (`RS256` by default; `HS256` with a secret).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Its keys: a JWKS URL …
    pub jwks_url: Option<String>,
    /// … or a JWKS file, read again at each refresh …
    pub jwks_file: Option<PathBuf>,
    /// … or an HMAC secret, from this environment variable …
    pub secret_env: Option<String>,
    /// … or from this file.
    pub secret_file: Option<PathBuf>,
    /// Certificate authorities for an `https://` JWKS URL (the system's by default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwks_ca: Vec<PathBuf>,
    /// How far `exp` and `nbf` may be off the clock (60 s by default).
    pub leeway: Option<Span>,
    /// How often the JWKS is fetched again (5 minutes by default).
    pub refresh: Option<Span>,
    /// The least time between two fetches, for tokens with an unknown key id (30 s by
    /// default).
    pub min_refresh: Option<Span>,
    /// How long one fetch may take (5 s by default).
    pub fetch_timeout: Option<Span>,
    /// The largest JWKS document accepted, in bytes (1 MiB by default).
    pub max_jwks_bytes: Option<usize>,
}

/// `[auth.api_keys]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysSection {
    /// The header keys travel in (`x-api-key` by default); `""` for none.
    pub header: Option<String>,
    /// The query parameter keys may travel in (none by default).
    pub query: Option<String>,
    /// The keys.
    pub keys: Vec<ApiKeyEntry>,
}

/// One API key: `{ name = "ci", sha256 = "…" }`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Who holds it: the principal of its requests.
    pub name: String,
    /// The SHA-256 of the key, 64 hexadecimal digits (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// The scopes it grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// What a route requires: `"public"`, `"authenticated"`, or
/// `{ scopes = ["a", "b"], claims = { tenant = "acme" } }` (authenticated, with every scope
/// granted and every claim holding its value).
#[derive(Clone, Debug, PartialEq)]
pub enum RouteAuth {
    /// No credentials needed (valid ones still attach a principal).
    Public,
    /// Credentials that check out.
    Authenticated,
    /// Credentials that check out and grant these.
    Require(Needs),
}

/// The scopes and claims a route needs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Needs {
    /// Every one of these scopes (the token's `scope` or `scp` claim, or the API key's).
    pub scopes: Vec<String>,
    /// Every one of these claims with this value (or, for an array claim, holding it).
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for RouteAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RouteAuthVisitor)
    }
}

struct RouteAuthVisitor;

impl<'de> Visitor<'de> for RouteAuthVisitor {
    type Value = RouteAuth;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"public\", \"authenticated\", or a table of `scopes` and `claims`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<RouteAuth, E> {
        match text {
            "public" => Ok(RouteAuth::Public),
            "authenticated" => Ok(RouteAuth::Authenticated),
            other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RouteAuth, A::Error> {
        let needs = Needs::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(RouteAuth::Require(needs))
    }
}

impl Serialize for RouteAuth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RouteAuth::Public => serializer.serialize_str("public"),
            RouteAuth::Authenticated => serializer.serialize_str("authenticated"),
            RouteAuth::Require(needs) => needs.serialize(serializer),
        }
    }
}

impl RouteAuth {
    /// The runtime's requirement.
    pub fn requirement(&self) -> protogate::Requirement {
        match self {
            RouteAuth::Public => protogate::Requirement::public(),
            RouteAuth::Authenticated => protogate::Requirement::authenticated(),
            RouteAuth::Require(needs) => {
                let mut requirement = protogate::Requirement::authenticated();
                for scope in &needs.scopes {
                    requirement = requirement.scope(scope.clone());
                }
                for (name, value) in &needs.claims {
                    requirement = requirement.claim(name.clone(), value.clone());
                }
                requirement
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Holder {
        auth: RouteAuth,
    }

    #[test]
    fn route_auth_reads_words_and_tables_and_writes_them_back() {
        for (text, expected) in [
            ("auth = \"public\"", RouteAuth::Public),
            ("auth = \"authenticated\"", RouteAuth::Authenticated),
            (
                "auth = { scopes = [\"a\"], claims = { tenant = \"acme\", level = 3 } }",
                RouteAuth::Require(Needs {
                    scopes: vec!["a".to_owned()],
                    claims: [
                        ("level".to_owned(), serde_json::json!(3)),
                        ("tenant".to_owned(), serde_json::json!("acme")),
                    ]
                    .into_iter()
                    .collect(),
                }),
            ),
        ] {
            let holder: Holder = toml::from_str(text).expect(text);
            assert_eq!(holder.auth, expected, "{text}");
            let written = toml::to_string(&holder).expect("written");
            let again: Holder = toml::from_str(&written).expect("read back");
            assert_eq!(again, holder);
        }
        for bad in [
            "auth = \"private\"",
            "auth = { scope = [\"a\"] }",
            "auth = 3",
        ] {
            assert!(toml::from_str::<Holder>(bad).is_err(), "{bad}");
        }
        let yaml: Holder = serde_yaml_ng::from_str("auth:\n  scopes: [x]\n").expect("YAML");
        assert_eq!(yaml.auth.requirement().scopes(), ["x"]);
    }
}

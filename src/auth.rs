//! `[auth]` and the `auth` of `[[routes]]` rules, mapped onto `protogate::Auth`: the one place
//! where the auth config meets the runtime's builder. Each mistake is reported at its key
//! (`auth.jwt[1].algorithms`, `auth.api_keys.keys[0].sha256`, `routes[2].auth`).

use std::time::Duration;

use protogate::{
    Access, ApiKey, ApiKeys, Auth, CredentialSource, DeclaredPolicy, ExternalAuth, JwtAlgorithm,
    JwtProvider, PerRoute, RedisSessions, Requirement, RouteSelector, UpstreamTls,
};

use crate::config::{Config, ExternalSection, JwtSection, RouteAuth, SessionsSection, Span};
use crate::edge::EdgeError;

fn mistake(key: impl Into<String>, message: impl Into<String>) -> EdgeError {
    EdgeError {
        key: key.into(),
        message: message.into(),
    }
}

/// The auth layer `config`'s `[auth]` describes, with the requirement of each `[[routes]]`
/// rule that sets one (`selectors` are the rules' selectors, parsed, in order), then what the
/// protos declare (`declared`), then `[auth] default`. `None` without a section; an error when
/// a rule sets `auth`, or a proto asks for credentials, without one.
pub fn build(
    config: &Config,
    selectors: &[RouteSelector],
    declared: &[DeclaredPolicy],
) -> Result<Option<Auth>, EdgeError> {
    let rules = &config.routes;
    let Some(section) = config.auth.as_ref() else {
        if let Some(index) = rules.iter().position(|rule| rule.auth.is_some()) {
            return Err(mistake(
                format!("routes[{index}].auth"),
                "there is no [auth] section: add one with JWT providers or API keys",
            ));
        }
        if let Some(policy) = declared.iter().find(|policy| policy.requires_credentials()) {
            return Err(mistake(
                "auth",
                format!(
                    "`{}` declares in its proto that it needs credentials: add an [auth] section that can check them",
                    policy.rpc
                ),
            ));
        }
        return Ok(None);
    };
    let default = section
        .default
        .as_ref()
        .map_or_else(Requirement::authenticated, RouteAuth::requirement);
    let mut requirements = PerRoute::new(default);
    for ((rule, selector), index) in rules.iter().zip(selectors).zip(0..) {
        if let Some(auth) = &rule.auth {
            if let RouteAuth::Require(needs) = auth
                && needs.scopes.is_empty()
                && needs.claims.is_empty()
            {
                return Err(mistake(
                    format!("routes[{index}].auth"),
                    "give `scopes` or `claims`, or write \"authenticated\"",
                ));
            }
            requirements = requirements.rule(selector.clone(), auth.requirement());
        }
    }
    // What the protos declare, under the config's own rules.
    for policy in declared {
        let requirement = match policy.access {
            _ if !policy.scopes.is_empty() => policy
                .scopes
                .iter()
                .fold(Requirement::authenticated(), |needs, scope| {
                    needs.scope(*scope)
                }),
            Access::Public => Requirement::public(),
            Access::Authenticated => Requirement::authenticated(),
            Access::Unspecified => continue,
        };
        requirements = requirements.rule(rpc_selector(policy.rpc), requirement);
    }

    let mut builder = Auth::builder()
        .requirements(requirements)
        .forward_authorization(section.forward_authorization.unwrap_or(false));
    for (index, jwt) in section.jwt.iter().enumerate() {
        let key = format!("auth.jwt[{index}]");
        let provider = provider(jwt, &key)?;
        // Checked alone first, so that a mistake is placed at its provider.
        Auth::builder()
            .jwt(provider.clone())
            .build()
            .map_err(|error| mistake(&key, error.to_string()))?;
        builder = builder.jwt(provider);
    }
    if let Some(keys) = &section.api_keys {
        builder = builder.api_keys(api_keys(keys)?);
    }
    for (claim, name) in &section.forward_claims {
        let alone = Auth::builder()
            .api_keys(ApiKeys::new())
            .forward_claim(claim.clone(), name.clone())
            .build();
        if let Err(error) = alone {
            return Err(mistake(
                format!("auth.forward_claims.{claim}"),
                error.to_string(),
            ));
        }
        // The auth layer drops what a client sends under the claim's name, but a header that
        // `[gateway] request_headers` maps onto it would arrive beside the verified claim.
        if let Some((header, _)) = config
            .gateway
            .request_headers
            .iter()
            .find(|(_, key)| key.eq_ignore_ascii_case(name))
        {
            return Err(mistake(
                format!("auth.forward_claims.{claim}"),
                format!(
                    "`{name}` is also where [gateway] request_headers puts the client's `{header}` header: a client could pose as someone else; map one of them to another key"
                ),
            ));
        }
        builder = builder.forward_claim(claim.clone(), name.clone());
    }
    if let Some(realm) = &section.realm {
        builder = builder.realm(realm.clone());
    }
    if let Some(bytes) = section.max_token_bytes {
        builder = builder.max_token_bytes(bytes);
    }
    let origins = cross_site_origins(&section.cross_site_origins)?;
    if let Some(external) = &section.external {
        builder = builder.external(external_checker(config, external, &origins)?);
    }
    if let Some(sessions) = &section.sessions {
        builder = builder.external(session_checker(config, sessions, &origins)?);
    }
    builder.build().map(Some).map_err(|error| {
        let key = match error {
            protogate::AuthError::NoCredentials => "auth",
            protogate::AuthError::DuplicateIssuer { .. } => "auth.jwt",
            _ => "auth",
        };
        mistake(key, error.to_string())
    })
}

/// The selector of one RPC, by its full name.
pub(crate) fn rpc_selector(rpc: &str) -> RouteSelector {
    rpc.parse().unwrap_or_else(|_| RouteSelector::any())
}

/// `[auth] cross_site_origins`, each checked to be an origin as browsers write it:
/// `scheme://host` or `scheme://host:port`, nothing after.
fn cross_site_origins(origins: &[String]) -> Result<Vec<String>, EdgeError> {
    origins
        .iter()
        .enumerate()
        .map(|(index, origin)| {
            let host = origin
                .split_once("://")
                .filter(|(scheme, _)| !scheme.is_empty())
                .map(|(_, host)| host);
            match host {
                Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
                    Ok(origin.clone())
                }
                _ => Err(mistake(
                    format!("auth.cross_site_origins[{index}]"),
                    format!("`{origin}` is not an origin (write `https://app.example.com`)"),
                )),
            }
        })
        .collect()
}

/// `[auth.external]`: a checker over the upstream it names.
fn external_checker(
    config: &Config,
    section: &ExternalSection,
    origins: &[String],
) -> Result<ExternalAuth, EdgeError> {
    let key = "auth.external";
    let Some(settings) = config.upstreams.get(&section.upstream) else {
        return Err(mistake(
            format!("{key}.upstream"),
            format!("no upstream `{}` is defined", section.upstream),
        ));
    };
    let settings = settings.over(&config.defaults.upstream_settings);
    let upstream =
        crate::upstream::build(&section.upstream, &settings, None).map_err(|(part, message)| {
            mistake(format!("upstreams.{}.{part}", section.upstream), message)
        })?;
    let source = match (&section.cookie, &section.header) {
        (Some(_), Some(_)) => {
            return Err(mistake(key, "give `header` or `cookie`, not both"));
        }
        (Some(cookie), None) => CredentialSource::Cookie(cookie.clone()),
        (None, header) => {
            let header = header.as_deref().unwrap_or("authorization");
            let name = axum::http::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
                .map_err(|_| {
                mistake(
                    format!("{key}.header"),
                    format!("`{header}` is not a header name"),
                )
            })?;
            let scheme = section.scheme.clone().or_else(|| {
                (name == axum::http::header::AUTHORIZATION).then(|| "Bearer".to_owned())
            });
            CredentialSource::Header { name, scheme }
        }
    };
    let mut checker = ExternalAuth::builder(upstream)
        .source(source)
        .cross_site_origins(origins.iter().cloned());
    if let Some(Span(ttl)) = section.cache {
        checker = checker.ttl(ttl);
    }
    if let Some(Span(ttl)) = section.refused_cache {
        checker = checker.refused_ttl(ttl);
    }
    if let Some(Span(timeout)) = section.timeout {
        checker = checker.timeout(timeout);
    }
    if let Some(calls) = section.max_concurrent {
        checker = checker.max_concurrent(calls);
    }
    if let Some(open) = section.fail_open {
        checker = checker.fail_open(open);
    }
    Ok(checker.build())
}

/// `[auth.sessions]`: a checker of session cookies against the `[redis]` server.
fn session_checker(
    config: &Config,
    section: &SessionsSection,
    origins: &[String],
) -> Result<ExternalAuth, EdgeError> {
    let Some(redis) = &config.redis else {
        return Err(mistake(
            "auth.sessions",
            "sessions live in Redis: add a [redis] section with its url",
        ));
    };
    let mut sessions =
        RedisSessions::new(&redis.url).map_err(|error| mistake("redis.url", error.to_string()))?;
    if let Some(prefix) = &section.prefix {
        sessions = sessions.prefix(prefix.clone());
    }
    if let Some(Span(timeout)) = redis.connect_timeout {
        sessions = sessions.connect_timeout(timeout);
    }
    if let Some(Span(timeout)) = redis.command_timeout {
        sessions = sessions.command_timeout(timeout);
    }
    let cookie = section.cookie.as_deref().unwrap_or("session");
    if cookie.is_empty()
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"=;,".contains(&b))
    {
        return Err(mistake(
            "auth.sessions.cookie",
            format!("`{cookie}` is not a cookie name"),
        ));
    }
    let mut checker = sessions
        .checker(cookie)
        .cross_site_origins(origins.iter().cloned());
    if let Some(Span(ttl)) = section.cache {
        checker = checker.ttl(ttl);
    }
    Ok(checker.build())
}

fn provider(section: &JwtSection, key: &str) -> Result<JwtProvider, EdgeError> {
    if section.issuer.is_empty() {
        return Err(mistake(format!("{key}.issuer"), "give the issuer (`iss`)"));
    }
    let mut provider = JwtProvider::new(section.issuer.clone());
    let sources = [
        section.jwks_url.is_some(),
        section.jwks_file.is_some(),
        section.secret_env.is_some(),
        section.secret_file.is_some(),
    ];
    match sources.iter().filter(|given| **given).count() {
        1 => {}
        0 => {
            return Err(mistake(
                key,
                "give its keys: jwks_url, jwks_file, secret_env or secret_file",
            ));
        }
        _ => {
            return Err(mistake(
                key,
                "give one of jwks_url, jwks_file, secret_env and secret_file",
            ));
        }
    }
    if let Some(url) = &section.jwks_url {
        provider = provider.jwks_url(url.clone());
        if !section.jwks_ca.is_empty() {
            let mut tls = UpstreamTls::new();
            for ca in &section.jwks_ca {
                tls = tls.ca_file(ca.clone());
            }
            provider = provider.jwks_tls(tls);
        }
    } else if !section.jwks_ca.is_empty() {
        return Err(mistake(
            format!("{key}.jwks_ca"),
            "jwks_ca is for a jwks_url",
        ));
    }
    if let Some(path) = &section.jwks_file {
        provider = provider.jwks_file(path.clone());
    }
    if let Some(name) = &section.secret_env {
        let secret = std::env::var(name).map_err(|_| {
            mistake(
                format!("{key}.secret_env"),
                format!("the environment variable `{name}` is not set (or not UTF-8)"),
            )
        })?;
        provider = provider.secret(secret.into_bytes());
    }
    if let Some(path) = &section.secret_file {
        let mut secret = std::fs::read(path).map_err(|error| {
            mistake(
                format!("{key}.secret_file"),
                format!("{}: {error}", path.display()),
            )
        })?;
        // A file written by an editor or `echo` ends in a newline that is no part of it.
        while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.pop();
        }
        provider = provider.secret(secret);
    }
    for audience in &section.audiences {
        provider = provider.audience(audience.clone());
    }
    let mut algorithms = Vec::with_capacity(section.algorithms.len());
    for name in &section.algorithms {
        let algorithm: JwtAlgorithm = name.parse().map_err(|error: protogate::AuthError| {
            mistake(format!("{key}.algorithms"), error.to_string())
        })?;
        algorithms.push(algorithm);
    }
    if !algorithms.is_empty() {
        provider = provider.algorithms(algorithms);
    }
    let span = |span: Option<crate::config::Span>| span.map(|span| span.0);
    if let Some(leeway) = span(section.leeway) {
        provider = provider.leeway(leeway);
    }
    if let Some(every) = span(section.refresh) {
        if every < Duration::from_secs(1) {
            return Err(mistake(format!("{key}.refresh"), "at least 1s"));
        }
        provider = provider.refresh_interval(every);
    }
    if let Some(every) = span(section.min_refresh) {
        provider = provider.min_refresh_interval(every);
    }
    if let Some(timeout) = span(section.fetch_timeout) {
        provider = provider.fetch_timeout(timeout);
    }
    if let Some(bytes) = section.max_jwks_bytes {
        provider = provider.max_jwks_bytes(bytes);
    }
    Ok(provider)
}

fn api_keys(section: &crate::config::ApiKeysSection) -> Result<ApiKeys, EdgeError> {
    let mut keys = ApiKeys::new();
    match section.header.as_deref() {
        Some("") => keys = keys.no_header(),
        Some(header) => keys = keys.header(header),
        None => {}
    }
    if let Some(query) = &section.query {
        keys = keys.query(query.clone());
    }
    for (index, entry) in section.keys.iter().enumerate() {
        let key = format!("auth.api_keys.keys[{index}]");
        if section.keys[..index]
            .iter()
            .any(|other| other.name == entry.name)
        {
            return Err(mistake(
                format!("{key}.name"),
                format!("two API keys are named `{}`", entry.name),
            ));
        }
        let api_key =
            ApiKey::from_sha256_hex(entry.name.clone(), &entry.sha256).map_err(|error| {
                let field = match error {
                    protogate::AuthError::EmptyKeyName => "name",
                    _ => "sha256",
                };
                mistake(format!("{key}.{field}"), error.to_string())
            })?;
        keys = keys.key(api_key.scopes(entry.scopes.clone()));
    }
    // Header and query checked alone, so that a mistake is placed at them.
    let alone = Auth::builder().api_keys(keys.clone()).build();
    if let Err(error) = alone {
        let field = match error {
            protogate::AuthError::BadHeaderName { .. } => "auth.api_keys.header",
            protogate::AuthError::EmptyQueryName => "auth.api_keys.query",
            _ => "auth.api_keys",
        };
        return Err(mistake(field, error.to_string()));
    }
    Ok(keys)
}

//! JWT bearer tokens: a provider per issuer (its keys, audiences, algorithms and leeway) and
//! the verification of one token against it.
//!
//! The algorithms a provider accepts are fixed when it is built; a token's `alg` only picks
//! among them, so a token cannot choose `none`, nor HMAC with a public key as the secret. A key
//! verifies only the algorithms of its own family, and only the one its JWKS entry names when
//! it names one.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::AuthError;
use super::jwks::{FileFetch, Key, KeySet, KeySource, Timing, UrlFetch};
use crate::upstream::UpstreamTls;

/// A signature algorithm a provider may accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256 (a shared secret).
    HS256,
    /// HMAC with SHA-384 (a shared secret).
    HS384,
    /// HMAC with SHA-512 (a shared secret).
    HS512,
}

impl JwtAlgorithm {
    fn inner(self) -> Algorithm {
        match self {
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::RS384 => Algorithm::RS384,
            JwtAlgorithm::RS512 => Algorithm::RS512,
            JwtAlgorithm::PS256 => Algorithm::PS256,
            JwtAlgorithm::PS384 => Algorithm::PS384,
            JwtAlgorithm::PS512 => Algorithm::PS512,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::ES384 => Algorithm::ES384,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
        }
    }

    fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }

    /// Every algorithm, by its JOSE name.
    const ALL: [(&'static str, JwtAlgorithm); 12] = [
        ("RS256", JwtAlgorithm::RS256),
        ("RS384", JwtAlgorithm::RS384),
        ("RS512", JwtAlgorithm::RS512),
        ("PS256", JwtAlgorithm::PS256),
        ("PS384", JwtAlgorithm::PS384),
        ("PS512", JwtAlgorithm::PS512),
        ("ES256", JwtAlgorithm::ES256),
        ("ES384", JwtAlgorithm::ES384),
        ("EdDSA", JwtAlgorithm::EdDSA),
        ("HS256", JwtAlgorithm::HS256),
        ("HS384", JwtAlgorithm::HS384),
        ("HS512", JwtAlgorithm::HS512),
    ];
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = JwtAlgorithm::ALL
            .iter()
            .find(|(_, alg)| alg == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

impl FromStr for JwtAlgorithm {
    type Err = AuthError;

    /// The JOSE name: `RS256`, `ES256`, `EdDSA`, `HS256`, ….
    fn from_str(text: &str) -> Result<Self, AuthError> {
        JwtAlgorithm::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, alg)| *alg)
            .ok_or_else(|| AuthError::UnknownAlgorithm {
                name: text.to_owned(),
            })
    }
}

#[derive(Clone)]
enum Keys {
    JwksUrl(String),
    JwksFile(PathBuf),
    Secret(Vec<u8>),
}

/// One issuer of tokens: where its keys are, which algorithms and audiences it uses, and how
/// much clock skew is forgiven.
///
/// ```
/// use std::time::Duration;
/// use protogate::{JwtAlgorithm, JwtProvider};
///
/// let provider = JwtProvider::new("https://login.example.com/")
///     .jwks_url("https://login.example.com/.well-known/jwks.json")
///     .audience("https://api.example.com")
///     .algorithms([JwtAlgorithm::RS256, JwtAlgorithm::ES256])
///     .leeway(Duration::from_secs(30));
/// ```
#[derive(Clone)]
pub struct JwtProvider {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<JwtAlgorithm>,
    keys: Option<Keys>,
    jwks_tls: Option<UpstreamTls>,
    leeway: Duration,
    refresh: Duration,
    min_refresh: Duration,
    fetch_timeout: Duration,
    max_jwks_bytes: usize,
}

impl fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            Some(Keys::JwksUrl(url)) => url.clone(),
            Some(Keys::JwksFile(path)) => path.display().to_string(),
            Some(Keys::Secret(_)) => "a shared secret".to_owned(),
            None => "none".to_owned(),
        };
        f.debug_struct("JwtProvider")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl JwtProvider {
    /// Tokens whose `iss` is `issuer`. Give its keys with [`JwtProvider::jwks_url`],
    /// [`JwtProvider::jwks_file`] or [`JwtProvider::secret`].
    ///
    /// Defaults: algorithm RS256 (HS256 with a secret), no audience check, 60 s of leeway, the
    /// JWKS fetched again every 5 minutes and at most once per 30 s for an unknown key id, a
    /// fetch limited to 5 s and 1 MiB.
    pub fn new(issuer: impl Into<String>) -> Self {
        JwtProvider {
            issuer: issuer.into(),
            audiences: Vec::new(),
            algorithms: Vec::new(),
            keys: None,
            jwks_tls: None,
            leeway: Duration::from_secs(60),
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            max_jwks_bytes: 1024 * 1024,
        }
    }

    /// The keys are the JWKS at `url` (`https://` or `http://`).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = Some(Keys::JwksUrl(url.into()));
        self
    }

    /// Who to trust when fetching an `https://` JWKS URL (the system's authorities by
    /// default).
    pub fn jwks_tls(mut self, tls: UpstreamTls) -> Self {
        self.jwks_tls = Some(tls);
        self
    }

    /// The keys are the JWKS in the file at `path`, read again at each refresh.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keys = Some(Keys::JwksFile(path.into()));
        self
    }

    /// The key is a shared secret (HMAC; HS256 by default).
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.keys = Some(Keys::Secret(secret.into()));
        self
    }

    /// Accepts tokens whose `aud` names `audience` (repeatable; any one suffices). With none,
    /// the audience is not checked.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The algorithms accepted, whatever a token says.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwtAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How far `exp` and `nbf` may be off the gateway's clock.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How often the JWKS is fetched again in the background.
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// The least time between two fetches of the JWKS, however many tokens name a key id it
    /// does not have.
    pub fn min_refresh_interval(mut self, every: Duration) -> Self {
        self.min_refresh = every;
        self
    }

    /// How long one fetch of the JWKS may take.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The largest JWKS document accepted, in bytes.
    pub fn max_jwks_bytes(mut self, bytes: usize) -> Self {
        self.max_jwks_bytes = bytes;
        self
    }

    pub(crate) fn build(self) -> Result<Verifier, AuthError> {
        let issuer = self.issuer;
        let fail = |problem: String| AuthError::Provider {
            issuer: issuer.clone(),
            problem,
        };
        if issuer.is_empty() {
            return Err(fail("the issuer is empty".to_owned()));
        }
        let Some(keys) = self.keys else {
            return Err(fail(
                "no keys: give a JWKS URL, a JWKS file or a secret".to_owned(),
            ));
        };
        let secret = matches!(keys, Keys::Secret(_));
        if self.jwks_tls.is_some() && !matches!(keys, Keys::JwksUrl(_)) {
            return Err(fail("TLS settings are for a JWKS URL".to_owned()));
        }
        let mut algorithms = self.algorithms;
        if algorithms.is_empty() {
            algorithms.push(if secret {
                JwtAlgorithm::HS256
            } else {
                JwtAlgorithm::RS256
            });
        }
        if let Some(wrong) = algorithms.iter().find(|alg| alg.is_hmac() != secret) {
            return Err(fail(if secret {
                format!(
                    "{wrong} does not use a shared secret; a secret verifies HS256, HS384, HS512 only"
                )
            } else {
                format!("{wrong} needs a shared secret, not a JWKS")
            }));
        }
        let timing = Timing {
            refresh: self.refresh.max(Duration::from_secs(1)),
            min_refresh: self.min_refresh,
        };
        let source = match keys {
            Keys::Secret(secret) => {
                let key = DecodingKey::from_secret(&secret)
                    .map_err(|_| fail("the secret is empty".to_owned()))?;
                KeySource::Fixed(Arc::new(vec![Key {
                    kid: None,
                    alg: None,
                    key: Arc::new(key),
                }]))
            }
            Keys::JwksFile(path) => {
                let text = path.display().to_string();
                let fetch = FileFetch {
                    path,
                    text,
                    max_bytes: self.max_jwks_bytes,
                };
                KeySource::Fetched(KeySet::new(Box::new(fetch), issuer.clone(), timing))
            }
            Keys::JwksUrl(url) => {
                let parsed = reqwest::Url::parse(&url)
                    .map_err(|e| fail(format!("the JWKS URL `{url}` is not valid: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(fail(format!(
                        "the JWKS URL `{url}` is neither http:// nor https://"
                    )));
                }
                let tls = self
                    .jwks_tls
                    .unwrap_or_default()
                    .client_config()
                    .map_err(|e| fail(format!("TLS for the JWKS URL: {e}")))?;
                let client = reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .timeout(self.fetch_timeout)
                    .connect_timeout(self.fetch_timeout)
                    // A fetch is rare and may come from any worker's runtime: no connection
                    // outlives it.
                    .pool_max_idle_per_host(0)
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .build()
                    .map_err(|e| fail(format!("the JWKS client: {e}")))?;
                let fetch = UrlFetch {
                    client,
                    url: parsed,
                    text: url,
                    max_bytes: self.max_jwks_bytes,
                };
                KeySource::Fetched(KeySet::new(Box::new(fetch), issuer.clone(), timing))
            }
        };
        let mut validation = Validation::new(algorithms[0].inner());
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer.as_str()]);
        let mut required = vec!["exp", "iss"];
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        // One validation per algorithm: jsonwebtoken wants every algorithm of a validation to
        // be of its key's family, and the token's own is the one to check.
        let validations = algorithms
            .iter()
            .map(|alg| {
                let mut one = validation.clone();
                one.algorithms = vec![alg.inner()];
                (*alg, one)
            })
            .collect();
        Ok(Verifier {
            issuer,
            validations,
            source,
        })
    }
}

/// A built provider.
pub(crate) struct Verifier {
    pub(crate) issuer: String,
    /// The algorithms accepted, each with the checks of a token signed with it.
    validations: Vec<(JwtAlgorithm, Validation)>,
    source: KeySource,
}

/// Why a token is refused, in words that never quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Refused: 401.
    Invalid(String),
    /// Refused because its `exp` has passed: 401, counted apart from other refusals.
    Expired(String),
    /// The issuer's keys cannot be had: 503.
    KeysUnavailable(String),
}

fn invalid(message: impl Into<String>) -> TokenError {
    TokenError::Invalid(message.into())
}

/// What the token's header says, read before anything is trusted.
pub(crate) struct Peek {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
    /// The payload's `iss`, when it has one.
    pub(crate) iss: Option<String>,
}

/// Reads the header's `alg` and `kid` and the payload's `iss` of a compact JWS, without
/// trusting any of it.
pub(crate) fn peek(token: &str) -> Result<Peek, TokenError> {
    let malformed = || invalid("the bearer token is not a well-formed JWT");
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    // Read as maps, as the signature check reads the claims: as a `Value`, an object whose first
    // key is serde_json's raw-value marker (`$serde_json::private::RawValue`) would not parse,
    // and a token the issuer signed with such a claim would be called malformed here only.
    let decode = |part: &str| -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| malformed())?;
        serde_json::from_slice(&bytes).map_err(|_| malformed())
    };
    let header = decode(header)?;
    let payload = decode(payload)?;
    let alg = header
        .get("alg")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| invalid("the token's header names no algorithm"))?;
    Ok(Peek {
        alg: alg.to_owned(),
        kid: header
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        iss: payload
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    })
}

/// An algorithm's name as a message may say it: a known one, or a placeholder for anything an
/// attacker might have put there.
fn shown(alg: &str) -> &str {
    if alg.len() <= 8 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        alg
    } else {
        "(unrecognised)"
    }
}

impl Verifier {
    /// The claims of `token` once its signature, issuer, audience and times check out.
    pub(crate) async fn verify(
        &self,
        token: &str,
        peek: &Peek,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
        let found = JwtAlgorithm::from_str(&peek.alg)
            .ok()
            .and_then(|alg| self.validations.iter().find(|(own, _)| *own == alg));
        let Some((alg, validation)) = found else {
            return Err(invalid(format!(
                "the token's algorithm `{}` is not one this issuer uses ({})",
                shown(&peek.alg),
                self.validations
                    .iter()
                    .map(|(alg, _)| alg.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let alg = alg.inner();
        let kid = peek.kid.as_deref();
        let candidates = match &self.source {
            KeySource::Fixed(keys) => fitting(keys, None, alg),
            KeySource::Fetched(set) => {
                let seen = set.attempts();
                let keys = set.keys().await.ok_or_else(|| {
                    TokenError::KeysUnavailable(format!(
                        "the signing keys of issuer `{}` could not be fetched; try again later",
                        self.issuer
                    ))
                })?;
                let mut candidates = fitting(&keys, kid, alg);
                if candidates.is_empty() && kid.is_some() {
                    // A key rotated in at the issuer, perhaps: look once more.
                    set.refresh(seen).await;
                    if let Some(keys) = set.cached() {
                        candidates = fitting(&keys, kid, alg);
                    }
                }
                candidates
            }
        };
        if candidates.is_empty() {
            return Err(invalid(match kid {
                Some(_) => "the token's key id is not among the issuer's keys",
                None => "the token names no key id and no key of the issuer fits it",
            }));
        }
        let mut last = invalid("the token's signature does not verify");
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token, &key.key, validation,
            ) {
                Ok(data) => return Ok(data.claims),
                Err(error) => {
                    let signature = matches!(error.kind(), ErrorKind::InvalidSignature);
                    last = self.explain(error.kind());
                    if !signature {
                        // The signature held (claims are checked after it): no other key
                        // would change the answer.
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn explain(&self, kind: &ErrorKind) -> TokenError {
        invalid(match kind {
            ErrorKind::ExpiredSignature => {
                return TokenError::Expired("the token has expired".to_owned());
            }
            ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".to_owned(),
            ErrorKind::InvalidIssuer => {
                format!("the token's issuer is not `{}`", self.issuer)
            }
            ErrorKind::InvalidAudience => {
                "the token's audience is none of those this gateway accepts".to_owned()
            }
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("the token has no `{}` claim", shown_claim(claim))
            }
            ErrorKind::InvalidClaimFormat(claim) => {
                format!("the token's `{}` claim is malformed", shown_claim(claim))
            }
            ErrorKind::InvalidAlgorithm => {
                "the token's algorithm does not fit the issuer's key".to_owned()
            }
            _ => "the bearer token is not a well-formed JWT".to_owned(),
        })
    }
}

fn shown_claim(claim: &str) -> &str {
    match claim {
        "exp" | "nbf" | "iss" | "aud" | "sub" | "iat" => claim,
        _ => "(a registered claim)",
    }
}

fn fitting(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
    keys.iter()
        .filter(|key| key.fits(kid, alg))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(value: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn peeks_read_alg_kid_and_iss_without_trusting_them() {
        let token = format!(
            "{}.{}.sig",
            b64(&serde_json::json!({"alg": "RS256", "kid": "k1"})),
            b64(&serde_json::json!({"iss": "https://issuer", "sub": "u"}))
        );
        let peek = peek(&token).expect("peeks");
        assert_eq!(peek.alg, "RS256");
        assert_eq!(peek.kid.as_deref(), Some("k1"));
        assert_eq!(peek.iss.as_deref(), Some("https://issuer"));

        for bad in [
            "garbage".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{}.e30.", b64(&serde_json::json!(["alg"]))),
            format!("{}.e30.", b64(&serde_json::json!({"typ": "JWT"}))),
            "!!.e30.x".to_owned(),
        ] {
            assert!(peek_fails(&bad), "{bad}");
        }
    }

    #[test]
    fn claims_with_serde_jsons_raw_value_marker_as_a_key_are_read_like_any_other() {
        // The text is built by hand: `json!` would not make such an object.
        let claims = r#"{"$serde_json::private::RawValue":399,"iss":"https://issuer"}"#;
        let token = format!(
            "{}.{}.sig",
            b64(&serde_json::json!({"alg": "HS256"})),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims)
        );
        let peek = peek(&token).expect("peeks");
        assert_eq!(peek.iss.as_deref(), Some("https://issuer"));
    }

    fn peek_fails(token: &str) -> bool {
        matches!(peek(token), Err(TokenError::Invalid(_)))
    }

    #[test]
    fn algorithms_are_fixed_by_the_key_source() {
        let secret = JwtProvider::new("i")
            .secret(b"s".to_vec())
            .algorithms([JwtAlgorithm::RS256])
            .build()
            .err()
            .expect("RS256 with a secret");
        assert!(secret.to_string().contains("RS256"), "{secret}");
        let jwks = JwtProvider::new("i")
            .jwks_file("/nonexistent")
            .algorithms([JwtAlgorithm::HS256])
            .build()
            .err()
            .expect("HS256 with a JWKS");
        assert!(jwks.to_string().contains("HS256"), "{jwks}");
        let none = JwtProvider::new("i").build().err().expect("no keys");
        assert!(none.to_string().contains("no keys"), "{none}");
        let bad_url = JwtProvider::new("i")
            .jwks_url("ftp://x/jwks")
            .build()
            .err()
            .expect("ftp");
        assert!(bad_url.to_string().contains("http"), "{bad_url}");
        let tls_for_a_file = JwtProvider::new("i")
            .jwks_tls(UpstreamTls::new())
            .jwks_file("/nonexistent")
            .build()
            .err()
            .expect("TLS for a file");
        assert!(
            tls_for_a_file.to_string().contains("JWKS URL"),
            "{tls_for_a_file}"
        );
    }

    #[test]
    fn algorithm_names_round_trip() {
        for (name, alg) in JwtAlgorithm::ALL {
            assert_eq!(name.parse::<JwtAlgorithm>().ok(), Some(alg));
            assert_eq!(alg.to_string(), name);
        }
        assert!("none".parse::<JwtAlgorithm>().is_err());
        assert!("rs256".parse::<JwtAlgorithm>().is_err());
    }

    #[tokio::test]
    async fn a_secret_verifies_hs256_tokens_and_nothing_else() {
        let verifier = JwtProvider::new("issuer")
            .secret(b"top secret".to_vec())
            .audience("api")
            .build()
            .expect("valid");
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "iss": "issuer", "aud": "api", "sub": "alice", "exp": now + 60
        });
        let sign = |alg: Algorithm, secret: &[u8], claims: &serde_json::Value| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                claims,
                &jsonwebtoken::EncodingKey::from_secret(secret).expect("key"),
            )
            .expect("signed")
        };
        let check = |token: String| {
            let verifier = &verifier;
            async move {
                let peek = peek(&token)?;
                verifier.verify(&token, &peek).await
            }
        };
        let good = check(sign(Algorithm::HS256, b"top secret", &claims)).await;
        assert_eq!(good.expect("valid")["sub"], "alice");

        let refused = |result: Result<_, TokenError>| match result {
            Err(TokenError::Invalid(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let expired_only = |result: Result<_, TokenError>| match result {
            Err(TokenError::Expired(message)) => message,
            other => panic!("expected an expired token, got {other:?}"),
        };
        let message = refused(check(sign(Algorithm::HS512, b"top secret", &claims)).await);
        assert!(message.contains("`HS512` is not one"), "{message}");
        let message = refused(check(sign(Algorithm::HS256, b"other", &claims)).await);
        assert!(message.contains("signature"), "{message}");
        let mut expired = claims.clone();
        expired["exp"] = serde_json::json!(now - 3600);
        let message = expired_only(check(sign(Algorithm::HS256, b"top secret", &expired)).await);
        assert!(message.contains("expired"), "{message}");
        // A bad signature is what it is, whatever the token's `exp` says.
        let message = refused(check(sign(Algorithm::HS256, b"other", &expired)).await);
        assert!(message.contains("signature"), "{message}");
        let mut no_aud = claims.clone();
        no_aud.as_object_mut().expect("object").remove("aud");
        let message = refused(check(sign(Algorithm::HS256, b"top secret", &no_aud)).await);
        assert!(message.contains("`aud`"), "{message}");
    }
}

//! A provider's signing keys, from a JWKS (a URL or a file) or a shared secret, cached and
//! refreshed in the background.
//!
//! Requests never wait for a fetch but in two cases, and never cause more than one at a time:
//! the first request of all (nothing is cached yet), and a token whose key id is not in the
//! cached set (a key rotated in at the issuer). Both go through one refresh at a time (single
//! flight: whoever arrives while a fetch runs waits for that fetch instead of starting one),
//! and no more than one per minimum interval. A fetch that fails keeps the keys cached before;
//! it is logged once when a streak of failures starts and once when it ends.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

/// A boxed, sendable future.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where a key set's document comes from.
pub(crate) trait Fetch: Send + Sync + 'static {
    /// The document's bytes, or what went wrong, in words fit for a log.
    fn fetch(&self) -> BoxFuture<Result<Vec<u8>, String>>;
    /// The URL or file, for logs.
    fn source(&self) -> &str;
}

/// A JWKS served over HTTP(S).
pub(crate) struct UrlFetch {
    pub(crate) client: reqwest::Client,
    pub(crate) url: reqwest::Url,
    pub(crate) text: String,
    pub(crate) max_bytes: usize,
}

impl Fetch for UrlFetch {
    fn fetch(&self) -> BoxFuture<Result<Vec<u8>, String>> {
        let request = self.client.get(self.url.clone());
        let max_bytes = self.max_bytes;
        Box::pin(async move {
            let mut response = request.send().await.map_err(|e| describe(&e))?;
            if !response.status().is_success() {
                return Err(format!("the server answered {}", response.status()));
            }
            if response
                .content_length()
                .is_some_and(|length| length > max_bytes as u64)
            {
                return Err(format!("the document is larger than {max_bytes} bytes"));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
                if body.len() + chunk.len() > max_bytes {
                    return Err(format!("the document is larger than {max_bytes} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    }

    fn source(&self) -> &str {
        &self.text
    }
}

/// An error of reqwest's with its causes, which its own message leaves out.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A JWKS in a file, read again at each refresh (a rotated file is picked up).
pub(crate) struct FileFetch {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    pub(crate) max_bytes: usize,
}

impl Fetch for FileFetch {
    fn fetch(&self) -> BoxFuture<Result<Vec<u8>, String>> {
        let path = self.path.clone();
        let max_bytes = self.max_bytes;
        Box::pin(async move {
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if bytes.len() > max_bytes {
                return Err(format!("the document is larger than {max_bytes} bytes"));
            }
            Ok(bytes)
        })
    }

    fn source(&self) -> &str {
        &self.text
    }
}

/// One verification key.
#[derive(Clone)]
pub(crate) struct Key {
    /// The `kid` it is published under.
    pub(crate) kid: Option<String>,
    /// The algorithm it is published for, if the set says.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: Arc<DecodingKey>,
}

impl Key {
    /// Whether this key may verify a token signed with `alg` under `kid`.
    pub(crate) fn fits(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        let kid_fits = match kid {
            Some(kid) => self.kid.as_deref() == Some(kid),
            None => true,
        };
        kid_fits && self.alg.is_none_or(|own| own == alg) && self.key.family() == alg.family()
    }
}

/// The length of an Ed25519 public key.
const ED25519_KEY_BYTES: usize = 32;

/// The verification keys in a JWKS document: the public keys meant for signatures, each with
/// the algorithm it is published for. Symmetric (`oct`) keys have no place in a published set
/// and are left out, and so are keys for encryption and keys this build cannot use.
pub(crate) fn parse_jwks(document: &[u8]) -> Result<Vec<Key>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(document).map_err(|e| format!("not a JSON document: {e}"))?;
    let entries = value
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("no `keys` array in it")?;
    let mut keys = Vec::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
            || matches!(
                jwk.algorithm,
                AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
            )
        {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            Some(alg) => match Algorithm::try_from(alg) {
                Ok(alg) => Some(alg),
                // Published for something other than a signature we verify.
                Err(_) => continue,
            },
            None => None,
        };
        // An Ed25519 key is 32 bytes: jsonwebtoken takes the first 32 of whatever `x` holds
        // and panics at the first verification when there are fewer.
        if let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm
            && URL_SAFE_NO_PAD.decode(&okp.x).map(|x| x.len()) != Ok(ED25519_KEY_BYTES)
        {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key: Arc::new(key),
        });
    }
    if keys.is_empty() {
        return Err("no signature key this gateway can use in it".to_owned());
    }
    Ok(keys)
}

/// How often a key set is fetched, and how big and slow a fetch may be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// Between background refreshes.
    pub(crate) refresh: Duration,
    /// The least time between two fetches, whatever asks for them.
    pub(crate) min_refresh: Duration,
}

/// A provider's keys: fixed (a shared secret) or fetched and cached.
pub(crate) enum KeySource {
    Fixed(Arc<Vec<Key>>),
    Fetched(Arc<KeySet>),
}

/// A cached key set with its background refresh.
pub(crate) struct KeySet {
    fetch: Box<dyn Fetch>,
    /// Whose keys, for logs.
    issuer: String,
    timing: Timing,
    /// The keys of the last successful fetch; `None` before the first.
    keys: RwLock<Option<Arc<Vec<Key>>>>,
    /// Fetches finished (or failed) so far: a caller who saw one number and finds another
    /// knows a fetch happened meanwhile.
    attempts: AtomicU64,
    /// Held by the one fetch in flight; holds when the last one started.
    flight: tokio::sync::Mutex<Option<Instant>>,
    /// Whether the background refresh runs.
    started: AtomicBool,
    /// Whether the last fetch failed (a streak of failures is logged once).
    failing: AtomicBool,
}

impl KeySet {
    pub(crate) fn new(fetch: Box<dyn Fetch>, issuer: String, timing: Timing) -> Arc<KeySet> {
        Arc::new(KeySet {
            fetch,
            issuer,
            timing,
            keys: RwLock::new(None),
            attempts: AtomicU64::new(0),
            flight: tokio::sync::Mutex::new(None),
            started: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        })
    }

    /// How many fetches have ended; see [`KeySet::refresh`].
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// The keys cached now.
    pub(crate) fn cached(&self) -> Option<Arc<Vec<Key>>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The keys, fetched first if nothing is cached yet; starts the background refresh.
    /// `None` when no fetch has succeeded.
    pub(crate) async fn keys(self: &Arc<Self>) -> Option<Arc<Vec<Key>>> {
        self.start();
        let seen = self.attempts();
        if let Some(keys) = self.cached() {
            return Some(keys);
        }
        self.refresh(seen).await;
        self.cached()
    }

    /// Fetches the set again, unless a fetch ended since the caller saw `seen` attempts (its
    /// keys are as new as any), or the last one started less than the minimum interval ago.
    /// A fetch in flight is waited for, not doubled. The fetch runs on a task of its own, so a
    /// caller that goes away does not cut it short.
    pub(crate) async fn refresh(self: &Arc<Self>, seen: u64) {
        let this = Arc::clone(self);
        let task = tokio::spawn(async move { this.refresh_once(seen).await });
        // A fetch cannot panic short of a bug; either way the cache is what it is.
        let _ = task.await;
    }

    async fn refresh_once(&self, seen: u64) {
        let mut last = self.flight.lock().await;
        if self.attempts() != seen {
            return;
        }
        if let Some(started) = *last
            && started.elapsed() < self.timing.min_refresh
        {
            return;
        }
        *last = Some(Instant::now());
        self.fetch_now().await;
    }

    async fn fetch_now(&self) {
        let fetched = self.fetch.fetch().await.and_then(|doc| parse_jwks(&doc));
        match fetched {
            Ok(keys) => {
                let count = keys.len();
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(keys));
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        issuer = %self.issuer,
                        source = %self.fetch.source(),
                        keys = count,
                        "the JWKS could be fetched again; its keys are in use"
                    );
                } else {
                    tracing::debug!(issuer = %self.issuer, keys = count, "JWKS fetched");
                }
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    let cached = self.cached().map_or(0, |keys| keys.len());
                    tracing::warn!(
                        issuer = %self.issuer,
                        source = %self.fetch.source(),
                        %error,
                        cached_keys = cached,
                        "could not fetch the JWKS; the keys cached before stay in use until a fetch succeeds"
                    );
                } else {
                    tracing::debug!(issuer = %self.issuer, %error, "the JWKS fetch failed again");
                }
            }
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    /// Starts the background refresh, once, on the runtime of the first request. It stops by
    /// itself when the key set is dropped (a reloaded config builds a new one).
    fn start(self: &Arc<Self>) {
        // A load first: every request passes here, and only the first needs to write.
        if self.started.load(Ordering::Acquire) || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<KeySet> = Arc::downgrade(self);
        let every = self.timing.refresh;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(set) = weak.upgrade() else {
                    return;
                };
                let seen = set.attempts();
                set.refresh_once(seen).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Serves whatever document it holds (or fails), counting fetches, each taking `delay`.
    struct Counted {
        fetches: Arc<AtomicUsize>,
        document: Arc<Mutex<Result<Vec<u8>, String>>>,
        delay: Duration,
    }

    impl Fetch for Counted {
        fn fetch(&self) -> BoxFuture<Result<Vec<u8>, String>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let document = self.document.lock().expect("lock").clone();
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                document
            })
        }

        fn source(&self) -> &str {
            "test"
        }
    }

    fn jwks(kid: &str) -> Vec<u8> {
        // An Ed25519 public key (any 32 bytes make a key this parser accepts).
        serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn ed25519_keys_of_any_other_length_are_left_out() {
        // Found by the `jwks` fuzz target: an `x` shorter than 32 bytes made a key that
        // panicked in jsonwebtoken at the first EdDSA verification.
        let key = |x: &[u8]| {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": x.len().to_string(),
                "x": URL_SAFE_NO_PAD.encode(x)})
        };
        let document = serde_json::json!({"keys": [key(&[7; 29]), key(&[7; 33]), key(&[])]});
        assert!(parse_jwks(document.to_string().as_bytes()).is_err());

        let document = serde_json::json!({"keys": [key(&[7; 29]), key(&[7; 32])]});
        let keys = parse_jwks(document.to_string().as_bytes()).expect("one usable key");
        assert_eq!(kids(&keys), ["32"]);
        let token = "eyJhbGciOiJFZERTQSJ9.e30.AAAA";
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        for key in &keys {
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation).is_err()
            );
        }
    }

    struct Fixture {
        set: Arc<KeySet>,
        fetches: Arc<AtomicUsize>,
        document: Arc<Mutex<Result<Vec<u8>, String>>>,
    }

    fn fixture(refresh: Duration, min_refresh: Duration) -> Fixture {
        let fetches = Arc::new(AtomicUsize::new(0));
        let document = Arc::new(Mutex::new(Ok(jwks("one"))));
        let fetch = Counted {
            fetches: Arc::clone(&fetches),
            document: Arc::clone(&document),
            delay: Duration::from_millis(50),
        };
        let set = KeySet::new(
            Box::new(fetch),
            "issuer".to_owned(),
            Timing {
                refresh,
                min_refresh,
            },
        );
        Fixture {
            set,
            fetches,
            document,
        }
    }

    fn kids(keys: &[Key]) -> Vec<&str> {
        keys.iter().filter_map(|key| key.kid.as_deref()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn many_first_requests_make_one_fetch() {
        let f = fixture(Duration::from_secs(300), Duration::from_secs(30));
        let waiting: Vec<_> = (0..100)
            .map(|_| {
                let set = Arc::clone(&f.set);
                tokio::spawn(async move { set.keys().await.map(|keys| keys.len()) })
            })
            .collect();
        for task in waiting {
            assert_eq!(task.await.expect("joined"), Some(1));
        }
        assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_keys_refresh_once_per_minimum_interval() {
        let f = fixture(Duration::from_secs(300), Duration::from_secs(30));
        f.set.keys().await.expect("keys");
        assert_eq!(f.fetches.load(Ordering::SeqCst), 1);

        // Right after a fetch, an unknown kid does not fetch again.
        let seen = f.set.attempts();
        f.set.refresh(seen).await;
        assert_eq!(f.fetches.load(Ordering::SeqCst), 1);

        // Past the interval, many callers who saw the same set share one fetch.
        tokio::time::advance(Duration::from_secs(31)).await;
        *f.document.lock().expect("lock") = Ok(jwks("two"));
        let seen = f.set.attempts();
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let set = Arc::clone(&f.set);
                tokio::spawn(async move { set.refresh(seen).await })
            })
            .collect();
        for caller in callers {
            caller.await.expect("joined");
        }
        assert_eq!(f.fetches.load(Ordering::SeqCst), 2);
        assert_eq!(kids(&f.set.cached().expect("keys")), ["two"]);
    }

    /// Counts the events logged at each level (on this thread: the tests' runtimes are
    /// single-threaded).
    #[derive(Default)]
    struct Levels {
        warn: AtomicUsize,
        info: AtomicUsize,
    }

    struct Counting(Arc<Levels>);

    impl tracing::Subscriber for Counting {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let level = *event.metadata().level();
            if level == tracing::Level::WARN {
                self.0.warn.fetch_add(1, Ordering::SeqCst);
            } else if level == tracing::Level::INFO {
                self.0.info.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_source_keeps_the_cached_keys_and_warns_once() {
        let levels = Arc::new(Levels::default());
        let _logging = tracing::subscriber::set_default(Counting(Arc::clone(&levels)));
        let f = fixture(Duration::from_secs(60), Duration::from_secs(1));
        f.set.keys().await.expect("keys");
        *f.document.lock().expect("lock") = Err("connection refused".to_owned());
        // Three background refreshes fail; the keys stay, and one warning says so.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(61)).await;
        }
        assert_eq!(f.fetches.load(Ordering::SeqCst), 4);
        assert_eq!(kids(&f.set.cached().expect("keys")), ["one"]);
        assert!(f.set.failing.load(Ordering::SeqCst));
        assert_eq!(levels.warn.load(Ordering::SeqCst), 1, "once per streak");
        // And once it answers again, its new keys come in, and that is said once too.
        *f.document.lock().expect("lock") = Ok(jwks("two"));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(kids(&f.set.cached().expect("keys")), ["two"]);
        assert!(!f.set.failing.load(Ordering::SeqCst));
        assert_eq!(levels.info.load(Ordering::SeqCst), 1);
        // A new streak is a new warning.
        *f.document.lock().expect("lock") = Err("connection refused".to_owned());
        tokio::time::sleep(Duration::from_secs(122)).await;
        assert_eq!(levels.warn.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_jwks_file_larger_than_the_limit_is_refused() {
        let path =
            std::env::temp_dir().join(format!("protogate-jwks-limit-{}.json", std::process::id()));
        std::fs::write(&path, jwks("one")).expect("written");
        let fetch = |max_bytes| FileFetch {
            path: path.clone(),
            text: "test".to_owned(),
            max_bytes,
        };
        let small = fetch(16).fetch().await;
        let large = fetch(1 << 20).fetch().await;
        let _ = std::fs::remove_file(&path);
        assert!(
            small
                .expect_err("too large")
                .contains("larger than 16 bytes")
        );
        assert!(parse_jwks(&large.expect("read")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_background_refresh_stops_with_its_key_set() {
        let f = fixture(Duration::from_secs(10), Duration::from_secs(1));
        f.set.keys().await.expect("keys");
        drop(f.set);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn documents_keep_only_usable_signature_keys() {
        let document = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
             "kid": "enc", "use": "enc"},
            {"kty": "XYZ", "kid": "strange"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
             "kid": "good", "alg": "EdDSA"}
        ]});
        let keys = parse_jwks(document.to_string().as_bytes()).expect("one usable key");
        assert_eq!(kids(&keys), ["good"]);
        assert!(keys[0].fits(Some("good"), Algorithm::EdDSA));
        assert!(!keys[0].fits(Some("good"), Algorithm::RS256));
        assert!(!keys[0].fits(Some("other"), Algorithm::EdDSA));

        for (bad, problem) in [
            (&b"nope"[..], "not a JSON document"),
            (br#"{"kid": 1}"#, "no `keys` array"),
            (
                br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
                "no signature key",
            ),
        ] {
            let error = parse_jwks(bad).err().expect("refused");
            assert!(error.contains(problem), "{error}");
        }
    }
}

//! Buckets shared by every replica through a Redis server: one Lua script per decision, run
//! atomically by Redis on its own clock, over one multiplexed connection.
//!
//! The script is the algorithm of `gcra.rs`, with `now` taken from Redis's `TIME`, so replicas
//! whose clocks disagree still agree on every bucket. It is sent by hash (`EVALSHA`); when
//! Redis's script cache does not have it (a fresh or restarted server), the same call goes again
//! with the script's text (`EVAL`), which caches it for the calls after.
//!
//! The connection (the `redis` crate's `ConnectionManager`: one multiplexed connection that
//! reconnects by itself) lives on a runtime of its own, on one thread: every worker of the stock
//! gateway runs its own single-threaded runtime, and a connection on one of them would stall when
//! that worker is busy. Each decision is bounded by the connect and command timeouts together;
//! once one fails, the next `retry_interval` of decisions does not wait for Redis at all (the
//! limiter decides them locally, or refuses them), and then Redis is tried again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::RateLimitStats;
use super::gcra::{Decision, Gcra};

/// The script: KEYS[1] is the bucket, ARGV[1] the emission interval and ARGV[2] the tolerance,
/// in microseconds. Returns `{allowed, remaining, wait}` (`wait` in microseconds), as
/// `Gcra::decide` does. The TAT is written with `%d` (Lua's `tostring` would round it to 14
/// digits), and expires when the bucket is full again.
const SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > tolerance then
  return {0, 0, ahead - tolerance}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000))
local slack = tolerance - ahead
local remaining = math.floor(slack / interval)
return {1, remaining, (remaining + 1) * interval - slack}
";

/// Where rate limits are shared: a Redis server every replica talks to, and how patiently.
///
/// ```
/// use std::time::Duration;
///
/// let redis = protogate::RedisLimits::new("redis://127.0.0.1:6379")?
///     .connect_timeout(Duration::from_millis(500))
///     .command_timeout(Duration::from_millis(100));
/// # Ok::<(), protogate::RateLimitError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisLimits {
    client: redis::Client,
    connect_timeout: Duration,
    command_timeout: Duration,
    key_prefix: String,
    retry_interval: Duration,
    log_interval: Duration,
}

impl RedisLimits {
    /// The server at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://` for TLS
    /// when the `redis` crate is built with it). Nothing connects until a request needs it.
    pub fn new(url: &str) -> Result<RedisLimits, super::RateLimitError> {
        let client = redis::Client::open(url).map_err(|error| super::RateLimitError::RedisUrl {
            // The URL may carry a password: the error names what is wrong, not the URL.
            problem: error.to_string(),
        })?;
        Ok(RedisLimits {
            client,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(250),
            key_prefix: "protogate:rate:".to_owned(),
            retry_interval: Duration::from_secs(1),
            log_interval: Duration::from_secs(30),
        })
    }

    /// How long connecting may take (1 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one decision may wait for Redis's answer (250 ms by default). A request waits
    /// at most the connect and command timeouts together.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// What every bucket's key starts with (`protogate:rate:` by default); the limit's name
    /// and the client key follow.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// After a failure, how long decisions are made without Redis before it is tried again
    /// (1 s by default).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// While Redis stays unreachable, how often that is logged again (30 s by default).
    pub fn log_interval(mut self, interval: Duration) -> Self {
        self.log_interval = interval;
        self
    }

    /// Where the server is, without credentials: `host:port`.
    pub fn address(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }
}

/// The runtime the connection lives on, and the thread that drives it until dropped.
struct Background {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Background {
    fn start() -> std::io::Result<Background> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("protogate-redis".to_owned())
            .spawn(move || {
                // Runs until the store is dropped (the sender with it); the runtime, its tasks
                // and the connection are dropped here, outside any other runtime.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Background {
            handle,
            _stop: stop,
        })
    }
}

/// The shared buckets, and what is known of Redis's health.
pub(crate) struct RedisStore {
    settings: RedisLimits,
    address: String,
    hash: String,
    background: OnceLock<Result<Background, String>>,
    connection: OnceLock<Result<ConnectionManager, String>>,
    epoch: Instant,
    /// Microseconds after `epoch` before which Redis is not tried.
    down_until: AtomicU64,
    /// Whether the last attempt worked (true until one fails).
    up: AtomicBool,
    /// When the last warning was logged.
    warned_at: Mutex<Option<Instant>>,
    stats: Arc<RateLimitStats>,
}

impl RedisStore {
    pub fn new(settings: RedisLimits, stats: Arc<RateLimitStats>) -> RedisStore {
        RedisStore {
            address: settings.address(),
            hash: redis::Script::new(SCRIPT).get_hash().to_owned(),
            settings,
            background: OnceLock::new(),
            connection: OnceLock::new(),
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            up: AtomicBool::new(true),
            warned_at: Mutex::new(None),
            stats,
        }
    }

    /// The key of bucket `bucket` (a limit's name and a client key).
    pub fn key(&self, bucket: &str) -> String {
        format!("{}{bucket}", self.settings.key_prefix)
    }

    fn micros_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Decides a request on the shared bucket `key`; `None` when Redis cannot (unreachable,
    /// too slow, or failed recently and not to be tried yet).
    pub async fn decide(self: &Arc<Self>, key: String, gcra: Gcra) -> Option<Decision> {
        if self.micros_since_epoch() < self.down_until.load(Ordering::Relaxed) {
            return None;
        }
        let background = match self.background.get_or_init(|| {
            Background::start().map_err(|e| format!("cannot start its thread: {e}"))
        }) {
            Ok(background) => background,
            Err(error) => {
                self.failed(error);
                return None;
            }
        };
        let store = Arc::clone(self);
        let outcome = background
            .handle
            .spawn(async move { store.run(key, gcra).await })
            .await;
        match outcome {
            Ok(Ok(decision)) => {
                self.answered();
                Some(decision)
            }
            Ok(Err(error)) => {
                self.failed(&error);
                None
            }
            Err(error) => {
                self.failed(&error.to_string());
                None
            }
        }
    }

    /// One decision, on the background runtime.
    async fn run(&self, key: String, gcra: Gcra) -> Result<Decision, String> {
        let mut connection = self
            .connection
            .get_or_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.settings.connect_timeout))
                    .set_response_timeout(Some(self.settings.command_timeout))
                    // One attempt per reconnection: `retry_interval` paces the next ones.
                    .set_number_of_retries(0);
                ConnectionManager::new_lazy_with_config(self.settings.client.clone(), config)
                    .map_err(|e| e.to_string())
            })
            .clone()?;
        let limit = self.settings.connect_timeout + self.settings.command_timeout;
        let reply = tokio::time::timeout(limit, self.evaluate(&mut connection, &key, gcra))
            .await
            .map_err(|_| format!("no answer within {limit:?}"))?
            .map_err(|e| e.to_string())?;
        let [allowed, remaining, wait] = reply[..] else {
            return Err(format!("the script answered {reply:?}"));
        };
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            wait: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
        })
    }

    /// `EVALSHA`, and `EVAL` when Redis does not have the script.
    async fn evaluate(
        &self,
        connection: &mut ConnectionManager,
        key: &str,
        gcra: Gcra,
    ) -> redis::RedisResult<Vec<i64>> {
        let by_hash = redis::cmd("EVALSHA")
            .arg(&self.hash)
            .arg(1)
            .arg(key)
            .arg(gcra.interval)
            .arg(gcra.tolerance)
            .query_async(connection)
            .await;
        match by_hash {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                redis::cmd("EVAL")
                    .arg(SCRIPT)
                    .arg(1)
                    .arg(key)
                    .arg(gcra.interval)
                    .arg(gcra.tolerance)
                    .query_async(connection)
                    .await
            }
            other => other,
        }
    }

    fn answered(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                redis = %self.address,
                "rate limits: Redis answers again; limits are shared again"
            );
        }
    }

    fn failed(&self, error: &str) {
        self.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
        let retry = u64::try_from(self.settings.retry_interval.as_micros()).unwrap_or(u64::MAX);
        self.down_until.store(
            self.micros_since_epoch().saturating_add(retry),
            Ordering::Relaxed,
        );
        let was_up = self.up.swap(false, Ordering::Relaxed);
        let mut warned_at = self
            .warned_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = warned_at.is_none_or(|at| at.elapsed() >= self.settings.log_interval);
        if was_up || due {
            *warned_at = Some(Instant::now());
            tracing::warn!(
                redis = %self.address,
                %error,
                failures = self.stats.redis_errors(),
                "rate limits: Redis is unreachable; deciding without it until it answers"
            );
        }
    }

    /// Whether the last attempt to reach Redis worked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts the warnings logged on the thread it is the default of.
    struct Warnings(Arc<AtomicUsize>);

    impl tracing::Subscriber for Warnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a port")
            .port()
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_counted_every_time_and_logged_once_per_interval() {
        let settings = RedisLimits::new(&format!("redis://127.0.0.1:{}", closed_port()))
            .expect("URL")
            .connect_timeout(Duration::from_millis(200))
            .retry_interval(Duration::ZERO)
            .log_interval(Duration::from_secs(3600));
        let stats = Arc::new(RateLimitStats::default());
        let store = Arc::new(RedisStore::new(settings, Arc::clone(&stats)));
        let warnings = Arc::new(AtomicUsize::new(0));
        let _default = tracing::subscriber::set_default(Warnings(Arc::clone(&warnings)));
        let gcra = Gcra::new(10, Duration::from_secs(1), 10);
        for attempt in 1..=5 {
            let started = Instant::now();
            assert_eq!(store.decide(store.key("k"), gcra).await, None);
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(stats.redis_errors(), attempt);
        }
        assert!(!store.is_up());
        assert_eq!(warnings.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn after_a_failure_redis_is_not_tried_until_the_retry_interval_passes() {
        let settings = RedisLimits::new(&format!("redis://127.0.0.1:{}", closed_port()))
            .expect("URL")
            .retry_interval(Duration::from_secs(3600));
        let stats = Arc::new(RateLimitStats::default());
        let store = Arc::new(RedisStore::new(settings, Arc::clone(&stats)));
        let gcra = Gcra::new(10, Duration::from_secs(1), 10);
        assert_eq!(store.decide(store.key("k"), gcra).await, None);
        assert_eq!(store.decide(store.key("k"), gcra).await, None);
        assert_eq!(stats.redis_errors(), 1, "the second decision did not try");
    }
}

//! The stock gateway's server: an acceptor hands connections in turn to worker threads, each a
//! single-threaded tokio runtime with its own router and its own upstream connections.
//!
//! A request is read, transcoded, sent upstream and answered on one thread: no task moves between
//! threads and no wake-up crosses one. On `bench/run` this takes less CPU per request than one
//! work-stealing runtime for the whole process (`bench/RESULTS.md` has the figures); Envoy runs
//! its workers the same way.
//!
//! What a client cannot do to it:
//! - hold more than [`Options::max_connections`] connections open between all its clients: past
//!   the limit a new connection is answered `503` (a google.rpc.Status, `UNAVAILABLE`, with
//!   `Retry-After`) and closed, and past a few hundred such refusals at once it is closed unread;
//! - keep a connection that never sends a request: it is closed once
//!   [`Options::header_read_timeout`] has passed without one, whichever protocol it would
//!   have spoken (HTTP/1's own header timeout only starts once the bytes say HTTP/1);
//! - keep a dead HTTP/2 connection: PINGs go out on one that is quiet, and it is closed when
//!   they go unanswered;
//! - stop reading what it is sent: a write that waits [`Options::send_timeout`] for the client
//!   to take data closes the connection (see [`stall`]);
//! - reset HTTP/2 streams as fast as it opens them (rapid reset): a request reset as it came
//!   never reaches the router, and a connection that resets most of its requests before their
//!   answer is closed (see [`resets`]).

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use futures_util::future::Either;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt as _;

use preface::{Protocol, Sniffed};
use resets::Resets;
use stall::SendTimeout;

mod preface;
mod resets;
mod stall;

/// Why the server could not start or stopped.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Builds a worker's router. It runs on that worker's runtime, where the upstream connections it
/// makes will run.
pub type MakeApp = dyn Fn() -> Result<Router, Error> + Send + Sync;

/// An accepted connection on its way to a worker, out of the acceptor's runtime.
struct Accepted {
    stream: std::net::TcpStream,
    remote: SocketAddr,
    /// The TLS it is to be served with (the handshake is the worker's).
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Its place under the connection limit, or the refusal it is to be answered with.
    admission: Admission,
}

/// Whether a connection is served, and what it holds meanwhile.
enum Admission {
    /// Served; the slot frees its place under the limit when the connection ends.
    Served(Slot),
    /// Answered `503` and closed; the slot frees its place among the refusals under way.
    Refused(Slot),
}

/// A place in a count of connections, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The count of open connections against the limit, and of refusals under way.
struct Admissions {
    limit: usize,
    open: Arc<AtomicUsize>,
    refusing: Arc<AtomicUsize>,
    /// Whether the last connection was refused (the log says when refusals start and stop).
    full: AtomicBool,
}

impl Admissions {
    /// Refusals answered at once, at most: each one costs a socket and a little work, so that
    /// past this, a flood of connections is closed unread.
    const MAX_REFUSING: usize = 256;

    fn new(limit: usize) -> Self {
        Admissions {
            limit,
            open: Arc::default(),
            refusing: Arc::default(),
            full: false.into(),
        }
    }

    /// The place of a new connection, or `None` when it is to be closed unread.
    fn admit(&self) -> Option<Admission> {
        if self.open.fetch_add(1, Ordering::AcqRel) < self.limit {
            if self.full.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    limit = self.limit,
                    "below the connection limit again: new connections are served"
                );
            }
            return Some(Admission::Served(Slot(Arc::clone(&self.open))));
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = self.limit,
                "the connection limit is reached: new connections are refused (503) until some close"
            );
        }
        if self.refusing.fetch_add(1, Ordering::AcqRel) < Self::MAX_REFUSING {
            return Some(Admission::Refused(Slot(Arc::clone(&self.refusing))));
        }
        self.refusing.fetch_sub(1, Ordering::AcqRel);
        None
    }
}

/// A public listener: a bound socket, cleartext or TLS.
pub struct Listener {
    /// The socket, bound.
    pub socket: std::net::TcpListener,
    /// Its TLS, if it has one.
    pub tls: Option<crate::listen::Tls>,
}

impl From<std::net::TcpListener> for Listener {
    fn from(socket: std::net::TcpListener) -> Self {
        Listener { socket, tls: None }
    }
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads.
    pub workers: NonZeroUsize,
    /// How long an HTTP/1 client may take to send a request's headers, and how long a kept-alive
    /// connection waits for the next request, before the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a write to a client may wait for the client to take data before the
    /// connection is closed: a client that stops reading a response or a stream is let go.
    pub send_timeout: Duration,
    /// The app's generation, when it can change: each time it is bumped, every worker builds
    /// its router again before its next request. Requests under way finish on the router they
    /// started with; no connection is dropped.
    pub generation: Option<Arc<AtomicU64>>,
    /// The most connections open at once, every listener and worker counted together. Past
    /// it, a new connection is answered `503` and closed.
    pub max_connections: usize,
    /// Where the workers' and the acceptor's runtimes are listed as they start, for the count
    /// of tasks alive on them (`protogate_runtime_alive_tasks`).
    pub runtimes: Runtimes,
}

/// The tokio runtimes of a running gateway, listed as they start: the tasks alive on all of
/// them at once are what `protogate_runtime_alive_tasks` reports. Clones share the list.
#[derive(Clone, Debug, Default)]
pub struct Runtimes(Arc<Mutex<Vec<tokio::runtime::Handle>>>);

impl Runtimes {
    /// Lists the runtime of `handle`.
    pub fn add(&self, handle: tokio::runtime::Handle) {
        self.lock().push(handle);
    }

    /// The tasks alive now on every runtime listed (spawned and not yet finished).
    pub fn alive_tasks(&self) -> usize {
        self.lock()
            .iter()
            .map(|handle| handle.metrics().num_alive_tasks())
            .sum()
    }

    /// The list, locked; a poisoned lock still holds a valid list.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<tokio::runtime::Handle>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Options {
    /// How long headers may take unless set otherwise: as long as hyper's own default.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a write may wait for the client unless set otherwise (nginx's `send_timeout`
    /// has the same default).
    pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
    /// Connections open at once unless set otherwise. Each takes a file descriptor and some
    /// memory (`bench/run held` and `bench/run attacks` measured about 6 KiB for an idle one and
    /// 11–15 KiB for one holding an event stream or a WebSocket open); raise it (with the
    /// process's file limit) for many long-lived streams.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// How often a quiet HTTP/2 connection is PINGed, and how long the answer may take.
    const HTTP2_KEEPALIVE: (Duration, Duration) =
        (Duration::from_secs(60), Duration::from_secs(20));
    /// How long a refused connection has to read its `503` before it is closed.
    const REFUSAL_GRACE: Duration = Duration::from_secs(1);
}

/// Serves `listeners` on `options.workers` threads until `shutdown` resolves, then lets open
/// connections finish. Blocks the calling thread, which accepts connections. Calls `started`
/// once every worker has its router; returns once every worker has stopped, or at once if a
/// router cannot be built.
pub fn run(
    listeners: Vec<Listener>,
    options: Options,
    app: Arc<MakeApp>,
    started: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    for listener in &listeners {
        listener.socket.set_nonblocking(true)?;
    }
    let (ready, answers) = std::sync::mpsc::channel();
    let workers = options.workers.get();
    let mut queues = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let (queue, connections) = mpsc::unbounded_channel();
        let worker = Worker {
            app: Arc::clone(&app),
            connections,
            header_read_timeout: options.header_read_timeout,
            send_timeout: options.send_timeout,
            max_connections: options.max_connections,
            generation: options.generation.clone().unwrap_or_default(),
            runtimes: options.runtimes.clone(),
            ready: ready.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("protogate-worker-{index}"))
                .spawn(move || worker.run())?,
        );
        queues.push(queue);
    }
    drop(ready);
    // Every worker answers once: with its router built, or with why it could not be.
    let mut outcome = answers.iter().try_for_each(|answer| answer);

    if outcome.is_ok() {
        started();
        let admissions = Admissions::new(options.max_connections);
        outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::from)
            .and_then(|acceptor| {
                options.runtimes.add(acceptor.handle().clone());
                acceptor.block_on(accept(listeners, &queues, &admissions, shutdown))
            });
    }
    // With their queues closed, workers serve what was dealt to them, finish the open
    // connections, and end.
    drop(queues);
    for thread in threads {
        if thread.join().is_err() {
            outcome = outcome.and(Err("a worker thread panicked".into()));
        }
    }
    outcome
}

/// Accepts connections on every listener and deals them to the workers in turn, until
/// `shutdown`; certificates of TLS listeners are kept in step with their files meanwhile.
async fn accept(
    listeners: Vec<Listener>,
    queues: &[mpsc::UnboundedSender<Accepted>],
    admissions: &Admissions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let turn = AtomicUsize::new(0);
    let mut loops = Vec::with_capacity(listeners.len());
    for listener in listeners {
        if let Some(tls) = &listener.tls {
            tokio::spawn(tls.clone().watch());
        }
        let socket = tokio::net::TcpListener::from_std(listener.socket)?;
        let tls = listener.tls.map(|tls| tls.acceptor().clone());
        loops.push(accept_on(socket, tls, queues, admissions, &turn));
    }
    tokio::select! {
        () = shutdown => Ok(()),
        stopped = futures_util::future::try_join_all(loops) => stopped.map(|_| ()),
    }
}

/// Accepts connections on one listener.
async fn accept_on(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    queues: &[mpsc::UnboundedSender<Accepted>],
    admissions: &Admissions,
    turn: &AtomicUsize,
) -> Result<(), Error> {
    loop {
        let accepted = listener.accept().await;
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if lost_before_accepted(&error) => continue,
            // Out of file descriptors or the like: wait for some to close rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Past the limit and past the refusals it answers, closed unread.
        let Some(admission) = admissions.admit() else {
            continue;
        };
        // Leaves this runtime's reactor so the worker can register it with its own.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let turn = turn.fetch_add(1, Ordering::Relaxed) % queues.len();
        let accepted = Accepted {
            stream,
            remote,
            tls: tls.clone(),
            admission,
        };
        if queues[turn].send(accepted).is_err() {
            return Err(format!("worker {turn} stopped").into());
        }
    }
}

/// An accept error that concerns one connection only.
fn lost_before_accepted(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// One worker thread, before it starts.
struct Worker {
    app: Arc<MakeApp>,
    /// The connections the acceptor deals to this worker.
    connections: mpsc::UnboundedReceiver<Accepted>,
    header_read_timeout: Duration,
    send_timeout: Duration,
    /// The connection limit, which refusals name.
    max_connections: usize,
    /// The app's generation (see [`Options::generation`]).
    generation: Arc<AtomicU64>,
    /// Where its runtime is listed once it starts.
    runtimes: Runtimes,
    /// Where the worker says whether it is ready: failing to start is its only error.
    ready: std::sync::mpsc::Sender<Result<(), Error>>,
}

impl Worker {
    fn run(self) {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                self.runtimes.add(runtime.handle().clone());
                runtime.block_on(self.serve())
            }
            Err(error) => {
                let _ = self.ready.send(Err(error.into()));
            }
        }
    }

    /// Builds the router, then serves every connection dealt to this worker until its queue
    /// closes, and waits for the open ones to finish.
    async fn serve(self) {
        let Worker {
            app,
            mut connections,
            header_read_timeout,
            send_timeout,
            max_connections,
            generation,
            runtimes: _,
            ready,
        } = self;
        let built = generation.load(Ordering::Acquire);
        let router = match app() {
            Ok(router) => router,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let current = Arc::new(Current {
            app,
            generation,
            router: Mutex::new((built, router)),
        });
        let _ = ready.send(Ok(()));
        drop(ready);

        let protocols = Arc::new(Protocols::new(header_read_timeout, send_timeout));
        let mut refusals = auto::Builder::new(TokioExecutor::new());
        refusals.http1().keep_alive(false);
        let (drain, _) = watch::channel(false);
        while let Some(accepted) = connections.recv().await {
            let Accepted {
                stream,
                remote,
                tls,
                admission,
            } = accepted;
            // A connection this runtime cannot register is closed by dropping it.
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            // Answers and stream messages go out as soon as they are written.
            let _ = stream.set_nodelay(true);
            bound_unsent(&stream);
            let slot = match admission {
                Admission::Served(slot) => slot,
                Admission::Refused(slot) => {
                    let refusals = refusals.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        match tls {
                            None => refuse(&refusals, stream, max_connections).await,
                            Some(acceptor) => {
                                let handshake = acceptor.accept(stream);
                                if let Ok(Ok(stream)) =
                                    tokio::time::timeout(Options::REFUSAL_GRACE, handshake).await
                                {
                                    refuse(&refusals, stream, max_connections).await;
                                }
                            }
                        }
                    });
                    continue;
                }
            };
            let current = Arc::clone(&current);
            // Whether a request has come: a connection without one is closed when its time
            // for headers is up.
            let asked = Arc::new(AtomicBool::new(false));
            // The connection's service; on HTTP/2, each request is counted against the
            // connection's resets and waits one turn before it starts (see `resets`). That
            // future is boxed: hyper keeps room for a request's future for as long as an HTTP/1
            // connection lives, and the router's own future is all HTTP/1 needs.
            let app = {
                let asked = Arc::clone(&asked);
                move |resets: Option<Arc<Resets>>| {
                    TowerToHyperService::new(tower::service_fn(
                        move |mut request: hyper::Request<hyper::body::Incoming>| {
                            asked.store(true, Ordering::Relaxed);
                            request.extensions_mut().insert(ConnectInfo(remote));
                            let served = current.router().oneshot(request);
                            let Some(resets) = &resets else {
                                return Either::Left(served);
                            };
                            let opened = resets.opened();
                            Either::Right(Box::pin(async move {
                                resets::one_turn().await;
                                let response = served.await;
                                opened.answered();
                                response
                            }))
                        },
                    ))
                }
            };
            let (protocols, drained) = (Arc::clone(&protocols), drain.subscribe());
            // Two kinds of task, each as large as its own connection: a cleartext one does not
            // carry the room a TLS session takes.
            match tls {
                None => {
                    tokio::spawn(async move {
                        let _slot = slot;
                        let connection = serve_connection(stream, remote, app, &protocols, drained);
                        until_silent(connection, &asked, header_read_timeout).await;
                    });
                }
                // The handshake runs on the connection's own task, then the same serving.
                Some(acceptor) => {
                    let mut drained = drained;
                    tokio::spawn(async move {
                        let _slot = slot;
                        // A client gets as long for its handshake as for its headers.
                        let handshake =
                            tokio::time::timeout(header_read_timeout, acceptor.accept(stream));
                        let stream = tokio::select! {
                            accepted = handshake => match accepted {
                                Ok(Ok(stream)) => stream,
                                _ => return,
                            },
                            _ = drained.wait_for(|draining| *draining) => return,
                        };
                        let connection = serve_connection(stream, remote, app, &protocols, drained);
                        until_silent(connection, &asked, header_read_timeout).await;
                    });
                }
            }
        }
        // Every connection is asked to finish what it has started; each one's receiver goes
        // when it ends.
        drain.send_replace(true);
        drain.closed().await;
    }
}

/// What a client socket may hold that the client has not taken yet, beyond what is on its way
/// (Linux's `TCP_NOTSENT_LOWAT`).
///
/// Without it, the kernel grows a socket's send buffer up to megabytes, and the gateway keeps
/// writing to it: a client that opens a long stream and stops reading had the gateway transcode
/// and queue about 4 MiB for it, 64 times the 64 KiB it read, before backpressure reached the
/// upstream. With it, writes wait once this much is unsent, while data in flight is bounded by
/// the connection's congestion window as before, so a client that reads is served at the same
/// speed.
const UNSENT_LIMIT: u32 = 128 * 1024;

/// Bounds what `stream` holds unsent at [`UNSENT_LIMIT`] (Linux and Android; elsewhere the
/// kernel's own buffer sizes apply). A socket that refuses the option is served without it.
fn bound_unsent(stream: &tokio::net::TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_LIMIT) {
        tracing::debug!(%error, "TCP_NOTSENT_LOWAT refused");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// The HTTP/1 and HTTP/2 servers of a worker's connections, and how long their writes may
/// wait for a client.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    send_timeout: Duration,
}

impl Protocols {
    fn new(header_read_timeout: Duration, send_timeout: Duration) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Options::HTTP2_KEEPALIVE.0)
            .keep_alive_timeout(Options::HTTP2_KEEPALIVE.1);
        Protocols {
            http1,
            http2,
            send_timeout,
        }
    }
}

/// Serves one connection in the protocol its first bytes tell, until it ends; once `drain`
/// turns true, it finishes what it has started and takes nothing new (one that has not said
/// which protocol it speaks yet is closed). `app` makes the connection's service, given the
/// count of its resets on HTTP/2; an HTTP/2 connection that resets too many of its requests is
/// closed the same way, with [`resets::CLOSE_GRACE`] to finish.
///
/// The connection itself is boxed: HTTP/1's and HTTP/2's are of different sizes, and a task
/// is as large as the largest thing it may hold.
async fn serve_connection<I, S>(
    io: I,
    remote: SocketAddr,
    app: impl FnOnce(Option<Arc<Resets>>) -> S,
    protocols: &Protocols,
    mut drain: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (protocol, io) = tokio::select! {
        biased;
        sniffed = Sniffed::read(io) => match sniffed {
            Ok(sniffed) => sniffed,
            Err(_) => return,
        },
        _ = drain.wait_for(|draining| *draining) => return,
    };
    let io = TokioIo::new(SendTimeout::new(io, protocols.send_timeout));
    match protocol {
        Protocol::Http1 => {
            let connection = protocols
                .http1
                .serve_connection(io, app(None))
                .with_upgrades();
            let never = std::future::pending();
            until_drained(
                Box::pin(connection),
                |c| c.graceful_shutdown(),
                drain,
                never,
            )
            .await;
        }
        Protocol::Http2 => {
            let resets = Arc::new(Resets::default());
            let connection = protocols
                .http2
                .serve_connection(io, app(Some(Arc::clone(&resets))));
            let abusive = async {
                resets.abusive().await;
                resets::report_closed(remote);
            };
            until_drained(
                Box::pin(connection),
                |c| c.graceful_shutdown(),
                drain,
                // Boxed: every connection's task is as large as the largest protocol's state.
                Box::pin(abusive),
            )
            .await;
        }
    }
}

/// Drives `connection` to its end; once `drain` turns true, `finish` asks it to finish what it
/// has started and take nothing new. Once `abusive` resolves, the same, with
/// [`resets::CLOSE_GRACE`] to finish before the connection is dropped.
async fn until_drained<C: Future>(
    mut connection: Pin<Box<C>>,
    finish: fn(Pin<&mut C>),
    mut drain: watch::Receiver<bool>,
    abusive: impl Future<Output = ()>,
) {
    // The connection first: it is what wakes the task, nearly every time.
    let grace = tokio::select! {
        biased;
        _ = connection.as_mut() => return,
        _ = drain.wait_for(|draining| *draining) => None,
        () = abusive => Some(resets::CLOSE_GRACE),
    };
    finish(connection.as_mut());
    match grace {
        None => {
            let _ = connection.await;
        }
        Some(grace) => {
            let _ = tokio::time::timeout(grace, connection).await;
        }
    }
}

/// Serves a connection to its end, or closes it when no request has come within `silence`:
/// HTTP/1's header timeout starts only once the first bytes say HTTP/1, and HTTP/2 has none,
/// so a client that connects and says nothing would otherwise hold its connection for good.
async fn until_silent(connection: impl Future, asked: &AtomicBool, silence: Duration) {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = &mut connection => return,
        () = tokio::time::sleep(silence) => {}
    }
    if asked.load(Ordering::Relaxed) {
        connection.await;
    }
}

/// Answers every request of a connection over the limit with `503` (HTTP/1 closes after it),
/// for [`Options::REFUSAL_GRACE`] at most.
async fn refuse<I>(http: &auto::Builder<TokioExecutor>, io: I, limit: usize)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let refusal = hyper::service::service_fn(move |_: hyper::Request<hyper::body::Incoming>| {
        std::future::ready(Ok::<_, std::convert::Infallible>(over_the_limit(limit)))
    });
    let connection = http.serve_connection(TokioIo::new(io), refusal);
    let _ = tokio::time::timeout(Options::REFUSAL_GRACE, connection).await;
}

/// The answer to a request on a connection over the limit: a google.rpc.Status.
fn over_the_limit(limit: usize) -> hyper::Response<axum::body::Body> {
    let status = serde_json::json!({
        "code": 14,
        "message": format!(
            "the gateway has {limit} connections open, its limit: try again shortly, or reuse an open connection"
        ),
        "details": [],
    });
    let mut response = hyper::Response::new(axum::body::Body::from(status.to_string()));
    *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// A worker's router, built again when the app's generation moves on.
struct Current {
    app: Arc<MakeApp>,
    generation: Arc<AtomicU64>,
    /// The generation the router was built for, and the router.
    router: Mutex<(u64, Router)>,
}

impl Current {
    /// The router for the next request.
    fn router(&self) -> Router {
        let now = self.generation.load(Ordering::Acquire);
        let mut current = self
            .router
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != now {
            match (self.app)() {
                Ok(router) => current.1 = router,
                Err(error) => {
                    tracing::error!(%error, "the new router cannot be built; the previous one serves on");
                }
            }
            current.0 = now;
        }
        current.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use std::collections::BTreeSet;
    use std::io::{Read as _, Write as _};

    /// Answers every request with the name of the thread that served it.
    fn thread_names() -> Arc<MakeApp> {
        Arc::new(|| {
            Ok(Router::new().route(
                "/",
                axum::routing::get(|| async {
                    std::thread::current().name().unwrap_or_default().to_owned()
                }),
            ))
        })
    }

    fn options(workers: usize) -> Options {
        Options {
            workers: NonZeroUsize::new(workers).expect("non-zero"),
            header_read_timeout: Options::DEFAULT_HEADER_READ_TIMEOUT,
            send_timeout: Options::DEFAULT_SEND_TIMEOUT,
            generation: None,
            max_connections: Options::DEFAULT_MAX_CONNECTIONS,
            runtimes: Runtimes::default(),
        }
    }

    /// One HTTP/1.1 request on a fresh connection; the answer's body.
    fn get(address: SocketAddr) -> String {
        let mut stream = std::net::TcpStream::connect(address).expect("connects");
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .expect("writes");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("reads");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn connections_are_dealt_to_every_worker_in_turn() {
        let (address, server) = serve(options(3), thread_names());
        let served: Vec<String> = (0..6).map(|_| get(address)).collect();
        server.stop();

        let workers: BTreeSet<&str> = served.iter().map(String::as_str).collect();
        assert_eq!(
            workers,
            BTreeSet::from([
                "protogate-worker-0",
                "protogate-worker-1",
                "protogate-worker-2"
            ]),
            "{served:?}"
        );
        assert_eq!(served[0], served[3], "dealt in turn: {served:?}");
    }

    #[test]
    fn a_router_that_cannot_be_built_stops_the_server_with_its_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let failing: Arc<MakeApp> = Arc::new(|| Err("no such upstream".into()));
        let error = run(
            vec![listener.into()],
            options(2),
            failing,
            || panic!("no worker has a router"),
            std::future::pending(),
        )
        .expect_err("cannot start");
        assert_eq!(error.to_string(), "no such upstream");
    }

    #[test]
    fn requests_know_their_client_address() {
        let client_address: Arc<MakeApp> = Arc::new(|| {
            Ok(Router::new().route(
                "/",
                axum::routing::get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move {
                    client.ip().to_string()
                }),
            ))
        });
        let (address, server) = serve(options(1), client_address);
        assert_eq!(get(address), "127.0.0.1");
        server.stop();
    }

    /// Starts a server of `app` on `options`; its address, and the handle that stops it.
    fn serve(options: Options, app: Arc<MakeApp>) -> (SocketAddr, ServerHandle) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            run(vec![listener.into()], options, app, || {}, async {
                let _ = stopped.await;
            })
        });
        (address, ServerHandle { stop, thread })
    }

    struct ServerHandle {
        stop: tokio::sync::oneshot::Sender<()>,
        thread: std::thread::JoinHandle<Result<(), Error>>,
    }

    impl ServerHandle {
        fn stop(self) {
            let _ = self.stop.send(());
            self.thread
                .join()
                .expect("no panic")
                .expect("serves and stops");
        }
    }

    /// One request on a kept-alive connection; the answer, head and body.
    fn ask(stream: &mut std::net::TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .expect("writes");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let read = stream.read(&mut chunk).expect("reads");
            assert!(
                read > 0,
                "closed early: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
        }
    }

    fn connect(address: SocketAddr) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream
    }

    #[test]
    fn connections_past_the_limit_are_refused_with_a_status_and_closed() {
        let (address, server) = serve(
            Options {
                max_connections: 2,
                ..options(1)
            },
            thread_names(),
        );
        let mut first = connect(address);
        let mut second = connect(address);
        assert!(ask(&mut first).starts_with("HTTP/1.1 200"));
        assert!(ask(&mut second).starts_with("HTTP/1.1 200"));

        // A third: a 503 with a google.rpc.Status saying why, then the connection closes.
        let mut third = connect(address);
        third
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .expect("writes");
        let mut refused = String::new();
        third
            .read_to_string(&mut refused)
            .expect("answered, then closed");
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(
            refused.to_ascii_lowercase().contains("retry-after: 1"),
            "{refused}"
        );
        let body = refused
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let status: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(status["code"], 14, "{status}");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("2 connections open, its limit")),
            "{status}"
        );

        // The open ones are served on; once one closes, a new connection is served again.
        assert!(ask(&mut first).starts_with("HTTP/1.1 200"));
        drop(second);
        let served = (0..100).find_map(|_| {
            let mut next = connect(address);
            let answer = ask(&mut next);
            if answer.starts_with("HTTP/1.1 200") {
                return Some(next);
            }
            std::thread::sleep(Duration::from_millis(50));
            None
        });
        assert!(served.is_some(), "a place frees when a connection closes");
        drop((first, served));
        server.stop();
    }

    #[test]
    fn clients_that_never_finish_or_never_start_a_request_are_disconnected() {
        let timeout = Duration::from_millis(300);
        let (address, server) = serve(
            Options {
                header_read_timeout: timeout,
                ..options(1)
            },
            thread_names(),
        );
        // What a connection reads once the server closes it (at most an answer saying why).
        let closed = |stream: &mut std::net::TcpStream| {
            let started = std::time::Instant::now();
            let mut rest = Vec::new();
            stream
                .read_to_end(&mut rest)
                .expect("closed, not timed out");
            assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
            String::from_utf8_lossy(&rest).into_owned()
        };

        // Headers begun and never finished.
        let mut slow = connect(address);
        slow.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: ")
            .expect("writes");
        let rest = closed(&mut slow);
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
            "{rest}"
        );
        // Not a byte: no protocol is known yet, so no HTTP/1 timeout has started.
        let rest = closed(&mut connect(address));
        assert!(rest.is_empty(), "{rest}");

        // A connection that asked in time is served past that time (each pause shorter than
        // the wait for a kept-alive connection's next request).
        let mut kept = connect(address);
        assert!(ask(&mut kept).starts_with("HTTP/1.1 200"));
        for _ in 0..3 {
            std::thread::sleep(timeout * 2 / 3);
            assert!(ask(&mut kept).starts_with("HTTP/1.1 200"));
        }
        // A well-behaved client on another connection is served as ever.
        assert_eq!(get(address), "protogate-worker-0");
        server.stop();
    }

    /// An app whose router `build` makes around a count it shares with the test; the count.
    fn counting(
        build: impl Fn(Arc<AtomicUsize>) -> Router + Send + Sync + 'static,
    ) -> (Arc<AtomicUsize>, Arc<MakeApp>) {
        let count = Arc::new(AtomicUsize::new(0));
        let app: Arc<MakeApp> = Arc::new({
            let count = Arc::clone(&count);
            move || Ok(build(Arc::clone(&count)))
        });
        (count, app)
    }

    #[test]
    fn an_http2_client_resetting_its_requests_never_reaches_the_router_and_loses_its_connection() {
        let (reached, app) = counting(|reached| {
            Router::new()
                .route("/", axum::routing::get(|| async { "served" }))
                .route(
                    "/reset",
                    axum::routing::get(move || {
                        reached.fetch_add(1, Ordering::Relaxed);
                        async { "reached" }
                    }),
                )
        });
        let (address, server) = serve(options(1), app);
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Rounds of BATCH requests each reset as soon as sent (written together, as the attack
        // writes them), then one request answered: how many rounds were answered, and how the
        // connection ended.
        const BATCH: u32 = 10;
        let (answered, ended) = client.block_on(async {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .expect("connects");
            let (mut sender, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
            let mut connection = tokio::spawn(connection);
            let request = |path: &str| {
                http::Request::get(format!("http://{address}{path}"))
                    .body(())
                    .expect("request")
            };
            let mut answered = 0;
            for _ in 0..2 * resets::PREMATURE_LIMIT / BATCH {
                for _ in 0..BATCH {
                    let Ok((_, mut stream)) = sender.send_request(request("/reset"), true) else {
                        break;
                    };
                    stream.send_reset(h2::Reason::CANCEL);
                }
                let Ok((response, _)) = sender.send_request(request("/"), true) else {
                    break;
                };
                match response.await {
                    Ok(response) if response.status() == 200 => answered += 1,
                    _ => break,
                }
            }
            let ended = tokio::time::timeout(Duration::from_secs(5), &mut connection).await;
            (answered, ended)
        });
        assert_eq!(
            reached.load(Ordering::Relaxed),
            0,
            "a reset request was served"
        );
        // Closed once PREMATURE_LIMIT requests were reset, more than half of those it had; the
        // request of the last round may still be answered, as the GOAWAY lets it finish.
        let rounds = resets::PREMATURE_LIMIT / BATCH;
        assert!(
            (rounds - 1..=rounds).contains(&answered),
            "{answered} rounds answered"
        );
        assert!(
            matches!(ended, Ok(Ok(_))),
            "the connection was not closed: {ended:?}"
        );
        // Another client is served as usual.
        assert_eq!(get(address), "served");
        server.stop();
    }

    /// The size of [`endless`]'s answer: far more than any buffer on the way holds.
    const ENDLESS: usize = 4096 * 16 * 1024;

    /// A router answering `GET /` with [`ENDLESS`] bytes, counting in `produced` what the
    /// server has taken of it.
    fn endless(produced: Arc<AtomicUsize>) -> Router {
        Router::new().route(
            "/",
            axum::routing::get(move || {
                let chunks = futures_util::stream::iter(0..ENDLESS / (16 * 1024)).map(move |_| {
                    produced.fetch_add(16 * 1024, Ordering::Relaxed);
                    Ok::<_, std::convert::Infallible>(vec![b'x'; 16 * 1024])
                });
                async move { axum::body::Body::from_stream(chunks) }
            }),
        )
    }

    /// A client with a small receive window that asks for `GET /` and reads nothing yet.
    fn reads_nothing(address: SocketAddr) -> std::net::TcpStream {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .set_recv_buffer_size(64 * 1024)
            .expect("receive buffer");
        socket.connect(&address.into()).expect("connects");
        let mut client = std::net::TcpStream::from(socket);
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .expect("writes");
        client
    }

    #[test]
    fn a_client_that_stops_reading_holds_little_unsent() {
        let (produced, app) = counting(endless);
        let (address, server) = serve(options(1), app);
        let client = reads_nothing(address);
        // The server writes until the socket takes no more.
        std::thread::sleep(Duration::from_secs(1));
        let held = produced.load(Ordering::Relaxed);
        // The client's window, the unsent limit, hyper's write buffer (about 400 KiB) and data
        // in flight; without the limit the kernel lets the send buffer grow to megabytes.
        assert!(held < 2 * 1024 * 1024, "{} KiB produced", held / 1024);
        drop(client);
        server.stop();
    }

    #[test]
    fn a_client_that_stops_reading_is_let_go_after_the_send_timeout() {
        let (_, app) = counting(endless);
        let (address, server) = serve(
            Options {
                send_timeout: Duration::from_millis(300),
                ..options(1)
            },
            app,
        );
        let mut client = reads_nothing(address);
        std::thread::sleep(Duration::from_secs(1));
        // What was on its way can still be read, then the connection ends, well short of the
        // whole answer (which, not cut, would be followed by a kept-alive silence).
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut read = 0;
        let mut chunk = vec![0; 64 * 1024];
        let ended = loop {
            match client.read(&mut chunk) {
                Ok(0) => break "closed".to_owned(),
                Ok(n) => read += n,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    break "reset".to_owned();
                }
                Err(error) => break format!("not closed: {error}"),
            }
        };
        assert!(
            (ended == "closed" || ended == "reset") && read < ENDLESS,
            "{ended} after {} KiB",
            read / 1024
        );
        // A client that reads is served the whole answer.
        let mut reader = connect(address);
        reader
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .expect("writes");
        let mut whole = Vec::new();
        reader.read_to_end(&mut whole).expect("the whole answer");
        assert!(whole.len() > ENDLESS, "{} bytes", whole.len());
        server.stop();
    }
}

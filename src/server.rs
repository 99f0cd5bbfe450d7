//! The stock gateway's server: an acceptor hands connections in turn to worker threads, each a
//! single-threaded tokio runtime with its own router and its own upstream connections.
//!
//! A request is read, transcoded, sent upstream and answered on one thread: no task moves between
//! threads and no wake-up crosses one. On `bench/run` this takes less CPU per request than one
//! work-stealing runtime for the whole process (`bench/RESULTS.md` has the figures); Envoy runs
//! its workers the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::mpsc;
use tower::ServiceExt as _;

/// Why the server could not start or stopped.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Builds a worker's router. It runs on that worker's runtime, where the upstream connections it
/// makes will run.
pub type MakeApp = dyn Fn() -> Result<Router, Error> + Send + Sync;

/// An accepted connection on its way to a worker, out of the acceptor's runtime, with the TLS
/// it is to be served with (the handshake is the worker's).
type Accepted = (
    std::net::TcpStream,
    SocketAddr,
    Option<tokio_rustls::TlsAcceptor>,
);

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
    /// The app's generation, when it can change: each time it is bumped, every worker builds
    /// its router again before its next request. Requests under way finish on the router they
    /// started with; no connection is dropped.
    pub generation: Option<Arc<AtomicU64>>,
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
        outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::from)
            .and_then(|acceptor| {
                options.runtimes.add(acceptor.handle().clone());
                acceptor.block_on(accept(listeners, &queues, shutdown))
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
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let turn = std::sync::atomic::AtomicUsize::new(0);
    let mut loops = Vec::with_capacity(listeners.len());
    for listener in listeners {
        if let Some(tls) = &listener.tls {
            tokio::spawn(tls.clone().watch());
        }
        let socket = tokio::net::TcpListener::from_std(listener.socket)?;
        let tls = listener.tls.map(|tls| tls.acceptor().clone());
        loops.push(accept_on(socket, tls, queues, &turn));
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
    turn: &std::sync::atomic::AtomicUsize,
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
        // Leaves this runtime's reactor so the worker can register it with its own.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let turn = turn.fetch_add(1, Ordering::Relaxed) % queues.len();
        if queues[turn].send((stream, remote, tls.clone())).is_err() {
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

        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let open = GracefulShutdown::new();
        while let Some((stream, remote, tls)) = connections.recv().await {
            // A connection this runtime cannot register is closed by dropping it.
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            // Answers and stream messages go out as soon as they are written.
            let _ = stream.set_nodelay(true);
            let current = Arc::clone(&current);
            let app =
                tower::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(remote));
                    current.router().oneshot(request)
                });
            let app = TowerToHyperService::new(app);
            match tls {
                None => {
                    let connection = http
                        .serve_connection_with_upgrades(TokioIo::new(stream), app)
                        .into_owned();
                    tokio::spawn(open.watch(connection));
                }
                // The handshake runs on the connection's own task, then the same serving.
                Some(acceptor) => {
                    let (http, watcher) = (http.clone(), open.watcher());
                    tokio::spawn(async move {
                        // A client gets as long for its handshake as for its headers.
                        let handshake = acceptor.accept(stream);
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(header_read_timeout, handshake).await
                        else {
                            return;
                        };
                        let connection = http
                            .serve_connection_with_upgrades(TokioIo::new(stream), app)
                            .into_owned();
                        let _ = watcher.watch(connection).await;
                    });
                }
            }
        }
        open.shutdown().await;
    }
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
            generation: None,
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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            run(
                vec![listener.into()],
                options(3),
                thread_names(),
                || {},
                async {
                    let _ = stopped.await;
                },
            )
        });
        let served: Vec<String> = (0..6).map(|_| get(address)).collect();
        let _ = stop.send(());
        server.join().expect("no panic").expect("serves and stops");

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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = listener.local_addr().expect("address");
        let client_address: Arc<MakeApp> = Arc::new(|| {
            Ok(Router::new().route(
                "/",
                axum::routing::get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move {
                    client.ip().to_string()
                }),
            ))
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            run(
                vec![listener.into()],
                options(1),
                client_address,
                || {},
                async {
                    let _ = stopped.await;
                },
            )
        });
        assert_eq!(get(address), "127.0.0.1");
        let _ = stop.send(());
        server.join().expect("no panic").expect("serves and stops");
    }

    #[test]
    fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = listener.local_addr().expect("address");
        let timeout = Duration::from_millis(300);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let options = Options {
                header_read_timeout: timeout,
                ..options(1)
            };
            run(
                vec![listener.into()],
                options,
                thread_names(),
                || {},
                async {
                    let _ = stopped.await;
                },
            )
        });

        let mut stream = std::net::TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let started = std::time::Instant::now();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: ")
            .expect("writes");
        // The server closes the connection (at most after an answer saying why).
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("closed, not timed out");
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
            "{rest}"
        );

        // A well-behaved client on another connection is served as ever.
        assert_eq!(get(address), "protogate-worker-0");
        let _ = stop.send(());
        server.join().expect("no panic").expect("serves and stops");
    }
}

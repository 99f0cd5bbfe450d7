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
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::{Listener, ListenerExt as _};
use tokio::sync::{mpsc, watch};

/// Why the server could not start or stopped.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Builds a worker's router. It runs on that worker's runtime, where the upstream channels it
/// makes spawn their tasks.
pub type MakeApp = dyn Fn() -> Result<Router, Error> + Send + Sync;

/// An accepted connection on its way to a worker, out of the acceptor's runtime.
type Accepted = (std::net::TcpStream, SocketAddr);

/// Serves `listener` on `workers` threads until `shutdown` resolves, then lets open connections
/// finish. Blocks the calling thread, which accepts connections. Calls `started` once every
/// worker has its router; returns once every worker has stopped, or at once if a router cannot
/// be built.
pub fn run(
    listener: std::net::TcpListener,
    workers: NonZeroUsize,
    app: Arc<MakeApp>,
    started: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (stop, stopped) = watch::channel(());
    let (ready, answers) = std::sync::mpsc::channel();
    let mut queues = Vec::with_capacity(workers.get());
    let mut threads = Vec::with_capacity(workers.get());
    for index in 0..workers.get() {
        let (queue, connections) = mpsc::unbounded_channel();
        let worker = Worker {
            app: Arc::clone(&app),
            connections: Handoff { connections, local },
            stopped: stopped.clone(),
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
            .and_then(|acceptor| acceptor.block_on(accept(listener, &queues, shutdown)));
    }
    // Workers stop taking connections, finish the open ones, and end.
    drop(queues);
    let _ = stop.send(());
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => outcome = outcome.and(Err(error)),
            Err(_) => outcome = outcome.and(Err("a worker thread panicked".into())),
        }
    }
    outcome
}

/// Accepts connections and deals them to the workers in turn, until `shutdown`.
async fn accept(
    listener: std::net::TcpListener,
    queues: &[mpsc::UnboundedSender<Accepted>],
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut turns = (0..queues.len()).cycle();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
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
        let turn = turns.next().unwrap_or_default();
        if queues[turn].send((stream, remote)).is_err() {
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
    connections: Handoff,
    stopped: watch::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), Error>>,
}

impl Worker {
    fn run(self) -> Result<(), Error> {
        let Worker {
            app,
            connections,
            mut stopped,
            ready,
        } = self;
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = ready.send(Err(error.into()));
                return Ok(());
            }
        };
        runtime.block_on(async move {
            let router = match app() {
                Ok(router) => router,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return Ok(());
                }
            };
            let _ = ready.send(Ok(()));
            drop(ready);
            let connections = connections.tap_io(|stream| {
                // Answers and stream messages go out as soon as they are written.
                let _ = stream.set_nodelay(true);
            });
            axum::serve(
                connections,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.changed().await;
            })
            .await
            .map_err(Error::from)
        })
    }
}

/// The connections the acceptor deals to one worker.
struct Handoff {
    connections: mpsc::UnboundedReceiver<Accepted>,
    local: SocketAddr,
}

impl Listener for Handoff {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some((stream, remote)) = self.connections.recv().await else {
                // The acceptor has stopped: so will this worker, once told to.
                return std::future::pending().await;
            };
            // A connection this runtime cannot register is closed by dropping it.
            if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                return (stream, remote);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
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
                listener,
                NonZeroUsize::new(3).expect("non-zero"),
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
            listener,
            NonZeroUsize::new(2).expect("non-zero"),
            failing,
            || panic!("no worker has a router"),
            std::future::pending(),
        )
        .expect_err("cannot start");
        assert_eq!(error.to_string(), "no such upstream");
    }
}

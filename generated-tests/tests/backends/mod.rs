//! What the upstream tests stand on: tagged tonic backends (each answer says which one served
//! it), a TCP relay that can be cut or frozen, a CA made by the test, and a resolver the test
//! controls.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use generated_tests::Backend;
use generated_tests::pb::protogate::tests::v1::binding_service_server::BindingServiceServer;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// The response header a tagged backend adds, as the gateway forwards it.
pub const TAG_HEADER: &str = "grpc-metadata-x-endpoint";

/// A running backend and the switch that stops it gracefully (GOAWAY, in-flight calls finish).
pub struct Tagged {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub server: tokio::task::JoinHandle<()>,
}

impl Tagged {
    /// Shuts the backend down gracefully.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves a backend that answers every call with the response header `x-endpoint: tag`, on
/// `incoming`, until `shutdown`.
pub async fn serve_tagged<I, IO, IE>(
    tag: &'static str,
    tls: Option<tonic::transport::ServerTlsConfig>,
    incoming: I,
    shutdown: impl Future<Output = ()>,
) where
    I: futures_util::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).expect("TLS settings");
    }
    // The request's authority, copied into a header the backend's metadata reply shows.
    let show_authority =
        tower::util::MapRequestLayer::new(|mut request: http::Request<tonic::body::Body>| {
            let authority = request.uri().authority().map(|a| a.as_str().to_owned());
            if let Some(value) = authority.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
                request.headers_mut().insert("x-seen-authority", value);
            }
            request
        });
    let _ = server
        .layer(show_authority)
        .layer(tag_layer(tag))
        .add_service(BindingServiceServer::new(Backend))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
}

type Reply = http::Response<tonic::body::Body>;

/// Adds `x-endpoint: tag` to every response.
fn tag_layer(tag: &'static str) -> tower::util::MapResponseLayer<impl Fn(Reply) -> Reply + Clone> {
    tower::util::MapResponseLayer::new(move |mut response: Reply| {
        response
            .headers_mut()
            .insert("x-endpoint", http::HeaderValue::from_static(tag));
        response
    })
}

/// A tagged backend that also serves `grpc.health.v1.Health` from `health`.
pub async fn health_backend<H: tonic_health::pb::health_server::Health>(
    tag: &'static str,
    health: tonic_health::pb::health_server::HealthServer<H>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tonic::transport::Server::builder()
        .layer(tag_layer(tag))
        .add_service(health)
        .add_service(BindingServiceServer::new(Backend));
    tokio::spawn(server.serve_with_incoming(incoming));
    address
}

/// A tagged backend on a port of its own.
pub async fn tagged(tag: &'static str) -> Tagged {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tokio::spawn(serve_tagged(tag, None, incoming, async {
        let _ = stopped.await;
    }));
    Tagged {
        address,
        stop: Some(stop),
        server,
    }
}

/// A TCP relay in front of a backend: cut (every connection closed at once, as a crashed host
/// would) or frozen (connections stay open and carry nothing, as a hung host would).
pub struct Relay {
    pub address: SocketAddr,
    frozen: watch::Sender<bool>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn to(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (frozen, _) = watch::channel(false);
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (spawn_into, frozen_rx) = (Arc::clone(&tasks), frozen.subscribe());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut frozen = frozen_rx.clone();
                spawn_into.lock().unwrap().spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let hung = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                        _ = frozen.wait_for(|frozen| *frozen) => true,
                    };
                    if hung {
                        // Hold both sockets open and never touch them again.
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        Relay {
            address,
            frozen,
            tasks,
            accept,
        }
    }

    /// Connections stay open but carry nothing more; new ones are accepted and hang too.
    pub fn freeze(&self) {
        let _ = self.frozen.send(true);
    }

    /// Every connection closed and no new one accepted.
    pub fn cut(&self) {
        self.accept.abort();
        self.tasks.lock().unwrap().abort_all();
    }
}

/// GETs `url`: status, body, and the tag of the backend that answered.
pub async fn get(client: &reqwest::Client, url: &str) -> (u16, Value, Option<String>) {
    let response = client.get(url).send().await.expect("answered");
    let status = response.status().as_u16();
    let tag = response
        .headers()
        .get(TAG_HEADER)
        .map(|v| v.to_str().expect("ASCII").to_owned());
    (status, response.json().await.expect("JSON"), tag)
}

/// Answers from a table the test changes.
#[derive(Clone, Default)]
pub struct Table(Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>);

impl Table {
    pub fn set(&self, host: &str, sockets: &[SocketAddr]) {
        self.0
            .lock()
            .unwrap()
            .insert(host.to_owned(), sockets.to_vec());
    }
}

impl protogate::Resolve for Table {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        let answer = self
            .0
            .lock()
            .unwrap()
            .get(host)
            .map(|sockets| {
                sockets
                    .iter()
                    .map(|s| SocketAddr::new(s.ip(), if s.port() == 0 { port } else { s.port() }))
                    .collect()
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no host {host}")));
        Box::pin(async move { answer })
    }
}

/// A certificate authority made for one test, and what it issued, as PEM files in a directory
/// of the test's own.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub ca_pem: String,
    /// A client identity from a CA the server does not trust.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authority() -> (rcgen::CertificateParams, rcgen::KeyPair, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "protogate test CA");
    let certificate = params.self_signed(&key).expect("CA certificate");
    (params, key, certificate)
}

fn issue(
    names: &[&str],
    ca: &(rcgen::CertificateParams, rcgen::KeyPair, rcgen::Certificate),
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    let issuer = rcgen::Issuer::from_params(&ca.0, &ca.1);
    let certificate = params.signed_by(&key, &issuer).expect("issued");
    (certificate.pem(), key.serialize_pem())
}

impl Pki {
    /// A CA; a server certificate for `names`; a client certificate; and a stranger's.
    pub fn new(names: &[&str]) -> Pki {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "protogate-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("directory");
        let ca = authority();
        let (server_cert, server_key) = issue(names, &ca);
        let (client_cert, client_key) = issue(&["gateway"], &ca);
        let other = authority();
        let (stranger_cert, stranger_key) = issue(&["gateway"], &other);
        let write = |name: &str, text: &str| -> PathBuf {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("written");
            path
        };
        let ca_pem = ca.2.pem();
        Pki {
            ca: write("ca.pem", &ca_pem),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            stranger_cert: write("stranger.pem", &stranger_cert),
            stranger_key: write("stranger.key", &stranger_key),
            server_cert,
            server_key,
            ca_pem,
            dir,
        }
    }

    /// A path in the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A tagged backend behind TLS with the server certificate of `pki`; asks for a client
/// certificate from its CA when `mutual`.
pub async fn tls_backend(pki: &Pki, tag: &'static str, mutual: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&pki.server_cert, &pki.server_key),
    );
    if mutual {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(&pki.ca_pem));
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(serve_tagged(
        tag,
        Some(tls),
        incoming,
        std::future::pending(),
    ));
    address
}

/// A backend on the Unix domain socket at `path`.
#[cfg(unix)]
pub fn unix_backend(path: &Path) {
    let listener = tokio::net::UnixListener::bind(path).expect("bind the socket");
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    tokio::spawn(serve_tagged("unix", None, incoming, std::future::pending()));
}

//! What the tests of the stock gateway share: the real binary, started on 127.0.0.1, and the
//! OpenAPI validator. Each test binary uses part of it.

#![allow(dead_code)]

pub mod library;
pub mod tools;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The status of the answer to `request`, which must come within 10 s.
pub async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    tokio::time::timeout(std::time::Duration::from_secs(10), request.send())
        .await
        .expect("answered in time")
        .expect("answered")
        .status()
        .as_u16()
}

/// A certificate authority made on the spot, and a certificate it issued for `name`: the CA's
/// certificate, the certificate and its private key, as PEM.
pub fn issue(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let certificate = rcgen::CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("issued");
    (ca_pem, certificate.pem(), key.serialize_pem())
}

/// Writes `text` to the file `name` in the directory `dir` of the tests' own (under the target
/// directory), and returns its path.
pub fn test_file(dir: &str, name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).expect("directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("written");
    path
}

/// A child process, killed and reaped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Process {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// A running gateway, stopped when dropped.
pub struct Running {
    _child: Process,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
}

/// Runs `binary` with `args` to its end and returns what it printed; it must succeed.
pub fn printed(binary: &Path, args: &[&str]) -> String {
    let output = Command::new(binary).args(args).output().expect("runs");
    assert!(output.status.success(), "{binary:?} {args:?} failed");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The stock gateway this test binary was built with.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_protogate"))
}

/// Starts `protogate serve` on a free port with `args`.
pub fn start(args: &[&str]) -> Running {
    start_binary(binary(), args)
}

/// `binary serve` on a free 127.0.0.1 port with `args`, its stdout piped.
fn spawn_serve(binary: &Path, args: &[&str]) -> Child {
    Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gateway starts")
}

/// Starts `binary serve` (a build of the stock gateway) on a free port with `args`.
pub fn start_binary(binary: &Path, args: &[&str]) -> Running {
    let mut child = spawn_serve(binary, args);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout);
    let mut first = String::new();
    lines
        .read_line(&mut first)
        .expect("the gateway prints its address");
    // Keep reading so the gateway never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let base = first.trim().rsplit(' ').next().expect("address").to_owned();
    Running {
        _child: Process(child),
        base,
    }
}

/// What `binary serve` (with `args`, on a free port) prints on start, through its `try:` line.
pub fn banner(binary: &Path, args: &[&str]) -> String {
    let mut child = spawn_serve(binary, args);
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a banner line");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("try:") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    banner
}

/// Serves `router`, a gRPC backend written as an axum router, as a tonic server on a free
/// 127.0.0.1 port, until the test's runtime ends.
pub async fn serve_grpc(router: axum::Router) -> std::net::SocketAddr {
    serve_grpc_over(router, None).await
}

/// [`serve_grpc`] behind TLS with `tls`'s identity (and client CA, for mutual TLS).
pub async fn serve_grpc_tls(
    router: axum::Router,
    tls: tonic::transport::ServerTlsConfig,
) -> std::net::SocketAddr {
    serve_grpc_over(router, Some(tls)).await
}

async fn serve_grpc_over(
    router: axum::Router,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).expect("TLS settings");
    }
    tokio::spawn(
        server
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(incoming),
    );
    address
}

/// A running gateway with an admin listener, stopped when dropped.
pub struct Administered {
    /// The process.
    pub child: Process,
    /// The public base URL.
    pub base: String,
    /// The admin listener's base URL.
    pub admin: String,
    /// What it prints on stdout after its banner (access log lines), line by line.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Administered {
    /// Sends the gateway SIGTERM: the start of a graceful shutdown.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the gateway to exit, up to `limit`; its exit status.
    pub fn exit_within(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                return status;
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// `protogate serve` on free ports for the public and the admin listeners, with `args`.
pub fn start_with_admin(args: &[&str]) -> Administered {
    let mut all = vec!["--admin", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = spawn_serve(binary(), &all);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut address = |prefix: &str| {
        let line = lines.next().expect("a banner line").expect("text");
        let rest = line.trim().strip_prefix(prefix).expect(prefix);
        rest.split(' ').next().expect("an address").to_owned()
    };
    let base = address("protogate listening on ");
    let admin = address("admin on ");
    // Keep reading so the gateway never writes to a closed pipe; the lines go to whoever wants
    // them.
    let (sender, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    Administered {
        child: Process(child),
        base,
        admin,
        lines: printed,
    }
}

/// `cargo build --bin protogate` of this workspace with `PROTOGATE_PROTO_DIR` set to `protos`
/// and `envs` too; the binary built, copied to `target/gateways/<name>/protogate`.
///
/// Every such build shares one target dir, `target/gateways` (the workspace's own build is left
/// alone): only the gateway crate differs between them, so the dependencies are compiled once.
/// Without debug info or incremental state: such a build is run once and only executed, and at
/// full size it fills gigabytes. The copy keeps each test's binary its own when the next build
/// replaces the one in the shared dir.
pub fn build_gateway_with(protos: &Path, name: &str, envs: &[(&str, &str)]) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = manifest.join("target/gateways");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--bin", "protogate", "--quiet"])
        .current_dir(manifest)
        .env("PROTOGATE_PROTO_DIR", protos)
        .env_remove("PROTOGATE_DEMO")
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_INCREMENTAL", "0")
        .envs(envs.iter().copied())
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the gateway with the protos under {} failed",
        protos.display()
    );
    let own = target.join(name);
    std::fs::create_dir_all(&own).expect("the binary's directory");
    // Copied then renamed into place: another test process may be running the previous copy,
    // which a rename leaves alone and an overwrite would not.
    let copy = own.join(format!("protogate.{}", std::process::id()));
    std::fs::copy(target.join("debug/protogate"), &copy).expect("the binary copied");
    let binary = own.join("protogate");
    std::fs::rename(&copy, &binary).expect("the binary in place");
    binary
}

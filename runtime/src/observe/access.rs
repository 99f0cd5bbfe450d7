//! The access log: one line per request or stream, written when it ends, as JSON (one object per
//! line) or as `key=value` text.
//!
//! A line is formatted on the request's own path, in a buffer its thread reuses, and appended to
//! a shared buffer of bounded size; a writer thread of its own takes what has gathered there a
//! few times a second and writes it out. A request never waits for the sink, and no line costs a
//! system call of its own. When the sink falls behind and the shared buffer is full, lines are
//! dropped and counted ([`AccessLog::dropped`]).

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::Observer;
use super::scope::{Scope, code_name};
use crate::json::{JsonOptions, Registry, Writer, rfc3339};

/// How many bytes of lines may wait for the writer by default; beyond them, lines are dropped.
const DEFAULT_BUFFER: usize = 8 * 1024 * 1024;

/// How long lines may gather before the writer takes them, by default.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

thread_local! {
    /// The line a request formats, reused by every request of the thread.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// How access log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// The time, the word `access`, then `key=value` pairs (values with spaces, quotes or `=`
    /// quoted as JSON strings), for people.
    Text,
}

/// Writes an access log line when each request ends. A JSON line has these keys: `time` (when it
/// ended, RFC 3339 in UTC), `request_id`, `client`, `method`, `route` (the template; absent for a
/// request no route matched), `rpc`, `status`, `code` (the gRPC code's name), `bytes_in`,
/// `bytes_out`, `duration_ms`, and where known `upstream`, `endpoint`, `subject`,
/// `auth_failure`, and for a stream `transport`, `messages_in`, `messages_out`:
///
/// ```text
/// {"time":"2026-12-02T07:19:16.169878Z","request_id":"hello-1","client":"127.0.0.1:33254","method":"GET","route":"/v1/{name=shelves/*}","rpc":"acme.library.v1.Library.GetShelf","status":200,"code":"OK","bytes_in":0,"bytes_out":222,"duration_ms":0.507,"upstream":"library","endpoint":"10.0.0.7:50051"}
/// ```
///
/// Clones share one writer.
///
/// ```
/// let (log, _writer) = protogate::observe::AccessLog::builder().to_writer(std::io::sink());
/// let app: axum::Router = protogate::Gateway::new()
///     .into_router()
///     .layer(protogate::observe::ObserveLayer::new().observer(log));
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct AccessLog(Arc<Shared>);

struct Shared {
    format: AccessFormat,
    /// The lines waiting for the writer.
    pending: Mutex<Pending>,
    /// Wakes the writer early: when it is told to stop.
    wake: Condvar,
    limit: usize,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    stop: bool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.0.format)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl AccessLog {
    /// Starts an access log: JSON lines, up to 8 MiB of them waiting for the writer, written
    /// out every 100 ms.
    pub fn builder() -> AccessLogBuilder {
        AccessLogBuilder {
            format: AccessFormat::Json,
            buffer: DEFAULT_BUFFER,
            interval: DEFAULT_INTERVAL,
        }
    }

    /// The lines dropped so far because the writer fell behind (or failed to write).
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Writes the line of a request that has ended, with its newline, into `line`.
    fn format(&self, scope: &Scope, line: &mut Vec<u8>) {
        let ended = scope.started_at() + scope.duration().unwrap_or_default();
        let mut line = Line::new(self.0.format, ended, line);
        line.text("request_id", scope.id().as_str());
        if let Some(client) = scope.client() {
            line.address("client", client);
        }
        line.text("method", scope.method().as_str());
        if let Some(route) = scope.route() {
            line.text("route", route.template.text);
            line.text("rpc", route.rpc);
        }
        line.number(
            "status",
            scope
                .status()
                .map_or(0, |status| u64::from(status.as_u16())),
        );
        if let Some(code) = scope.code() {
            line.text("code", code_name(code));
        }
        line.number("bytes_in", scope.bytes_in());
        line.number("bytes_out", scope.bytes_out());
        let micros = scope.duration().unwrap_or_default().as_micros();
        line.millis("duration_ms", u64::try_from(micros).unwrap_or(u64::MAX));
        if let Some(target) = scope.upstream() {
            line.text("upstream", &target.upstream);
            line.text("endpoint", &target.endpoint);
        }
        if let Some(subject) = scope.subject() {
            line.text("subject", subject);
        }
        if let Some(reason) = scope.auth_failure() {
            line.text("auth_failure", reason);
        }
        if let Some(transport) = scope.stream() {
            line.text("transport", transport.name());
            line.number("messages_in", scope.messages_in());
            line.number("messages_out", scope.messages_out());
        }
        line.finish();
    }

    /// Appends `line` to the lines waiting, or counts it dropped when they are too many.
    fn push(&self, line: &[u8]) {
        let mut pending = self.0.pending();
        if pending.stop || pending.lines.len() + line.len() > self.0.limit {
            drop(pending);
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            pending.lines.extend_from_slice(line);
        }
    }
}

impl Observer for AccessLog {
    fn on_end(&self, scope: &Scope) {
        // Taken from the thread and put back after, so that a line formatted inside another's
        // formatting (which nothing does) would find an empty buffer rather than a borrowed one.
        let mut line = LINE.with(|line| line.take());
        line.clear();
        self.format(scope, &mut line);
        self.push(&line);
        LINE.with(|slot| slot.replace(line));
    }
}

/// Settings of an [`AccessLog`]; [`AccessLogBuilder::to_writer`] starts it.
#[derive(Clone, Debug)]
#[must_use]
pub struct AccessLogBuilder {
    format: AccessFormat,
    buffer: usize,
    interval: Duration,
}

impl AccessLogBuilder {
    /// How lines are written (JSON by default).
    pub fn format(mut self, format: AccessFormat) -> Self {
        self.format = format;
        self
    }

    /// How many bytes of lines may wait for the writer (8 MiB by default); past them, lines are
    /// dropped.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// How long lines gather before the writer takes them (100 ms by default): the longest a
    /// line waits to be written when the sink keeps up.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Starts the log on a writer thread of its own that writes lines to `sink`. The thread runs
    /// until the [`AccessLogWriter`] is dropped, which writes what is waiting first.
    pub fn to_writer(self, sink: impl Write + Send + 'static) -> (AccessLog, AccessLogWriter) {
        let log = AccessLog(Arc::new(Shared {
            format: self.format,
            pending: Mutex::default(),
            wake: Condvar::new(),
            limit: self.buffer,
            dropped: AtomicU64::new(0),
        }));
        let writer = log.clone();
        let interval = self.interval;
        let thread = std::thread::Builder::new()
            .name("protogate-access-log".to_owned())
            .spawn(move || write_lines(&writer, sink, interval));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(error) => {
                tracing::error!(%error, "the access log's writer cannot start: its lines are dropped");
                log.0.pending().stop = true;
                None
            }
        };
        (log.clone(), AccessLogWriter { log, thread })
    }

    /// Starts the log on standard output ([`AccessLogBuilder::to_writer`]).
    pub fn to_stdout(self) -> (AccessLog, AccessLogWriter) {
        self.to_writer(std::io::stdout())
    }
}

/// Keeps an [`AccessLog`]'s writer thread; dropping it writes the lines waiting, then stops it
/// (lines that end later are dropped and counted).
#[derive(Debug)]
pub struct AccessLogWriter {
    log: AccessLog,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AccessLogWriter {
    fn drop(&mut self) {
        self.log.0.pending().stop = true;
        self.log.0.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: every `interval` (or when told to stop), what has gathered goes to
/// `sink`; lines it fails to write are counted as dropped.
fn write_lines(log: &AccessLog, mut sink: impl Write, interval: Duration) {
    let shared = &*log.0;
    let mut taken = Vec::new();
    loop {
        let stop = {
            let mut pending = shared.pending();
            if !pending.stop {
                pending = shared
                    .wake
                    .wait_timeout(pending, interval)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            // Swapped, not copied: the two buffers keep their room from one turn to the next.
            std::mem::swap(&mut taken, &mut pending.lines);
            pending.stop
        };
        if !taken.is_empty() {
            if sink.write_all(&taken).and_then(|()| sink.flush()).is_err() {
                let lines = taken.iter().filter(|byte| **byte == b'\n').count();
                shared.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
            taken.clear();
        }
        if stop {
            return;
        }
    }
}

/// One line being written, in either format, into a buffer it borrows.
struct Line<'b> {
    format: AccessFormat,
    buf: &'b mut Vec<u8>,
}

impl<'b> Line<'b> {
    fn new(format: AccessFormat, time: SystemTime, buf: &'b mut Vec<u8>) -> Line<'b> {
        match format {
            AccessFormat::Json => buf.extend_from_slice(b"{\"time\":\""),
            AccessFormat::Text => {}
        }
        rfc3339(time, buf);
        match format {
            AccessFormat::Json => buf.push(b'"'),
            AccessFormat::Text => buf.extend_from_slice(b" access"),
        }
        Line { format, buf }
    }

    /// Starts a field: its key and what separates it from its value.
    fn key(&mut self, key: &str) {
        match self.format {
            AccessFormat::Json => {
                self.buf.extend_from_slice(b",\"");
                self.buf.extend_from_slice(key.as_bytes());
                self.buf.extend_from_slice(b"\":");
            }
            AccessFormat::Text => {
                self.buf.push(b' ');
                self.buf.extend_from_slice(key.as_bytes());
                self.buf.push(b'=');
            }
        }
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        let bare = self.format == AccessFormat::Text
            && !value.is_empty()
            && value
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'"' | b'=' | b'\\'));
        if bare {
            self.buf.extend_from_slice(value.as_bytes());
        } else {
            Writer::new(self.buf, JsonOptions::default(), &Registry::EMPTY).str(value);
        }
    }

    /// A socket address: `ip:port`, `[ip]:port` for IPv6 (written digit by digit for IPv4, the
    /// common case, which the formatting machinery makes several times dearer).
    fn address(&mut self, key: &str, address: std::net::SocketAddr) {
        self.key(key);
        let quoted = self.format == AccessFormat::Json;
        if quoted {
            self.buf.push(b'"');
        }
        match address {
            std::net::SocketAddr::V4(v4) => {
                let mut digits = itoa::Buffer::new();
                for (n, octet) in v4.ip().octets().into_iter().enumerate() {
                    if n > 0 {
                        self.buf.push(b'.');
                    }
                    self.buf.extend_from_slice(digits.format(octet).as_bytes());
                }
                self.buf.push(b':');
                self.buf
                    .extend_from_slice(digits.format(v4.port()).as_bytes());
            }
            // Writing into a Vec cannot fail.
            std::net::SocketAddr::V6(v6) => {
                let _ = write!(self.buf, "{v6}");
            }
        }
        if quoted {
            self.buf.push(b'"');
        }
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// Milliseconds, from `micros`, to three decimals.
    fn millis(&mut self, key: &str, micros: u64) {
        self.key(key);
        let mut digits = itoa::Buffer::new();
        self.buf
            .extend_from_slice(digits.format(micros / 1_000).as_bytes());
        let fraction = micros % 1_000;
        self.buf.extend_from_slice(&[
            b'.',
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ]);
    }

    fn finish(self) {
        if self.format == AccessFormat::Json {
            self.buf.push(b'}');
        }
        self.buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::observe::ObserveLayer;

    /// A sink the test reads back.
    #[derive(Clone, Default)]
    struct Shelf(Arc<Mutex<Vec<u8>>>);

    impl Write for Shelf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `format` writes for one request to `uri` with the id `id`, answered by a
    /// service that records a subject.
    async fn lines(format: AccessFormat, id: &str, subject: &str) -> String {
        let shelf = Shelf::default();
        let (log, writer) = AccessLog::builder().format(format).to_writer(shelf.clone());
        let subject: Arc<str> = subject.into();
        let app = tower::service_fn(move |request: http::Request<Body>| {
            let subject = Arc::clone(&subject);
            async move {
                let scope = Scope::of(&request).expect("a scope");
                scope.set_subject(subject);
                scope.set_code(tonic::Code::NotFound);
                let response = http::Response::builder()
                    .status(404)
                    .body(Body::from("nope"))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let service = ObserveLayer::new().observer(log).layer(app);
        let request = http::Request::builder()
            .uri("/anything")
            .header("x-request-id", id)
            .body(Body::from("12345"))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        drop(response.into_body().collect().await.unwrap());
        drop(writer);
        let text = shelf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[tokio::test]
    async fn a_json_line_is_one_object_with_the_requests_fields() {
        let text = lines(AccessFormat::Json, "req-1", "ana \"the\" admin").await;
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).expect(&text);
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], 404);
        assert_eq!(line["code"], "NOT_FOUND");
        assert_eq!(line["bytes_in"], 0, "the body was never read");
        assert_eq!(line["bytes_out"], 4);
        assert_eq!(line["subject"], "ana \"the\" admin");
        assert!(line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert!(line.get("route").is_none() && line.get("client").is_none());
        let time = line["time"].as_str().expect("time");
        assert!(time.len() >= 20 && time.ends_with('Z'), "{time}");
    }

    #[tokio::test]
    async fn a_text_line_quotes_only_what_needs_it() {
        let text = lines(AccessFormat::Text, "req-2", "ana admin").await;
        let line = text.strip_suffix('\n').expect("one line");
        let (time, rest) = line.split_once(' ').expect("a time first");
        assert!(time.ends_with('Z'), "{line}");
        assert!(
            rest.starts_with("access request_id=req-2 method=GET status=404 code=NOT_FOUND"),
            "{line}"
        );
        assert!(rest.contains(" subject=\"ana admin\""), "{line}");
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for address in [
            "127.0.0.1:8080",
            "10.200.3.45:65535",
            "0.0.0.0:0",
            "[::1]:443",
            "[2001:db8::7]:50051",
        ] {
            let address: std::net::SocketAddr = address.parse().unwrap();
            let mut buf = Vec::new();
            let mut line = Line::new(AccessFormat::Json, SystemTime::UNIX_EPOCH, &mut buf);
            line.address("client", address);
            line.finish();
            let value: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(value["client"], address.to_string());
        }
    }

    #[test]
    fn millis_keep_three_decimals() {
        let mut buf = Vec::new();
        let mut line = Line::new(AccessFormat::Text, SystemTime::UNIX_EPOCH, &mut buf);
        line.millis("a", 1_234_567);
        line.millis("b", 7);
        line.millis("c", 40);
        line.finish();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00Z access a=1234.567 b=0.007 c=0.040\n"
        );
    }

    #[test]
    fn lines_past_the_buffer_are_dropped_and_counted() {
        /// A sink that says when a write starts, then waits to be let go.
        struct Gate {
            entered: std::sync::mpsc::Sender<()>,
            open: std::sync::mpsc::Receiver<()>,
            shelf: Shelf,
        }
        impl Write for Gate {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let _ = self.entered.send(());
                let _ = self.open.recv();
                self.shelf.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (entered, writing) = std::sync::mpsc::channel();
        let (open, gate) = std::sync::mpsc::channel();
        let shelf = Shelf::default();
        let sink = Gate {
            entered,
            open: gate,
            shelf: shelf.clone(),
        };
        let (log, writer) = AccessLog::builder()
            .buffer(12)
            .interval(Duration::from_millis(5))
            .to_writer(sink);
        log.push(b"first\n");
        writing
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer takes the first line");
        // The writer is stuck on the first line: two more fit in 12 bytes, the rest are dropped.
        for _ in 0..50 {
            log.push(b"later\n");
        }
        assert_eq!(log.dropped(), 48);
        drop(open);
        drop(writer);
        let text = String::from_utf8(shelf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "first\nlater\nlater\n");
        log.push(b"too late\n");
        assert_eq!(log.dropped(), 49, "a stopped log drops what comes");
    }

    #[test]
    fn lines_a_sink_refuses_are_counted_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (log, writer) = AccessLog::builder().to_writer(Broken);
        for _ in 0..3 {
            log.push(b"lost\n");
        }
        drop(writer);
        assert_eq!(log.dropped(), 3);
    }
}

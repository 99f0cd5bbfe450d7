//! The observe layer: worn outside the whole router, it opens each request's [`Scope`], counts
//! the bytes of both bodies, sets `X-Request-Id` on the answer, and ends the request when the
//! answer's body is done or dropped.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, StatusCode};
use http_body::Frame;

use super::id::REQUEST_ID;
use super::scope::{Hold, Scope};
use super::{Observer, Observers};

/// Opens a [`Scope`] for every request and tells its observers; see the [module](super) docs.
/// Wear it outermost (`axum::Router::layer`, after every merge and other layer), so that requests
/// no route matches are observed too.
#[derive(Clone)]
pub struct ObserveLayer {
    observers: Observers,
}

impl Default for ObserveLayer {
    fn default() -> Self {
        ObserveLayer::new()
    }
}

impl std::fmt::Debug for ObserveLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveLayer")
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl ObserveLayer {
    /// A layer with no observer: it gives requests their ids and nothing else.
    pub fn new() -> Self {
        ObserveLayer {
            observers: Arc::new([]),
        }
    }

    /// Adds an observer, told after those added before it.
    pub fn observer(self, observer: impl Observer) -> Self {
        let mut observers: Vec<Arc<dyn Observer>> = self.observers.iter().cloned().collect();
        observers.push(Arc::new(observer));
        ObserveLayer {
            observers: observers.into(),
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> ObserveService<S> {
        ObserveService {
            inner,
            observers: Arc::clone(&self.observers),
        }
    }
}

/// The service of an [`ObserveLayer`].
#[derive(Clone)]
pub struct ObserveService<S> {
    inner: S,
    observers: Observers,
}

impl<S, B> tower::Service<http::Request<Body>> for ObserveService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
{
    type Response = http::Response<ObservedBody<B>>;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let scope = Scope::start(&parts, &self.observers);
        let hold = scope.hold();
        // A body with nothing in it is left as it is: no wrapping, no allocation.
        let body = if http_body::Body::is_end_stream(&body) {
            body
        } else {
            Body::new(CountedBody {
                inner: body,
                scope: Arc::clone(&scope),
            })
        };
        let head = parts.method == http::Method::HEAD;
        parts.extensions.insert(scope);
        ObserveFuture {
            inner: self.inner.call(http::Request::from_parts(parts, body)),
            pending: Pending(Some(hold)),
            head,
        }
    }
}

/// A request body that counts its bytes into the request's scope.
struct CountedBody {
    inner: Body,
    scope: Arc<Scope>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.scope.add_bytes_in(data.len());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The request's hold while its answer is not there yet: the client leaving drops it, and the
/// request ends as cancelled (499).
struct Pending(Option<Hold>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(hold) = self.0.take() {
            hold.scope().set_status_if_unset(CLIENT_CLOSED);
            hold.scope().set_code_if_unset(tonic::Code::Cancelled);
        }
    }
}

/// The status of a request whose client left before its answer was complete.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

pin_project_lite::pin_project! {
    /// The future of an [`ObserveService`].
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        pending: Pending,
        head: bool,
    }
}

impl<F, B> Future for ObserveFuture<F>
where
    F: Future<Output = Result<http::Response<B>, Infallible>>,
    B: http_body::Body<Data = Bytes>,
{
    type Output = Result<http::Response<ObservedBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        let Some(hold) = this.pending.0.take() else {
            // Polled again after it answered: the service's contract forbids it.
            return Poll::Pending;
        };
        let scope = hold.scope();
        scope.set_status(response.status());
        if let Some(failure) = crate::status::Failure::of(&response) {
            scope.set_code_if_unset(failure.status().code());
        }
        response.headers_mut().insert(
            HeaderName::from_static(REQUEST_ID),
            scope.id().header_value(),
        );
        // A HEAD answer, 204, 304 and an empty body are whole once their head is sent.
        let bodiless = *this.head
            || matches!(
                response.status(),
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
            )
            || http_body::Body::is_end_stream(response.body());
        Poll::Ready(Ok(response.map(|inner| ObservedBody {
            inner,
            hold: Some(hold),
            complete: bodiless,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its bytes into the request's scope and ends the request when
    /// it is done (or dropped: a client that leaves before the end cancels the request).
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        hold: Option<Hold>,
        complete: bool,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(hold) = this.hold.take()
                && !*this.complete
            {
                hold.scope().set_code_if_unset(tonic::Code::Cancelled);
            }
        }
    }
}

impl<B> http_body::Body for ObservedBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(hold)) = (frame.data_ref(), this.hold.as_ref()) {
                    hold.scope().add_bytes_out(data.len());
                }
                // The last frame is out: the sender may never ask for the end.
                if this.inner.is_end_stream() {
                    *this.complete = true;
                    this.hold.take();
                }
            }
            // Cut off: the client did not get the whole answer.
            Some(Err(_)) => {
                if let Some(hold) = this.hold.take() {
                    hold.scope().set_code_if_unset(tonic::Code::Internal);
                }
            }
            None => {
                *this.complete = true;
                this.hold.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::BodyExt as _;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    use super::*;
    use crate::observe::{Event, StreamTransport};

    /// What one finished request looked like.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        id: String,
        status: Option<u16>,
        code: Option<tonic::Code>,
        bytes_in: u64,
        bytes_out: u64,
        events: Vec<Event>,
    }

    #[derive(Default)]
    struct Recorder {
        ended: Mutex<Vec<Seen>>,
        events: Mutex<Vec<Event>>,
        started: std::sync::atomic::AtomicUsize,
    }

    /// Per-request state an observer keeps.
    struct Mark(u32);

    impl Observer for Recorder {
        fn on_start(
            &self,
            _: &Scope,
            request: &http::request::Parts,
        ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
            self.started
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(Box::new(Mark(request.uri.path().len() as u32)))
        }

        fn on_event(&self, _: &Scope, event: Event) {
            self.events.lock().unwrap().push(event);
        }

        fn on_end(&self, scope: &Scope) {
            assert!(
                scope.state::<Mark>().is_some_and(|mark| mark.0 > 0),
                "the state kept at the start"
            );
            assert!(scope.duration().is_some());
            let events = std::mem::take(&mut *self.events.lock().unwrap());
            self.ended.lock().unwrap().push(Seen {
                id: scope.id().to_string(),
                status: scope.status().map(|s| s.as_u16()),
                code: scope.code(),
                bytes_in: scope.bytes_in(),
                bytes_out: scope.bytes_out(),
                events,
            });
        }
    }

    /// Echoes the request body; `/fail` answers 503 through the gateway's error path; `/stream`
    /// marks the request as an SSE stream.
    fn app() -> tower::util::BoxCloneService<http::Request<Body>, http::Response<Body>, Infallible>
    {
        tower::util::BoxCloneService::new(tower::service_fn(
            |request: http::Request<Body>| async move {
                let scope = Arc::clone(Scope::of(&request).expect("a scope"));
                let path = request.uri().path().to_owned();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let response = match path.as_str() {
                    "/fail" => crate::status::status_response(
                        &tonic::Status::unavailable("down"),
                        None,
                        &crate::json::Registry::EMPTY,
                    ),
                    "/stream" => {
                        scope.stream_opened(StreamTransport::Sse);
                        http::Response::new(Body::from(body))
                    }
                    _ => http::Response::new(Body::from(body)),
                };
                Ok::<_, Infallible>(response)
            },
        ))
    }

    #[tokio::test]
    async fn requests_get_ids_and_their_end_is_observed_with_what_was_counted() {
        let recorder = Arc::new(Recorder::default());
        let service = ObserveLayer::new()
            .observer(Arc::clone(&recorder))
            .layer(app());

        let request = http::Request::post("/echo")
            .header(REQUEST_ID, "client-id-1")
            .body(Body::from("hello"))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[REQUEST_ID], "client-id-1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");

        let request = http::Request::get("/fail")
            .header(REQUEST_ID, "no spaces allowed")
            .body(Body::empty())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let made = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(made.len(), 32, "{made}");
        drop(response.into_body().collect().await.unwrap());

        let request = http::Request::get("/stream")
            .body(Body::from("ab"))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        drop(response.into_body().collect().await.unwrap());

        let seen = recorder.ended.lock().unwrap().clone();
        assert_eq!(
            recorder.started.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert_eq!(
            seen,
            vec![
                Seen {
                    id: "client-id-1".into(),
                    status: Some(200),
                    code: Some(tonic::Code::Ok),
                    bytes_in: 5,
                    bytes_out: 5,
                    events: vec![],
                },
                Seen {
                    id: made,
                    status: Some(503),
                    code: Some(tonic::Code::Unavailable),
                    bytes_in: 0,
                    bytes_out: seen[1].bytes_out,
                    events: vec![],
                },
                Seen {
                    id: seen[2].id.clone(),
                    status: Some(200),
                    code: Some(tonic::Code::Ok),
                    bytes_in: 2,
                    bytes_out: 2,
                    events: vec![Event::StreamOpened],
                },
            ]
        );
        assert!(seen[1].bytes_out > 0);
        assert_ne!(seen[2].id, seen[1].id);
    }

    /// Adds a trace context to upstream calls.
    struct Tracer;

    impl Observer for Tracer {
        fn on_upstream(&self, scope: &Scope, metadata: &mut tonic::metadata::MetadataMap) {
            let value = format!("00-{}-0000000000000001-01", scope.id());
            metadata.insert("traceparent", value.parse().unwrap());
        }

        fn on_end(&self, _: &Scope) {}
    }

    #[tokio::test]
    async fn upstream_calls_carry_the_id_and_what_observers_add() {
        let seen = Arc::new(Mutex::new(None));
        let keep = Arc::clone(&seen);
        let upstream = tower::service_fn(move |request: http::Request<Body>| {
            let scope = Scope::of(&request).expect("a scope");
            let mut metadata = tonic::metadata::MetadataMap::new();
            scope.write_upstream_metadata(&mut metadata);
            assert!(scope.upstream_started().is_some());
            *keep.lock().unwrap() = Some(metadata);
            async { Ok::<_, Infallible>(http::Response::new(Body::empty())) }
        });
        let service = ObserveLayer::new().observer(Tracer).layer(upstream);
        let request = http::Request::get("/")
            .header(REQUEST_ID, "abc.1")
            .body(Body::empty());
        let response = service.oneshot(request.unwrap()).await.unwrap();
        assert_eq!(response.headers()[REQUEST_ID], "abc.1");
        let metadata = seen.lock().unwrap().take().expect("written");
        assert_eq!(metadata.get(REQUEST_ID).unwrap(), "abc.1");
        assert_eq!(
            metadata.get("traceparent").unwrap(),
            "00-abc.1-0000000000000001-01"
        );
    }

    #[tokio::test]
    async fn a_client_that_leaves_cancels_the_request_and_a_hold_keeps_it_open() {
        let recorder = Arc::new(Recorder::default());
        let service = ObserveLayer::new()
            .observer(Arc::clone(&recorder))
            .layer(app());

        // The answer's body dropped unread.
        let request = http::Request::post("/echo").body(Body::from("x")).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        drop(response);
        let seen = recorder.ended.lock().unwrap().pop().expect("ended");
        assert_eq!(seen.code, Some(tonic::Code::Cancelled));
        assert_eq!(seen.status, Some(200));

        // The client gone before the answer.
        let never = tower::service_fn(|_: http::Request<Body>| {
            std::future::pending::<Result<http::Response<Body>, Infallible>>()
        });
        let mut waiting = ObserveLayer::new()
            .observer(Arc::clone(&recorder))
            .layer(never);
        let request = http::Request::post("/echo").body(Body::from("x")).unwrap();
        let pending = waiting.ready().await.unwrap().call(request);
        assert!(recorder.ended.lock().unwrap().is_empty(), "under way");
        drop(pending);
        let seen = recorder.ended.lock().unwrap().pop().expect("ended");
        assert_eq!(
            (seen.status, seen.code),
            (Some(499), Some(tonic::Code::Cancelled))
        );

        // A hold taken inside outlives the answer.
        let held = Arc::new(Mutex::new(None));
        let keep = Arc::clone(&held);
        let holding = tower::service_fn(move |request: http::Request<Body>| {
            let scope = Scope::of(&request).expect("a scope");
            *keep.lock().unwrap() = Some(scope.hold());
            async { Ok::<_, Infallible>(http::Response::new(Body::empty())) }
        });
        let service = ObserveLayer::new()
            .observer(Arc::clone(&recorder))
            .layer(holding);
        let response = service.oneshot(http::Request::get("/ws").body(Body::empty()).unwrap());
        drop(response.await.unwrap().into_body().collect().await.unwrap());
        assert!(recorder.ended.lock().unwrap().is_empty(), "still held");
        held.lock().unwrap().take();
        assert_eq!(recorder.ended.lock().unwrap().len(), 1);
    }
}

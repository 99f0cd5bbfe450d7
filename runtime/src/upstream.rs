//! The channel to a remote service, wrapped so that the response trailers stay known.
//!
//! tonic merges a unary response's trailers into its metadata. The gateway sends headers back as
//! `Grpc-Metadata-<key>` and trailers as `Grpc-Trailer-<key>`, so [`Upstream`] copies the
//! trailers aside as the body yields them and hands them over through the response extensions.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use tonic::transport::Channel;

use crate::stream::{AbortSignal, Abortable};

/// Where the trailers of one response are copied to.
#[derive(Clone, Default, Debug)]
pub(crate) struct TrailerSlot(Arc<Mutex<Option<HeaderMap>>>);

impl TrailerSlot {
    /// The trailers, once the body has yielded them.
    pub(crate) fn take(&self) -> Option<HeaderMap> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Keeps the trailers that can become headers; gRPC's own (`grpc-status`, …) stay behind,
    /// so a call that ends without metadata keeps an empty map and allocates nothing.
    fn put(&self, trailers: &HeaderMap) {
        let kept: HeaderMap = trailers
            .iter()
            .filter(|(name, _)| !crate::metadata::is_reserved(name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(kept);
        }
    }
}

/// A tonic channel whose responses remember their trailers.
#[derive(Clone, Debug)]
pub struct Upstream {
    channel: Channel,
}

impl Upstream {
    /// Wraps a channel; clones share its connection.
    pub fn new(channel: Channel) -> Self {
        Upstream { channel }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Upstream {
    type Response = http::Response<TrailerBody>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.channel, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // A request stream the gateway abandons must fail upstream, not end cleanly.
        let request = match request.extensions().get::<AbortSignal>().cloned() {
            Some(signal) => {
                request.map(|inner| tonic::body::Body::new(Abortable { inner, signal }))
            }
            None => request,
        };
        let pending = tower::Service::call(&mut self.channel, request);
        Box::pin(async move {
            let response = pending.await?;
            let slot = TrailerSlot::default();
            let (mut parts, body) = response.into_parts();
            parts.extensions.insert(slot.clone());
            Ok(http::Response::from_parts(
                parts,
                TrailerBody { inner: body, slot },
            ))
        })
    }
}

/// A response body that copies its trailers into a [`TrailerSlot`] as they pass.
pub struct TrailerBody {
    inner: tonic::body::Body,
    slot: TrailerSlot,
}

impl Body for TrailerBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
        {
            this.slot.put(trailers);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

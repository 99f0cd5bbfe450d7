//! The signal that stops a request stream without ending it cleanly, and the body wrapper that
//! obeys it. Below both the streaming pipelines, which trigger it, and the upstream, which sends
//! the wrapped body.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

/// Set when a request stream fails: the bodies that carry the stream upstream then fail too,
/// so the upstream sees the call cancelled rather than a request stream that ended well.
#[derive(Clone, Debug, Default)]
pub(crate) struct AbortSignal(Arc<AtomicBool>);

impl AbortSignal {
    pub(crate) fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_triggered(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn status() -> tonic::Status {
        tonic::Status::cancelled("the gateway cancelled the request stream")
    }
}

/// A request body that fails once its [`AbortSignal`] is triggered.
pub(crate) struct Abortable<B> {
    pub inner: B,
    pub signal: AbortSignal,
}

impl<B> http_body::Body for Abortable<B>
where
    B: http_body::Body<Data = Bytes, Error = tonic::Status> + Unpin,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.signal.is_triggered() {
            return Poll::Ready(Some(Err(AbortSignal::status())));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}

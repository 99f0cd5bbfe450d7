//! What can end a stream besides its own end: a failure on the request side (a bad message, a
//! client gone), no message in either direction for too long, or a stream that lasts too long.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::drain::DrainWatch;
use crate::error::GatewayError;

/// When a message last went by, in either direction; shared by both sides of a call. Kept only
/// when there is an idle limit to enforce: otherwise recording a message costs nothing.
#[derive(Clone, Debug)]
pub(crate) struct Activity(Option<Arc<LastMessage>>);

#[derive(Debug)]
struct LastMessage {
    base: Instant,
    /// Milliseconds from `base` to the last message.
    millis: AtomicU64,
}

impl Activity {
    pub(crate) fn new(limits: &Limits) -> Self {
        Activity(limits.idle.map(|_| {
            Arc::new(LastMessage {
                base: Instant::now(),
                millis: AtomicU64::new(0),
            })
        }))
    }

    /// Records a message now.
    pub(crate) fn touch(&self) {
        if let Some(last) = &self.0 {
            let millis = u64::try_from(last.base.elapsed().as_millis()).unwrap_or(u64::MAX);
            last.millis.store(millis, Ordering::Relaxed);
        }
    }

    /// When the last message went by (the start, before any).
    fn last(&self) -> Option<Instant> {
        let last = self.0.as_ref()?;
        Some(last.base + Duration::from_millis(last.millis.load(Ordering::Relaxed)))
    }
}

/// The limits of a stream, from the gateway's settings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    /// The longest time with no message in either direction.
    pub idle: Option<Duration>,
    /// The longest a stream may last.
    pub duration: Option<Duration>,
}

/// Everything that can end a call early, polled beside it.
pub(crate) struct Guards {
    failure: Option<oneshot::Receiver<GatewayError>>,
    activity: Activity,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    end_of_time: Option<(Duration, Pin<Box<Sleep>>)>,
    /// Ready once the gateway drains.
    drained: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Guards {
    /// Guards starting now; `failure` reports a failure of the request side.
    pub(crate) fn new(
        limits: Limits,
        activity: Activity,
        failure: Option<oneshot::Receiver<GatewayError>>,
    ) -> Self {
        let now = Instant::now();
        let timer = |limit: Duration| (limit, Box::pin(tokio::time::sleep_until(now + limit)));
        Guards {
            failure,
            activity,
            idle: limits.idle.map(timer),
            end_of_time: limits.duration.map(timer),
            drained: None,
        }
    }

    /// The same guards, tripped too when `drain` starts.
    pub(crate) fn until_drained(mut self, drain: Option<&DrainWatch>) -> Self {
        self.drained = drain.map(|drain| Box::pin(drain.started()) as Pin<Box<_>>);
        self
    }

    /// Ready with the reason once the call must end.
    pub(crate) fn poll_tripped(&mut self, cx: &mut Context<'_>) -> Poll<GatewayError> {
        if let Some(drained) = &mut self.drained
            && drained.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(GatewayError::Draining);
        }
        if let Some(failure) = &mut self.failure {
            match Pin::new(failure).poll(cx) {
                Poll::Ready(Ok(error)) => return Poll::Ready(error),
                // The request side ended without failing.
                Poll::Ready(Err(_)) => self.failure = None,
                Poll::Pending => {}
            }
        }
        if let Some((limit, sleep)) = &mut self.end_of_time
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(GatewayError::StreamTooLong { limit: *limit });
        }
        if let Some((limit, sleep)) = &mut self.idle {
            while sleep.as_mut().poll(cx).is_ready() {
                let last = self.activity.last().unwrap_or_else(Instant::now);
                let due = last + *limit;
                if Instant::now() >= due {
                    return Poll::Ready(GatewayError::StreamIdle { limit: *limit });
                }
                sleep.as_mut().reset(due);
            }
        }
        Poll::Pending
    }

    /// Records a message now.
    pub(crate) fn touch(&self) {
        self.activity.touch();
    }
}

/// A stream of upstream results that ends with the guards' reason when they trip.
pub(crate) struct Guarded<S> {
    inner: S,
    guards: Guards,
    done: bool,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, guards: Guards) -> Self {
        Guarded {
            inner,
            guards,
            done: false,
        }
    }

    /// Gives the guards back, to watch the next stage of the call.
    pub(crate) fn into_guards(self) -> Guards {
        self.guards
    }
}

impl<S, T> Stream for Guarded<S>
where
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    type Item = Result<T, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(error) = this.guards.poll_tripped(cx) {
            this.done = true;
            return Poll::Ready(Some(Err(error)));
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => {
                this.guards.touch();
                Poll::Ready(Some(Ok(item)))
            }
            Poll::Ready(Some(Err(status))) => {
                this.done = true;
                Poll::Ready(Some(Err(GatewayError::Upstream(status))))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn never() -> impl Stream<Item = Result<u8, tonic::Status>> + Unpin {
        futures_util::stream::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_ends_with_deadline_exceeded_after_the_idle_limit() {
        let limits = Limits {
            idle: Some(Duration::from_secs(5)),
            duration: None,
        };
        let activity = Activity::new(&limits);
        let mut guarded = Guarded::new(never(), Guards::new(limits, activity.clone(), None));
        tokio::time::advance(Duration::from_secs(3)).await;
        // Activity on the other side of the call pushes the limit back.
        activity.touch();
        let started = Instant::now();
        let error = guarded.next().await.expect("an item").expect_err("idle");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(error.code(), tonic::Code::DeadlineExceeded);
        assert!(error.to_string().contains("5s"), "{error}");
        assert!(guarded.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_at_its_maximum_duration_even_when_busy() {
        let limits = Limits {
            idle: Some(Duration::from_secs(1)),
            duration: Some(Duration::from_secs(10)),
        };
        let ticks = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((Ok::<_, tonic::Status>(1u8), ()))
        });
        let mut guarded = Guarded::new(
            Box::pin(ticks),
            Guards::new(limits, Activity::new(&limits), None),
        );
        let mut received = 0;
        let error = loop {
            match guarded.next().await.expect("an item") {
                Ok(_) => received += 1,
                Err(error) => break error,
            }
        };
        assert_eq!(received, 19);
        assert!(
            matches!(error, GatewayError::StreamTooLong { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_request_side_failure_ends_the_stream_with_that_failure() {
        let (tx, rx) = oneshot::channel();
        let mut guarded = Guarded::new(
            never(),
            Guards::new(
                Limits::default(),
                Activity::new(&Limits::default()),
                Some(rx),
            ),
        );
        tx.send(GatewayError::BadPath("x".into()))
            .expect("receiver alive");
        let error = guarded.next().await.expect("an item").expect_err("failure");
        assert!(matches!(error, GatewayError::BadPath(_)));
    }

    #[tokio::test]
    async fn upstream_errors_end_the_stream() {
        let items = futures_util::stream::iter([Ok(1u8), Err(tonic::Status::aborted("x")), Ok(2)]);
        let guarded = Guarded::new(
            items,
            Guards::new(Limits::default(), Activity::new(&Limits::default()), None),
        );
        let items: Vec<_> = guarded.collect().await;
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1].as_ref().err().map(GatewayError::code),
            Some(tonic::Code::Aborted)
        );
    }
}

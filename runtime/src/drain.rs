//! Draining: the signal that asks a gateway's open streams to end because the process is
//! shutting down. Below the pipelines, which watch it, and the gateway, which hands it to them.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// Ends the open streams of every gateway that watches it ([`crate::Gateway::drain_on`]), each
/// the way its transport closes: an `{"error":…}` line, an SSE `error` event, or a WebSocket
/// close with 1001 (going away); the status is UNAVAILABLE, so clients call again elsewhere.
/// Calls without a response stream are left to finish.
///
/// ```
/// let drain = protogate::Drain::new();
/// let gateway = protogate::Gateway::new().drain_on(&drain);
/// // … on SIGTERM, once the listener stops accepting:
/// drain.start();
/// assert!(drain.is_draining());
/// # drop(gateway);
/// ```
#[derive(Clone, Debug)]
pub struct Drain(Arc<watch::Sender<bool>>);

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    /// A drain not started.
    pub fn new() -> Self {
        Drain(Arc::new(watch::Sender::new(false)))
    }

    /// Ends every open stream now, and every stream that starts from now on.
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`Drain::start`] was called.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    pub(crate) fn watch(&self) -> DrainWatch {
        DrainWatch(self.0.subscribe())
    }
}

/// What a gateway keeps of a [`Drain`]: enough to wait for it.
#[derive(Clone, Debug)]
pub(crate) struct DrainWatch(watch::Receiver<bool>);

impl DrainWatch {
    /// Ready once the drain starts (never, if its [`Drain`] is gone without starting).
    pub(crate) fn started(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.clone();
        async move {
            if receiver.wait_for(|draining| *draining).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_wakes_when_the_drain_starts_and_never_if_it_is_dropped() {
        let drain = Drain::new();
        let started = drain.watch().started();
        tokio::pin!(started);
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), &mut started).await;
        assert!(early.is_err(), "not started yet");
        drain.start();
        started.await;
        assert!(drain.is_draining());

        let dropped = Drain::new();
        let never = dropped.watch().started();
        drop(dropped);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), never).await;
        assert!(waited.is_err(), "a drain dropped unstarted ends nothing");
    }
}

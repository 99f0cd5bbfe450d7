//! One HTTP/2 connection to one endpoint: opened by the first call, shared by every call after
//! it, and opened again by the next call once it closes.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::sync::OnceCell;

use super::dial::{Dial, Ended};
use super::endpoint::PeerState;

/// One attempt at a connection. Its sender is set once the handshake succeeds; an attempt whose
/// handshake failed stays empty and the next call tries again.
#[derive(Default)]
struct Attempt {
    sender: OnceCell<SendRequest<Bytes>>,
}

/// Why no stream could be opened: nothing reached the upstream, so the call may go elsewhere.
#[derive(Debug)]
pub(crate) struct NotSent(pub tonic::Status);

/// A lazily opened, self-renewing HTTP/2 connection to one peer.
pub(crate) struct Connection {
    peer: Arc<PeerState>,
    dial: Arc<Dial>,
    current: Mutex<Arc<Attempt>>,
}

impl Connection {
    pub(crate) fn new(peer: Arc<PeerState>, dial: Arc<Dial>) -> Connection {
        Connection {
            peer,
            dial,
            current: Mutex::default(),
        }
    }

    /// A sender ready for one more stream, connecting first if need be.
    ///
    /// A connection that was ready a moment ago may have closed since (the upstream restarted,
    /// or sent GOAWAY and finishes only the calls it had). Nothing has been sent then, so a new
    /// connection is tried once.
    pub(crate) async fn ready(self: &Arc<Self>) -> Result<SendRequest<Bytes>, NotSent> {
        let mut renewed = false;
        loop {
            let attempt = self.current();
            let sender = attempt
                .sender
                .get_or_try_init(|| self.connect(Arc::downgrade(&attempt)))
                .await?;
            match sender.clone().ready().await {
                Ok(sender) => return Ok(sender),
                Err(error) => {
                    self.retire(&Arc::downgrade(&attempt));
                    if renewed {
                        return Err(NotSent(super::exchange::status_of(&error)));
                    }
                    renewed = true;
                }
            }
        }
    }

    fn current(&self) -> Arc<Attempt> {
        self.lock_current().clone()
    }

    /// Forgets `attempt` if it is still the current one, so that the next call connects anew.
    fn retire(&self, attempt: &Weak<Attempt>) {
        let mut current = self.lock_current();
        if std::ptr::eq(Arc::as_ptr(&current), attempt.as_ptr()) {
            *current = Arc::default();
        }
    }

    /// The current attempt, locked. Nothing panics while holding it, and the slot is valid
    /// whatever happened, so a poisoned lock is used as it is.
    fn lock_current(&self) -> std::sync::MutexGuard<'_, Arc<Attempt>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the connection; its task retires `attempt` when it ends, and marks the endpoint
    /// down when it stopped answering PINGs.
    async fn connect(
        self: &Arc<Self>,
        attempt: Weak<Attempt>,
    ) -> Result<SendRequest<Bytes>, NotSent> {
        // The task holds the connection weakly: once every handle to it is gone, the connection
        // closes and the task ends.
        let owner = Arc::downgrade(self);
        let metrics = self.dial.metrics.clone();
        let label = Arc::clone(&self.peer.label);
        let on_end = move |ended: Ended| {
            if let Some(metrics) = &metrics {
                metrics.disconnected(&label);
            }
            if let Some(owner) = owner.upgrade() {
                owner.retire(&attempt);
                if ended == Ended::Unresponsive {
                    owner.peer.mark_down("it stopped answering HTTP/2 PINGs");
                }
            }
        };
        let opened = self.dial.open(&self.peer.peer, on_end).await;
        if let Some(metrics) = &self.dial.metrics {
            metrics.connected(&self.peer.label, opened.is_ok());
        }
        match opened {
            Ok(sender) => Ok(sender),
            Err(error) => {
                let reason = format!("cannot connect: {error}");
                self.peer.failed(&reason);
                Err(NotSent(tonic::Status::unavailable(format!(
                    "cannot connect to the upstream {}: {error}",
                    self.peer.peer
                ))))
            }
        }
    }
}

//! A connection whose client stops taking data is let go: a write that waits longer than the
//! send timeout fails, and the server closes the connection.
//!
//! Without it, a client that stops reading a response (an event stream, a large answer) keeps
//! its connection and what the gateway has buffered for it for as long as its TCP stack keeps
//! acknowledging the kernel's window probes, that is, for ever: the stream idle limit cannot
//! tell, as it only runs when the response is asked for more, and a server that cannot write
//! does not ask. Only a write that waits counts: a quiet stream, with nothing to send, is not a
//! stalled one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `io`, whose writes fail with [`io::ErrorKind::TimedOut`] once one has waited `limit` for the
/// client to take data.
pub(super) struct SendTimeout<I> {
    io: I,
    limit: Duration,
    /// Armed while a write waits: made at the first wait, reset at the next.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<I> SendTimeout<I> {
    pub(super) fn new(io: I, limit: Duration) -> Self {
        SendTimeout {
            io,
            limit,
            timer: None,
            waiting: false,
        }
    }

    /// What a write (or flush) that returned `polled` means: the same, unless it has waited past
    /// the limit.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let expired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        let seconds = self.limit.as_secs_f64();
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client took no data for {seconds} s"),
        )))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendTimeout<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendTimeout<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_takes_fails_after_the_limit() {
        // A pipe whose reader takes 16 bytes and then nothing.
        let (writer, mut reader) = tokio::io::duplex(16);
        let mut writer = SendTimeout::new(writer, Duration::from_secs(60));
        writer.write_all(&[1; 16]).await.expect("room for these");
        let started = Instant::now();
        let error = writer.write_all(&[2; 16]).await.expect_err("stalled");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        let mut taken = [0; 16];
        reader
            .read_exact(&mut taken)
            .await
            .expect("the first bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_is_served_to_the_end() {
        let (writer, mut reader) = tokio::io::duplex(16);
        let mut writer = SendTimeout::new(writer, Duration::from_secs(60));
        // The reader takes 16 bytes every 50 s: each wait is shorter than the limit, all of
        // them together much longer.
        let reading = tokio::spawn(async move {
            let mut taken = Vec::new();
            let mut chunk = [0; 16];
            loop {
                tokio::time::sleep(Duration::from_secs(50)).await;
                match reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => return taken,
                    Ok(n) => taken.extend_from_slice(&chunk[..n]),
                }
            }
        });
        let started = Instant::now();
        writer.write_all(&[7; 160]).await.expect("served");
        writer.shutdown().await.expect("shut down");
        drop(writer);
        assert!(started.elapsed() > Duration::from_secs(60));
        assert_eq!(reading.await.expect("reader"), vec![7; 160]);
    }
}

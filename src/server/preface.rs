//! Which HTTP a connection speaks, told from its first bytes: HTTP/2's connection preface, or
//! anything else, which is HTTP/1.
//!
//! hyper-util's `auto` builder tells them apart too, but it hands the bytes it read back to
//! hyper's HTTP/1 connection as a first read of their own (24 bytes at most), so hyper's read
//! buffer, reserved at 8 KiB for that first read, had to grow for the second one, the rest of
//! the head: 16 KiB for as long as the connection lived, a held-open event stream included.
//! Here the bytes read are handed back together with what has arrived after them, in one read.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends before anything else (RFC 9113, section 3.4).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    /// HTTP/1.0 or 1.1: whatever does not start with HTTP/2's preface.
    Http1,
    /// HTTP/2 with prior knowledge (or negotiated by ALPN): the connection starts with its
    /// preface.
    Http2,
}

/// A connection whose first bytes were read to tell its protocol; reading it hands them back
/// first.
pub(super) struct Sniffed<I> {
    io: I,
    /// The bytes read to tell the protocol; `start..end` are yet to be handed back.
    first: [u8; HTTP2_PREFACE.len()],
    start: usize,
    end: usize,
    /// An error that came while reading on after the first bytes, returned by the next read.
    error: Option<io::Error>,
}

impl<I: AsyncRead + Unpin> Sniffed<I> {
    /// Reads `io` until its bytes are HTTP/2's preface, or are not: at the first byte that
    /// differs, or at its end (a connection that closes at once is left to HTTP/1, which
    /// closes it in turn).
    pub(super) async fn read(io: I) -> io::Result<(Protocol, Sniffed<I>)> {
        let mut sniffed = Sniffed {
            io,
            first: [0; HTTP2_PREFACE.len()],
            start: 0,
            end: 0,
            error: None,
        };
        let protocol = poll_fn(|cx| sniffed.poll_protocol(cx)).await?;
        Ok((protocol, sniffed))
    }

    fn poll_protocol(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Protocol>> {
        while self.end < HTTP2_PREFACE.len() {
            let mut buf = ReadBuf::new(&mut self.first[self.end..]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let read = buf.filled().len();
            let (from, to) = (self.end, self.end + read);
            self.end = to;
            if read == 0 || self.first[from..to] != HTTP2_PREFACE[from..to] {
                return Poll::Ready(Ok(Protocol::Http1));
            }
        }
        Poll::Ready(Ok(Protocol::Http2))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Sniffed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.error.take() {
            return Poll::Ready(Err(error));
        }
        if this.start == this.end {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let handed = (this.end - this.start).min(buf.remaining());
        buf.put_slice(&this.first[this.start..this.start + handed]);
        this.start += handed;
        // The rest of a request most often came with its first bytes: it joins them in this
        // read, as though nothing had been read before. Nothing more yet is no failure (the
        // next read waits for it); an error is the next read's.
        if this.start == this.end && buf.remaining() > 0 {
            match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Ready(Err(error)) => this.error = Some(error),
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Sniffed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Sniffs what a client writes in `pieces` (each a write of its own), then reads the
    /// connection to its end.
    async fn sniff(pieces: &[&[u8]]) -> (Protocol, Vec<u8>, Vec<usize>) {
        let (mut client, server) = tokio::io::duplex(1024);
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|piece| piece.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for piece in pieces {
                client.write_all(&piece).await.expect("writes");
                tokio::task::yield_now().await;
            }
        });
        let (protocol, mut sniffed) = Sniffed::read(server).await.expect("sniffed");
        writer.await.expect("written");
        let mut all = Vec::new();
        let mut reads = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let read = sniffed.read(&mut chunk).await.expect("reads");
            if read == 0 {
                break;
            }
            reads.push(read);
            all.extend_from_slice(&chunk[..read]);
        }
        (protocol, all, reads)
    }

    #[tokio::test]
    async fn an_http1_head_comes_back_whole_in_one_read() {
        let head = b"GET /v1/watch/s1?everyMs=2000 HTTP/1.1\r\nhost: gateway\r\naccept: text/event-stream\r\n\r\n";
        let (protocol, read, reads) = sniff(&[head]).await;
        assert_eq!(protocol, Protocol::Http1);
        assert_eq!(read, head);
        assert_eq!(reads, [head.len()], "one read for the head");
    }

    #[tokio::test]
    async fn the_http2_preface_is_told_even_in_pieces() {
        let mut bytes = HTTP2_PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let (protocol, read, _) = sniff(&[&bytes[..3], &bytes[3..20], &bytes[20..]]).await;
        assert_eq!(protocol, Protocol::Http2);
        assert_eq!(read, bytes);
    }

    #[tokio::test]
    async fn a_start_like_the_preface_that_strays_is_http1() {
        let (protocol, read, _) = sniff(&[b"PRI * HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(protocol, Protocol::Http1);
        assert_eq!(read, b"PRI * HTTP/1.1\r\n\r\n");
        // "P", then something else.
        let (protocol, read, _) = sniff(&[b"P", b"OST / HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(protocol, Protocol::Http1);
        assert_eq!(read, b"POST / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_connection_that_ends_at_once_is_http1_with_nothing_to_read() {
        let (protocol, read, _) = sniff(&[]).await;
        assert_eq!(protocol, Protocol::Http1);
        assert!(read.is_empty());
        let (protocol, read, _) = sniff(&[b"PRI * HT"]).await;
        assert_eq!(protocol, Protocol::Http1);
        assert_eq!(read, b"PRI * HT");
    }

    #[tokio::test]
    async fn a_small_read_takes_the_first_bytes_a_piece_at_a_time() {
        let (client, server) = tokio::io::duplex(1024);
        let mut client = client;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .expect("writes");
        drop(client);
        let (_, mut sniffed) = Sniffed::read(server).await.expect("sniffed");
        let mut small = [0u8; 10];
        let mut all = Vec::new();
        loop {
            let read = sniffed.read(&mut small).await.expect("reads");
            if read == 0 {
                break;
            }
            all.extend_from_slice(&small[..read]);
        }
        assert_eq!(all, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    }
}

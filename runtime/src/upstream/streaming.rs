//! Streaming calls on the built-in upstream: tonic's client framing, with buffers that start
//! empty.
//!
//! A stream held open is mostly idle: one small message now and then. tonic's codec allocates
//! 8 KiB up front for the response stream's decode buffer (and as much for a request stream's
//! encode buffer), which a gateway holding ten thousand streams pays ten thousand times. Here
//! both start empty and grow to the largest piece of data they are given, as tonic's own grow
//! past their 8 KiB; a large message decodes as before, only the idle stream is cheaper.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::Buf as _;
use futures_util::Stream;
use http::uri::PathAndQuery;
use tonic::Status;
use tonic::client::Grpc;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::Upstream;
use super::unary::Remote;

/// A call's answer to come (the same type as the generated backends' futures, which live above
/// this layer).
type Answer<T> = Pin<Box<dyn Future<Output = Result<tonic::Response<T>, Status>> + Send>>;

/// The messages an upstream streams back (the same type as the stream layer's
/// `ResponseStream`).
type Messages<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Bytes a stream's codec buffers hold before any data: none. Each grows to the largest piece
/// it is handed (an HTTP/2 data frame, or an encoded request message) and is reused after.
const INITIAL_BUFFER_BYTES: usize = 0;

/// How many bytes of request messages are encoded before the request body yields them:
/// tonic's default.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// The prost codec with buffers that start empty.
pub(crate) struct StreamCodec<T, U>(PhantomData<fn(T) -> U>);

impl<T, U> Default for StreamCodec<T, U> {
    fn default() -> Self {
        StreamCodec(PhantomData)
    }
}

impl<T, U> StreamCodec<T, U> {
    fn buffer_settings() -> BufferSettings {
        BufferSettings::new(INITIAL_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    }
}

impl<T, U> Codec for StreamCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstEncoder::new(Self::buffer_settings())
    }

    fn decoder(&mut self) -> SliceDecoder<U> {
        SliceDecoder(PhantomData)
    }
}

/// Decodes each response message from one slice of tonic's buffer. tonic hands a decoder the
/// message as a `DecodeBuf`, a `Buf` over its buffer that moves the buffer's start at every
/// field prost reads; a slice is a pointer and a length, and a message's strings and bytes are
/// copied out of it in one piece each. In a stream of small messages that was about a sixth of
/// the gateway's decoding time.
pub(crate) struct SliceDecoder<U>(PhantomData<fn() -> U>);

impl<U: prost::Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        // The message is contiguous in tonic's buffer; were it ever not, prost reads it as a
        // `Buf` like tonic's own decoder.
        let decoded = match buf.chunk().get(..len) {
            Some(message) => U::decode(message).inspect(|_| buf.advance(len)),
            None => U::decode(&mut *buf),
        };
        decoded.map(Some).map_err(|error| {
            Status::internal(format!(
                "the upstream's message is not valid protobuf: {error}"
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        StreamCodec::<(), U>::buffer_settings()
    }
}

impl Remote {
    /// Calls the server-streaming method at `path` (`/package.Service/Method`) with `request`.
    pub fn server_streaming<Req, Resp>(
        &self,
        path: &'static str,
        request: tonic::Request<Req>,
    ) -> Answer<Messages<Resp>>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = client(self);
        Box::pin(async move {
            ready(&mut grpc).await?;
            let path = PathAndQuery::from_static(path);
            let response = grpc
                .server_streaming(request, path, StreamCodec::default())
                .await?;
            Ok(response.map(|messages| Box::pin(messages) as Messages<Resp>))
        })
    }

    /// Calls the client-streaming method at `path` with the messages of `request`.
    pub fn client_streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: tonic::Request<S>,
    ) -> Answer<Resp>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = client(self);
        Box::pin(async move {
            ready(&mut grpc).await?;
            let path = PathAndQuery::from_static(path);
            grpc.client_streaming(request, path, StreamCodec::default())
                .await
        })
    }

    /// Calls the bidi-streaming method at `path` with the messages of `request`.
    pub fn streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: tonic::Request<S>,
    ) -> Answer<Messages<Resp>>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = client(self);
        Box::pin(async move {
            ready(&mut grpc).await?;
            let path = PathAndQuery::from_static(path);
            let response = grpc
                .streaming(request, path, StreamCodec::default())
                .await?;
            Ok(response.map(|messages| Box::pin(messages) as Messages<Resp>))
        })
    }
}

/// tonic's client over the upstream. It decodes messages of any size: the upstream's response
/// body already holds each one to the upstream's own limit, and fails the call past it.
fn client(remote: &Remote) -> Grpc<Upstream> {
    Grpc::new(remote.upstream().clone()).max_decoding_message_size(usize::MAX)
}

/// Waits for the client to take a call, as tonic's generated clients do. The upstream is always
/// ready (each call waits for its own stream when sent), so this is a formality.
async fn ready(grpc: &mut Grpc<Upstream>) -> Result<(), Status> {
    grpc.ready()
        .await
        .map_err(|error| Status::unknown(format!("the upstream was not ready: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use futures_util::StreamExt;
    use http_body::Frame;
    use tonic::codec::{Decoder, Encoder};

    #[test]
    fn the_buffers_start_empty() {
        // tonic shows the settings only through `Debug`.
        let mut codec = StreamCodec::<prost_types::Duration, prost_types::Duration>::default();
        for settings in [
            codec.decoder().buffer_settings(),
            codec.encoder().buffer_settings(),
        ] {
            let shown = format!("{settings:?}");
            assert!(shown.contains("buffer_size: 0,"), "{shown}");
        }
    }

    /// `message` as one gRPC frame.
    fn framed(message: &impl prost::Message) -> Bytes {
        let mut frame = BytesMut::new();
        frame.put_u8(0);
        frame.put_u32(message.encoded_len() as u32);
        message.encode_raw(&mut frame);
        frame.freeze()
    }

    #[tokio::test]
    async fn messages_decode_whatever_their_size_and_however_they_are_cut() {
        let small = prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("a".into())),
        };
        let large = prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("b".repeat(100_000))),
        };
        let mut data = BytesMut::new();
        for message in [&small, &large, &small] {
            data.extend_from_slice(&framed(message));
        }
        // Cut in pieces of 7 bytes and of 40,000, some ending inside a frame's prefix.
        for piece in [7, 40_000] {
            let chunks: Vec<Result<Frame<Bytes>, Status>> = data
                .chunks(piece)
                .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
                .collect();
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
            let decoder =
                StreamCodec::<prost_types::Value, prost_types::Value>::default().decoder();
            let streaming = tonic::Streaming::new_request(decoder, body, None, None);
            let messages: Vec<prost_types::Value> = streaming
                .map(|message| message.expect("decoded"))
                .collect()
                .await;
            assert_eq!(
                messages,
                [small.clone(), large.clone(), small.clone()],
                "{piece}"
            );
        }
    }

    #[tokio::test]
    async fn a_message_that_is_not_protobuf_fails_the_stream_as_internal() {
        let good = prost_types::Duration {
            seconds: 5,
            nanos: 0,
        };
        let mut data = BytesMut::from(&framed(&good)[..]);
        // A field whose length runs past the message.
        data.extend_from_slice(&[0, 0, 0, 0, 2, 0x0a, 0x05]);
        let body = http_body_util::StreamBody::new(futures_util::stream::iter([Ok::<_, Status>(
            Frame::data(data.freeze()),
        )]));
        let decoder =
            StreamCodec::<prost_types::Duration, prost_types::Duration>::default().decoder();
        let mut streaming = tonic::Streaming::new_request(decoder, body, None, None);
        let first = streaming.next().await.expect("a message").expect("decoded");
        assert_eq!(first, good);
        let status = streaming
            .next()
            .await
            .expect("an outcome")
            .expect_err("not protobuf");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status.message().contains("not valid protobuf"),
            "{status:?}"
        );
    }
}

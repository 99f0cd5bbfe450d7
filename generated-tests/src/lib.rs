//! Gateways generated from the protos under `proto/`, a tonic backend for them, and helpers that
//! start both on loopback for the tests in `tests/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::metadata::{KeyAndValueRef, MetadataValue};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Everything protogate-build generated for the test protos.
#[allow(missing_docs)]
pub mod pb {
    ::protogate::include_gateway!();
}

pub mod faulty;
pub mod required;
pub mod streams;
pub mod strict;
pub mod unbound;
pub mod wildcards;

use pb::protogate::tests::v1::{
    EchoRequest, Everything, FailRequest, MetadataReply, SlowRequest,
    binding_service_server::{BindingService, BindingServiceServer},
};

/// The backend: echoes requests, fails, waits or reports metadata on demand.
#[derive(Debug, Default, Clone)]
pub struct Backend;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl BindingService for Backend {
    async fn get(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn get_resource(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn get_file(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn get_nested(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn get_deep(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn get_wild(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn get_literal(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        let mut echo = request.into_inner();
        echo.name = "literal".into();
        Ok(Response::new(echo))
    }
    async fn post(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn put(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn patch(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn delete(&self, _: Request<EchoRequest>) -> Reply<()> {
        Ok(Response::new(()))
    }
    async fn frob(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn cancel(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn options(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn tags(&self, request: Request<EchoRequest>) -> Reply<EchoRequest> {
        Ok(Response::new(request.into_inner()))
    }
    async fn echo_everything(&self, request: Request<Everything>) -> Reply<Everything> {
        Ok(Response::new(request.into_inner()))
    }

    async fn fail(&self, request: Request<FailRequest>) -> Reply<()> {
        let request = request.into_inner();
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("code", "asked to fail");
        details.set_resource_info("test", "fail", "", "the failing resource");
        let mut status =
            Status::with_error_details(tonic::Code::from(request.code), request.message, details);
        status
            .metadata_mut()
            .insert("x-failure", MetadataValue::from_static("yes"));
        Err(status)
    }

    async fn slow(&self, request: Request<SlowRequest>) -> Reply<()> {
        let millis = u64::try_from(request.into_inner().millis).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(millis.min(10_000))).await;
        Ok(Response::new(()))
    }

    async fn metadata(&self, request: Request<()>) -> Reply<MetadataReply> {
        let mut received = HashMap::new();
        for entry in request.metadata().iter() {
            if let KeyAndValueRef::Ascii(key, value) = entry {
                received.insert(
                    key.as_str().to_owned(),
                    value.to_str().unwrap_or("<binary>").to_owned(),
                );
            }
            if let KeyAndValueRef::Binary(key, value) = entry {
                let bytes = value.to_bytes().unwrap_or_default();
                received.insert(key.as_str().to_owned(), format!("{:?}", bytes.as_ref()));
            }
        }
        let mut response = Response::new(MetadataReply { received });
        response
            .metadata_mut()
            .insert("x-served-by", MetadataValue::from_static("backend"));
        Ok(response)
    }
}

/// Echoes the proto2 service's requests.
#[derive(Debug, Default, Clone)]
pub struct Proto2Backend;

#[tonic::async_trait]
impl pb::protogate::tests::proto2::odd_server::Odd for Proto2Backend {
    async fn clone(
        &self,
        request: Request<pb::protogate::tests::proto2::Legacy>,
    ) -> Reply<pb::protogate::tests::proto2::Legacy> {
        Ok(Response::new(request.into_inner()))
    }

    async fn service(
        &self,
        request: Request<pb::protogate::tests::proto2::Legacy>,
    ) -> Reply<pb::protogate::tests::proto2::Legacy> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Echoes the package-less service's requests.
#[derive(Debug, Default, Clone)]
pub struct LooseBackend;

#[tonic::async_trait]
impl pb::loose_service_server::LooseService for LooseBackend {
    async fn get_loose(&self, request: Request<pb::Loose>) -> Reply<pb::Loose> {
        Ok(Response::new(request.into_inner()))
    }
}

/// A response body that adds `x-trailer: done` to the trailers it carries: tonic sends only
/// gRPC's own trailers on success, and the gateway's trailer handling needs a custom one to show.
struct WithTrailer(tonic::body::Body);

impl http_body::Body for WithTrailer {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut polled = std::pin::Pin::new(&mut self.0).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
            && trailers.get("grpc-status").is_some_and(|s| s == "0")
        {
            trailers.insert("x-trailer", http::HeaderValue::from_static("done"));
        }
        polled
    }
}

/// Starts the tonic backend on 127.0.0.1 and returns its address.
pub async fn start_backend() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(serve_backend(listener, std::future::pending()));
    Ok(address)
}

/// Serves the tonic backend on `listener` until `shutdown` completes, then closes its
/// connections and returns.
pub async fn serve_backend(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_backend_with(tonic::transport::Server::builder(), listener, shutdown).await
}

/// [`serve_backend`] with the server settings of `server`.
pub async fn serve_backend_with(
    server: tonic::transport::Server,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let add_trailer =
        tower::util::MapResponseLayer::new(|response: http::Response<tonic::body::Body>| {
            response.map(|body| tonic::body::Body::new(WithTrailer(body)))
        });
    server
        .layer(add_trailer)
        .add_service(BindingServiceServer::new(Backend))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serves `gateway` on 127.0.0.1 and returns its base URL.
pub async fn serve_gateway(gateway: protogate::Gateway) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = gateway
        .into_router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

/// A gateway in front of a fresh backend, reached over a real connection.
pub async fn remote_gateway() -> std::io::Result<String> {
    let backend = start_backend().await?;
    gateway_to(
        backend,
        pb::protogate::tests::v1::binding_service_gateway::remote,
        |gateway| gateway,
    )
    .await
}

/// Serves `routes` (tonic services) on 127.0.0.1 until the test's runtime ends; their address.
pub async fn serve_routes(routes: tonic::service::Routes) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming),
    );
    Ok(address)
}

/// A gateway with the settings `configure` gives it, forwarding the service that `remote`
/// (a generated `remote`) makes to the backend at `backend`; its base URL.
pub async fn gateway_to(
    backend: SocketAddr,
    remote: fn(protogate::Upstream) -> protogate::Service,
    configure: impl FnOnce(protogate::Gateway) -> protogate::Gateway,
) -> std::io::Result<String> {
    let upstream =
        protogate::Upstream::lazy(&format!("http://{backend}")).map_err(std::io::Error::other)?;
    let gateway = configure(protogate::Gateway::new())
        .with(remote(upstream))
        .map_err(std::io::Error::other)?;
    serve_gateway(gateway).await
}

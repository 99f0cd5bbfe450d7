//! The backend of the strictness test service: every RPC echoes its request, so a test sees
//! exactly what the gateway built from the HTTP request (or that it refused it).

use std::net::SocketAddr;

use tonic::{Request, Response, Status};

use crate::pb::protogate::tests::strict::v1::StrictRequest;
use crate::pb::protogate::tests::strict::v1::strict_service_gateway;
use crate::pb::protogate::tests::strict::v1::strict_service_server::{
    StrictService, StrictServiceServer,
};

/// Echoes every request.
#[derive(Debug, Default, Clone)]
pub struct StrictBackend;

type Reply = Result<Response<StrictRequest>, Status>;

#[tonic::async_trait]
impl StrictService for StrictBackend {
    async fn echo(&self, request: Request<StrictRequest>) -> Reply {
        Ok(Response::new(request.into_inner()))
    }
    async fn update(&self, request: Request<StrictRequest>) -> Reply {
        Ok(Response::new(request.into_inner()))
    }
    async fn replace(&self, request: Request<StrictRequest>) -> Reply {
        Ok(Response::new(request.into_inner()))
    }
    async fn tree(&self, request: Request<StrictRequest>) -> Reply {
        Ok(Response::new(request.into_inner()))
    }
    async fn run(&self, request: Request<StrictRequest>) -> Reply {
        Ok(Response::new(request.into_inner()))
    }
    async fn pick(&self, request: Request<StrictRequest>) -> Reply {
        Ok(Response::new(request.into_inner()))
    }
    async fn blob(&self, request: Request<StrictRequest>) -> Reply {
        Ok(Response::new(request.into_inner()))
    }
}

/// Starts the echo backend on 127.0.0.1 and returns its address.
pub async fn start_strict_backend() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StrictServiceServer::new(StrictBackend))
            .serve_with_incoming(incoming),
    );
    Ok(address)
}

/// A gateway with the settings `configure` gives it, in front of a fresh backend reached over a
/// real connection; its base URL.
pub async fn strict_gateway(
    configure: impl FnOnce(protogate::Gateway) -> protogate::Gateway,
) -> std::io::Result<String> {
    let address = start_strict_backend().await?;
    let upstream =
        protogate::Upstream::lazy(&format!("http://{address}")).map_err(std::io::Error::other)?;
    let gateway = configure(protogate::Gateway::new())
        .with(strict_service_gateway::remote(upstream))
        .map_err(std::io::Error::other)?;
    crate::serve_gateway(gateway).await
}

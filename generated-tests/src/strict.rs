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
    crate::serve_routes(tonic::service::Routes::new(StrictServiceServer::new(
        StrictBackend,
    )))
    .await
}

/// A gateway with the settings `configure` gives it, in front of a fresh backend reached over a
/// real connection; its base URL.
pub async fn strict_gateway(
    configure: impl FnOnce(protogate::Gateway) -> protogate::Gateway,
) -> std::io::Result<String> {
    let backend = start_strict_backend().await?;
    crate::gateway_to(backend, strict_service_gateway::remote, configure).await
}

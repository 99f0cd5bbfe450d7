//! The backend of the `**` test service: it answers every RPC with the request it received and
//! the name of the RPC, so a test sees which binding served a path and what it captured.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};

use crate::pb::protogate::tests::wildcards::v1::Echo;
use crate::pb::protogate::tests::wildcards::v1::wildcard_service_gateway;
use crate::pb::protogate::tests::wildcards::v1::wildcard_service_server::{
    WildcardService, WildcardServiceServer,
};

/// Echoes each request, naming the RPC that served it.
#[derive(Debug, Default, Clone)]
pub struct WildcardBackend;

type Reply<T> = Result<Response<T>, Status>;

fn echo(rpc: &str, request: Request<Echo>) -> Reply<Echo> {
    let mut echo = request.into_inner();
    echo.rpc = rpc.to_owned();
    Ok(Response::new(echo))
}

#[tonic::async_trait]
impl WildcardService for WildcardBackend {
    async fn list_documents(&self, request: Request<Echo>) -> Reply<Echo> {
        echo("ListDocuments", request)
    }
    async fn create_document(&self, request: Request<Echo>) -> Reply<Echo> {
        echo("CreateDocument", request)
    }
    async fn get_meta(&self, request: Request<Echo>) -> Reply<Echo> {
        echo("GetMeta", request)
    }
    async fn get_document(&self, request: Request<Echo>) -> Reply<Echo> {
        echo("GetDocument", request)
    }
    async fn purge(&self, request: Request<Echo>) -> Reply<Echo> {
        echo("Purge", request)
    }
    async fn create_bot_session(&self, request: Request<Echo>) -> Reply<Echo> {
        echo("CreateBotSession", request)
    }
    async fn update_bot_session(&self, request: Request<Echo>) -> Reply<Echo> {
        echo("UpdateBotSession", request)
    }
}

/// Starts the tonic backend on 127.0.0.1 and returns its address.
pub async fn start_backend() -> std::io::Result<SocketAddr> {
    crate::serve_routes(tonic::service::Routes::new(WildcardServiceServer::new(
        WildcardBackend,
    )))
    .await
}

/// A gateway in front of a fresh backend, reached over a real connection; its base URL.
pub async fn remote_gateway() -> std::io::Result<String> {
    let backend = start_backend().await?;
    crate::gateway_to(backend, wildcard_service_gateway::remote, |gateway| gateway).await
}

//! The backend of the services without rules (`protogate/tests/unbound`): every RPC answers
//! with what it received, so a test sees that its unbound route reached it with the whole
//! message, in each streaming shape.

use std::net::SocketAddr;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::pb::protogate::tests::unbound::v1::bare_service_server::{
    BareService, BareServiceServer,
};
use crate::pb::protogate::tests::unbound::v1::unbound_service_server::{
    UnboundService, UnboundServiceServer,
};
use crate::pb::protogate::tests::unbound::v1::{
    Note, Notes, RepeatRequest, bare_service_gateway, unbound_service_gateway,
};

/// Answers every RPC of both services.
#[derive(Debug, Default, Clone)]
pub struct UnboundBackend;

type Reply<T> = Result<Response<T>, Status>;
type Messages<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl UnboundService for UnboundBackend {
    async fn annotated(&self, request: Request<Note>) -> Reply<Note> {
        Ok(Response::new(request.into_inner()))
    }

    async fn echo(&self, request: Request<Note>) -> Reply<Note> {
        Ok(Response::new(request.into_inner()))
    }

    type RepeatStream = Messages<Note>;

    /// `times` copies of the note, each with its index as `count`.
    async fn repeat(&self, request: Request<RepeatRequest>) -> Reply<Self::RepeatStream> {
        let request = request.into_inner();
        let note = request.note.unwrap_or_default();
        let copies = (0..request.times).map(move |count| {
            Ok(Note {
                count,
                ..note.clone()
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(copies))))
    }

    async fn collect(&self, request: Request<Streaming<Note>>) -> Reply<Notes> {
        let mut incoming = request.into_inner();
        let mut notes = Vec::new();
        while let Some(note) = incoming.next().await {
            notes.push(note?);
        }
        Ok(Response::new(Notes { notes }))
    }

    type ChatStream = Messages<Note>;

    /// Each note back as it arrives, its name upper-cased.
    async fn chat(&self, request: Request<Streaming<Note>>) -> Reply<Self::ChatStream> {
        let answers = request.into_inner().map(|note| {
            note.map(|note| Note {
                name: note.name.to_uppercase(),
                ..note
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tonic::async_trait]
impl BareService for UnboundBackend {
    async fn ping(&self, request: Request<Note>) -> Reply<Note> {
        let note = request.into_inner();
        Ok(Response::new(Note {
            name: format!("pong {}", note.name),
            ..note
        }))
    }
}

/// Starts the tonic backend of both services on 127.0.0.1 and returns its address.
pub async fn start_backend() -> std::io::Result<SocketAddr> {
    let routes = tonic::service::Routes::new(UnboundServiceServer::new(UnboundBackend))
        .add_service(BareServiceServer::new(UnboundBackend));
    crate::serve_routes(routes).await
}

/// A gateway serving both services from a fresh backend, over a real connection, with unbound
/// routes served or not; its base URL.
pub async fn remote_gateway(unbound_methods: bool) -> std::io::Result<String> {
    let backend = start_backend().await?;
    let upstream =
        protogate::Upstream::lazy(&format!("http://{backend}")).map_err(std::io::Error::other)?;
    let gateway = protogate::Gateway::new()
        .unbound_methods(unbound_methods)
        .with(unbound_service_gateway::remote(upstream.clone()))
        .and_then(|gateway| gateway.with(bare_service_gateway::remote(upstream)))
        .map_err(std::io::Error::other)?;
    crate::serve_gateway(gateway).await
}

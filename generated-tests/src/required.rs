//! The backend of the field-behavior test service: it answers every note with the note's REQUIRED
//! fields unset (the top-level ones and those of its nested messages alike), as a service may,
//! since REQUIRED binds what a client sends and never what it receives.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use crate::pb::protogate::tests::required::v1::required_service_gateway;
use crate::pb::protogate::tests::required::v1::required_service_server::{
    RequiredService, RequiredServiceServer,
};
use crate::pb::protogate::tests::required::v1::{
    Author, CreateNoteRequest, GetNoteRequest, Note, Stamp, Tag,
};

type Reply<T> = Result<Response<T>, Status>;

/// Answers notes with their REQUIRED fields empty.
#[derive(Debug, Default, Clone)]
pub struct RequiredBackend;

/// A note named `name` whose REQUIRED fields (`title`, `author.name`, `tags[].label`,
/// `labels{}.label`) are all unset, and whose output-only `revision` is set.
pub fn bare_note(name: String) -> Note {
    Note {
        name,
        title: String::new(),
        author: Some(Author::default()),
        tags: vec![Tag::default()],
        labels: HashMap::from([("first".to_owned(), Tag::default())]),
        revision: 1,
        secret: String::new(),
        stamp: None,
        comment: None,
    }
}

#[tonic::async_trait]
impl RequiredService for RequiredBackend {
    async fn create_note(&self, request: Request<CreateNoteRequest>) -> Reply<Note> {
        let id = request.into_inner().note_id;
        Ok(Response::new(bare_note(format!("notes/{id}"))))
    }

    async fn get_note(&self, request: Request<GetNoteRequest>) -> Reply<Note> {
        Ok(Response::new(bare_note(request.into_inner().name)))
    }

    async fn update_note(&self, request: Request<Note>) -> Reply<Note> {
        Ok(Response::new(bare_note(request.into_inner().name)))
    }

    async fn stamp(&self, request: Request<Stamp>) -> Reply<Stamp> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Starts the backend and a gateway in front of it on 127.0.0.1, reached over real
/// connections; the gateway's base URL.
pub async fn required_gateway() -> std::io::Result<String> {
    let backend = crate::serve_routes(tonic::service::Routes::new(RequiredServiceServer::new(
        RequiredBackend,
    )))
    .await?;
    crate::gateway_to(backend, required_service_gateway::remote, |gateway| gateway).await
}

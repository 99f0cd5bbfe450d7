//! The demo library as a slow upstream, written with prost messages by hand: `GetShelf`
//! answers after the number of milliseconds its shelf is named after (`shelves/800`),
//! `StreamBooks` sends one book and then holds the stream open.

use std::time::Duration;

use futures_util::StreamExt as _;

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetShelfRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Shelf {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub theme: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamBooksRequest {
    #[prost(string, tag = "1")]
    pub parent: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Book {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub title: String,
}

type Held = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Book, tonic::Status>> + Send + 'static>,
>;

pub async fn serve() -> std::net::SocketAddr {
    let router =
        axum::Router::new().fallback(|request: http::Request<axum::body::Body>| async move {
            match request.uri().path() {
                "/protogate.demo.v1.LibraryService/GetShelf" => {
                    let codec = tonic_prost::ProstCodec::<Shelf, GetShelfRequest>::default();
                    let slow =
                        tower::service_fn(|request: tonic::Request<GetShelfRequest>| async {
                            let name = request.into_inner().name;
                            let millis = name.trim_start_matches("shelves/").parse().unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(millis)).await;
                            let theme = "slow".to_owned();
                            Ok::<_, tonic::Status>(tonic::Response::new(Shelf { name, theme }))
                        });
                    tonic::server::Grpc::new(codec).unary(slow, request).await
                }
                "/protogate.demo.v1.LibraryService/StreamBooks" => {
                    let codec = tonic_prost::ProstCodec::<Book, StreamBooksRequest>::default();
                    let held =
                        tower::service_fn(|request: tonic::Request<StreamBooksRequest>| async {
                            let parent = request.into_inner().parent;
                            let first = Book {
                                name: format!("{parent}/books/first"),
                                title: "First".to_owned(),
                            };
                            let stream: Held = Box::pin(
                                futures_util::stream::iter([Ok(first)])
                                    .chain(futures_util::stream::pending()),
                            );
                            Ok::<_, tonic::Status>(tonic::Response::new(stream))
                        });
                    tonic::server::Grpc::new(codec)
                        .server_streaming(held, request)
                        .await
                }
                path => {
                    tonic::Status::unimplemented(path.to_owned()).into_http::<tonic::body::Body>()
                }
            }
        });
    super::serve_grpc(router).await
}

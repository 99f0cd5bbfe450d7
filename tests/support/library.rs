//! The demo library as a slow upstream, written with prost messages by hand: `GetShelf`
//! answers after the number of milliseconds its shelf is named after (`shelves/800`), with the
//! `x-request-id` metadata it received as the shelf's theme, and NOT_FOUND for
//! `shelves/missing`; `ListShelves` answers one shelf; `StreamBooks` sends one book and then holds
//! the stream open, or ends it for `shelves/ending`.

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
pub struct ListShelvesRequest {
    #[prost(int32, tag = "1")]
    pub page_size: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListShelvesResponse {
    #[prost(message, repeated, tag = "1")]
    pub shelves: Vec<Shelf>,
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
                            let theme = request
                                .metadata()
                                .get("x-request-id")
                                .and_then(|id| id.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let name = request.into_inner().name;
                            if name == "shelves/missing" {
                                return Err(tonic::Status::not_found("no shelf `missing`"));
                            }
                            let millis = name.trim_start_matches("shelves/").parse().unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(millis)).await;
                            Ok::<_, tonic::Status>(tonic::Response::new(Shelf { name, theme }))
                        });
                    tonic::server::Grpc::new(codec).unary(slow, request).await
                }
                "/protogate.demo.v1.LibraryService/ListShelves" => {
                    let codec =
                        tonic_prost::ProstCodec::<ListShelvesResponse, ListShelvesRequest>::default(
                        );
                    let list = tower::service_fn(|_: tonic::Request<ListShelvesRequest>| async {
                        let shelf = Shelf {
                            name: "shelves/one".to_owned(),
                            theme: "one".to_owned(),
                        };
                        let shelves = vec![shelf];
                        Ok::<_, tonic::Status>(tonic::Response::new(ListShelvesResponse {
                            shelves,
                        }))
                    });
                    tonic::server::Grpc::new(codec).unary(list, request).await
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
                            let stream: Held = if parent == "shelves/ending" {
                                Box::pin(futures_util::stream::iter([Ok(first)]))
                            } else {
                                Box::pin(
                                    futures_util::stream::iter([Ok(first)])
                                        .chain(futures_util::stream::pending()),
                                )
                            };
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

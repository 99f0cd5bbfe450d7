//! The demo: a small library API served in-process, and a page that streams from it in the
//! browser.
//!
//! It is a module of the binary, not of the gateway's library, and it is compiled only into a
//! build with the demo's protos (`--cfg protogate_demo`, set by the build script when there is
//! no `PROTOGATE_PROTO_DIR`, or when `PROTOGATE_DEMO=1` asks for it beside the user's protos).
//! The library knows it only as one more service to serve in-process.

mod library;

use std::sync::Arc;

use protogate_gateway::pb::protogate::demo::v1::library_service_gateway;
use protogate_gateway::upstream::Plan;

use library::Library;

/// The demo service's full name.
const SERVICE_NAME: &str = "protogate.demo.v1.LibraryService";

/// A path worth trying first.
pub const EXAMPLE_PATH: &str = "/demo/v1/shelves/fiction/books";

/// Where the demo's page is served: a book stream read with `EventSource` and a chat over
/// WebSocket, in the browser.
pub const PAGE_PATH: &str = "/demo/";

/// Serves the demo's library in this process, one library shared by every worker, unless
/// `--upstream` names a server for it.
pub fn serve_in_process(mut plan: Plan) -> Result<Plan, String> {
    let library = Arc::new(Library::seeded());
    plan.serve_in_process(
        SERVICE_NAME,
        Arc::new(move || {
            library_service_gateway::service(protogate::Local::from_arc(Arc::clone(&library)))
        }),
    )?;
    Ok(plan)
}

/// The page at [`PAGE_PATH`], beside the gateway's routes.
pub fn page() -> axum::Router {
    const PAGE: &str = include_str!("page.html");
    axum::Router::new().route(
        PAGE_PATH,
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    )
}

//! The REST breaking-change check on crafted pairs of protos: `protos/breaking/base` against one
//! copy per kind of change, each differing from it in one place. Every test asserts exactly which
//! changes are found, how each is classified (as a whole and where it shows), and that the report
//! names both the proto element (with file:line) and the HTTP element.

use std::path::{Path, PathBuf};

use protogate_build::surface::{Acceptance, Report, Severity, Surface, compare};

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/protos/breaking")
        .join(case)
}

fn surface(case: &str) -> Surface {
    protogate_build::configure()
        .emit_rerun_if_changed(false)
        .validate(&["acme/library/v1/library.proto"], &[dir(case)])
        .unwrap_or_else(|e| panic!("{case} validates: {e}"))
        .surface()
}

fn report(case: &str) -> Report {
    compare(&surface("base"), &surface(case))
}

const PACKAGE: &str = "acme.library.v1";

/// One expected change: its id (without the package, which every element shares), its severity,
/// and a place it shows with how it reads there.
struct Expected {
    id: &'static str,
    severity: Severity,
    shows: &'static str,
    shows_as: Severity,
}

const B: Severity = Severity::Breaking;
const C: Severity = Severity::Compatible;

fn expect(
    id: &'static str,
    severity: Severity,
    shows: &'static str,
    shows_as: Severity,
) -> Expected {
    Expected {
        id,
        severity,
        shows,
        shows_as,
    }
}

fn check(case: &str, expected: &[Expected]) {
    let report = report(case);
    let text = report.to_string();
    let mut ids: Vec<String> = report.changes.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    let mut wanted: Vec<String> = expected
        .iter()
        .map(|e| {
            let (kind, element) = e.id.split_once(':').expect("kind:element");
            format!("{kind}:{PACKAGE}.{element}")
        })
        .collect();
    wanted.sort();
    assert_eq!(ids, wanted, "{case}:\n{text}");
    for e in expected {
        let (kind, element) = e.id.split_once(':').expect("kind:element");
        let id = format!("{kind}:{PACKAGE}.{element}");
        let change = report.changes.iter().find(|c| c.id == id).expect("listed");
        assert_eq!(change.severity(), e.severity, "{case}: {id}\n{text}");
        assert!(
            change
                .location
                .starts_with("acme/library/v1/library.proto:"),
            "{case}: {id} has no proto place: {}",
            change.location
        );
        let occurrence = change
            .occurrences
            .iter()
            .find(|o| o.http == e.shows)
            .unwrap_or_else(|| panic!("{case}: {id} does not show at `{}`:\n{text}", e.shows));
        assert_eq!(
            occurrence.severity, e.shows_as,
            "{case}: {id} at {}",
            e.shows
        );
        // The printed report names the element with its place, and the HTTP element.
        assert!(
            text.contains(&format!("{} ({})", change.element, change.location)),
            "{text}"
        );
        assert!(text.contains(e.shows), "{text}");
    }
    let breaking = expected.iter().any(|e| e.severity == Severity::Breaking);
    assert_eq!(report.passes(), !breaking, "{case}:\n{text}");
}

#[test]
fn the_same_protos_have_no_change() {
    let report = report("base");
    assert!(report.changes.is_empty(), "{report}");
    assert!(report.passes());
    assert_eq!(report.to_string(), "no change to the REST surface\n");
}

#[test]
fn the_surface_is_deterministic_and_reads_back() {
    let first = surface("base");
    let text = first.to_json();
    assert_eq!(text, surface("base").to_json());
    let read = Surface::from_json(&text, "rest-surface.json").expect("reads back");
    assert_eq!(read, first);
    let binding = &first.bindings[0];
    assert_eq!(binding.rpc, "acme.library.v1.Library.GetBook");
    assert_eq!(binding.route, "GET /v1/shelves/*/books/*");
    let book = &first.messages["acme.library.v1.Book"];
    let pages = book
        .fields
        .iter()
        .find(|f| f.name == "page_count")
        .expect("page_count");
    assert_eq!(pages.json_name, "pageCount");
    assert_eq!(pages.value.json, "integer (int32)");
    assert_eq!(pages.location, "acme/library/v1/library.proto:42:3");
}

#[test]
fn another_format_is_refused_with_what_to_do() {
    let text = surface("base").to_json().replace(
        "\"protogate_rest_surface\": 1",
        "\"protogate_rest_surface\": 99",
    );
    let error = Surface::from_json(&text, "old.json").expect_err("format 99");
    assert!(
        error
            .to_string()
            .contains("old.json: REST surface format 99"),
        "{error}"
    );
    let error = Surface::from_json("{}", "empty.json").expect_err("not a surface");
    assert!(
        error
            .to_string()
            .starts_with("empty.json: not a protogate REST surface"),
        "{error}"
    );
}

#[test]
fn accepted_changes_are_reported_but_do_not_fail() {
    let mut report = report("int32_to_int64");
    assert!(!report.passes());
    let id = "type-changed:acme.library.v1.Book.page_count";
    let stale = report.accept(&Acceptance::parse(&format!(
        "# reviewed with the mobile team\n{id}  # pages can exceed 2^31\n\nfield-removed:gone.Field\n"
    )));
    assert_eq!(stale, vec!["field-removed:gone.Field".to_owned()]);
    assert!(report.passes());
    assert_eq!(report.unaccepted().count(), 0);
    let text = report.to_string();
    assert!(
        text.contains(&format!("BREAKING (accepted) {id}")),
        "{text}"
    );
    assert!(
        text.ends_with("1 breaking (1 accepted), 0 compatible\n"),
        "{text}"
    );
}

#[test]
fn field_renamed() {
    check(
        "field_renamed",
        &[expect(
            "json-name-changed:Book.headline",
            B,
            "GET /v1/{parent=shelves/*}/books: response property `books[].title`",
            B,
        )],
    );
}

#[test]
fn json_name_changed() {
    check(
        "json_name_changed",
        &[expect(
            "json-name-changed:Book.title",
            B,
            "POST /v1/{parent=shelves/*}/books: request body property `title`",
            B,
        )],
    );
}

#[test]
fn body_added_moves_query_fields_into_the_body() {
    check(
        "body_added",
        &[
            expect(
                "body-changed:Library.SearchBooks@POST:/v1/books:search",
                B,
                "POST /v1/books:search",
                B,
            ),
            expect(
                "field-moved:SearchBooksRequest.query",
                B,
                "POST /v1/books:search: query parameter `query`",
                B,
            ),
            expect(
                "field-moved:SearchBooksRequest.page_size",
                B,
                "POST /v1/books:search: query parameter `pageSize`",
                B,
            ),
        ],
    );
}

#[test]
fn path_variable_added_moves_a_query_field_into_the_path() {
    check(
        "path_variable_added",
        &[
            expect(
                "path-changed:Library.ListBooks@GET:/v1/{parent=shelves/*}/books",
                B,
                "GET /v1/{parent=shelves/*}/genres/{genre}/books",
                B,
            ),
            expect(
                "field-moved:ListBooksRequest.genre",
                B,
                "GET /v1/{parent=shelves/*}/genres/{genre}/books: query parameter `genre`",
                B,
            ),
        ],
    );
}

#[test]
fn template_changed() {
    check(
        "template_changed",
        &[expect(
            "path-changed:Library.GetBook@GET:/v1/{name=shelves/*/books/*}",
            B,
            "GET /v1/{name=books/*}",
            B,
        )],
    );
}

#[test]
fn field_required_breaks_requests_not_responses() {
    check(
        "field_required_in_request",
        &[expect(
            "field-required:Book.title",
            B,
            "POST /v1/{parent=shelves/*}/books: request body property `title`",
            B,
        )],
    );
    let report = report("field_required_in_request");
    let change = &report.changes[0];
    let response = change
        .occurrences
        .iter()
        .find(|o| o.http == "GET /v1/{name=shelves/*/books/*}: response property `title`")
        .expect("shows in responses too");
    assert_eq!(response.severity, C);
}

#[test]
fn field_required_in_a_response_only_is_compatible() {
    check(
        "field_required_in_response",
        &[expect(
            "field-required:ListBooksResponse.next_page_token",
            C,
            "GET /v1/{parent=shelves/*}/books: response property `nextPageToken`",
            C,
        )],
    );
}

#[test]
fn required_field_added_to_a_request() {
    check(
        "required_field_added",
        &[expect(
            "field-added:ArchiveBookRequest.actor",
            B,
            "POST /v1/{name=shelves/*/books/*}:archive: request body property `actor`",
            B,
        )],
    );
}

#[test]
fn optional_field_added() {
    check(
        "optional_field_added",
        &[expect(
            "field-added:Book.subtitle",
            C,
            "POST /v1/{parent=shelves/*}/books: request body property `subtitle`",
            C,
        )],
    );
}

#[test]
fn field_removed() {
    check(
        "field_removed",
        &[expect(
            "field-removed:Book.isbn",
            B,
            "GET /v1/isbn/{isbn}: response property `isbn`",
            B,
        )],
    );
}

#[test]
fn field_made_output_only_leaves_requests() {
    check(
        "field_output_only",
        &[expect(
            "field-hidden:Book.isbn",
            B,
            "POST /v1/{parent=shelves/*}/books: request body property `isbn`",
            B,
        )],
    );
}

#[test]
fn enum_value_removed_breaks_who_sends_it() {
    check(
        "enum_value_removed",
        &[expect(
            "enum-value-removed:Genre.POETRY",
            B,
            "GET /v1/{parent=shelves/*}/books: query parameter `genre`",
            B,
        )],
    );
    let report = report("enum_value_removed");
    let response = report.changes[0]
        .occurrences
        .iter()
        .find(|o| o.http == "GET /v1/isbn/{isbn}: response property `genre`")
        .expect("in responses");
    assert_eq!(response.severity, C);
}

#[test]
fn enum_value_added() {
    check(
        "enum_value_added",
        &[expect(
            "enum-value-added:Genre.NONFICTION",
            C,
            "POST /v1/{parent=shelves/*}/books: request body property `genre`",
            C,
        )],
    );
}

#[test]
fn server_stream_made_unary() {
    check(
        "stream_to_unary",
        &[expect(
            "shape-changed:Library.StreamBooks",
            B,
            "GET /v1/{parent=shelves/*}/books:stream",
            B,
        )],
    );
}

#[test]
fn binding_removed() {
    check(
        "binding_removed",
        &[expect(
            "binding-removed:Library.GetBook@GET:/v1/isbn/{isbn}",
            B,
            "GET /v1/isbn/{isbn}",
            B,
        )],
    );
}

#[test]
fn binding_added() {
    check(
        "binding_added",
        &[expect(
            "binding-added:Library.DeleteBook@DELETE:/v1/{name=shelves/*/books/*}",
            C,
            "DELETE /v1/{name=shelves/*/books/*}",
            C,
        )],
    );
}

#[test]
fn verb_changed() {
    check(
        "verb_changed",
        &[expect(
            "method-changed:Library.ArchiveBook@POST:/v1/{name=shelves/*/books/*}:archive",
            B,
            "PUT /v1/{name=shelves/*/books/*}:archive",
            B,
        )],
    );
}

#[test]
fn response_body_changed() {
    check(
        "response_body_changed",
        &[expect(
            "response-body-changed:Library.ListBooks@GET:/v1/{parent=shelves/*}/books",
            B,
            "GET /v1/{parent=shelves/*}/books",
            B,
        )],
    );
}

#[test]
fn query_settable_field_removed() {
    check(
        "query_field_removed",
        &[expect(
            "query-parameter-removed:ListBooksRequest.page_token",
            B,
            "GET /v1/{parent=shelves/*}/books:stream: query parameter `pageToken`",
            B,
        )],
    );
}

#[test]
fn int32_to_int64_turns_a_response_number_into_a_string() {
    check(
        "int32_to_int64",
        &[expect(
            "type-changed:Book.page_count",
            B,
            "GET /v1/{name=shelves/*/books/*}: response property `pageCount`",
            B,
        )],
    );
    // What a client sends still reads: int64 fields take JSON numbers.
    let report = report("int32_to_int64");
    let sent = report.changes[0]
        .occurrences
        .iter()
        .find(|o| o.http == "POST /v1/{parent=shelves/*}/books: request body property `pageCount`")
        .expect("in the request body");
    assert_eq!(sent.severity, C);
    assert!(report.changes[0].summary.contains("string (int64)"));
}

#[test]
fn oneof_member_moved() {
    check(
        "oneof_member_moved",
        &[expect(
            "oneof-changed:Book.author",
            B,
            "POST /v1/{parent=shelves/*}/books: request body property `author`",
            B,
        )],
    );
}

#[test]
fn field_renumbered_keeps_the_json() {
    check(
        "field_renumbered",
        &[expect(
            "field-number-changed:Book.author",
            C,
            "GET /v1/isbn/{isbn}: response property `author`",
            C,
        )],
    );
}

#[test]
fn rpc_renamed_behind_the_same_route() {
    check(
        "rpc_renamed",
        &[expect(
            "rpc-changed:Library.ShelveBook",
            C,
            "POST /v1/{name=shelves/*/books/*}:archive",
            C,
        )],
    );
}

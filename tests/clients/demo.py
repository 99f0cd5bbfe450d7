"""A client team's program against the demo, on a package openapi-python-client generated from
its OpenAPI document (`protogate_gateway_client`, on PYTHONPATH).

Run by tests/clients.rs: `python demo.py BASE_URL SHELF` prints one JSON line of what it saw, and
exits non-zero at the first answer that is not what the document promises.
"""

import json
import sys

from protogate_gateway_client import Client
from protogate_gateway_client.api.library_service import (
    library_service_create_book,
    library_service_create_shelf,
    library_service_get_book,
    library_service_get_shelf,
    library_service_list_books,
    library_service_list_shelves,
    library_service_stream_books,
)
from protogate_gateway_client.models import (
    GoogleRpcStatus,
    ProtogateDemoV1Book,
    ProtogateDemoV1BookInput,
    ProtogateDemoV1Genre,
    ProtogateDemoV1ListBooksResponse,
    ProtogateDemoV1ListShelvesResponse,
    ProtogateDemoV1Shelf,
    ProtogateDemoV1ShelfInput,
)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"unexpected: {what}")


def main(base: str, shelf: str) -> None:
    client = Client(base_url=base, raise_on_unexpected_status=True)

    # List.
    listed = library_service_list_shelves.sync(client=client)
    check(isinstance(listed, ProtogateDemoV1ListShelvesResponse), f"listing shelves gave {listed!r}")
    shelves = [s.name for s in listed.shelves or []]

    # Create, with a query parameter and a body, then a book on it with a path parameter.
    created = library_service_create_shelf.sync(
        client=client, body=ProtogateDemoV1ShelfInput(theme="Typed"), shelf_id=shelf
    )
    check(isinstance(created, ProtogateDemoV1Shelf), f"creating a shelf gave {created!r}")
    check(created.name == f"shelves/{shelf}", f"the new shelf is {created.name}")
    book = library_service_create_book.sync(
        shelf,
        client=client,
        body=ProtogateDemoV1BookInput(
            title="Duck Typing",
            page_count=321,
            genre=ProtogateDemoV1Genre.FICTION,
            tags=["types"],
        ),
    )
    check(isinstance(book, ProtogateDemoV1Book), f"creating a book gave {book!r}")

    # Get, with path parameters; then list with path and query parameters.
    book_id = book.name.split("/books/")[1]
    got = library_service_get_book.sync(shelf, book_id, client=client)
    check(isinstance(got, ProtogateDemoV1Book) and got.page_count == 321, f"read back {got!r}")
    page = library_service_list_books.sync(
        shelf, client=client, genre=ProtogateDemoV1Genre.FICTION, min_pages=300, page_size=5
    )
    check(isinstance(page, ProtogateDemoV1ListBooksResponse), f"listing books gave {page!r}")
    found = [b.title for b in page.books or []]

    # A typed error: google.rpc.Status with its code.
    missing = library_service_get_shelf.sync_detailed("no-such-shelf", client=client)
    check(missing.status_code == 404, f"a missing shelf answered {missing.status_code}")
    check(isinstance(missing.parsed, GoogleRpcStatus), f"the error is {missing.parsed!r}")
    error = missing.parsed.code

    # A server stream, read as NDJSON: one `{"result": Book}` line per message.
    stream = library_service_stream_books.sync_detailed(shelf, client=client)
    check(stream.status_code == 200, f"the stream answered {stream.status_code}")
    streamed = []
    for text in stream.content.decode().splitlines():
        if text.strip():
            line = json.loads(text)
            check("error" not in line, f"the stream failed: {line}")
            streamed.append(ProtogateDemoV1Book.from_dict(line["result"]).title)

    print(
        json.dumps(
            {
                "shelves": shelves,
                "created": created.name,
                "found": found,
                "error": error,
                "streamed": streamed,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])

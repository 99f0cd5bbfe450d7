// A client team's program against the demo, on types and a client generated from its OpenAPI
// document (openapi-typescript writes `schema.d.ts` beside this file; openapi-fetch calls).
// Run by tests/clients.rs: `node demo.js BASE_URL SHELF` prints one JSON line of what it saw,
// and exits non-zero at the first answer that is not what the document promises.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Book = components["schemas"]["protogate.demo.v1.Book"];
type Status = components["schemas"]["google.rpc.Status"];

const [base, shelf] = process.argv.slice(2);
if (base === undefined || shelf === undefined) {
  throw new Error("usage: node demo.js BASE_URL SHELF");
}
const client = createClient<paths>({ baseUrl: base });

function check(condition: boolean, what: string): asserts condition {
  if (!condition) {
    throw new Error(`unexpected: ${what}`);
  }
}

// List.
const listed = await client.GET("/demo/v1/shelves");
check(listed.data !== undefined, `listing shelves answered ${listed.response.status}`);
const shelves = (listed.data.shelves ?? []).map((s) => s.name ?? "");

// Create, with a query parameter and a body, then a book on it with a path parameter.
const created = await client.POST("/demo/v1/shelves", {
  params: { query: { shelfId: shelf } },
  body: { theme: "Typed" },
});
check(created.data?.name === `shelves/${shelf}`, `the new shelf is ${created.data?.name}`);
const book = await client.POST("/demo/v1/shelves/{shelf}/books", {
  params: { path: { shelf } },
  body: { title: "Strict Mode", pageCount: 321, genre: "FICTION", tags: ["types"] },
});
check(book.data !== undefined, `creating a book answered ${book.response.status}`);
const made: Book = book.data;

// Get, with path parameters; then list with path and query parameters.
const [, bookId] = (made.name ?? "").split("/books/");
check(bookId !== undefined, `the book's name is ${made.name}`);
const got = await client.GET("/demo/v1/shelves/{shelf}/books/{book}", {
  params: { path: { shelf, book: bookId } },
});
check(got.data?.pageCount === 321, `the book read back has ${got.data?.pageCount} pages`);
const page = await client.GET("/demo/v1/shelves/{shelf}/books", {
  params: { path: { shelf }, query: { genre: "FICTION", minPages: 300, pageSize: 5 } },
});
check(page.data !== undefined, `listing books answered ${page.response.status}`);
const found = (page.data.books ?? []).map((b) => b.title);

// A typed error: google.rpc.Status with its code.
const missing = await client.GET("/demo/v1/shelves/{shelf}", {
  params: { path: { shelf: "no-such-shelf" } },
});
check(missing.data === undefined && missing.error !== undefined, "a missing shelf is an error");
const error: Status = missing.error;
check(missing.response.status === 404 && error.code === 5, `the error is ${JSON.stringify(error)}`);

// A server stream, read as NDJSON: one `{"result": Book}` line per message.
const stream = await client.GET("/demo/v1/shelves/{shelf}/books:stream", {
  params: { path: { shelf } },
  parseAs: "stream",
});
check(stream.response.ok && stream.data != null, `the stream answered ${stream.response.status}`);
type Line = paths["/demo/v1/shelves/{shelf}/books:stream"]["get"]["responses"][200]["content"]["application/x-ndjson"];
const streamed: string[] = [];
const decoder = new TextDecoder();
let pending = "";
for await (const chunk of stream.data) {
  pending += decoder.decode(chunk, { stream: true });
  let end = pending.indexOf("\n");
  while (end >= 0) {
    const text = pending.slice(0, end).trim();
    pending = pending.slice(end + 1);
    if (text !== "") {
      const line = JSON.parse(text) as Line;
      check(line.error === undefined, `the stream failed: ${JSON.stringify(line.error)}`);
      streamed.push(line.result?.title ?? "");
    }
    end = pending.indexOf("\n");
  }
}

console.log(
  JSON.stringify({ shelves, created: created.data.name, found, error: error.code, streamed }),
);

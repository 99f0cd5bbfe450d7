//! The demo's library service: shelves and books in memory, with the behaviour (pagination,
//! filters, update masks, errors with details) of a real service.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Mutex;

use futures_util::{Stream, StreamExt};

use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use protogate_gateway::pb::protogate::demo::v1::{
    ArchiveBookRequest, ArchiveEntry, Book, CreateBookRequest, CreateShelfRequest,
    DeleteBookRequest, DeleteShelfRequest, DiscussMessage, Genre, GetArchiveEntryRequest,
    GetBookRequest, GetShelfRequest, ListBookTagsRequest, ListBookTagsResponse, ListBooksRequest,
    ListBooksResponse, ListShelvesRequest, ListShelvesResponse, MoveBookRequest,
    ReplaceShelfRequest, Shelf, StreamBooksRequest, UpdateBookRequest, book,
    library_service_server::LibraryService,
};

const DEFAULT_PAGE_SIZE: usize = 10;

/// A stream of messages an RPC returns.
type Messages<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// An in-memory library.
#[derive(Debug, Default)]
pub struct Library {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    shelves: BTreeMap<String, Shelf>,
    books: BTreeMap<String, Book>,
    next_serial: i64,
}

fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

fn not_found(kind: &str, name: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_resource_info(kind, name, "", format!("no {kind} named {name:?}"));
    Status::with_error_details(
        tonic::Code::NotFound,
        format!("{kind} {name:?} not found"),
        details,
    )
}

fn already_exists(kind: &str, name: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_resource_info(
        kind,
        name,
        "",
        format!("a {kind} named {name:?} exists already"),
    );
    Status::with_error_details(
        tonic::Code::AlreadyExists,
        format!("{kind} {name:?} exists already"),
        details,
    )
}

fn invalid(field: &str, description: &str) -> Status {
    let details = ErrorDetails::with_bad_request_violation(field, description);
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

/// The index encoded in a page token, checked.
fn page_start(token: &str) -> Result<usize, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse()
        .map_err(|_| invalid("page_token", "not a token from a previous response"))
}

fn page_size(size: i32) -> Result<usize, Status> {
    match size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(invalid("page_size", "must not be negative")),
        n => Ok(n as usize),
    }
}

/// Takes one page of `items`, with the token of the next page.
fn paginate<T: Clone>(items: &[T], start: usize, size: usize) -> (Vec<T>, String) {
    let page: Vec<T> = items.iter().skip(start).take(size).cloned().collect();
    let next = start + page.len();
    let token = if next < items.len() {
        next.to_string()
    } else {
        String::new()
    };
    (page, token)
}

fn shelf_of(book_name: &str) -> &str {
    book_name
        .find("/books/")
        .map_or(book_name, |index| &book_name[..index])
}

impl Library {
    /// A library with two shelves and a few books.
    pub fn seeded() -> Self {
        let library = Library::default();
        {
            let mut state = library.lock();
            for (id, theme) in [
                ("fiction", "Novels and stories"),
                ("science", "How things work"),
            ] {
                let name = format!("shelves/{id}");
                state.shelves.insert(
                    name.clone(),
                    Shelf {
                        name,
                        theme: theme.into(),
                        book_count: 0,
                        create_time: Some(timestamp(1_700_000_000)),
                    },
                );
            }
            let seed = [
                (
                    "fiction",
                    "dune",
                    "Dune",
                    "Frank Herbert",
                    Genre::Fiction,
                    412,
                    "9780441172719",
                    -140_000_000,
                ),
                (
                    "fiction",
                    "emma",
                    "Emma",
                    "Jane Austen",
                    Genre::Fiction,
                    474,
                    "9780141439587",
                    -5_000_000_000,
                ),
                (
                    "science",
                    "cosmos",
                    "Cosmos",
                    "Carl Sagan",
                    Genre::Nonfiction,
                    396,
                    "9780345539434",
                    340_000_000,
                ),
            ];
            for (shelf, id, title, author, genre, pages, isbn, published) in seed {
                let book = Book {
                    name: format!("shelves/{shelf}/books/{id}"),
                    title: title.into(),
                    author: author.into(),
                    genre: genre as i32,
                    tags: vec!["classic".into(), genre.as_str_name().to_lowercase()],
                    page_count: pages,
                    isbn: isbn.into(),
                    publish_time: Some(timestamp(published)),
                    availability: Some(book::Availability::InStock(true)),
                    ..Book::default()
                };
                state.insert_book(book);
            }
        }
        library
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for a demo; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn insert_book(&mut self, mut book: Book) -> Book {
        self.next_serial += 1;
        book.serial = self.next_serial;
        let shelf = shelf_of(&book.name).to_owned();
        self.books.insert(book.name.clone(), book.clone());
        self.recount(&shelf);
        book
    }

    fn recount(&mut self, shelf: &str) {
        let prefix = format!("{shelf}/books/");
        let count = self.books.keys().filter(|k| k.starts_with(&prefix)).count();
        if let Some(shelf) = self.shelves.get_mut(shelf) {
            shelf.book_count = count as i32;
        }
    }

    fn shelf(&self, name: &str) -> Result<&Shelf, Status> {
        self.shelves
            .get(name)
            .ok_or_else(|| not_found("shelf", name))
    }

    fn book_mut(&mut self, name: &str) -> Result<&mut Book, Status> {
        self.books
            .get_mut(name)
            .ok_or_else(|| not_found("book", name))
    }
}

/// A book field a ListBooks filter can test.
#[derive(Debug, Clone, Copy)]
enum FilterField {
    Title,
    Author,
    Isbn,
    Tags,
    Genre,
}

/// One `field=value` or `field:value` term of a ListBooks filter.
#[derive(Debug)]
struct FilterTerm {
    field: FilterField,
    /// `:` (contains) rather than `=` (equals).
    contains: bool,
    /// Lower-cased, without quotes.
    value: String,
}

/// Parses a ListBooks filter: terms joined by ` AND `.
fn parse_filter(filter: &str) -> Result<Vec<FilterTerm>, Status> {
    let filter = filter.trim();
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    filter
        .split(" AND ")
        .map(|term| {
            let term = term.trim();
            let at = term.find(['=', ':']).ok_or_else(|| {
                invalid(
                    "filter",
                    &format!("`{term}` is neither `field=value` nor `field:value`"),
                )
            })?;
            let (field, rest) = term.split_at(at);
            let field = match field.trim() {
                "title" => FilterField::Title,
                "author" => FilterField::Author,
                "isbn" => FilterField::Isbn,
                "tags" | "tag" => FilterField::Tags,
                "genre" => FilterField::Genre,
                other => {
                    return Err(invalid(
                        "filter",
                        &format!(
                            "cannot filter on `{other}`; use title, author, isbn, tags or genre"
                        ),
                    ));
                }
            };
            // The operator is one ASCII byte.
            let value = rest[1..].trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Ok(FilterTerm {
                field,
                contains: rest.starts_with(':'),
                value: value.to_lowercase(),
            })
        })
        .collect()
}

impl FilterTerm {
    fn matches(&self, book: &Book) -> bool {
        let test = |text: &str| {
            let text = text.to_lowercase();
            if self.contains {
                text.contains(&self.value)
            } else {
                text == self.value
            }
        };
        match self.field {
            FilterField::Title => test(&book.title),
            FilterField::Author => test(&book.author),
            FilterField::Isbn => test(&book.isbn),
            FilterField::Tags => book.tags.iter().any(|tag| test(tag)),
            FilterField::Genre => test(
                Genre::try_from(book.genre)
                    .map(|genre| genre.as_str_name())
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The paths of the fields of `book` a client set: those not at their default value.
fn set_fields(book: &Book) -> Vec<String> {
    let set = [
        ("title", !book.title.is_empty()),
        ("author", !book.author.is_empty()),
        ("genre", book.genre != 0),
        ("tags", !book.tags.is_empty()),
        ("page_count", book.page_count != 0),
        ("isbn", !book.isbn.is_empty()),
        ("publish_time", book.publish_time.is_some()),
        ("price", book.price.is_some()),
        ("edition", book.edition.is_some()),
        ("attributes", !book.attributes.is_empty()),
        ("in_stock", book.availability.is_some()),
        ("chapters", !book.chapters.is_empty()),
    ];
    set.into_iter()
        .filter(|(_, set)| *set)
        .map(|(path, _)| path.to_owned())
        .collect()
}

/// Copies the fields of `from` named by `paths` (every field `from` sets when there are none)
/// into `to`.
fn apply_mask(to: &mut Book, from: Book, paths: &[String]) -> Result<(), Status> {
    let set;
    let paths = if paths.is_empty() {
        set = set_fields(&from);
        &set[..]
    } else {
        paths
    };
    for path in paths {
        match path.as_str() {
            "title" => to.title = from.title.clone(),
            "author" => to.author = from.author.clone(),
            "genre" => to.genre = from.genre,
            "tags" => to.tags = from.tags.clone(),
            "page_count" => to.page_count = from.page_count,
            "isbn" => to.isbn = from.isbn.clone(),
            "publish_time" => to.publish_time = from.publish_time,
            "price" => to.price = from.price,
            "edition" => to.edition = from.edition,
            "attributes" => to.attributes = from.attributes.clone(),
            "in_stock" | "due_back" => to.availability = from.availability,
            "chapters" => to.chapters = from.chapters.clone(),
            other => {
                return Err(invalid(
                    "update_mask",
                    &format!("`{other}` is not an updatable field of Book"),
                ));
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl LibraryService for Library {
    async fn list_shelves(
        &self,
        request: Request<ListShelvesRequest>,
    ) -> Result<Response<ListShelvesResponse>, Status> {
        let request = request.into_inner();
        let (start, size) = (
            page_start(&request.page_token)?,
            page_size(request.page_size)?,
        );
        let state = self.lock();
        let shelves: Vec<Shelf> = state.shelves.values().cloned().collect();
        let (shelves, next_page_token) = paginate(&shelves, start, size);
        Ok(Response::new(ListShelvesResponse {
            shelves,
            next_page_token,
        }))
    }

    async fn get_shelf(
        &self,
        request: Request<GetShelfRequest>,
    ) -> Result<Response<Shelf>, Status> {
        let state = self.lock();
        state
            .shelf(&request.get_ref().name)
            .cloned()
            .map(Response::new)
    }

    async fn check_shelf(&self, request: Request<GetShelfRequest>) -> Result<Response<()>, Status> {
        let state = self.lock();
        state
            .shelf(&request.get_ref().name)
            .map(|_| Response::new(()))
    }

    async fn create_shelf(
        &self,
        request: Request<CreateShelfRequest>,
    ) -> Result<Response<Shelf>, Status> {
        let request = request.into_inner();
        if request.shelf_id.is_empty()
            || !request
                .shelf_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "shelf_id",
                "must be lowercase letters, digits and dashes",
            ));
        }
        let mut shelf = request
            .shelf
            .ok_or_else(|| invalid("shelf", "is required"))?;
        if shelf.theme.is_empty() {
            return Err(invalid("shelf.theme", "is required"));
        }
        shelf.name = format!("shelves/{}", request.shelf_id);
        shelf.book_count = 0;
        shelf.create_time = Some(now());
        let mut state = self.lock();
        if state.shelves.contains_key(&shelf.name) {
            return Err(already_exists("shelf", &shelf.name));
        }
        state.shelves.insert(shelf.name.clone(), shelf.clone());
        Ok(Response::new(shelf))
    }

    async fn replace_shelf(
        &self,
        request: Request<ReplaceShelfRequest>,
    ) -> Result<Response<Shelf>, Status> {
        let shelf = request
            .into_inner()
            .shelf
            .ok_or_else(|| invalid("shelf", "is required"))?;
        if shelf.theme.is_empty() {
            return Err(invalid("shelf.theme", "is required"));
        }
        let mut state = self.lock();
        let existing = state.shelf(&shelf.name)?.clone();
        let replaced = Shelf {
            theme: shelf.theme,
            ..existing
        };
        state
            .shelves
            .insert(replaced.name.clone(), replaced.clone());
        Ok(Response::new(replaced))
    }

    async fn delete_shelf(
        &self,
        request: Request<DeleteShelfRequest>,
    ) -> Result<Response<()>, Status> {
        let name = request.into_inner().name;
        let mut state = self.lock();
        state.shelf(&name)?;
        state.shelves.remove(&name);
        let prefix = format!("{name}/books/");
        state.books.retain(|key, _| !key.starts_with(&prefix));
        Ok(Response::new(()))
    }

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<ListBooksResponse>, Status> {
        let request = request.into_inner();
        let (start, size) = (
            page_start(&request.page_token)?,
            page_size(request.page_size)?,
        );
        let filter = parse_filter(&request.filter)?;
        let state = self.lock();
        state.shelf(&request.parent)?;
        let prefix = format!("{}/books/", request.parent);
        let books: Vec<Book> = state
            .books
            .values()
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| request.genre == 0 || b.genre == request.genre)
            .filter(|b| request.tags.iter().all(|t| b.tags.contains(t)))
            .filter(|b| match (&request.published_after, &b.publish_time) {
                (Some(after), Some(published)) => {
                    (published.seconds, published.nanos) > (after.seconds, after.nanos)
                }
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|b| request.min_pages.is_none_or(|min| b.page_count >= min))
            .filter(|b| filter.iter().all(|term| term.matches(b)))
            .cloned()
            .collect();
        let (books, next_page_token) = paginate(&books, start, size);
        Ok(Response::new(ListBooksResponse {
            books,
            next_page_token,
        }))
    }

    type StreamBooksStream = Messages<Book>;

    async fn stream_books(
        &self,
        request: Request<StreamBooksRequest>,
    ) -> Result<Response<Self::StreamBooksStream>, Status> {
        let parent = request.into_inner().parent;
        let state = self.lock();
        state.shelf(&parent)?;
        let prefix = format!("{parent}/books/");
        let books: Vec<Book> = state
            .books
            .values()
            .filter(|b| b.name.starts_with(&prefix))
            .cloned()
            .collect();
        Ok(Response::new(Box::pin(futures_util::stream::iter(
            books.into_iter().map(Ok),
        ))))
    }

    type DiscussStream = Messages<DiscussMessage>;

    async fn discuss(
        &self,
        request: Request<tonic::Streaming<DiscussMessage>>,
    ) -> Result<Response<Self::DiscussStream>, Status> {
        let answers = request.into_inner().enumerate().map(|(index, message)| {
            let message = message?;
            if message.text.trim().is_empty() {
                return Err(Status::invalid_argument("a message needs some `text`"));
            }
            Ok(DiscussMessage {
                book: message.book,
                reader: "library".into(),
                text: format!("{} said: {}", message.reader, message.text),
                seq: i64::try_from(index).unwrap_or(i64::MAX) + 1,
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let state = self.lock();
        if !request.name.is_empty() {
            return state
                .books
                .get(&request.name)
                .cloned()
                .map(Response::new)
                .ok_or_else(|| not_found("book", &request.name));
        }
        if request.isbn.is_empty() {
            return Err(invalid("name", "a book name or an ISBN is required"));
        }
        state
            .books
            .values()
            .find(|b| b.isbn == request.isbn)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| not_found("book with ISBN", &request.isbn))
    }

    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let mut book = request.book.ok_or_else(|| invalid("book", "is required"))?;
        if book.title.is_empty() {
            return Err(invalid("book.title", "is required"));
        }
        let mut state = self.lock();
        state.shelf(&request.parent)?;
        let id = book
            .title
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>();
        book.name = format!("{}/books/{id}", request.parent);
        if state.books.contains_key(&book.name) {
            return Err(already_exists("book", &book.name));
        }
        book.archived = false;
        Ok(Response::new(state.insert_book(book)))
    }

    async fn update_book(
        &self,
        request: Request<UpdateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let book = request.book.ok_or_else(|| invalid("book", "is required"))?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut state = self.lock();
        let stored = state.book_mut(&book.name)?;
        // Update a copy, so that a bad mask leaves the stored book as it was.
        let mut updated = stored.clone();
        apply_mask(&mut updated, book, &paths)?;
        if updated.title.is_empty() {
            return Err(invalid("book.title", "must not be empty"));
        }
        *stored = updated.clone();
        Ok(Response::new(updated))
    }

    async fn delete_book(
        &self,
        request: Request<DeleteBookRequest>,
    ) -> Result<Response<()>, Status> {
        let name = request.into_inner().name;
        let mut state = self.lock();
        state
            .books
            .remove(&name)
            .ok_or_else(|| not_found("book", &name))?;
        state.recount(shelf_of(&name));
        Ok(Response::new(()))
    }

    async fn archive_book(
        &self,
        request: Request<ArchiveBookRequest>,
    ) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let mut state = self.lock();
        let book = state.book_mut(&request.name)?;
        if book.archived {
            return Err(Status::failed_precondition(format!(
                "{} is archived already",
                book.name
            )));
        }
        book.archived = true;
        book.availability = None;
        if !request.reason.is_empty() {
            book.attributes
                .insert("archive_reason".into(), request.reason);
        }
        Ok(Response::new(book.clone()))
    }

    async fn move_book(&self, request: Request<MoveBookRequest>) -> Result<Response<Book>, Status> {
        let request = request.into_inner();
        let mut state = self.lock();
        state.shelf(&request.other_shelf)?;
        if !state.books.contains_key(&request.name) {
            return Err(not_found("book", &request.name));
        }
        let id = request.name.rsplit('/').next().unwrap_or_default();
        let target = format!("{}/books/{id}", request.other_shelf);
        if target != request.name && state.books.contains_key(&target) {
            return Err(already_exists("book", &target));
        }
        let Some(mut book) = state.books.remove(&request.name) else {
            return Err(not_found("book", &request.name));
        };
        let from = shelf_of(&request.name).to_owned();
        book.name = target;
        state.books.insert(book.name.clone(), book.clone());
        state.recount(&from);
        state.recount(&request.other_shelf);
        Ok(Response::new(book))
    }

    async fn list_book_tags(
        &self,
        request: Request<ListBookTagsRequest>,
    ) -> Result<Response<ListBookTagsResponse>, Status> {
        let name = request.into_inner().name;
        let state = self.lock();
        let book = state
            .books
            .get(&name)
            .ok_or_else(|| not_found("book", &name))?;
        Ok(Response::new(ListBookTagsResponse {
            tags: book.tags.clone(),
        }))
    }

    async fn get_archive_entry(
        &self,
        request: Request<GetArchiveEntryRequest>,
    ) -> Result<Response<ArchiveEntry>, Status> {
        let path = request.into_inner().path;
        let depth = path.split('/').count();
        if depth < 2 {
            return Err(invalid("path", "must name an entry under archive/"));
        }
        // A deterministic stand-in for a file store: the entry's size and digest derive from
        // its path.
        let digest: Vec<u8> = path.bytes().rev().take(8).collect();
        Ok(Response::new(ArchiveEntry {
            size: path.len() as u64 * 1024,
            digest,
            path,
        }))
    }
}

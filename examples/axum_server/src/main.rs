//! A small REST backend for a chat assistant on axum: conversations and their messages as JSON,
//! each request on behalf of the user its `x-user-id` header names.
//!
//! ```text
//! cargo run -p axum_server                                     # ./chat.db, port 3000
//! DATABASE_URL=postgres://postgres@127.0.0.1/chat BIND=0.0.0.0:8080 \
//!     cargo run -p axum_server --features postgres
//! ```
//!
//! Then, from another terminal:
//!
//! ```text
//! curl -si -X POST localhost:3000/conversations -H 'x-user-id: alice' \
//!      -H 'content-type: application/json' -d '{"title": "Groceries"}'
//! ID=…                                   # the "id" of the answer (also in its Location header)
//! curl -s 'localhost:3000/conversations?limit=20' -H 'x-user-id: alice'
//! curl -s -X POST localhost:3000/conversations/$ID/messages -H 'x-user-id: alice' \
//!      -H 'content-type: application/json' -d '{"role": "user", "content": "Add oat milk"}'
//! curl -s "localhost:3000/conversations/$ID/messages?limit=50" -H 'x-user-id: alice'
//! curl -s -X PATCH localhost:3000/conversations/$ID -H 'x-user-id: alice' \
//!      -H 'content-type: application/json' -d '{"title": "Weekend groceries"}'
//! curl -s "localhost:3000/conversations/$ID/context?budget=8000" -H 'x-user-id: alice'
//! curl -s 'localhost:3000/search?q=oat' -H 'x-user-id: alice'
//! curl -si -X DELETE localhost:3000/conversations/$ID -H 'x-user-id: alice'
//! ```
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /conversations` | `{"title"?, "tags"?, "metadata"?}` or none | 201, the conversation |
//! | `GET /conversations?limit=&cursor=&archived=&tag=` | | `{"conversations", "next_cursor"?}`: pinned first; with `archived=true` the archived ones, with `tag=` those with that tag |
//! | `DELETE /conversations?not_updated_since=&dry_run=` | | `{"conversations", "messages"}`: the user's conversations not updated since that RFC 3339 time, deleted (or, with `dry_run=true`, counted) |
//! | `GET /conversations/{id}` | | the conversation |
//! | `PATCH /conversations/{id}` | `{"title"}` (`null` clears it) | the conversation |
//! | `DELETE /conversations/{id}` | | 204 |
//! | `PUT` or `DELETE /conversations/{id}/pinned` | | the conversation, pinned or unpinned |
//! | `PUT` or `DELETE /conversations/{id}/archived` | | the conversation, archived or restored |
//! | `PUT /conversations/{id}/tags` | `{"tags": [...]}` | the conversation, with exactly those tags |
//! | `PUT` or `DELETE /conversations/{id}/tags/{tag}` | | the conversation, with the tag added or removed |
//! | `PUT /conversations/{id}/metadata` | a JSON object, or `null` to clear it | the conversation |
//! | `GET /tags` | | `{"tags": [{"tag", "conversations", "archived"}]}`: the user's tags and their counts |
//! | `GET /usage` | | `{"input_tokens", "output_tokens", "total_tokens"}`: the user's token usage, over every conversation |
//! | `GET /conversations/{id}/messages?limit=&before=&after=` | | `{"messages", "older"?, "newer"?, "total"}` |
//! | `POST /conversations/{id}/messages` | `{"role", "content"?, "parts"?, "metadata"?, "usage"?, "id"?}` | 201, the message |
//! | `POST /conversations/{id}/messages` | `{"messages": [...]}` | 201, `{"messages": [...]}` |
//! | `DELETE /conversations/{id}/messages?after_seq=` | | `{"messages"}`: those after `after_seq`, removed |
//! | `DELETE /conversations/{id}/messages` | | `{"removed"}`: every message removed, the conversation kept |
//! | `POST /conversations/{id}/messages/{message}/siblings` | a message or `{"messages": [...]}` | 201, as an append: an edit or a regeneration, on a new active branch |
//! | `GET /conversations/{id}/messages/{message}/siblings` | | `{"siblings": [{"message", "branch"}], "position"}`: every version of the message |
//! | `GET /conversations/{id}/branches` | | `{"branches": [{"id", "parent"?, "fork_seq", "length", "created_at", "updated_at", "active"}]}` |
//! | `PUT /conversations/{id}/branch` | `{"branch"}` | the conversation, with that branch active |
//! | `DELETE /conversations/{id}/branches/{branch}` | | the conversation (409 for its last branch) |
//! | `POST /conversations/{id}/pop` | `{"n"?}` (default 1) | `{"messages"}`: the newest `n`, removed (an undo) |
//! | `POST /conversations/{id}/fork` | `{"through"}`: a message id | 201, the new conversation: a copy through that message |
//! | `GET /conversations/{id}/context?budget=` | | `{"messages", "cost", "omitted", "total"}`: the next prompt |
//! | `GET /search?q=&conversation=&order=&limit=&offset=&archived=` | | `{"hits", "next_offset"}`: archived conversations only with `archived=true` (or `conversation=`) |
//!
//! Lists also link the pages beside theirs in `Link` headers (RFC 8288), the same request with the
//! body's token put in its query string: `rel="next"` for the next conversations or search hits,
//! and for messages `rel="prev"` (older) and `rel="next"` (newer). A client may follow them
//! without knowing the parameters.
//!
//! The context window is what to send the model next: the conversation's system messages, then the
//! newest messages whose characters fit `budget` (at most 1,000,000), oldest first, cut where a
//! provider accepts it (see `ChatStore::context_window`; a tokenizer of your own goes in
//! `context_window_with`).
//!
//! Cursors (`next_cursor`, `older`, `newer`, and `cursor`, `before`, `after` in the query string)
//! are opaque tokens, bound to the user and, for messages, to the conversation: hand them back as
//! they came. A message history without a cursor is its newest `limit` messages (default 50, at
//! most 200); a cursor keeps its page's size unless `limit` is given. Request bodies are limited
//! to axum's default of 2 MB, and each message's content to the store's 1 MiB.
//! Messages sent with a client-chosen `id` (a fresh UUID) are safe to send again after a timeout:
//! a stored message or batch comes back as stored, never written twice.
//!
//! Every error is `{"error": "…"}`, the router's own included: 401 without a valid `x-user-id`,
//! 404 for a conversation that does not exist *or belongs to someone else* (the two cannot be told
//! apart) and for an unknown route, 405 for a method a route does not take (with `Allow`), 400 for
//! a malformed id, cursor, query string or JSON, 422 for JSON the store refuses (a bad role, a
//! title or content over the limits, metadata that is not an object) or a budget smaller than the
//! system messages, 409 for a client id taken by a different message, 503 when the database is
//! busy or unreachable (retry), 500 otherwise — without details, which go to stderr.
//!
//! Ctrl-C or SIGTERM (what `docker stop`, systemd and Kubernetes send) stops the server
//! gracefully: it stops accepting, lets the requests in flight finish, closes the store and exits
//! with status 0.
//!
//! The `x-user-id` header stands in for authentication: a real service takes the user from a
//! verified session or token, never from a header the client may set to anything.

use std::env;
use std::future::Future;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, StatusCode, Uri};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chatstore::{
    AsyncChatStore, Branch, BranchId, ContextWindow, Conversation, ConversationCursor,
    ConversationId, DeletedCounts, Error, Message, MessageId, NewConversation, NewMessage, Page,
    Part, Retention, Role, SearchOrder, SearchQuery, SearchResults, Siblings, Tag, TagCount, Usage,
    UserId, Window,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The header that names the acting user.
pub const USER_HEADER: &str = "x-user-id";

/// Conversations per list page when the request names no `limit` (the store caps it at 100).
const DEFAULT_LIST_LIMIT: u32 = 20;
/// Messages per history page when the request names no `limit`, and the most it may name.
const DEFAULT_HISTORY_LIMIT: u32 = 50;
const MAX_HISTORY_LIMIT: u32 = 200;
/// The largest context budget a request may name, in characters: the store reads about as many
/// rows as fit, so the budget bounds the work of a request.
const MAX_CONTEXT_BUDGET: u64 = 1_000_000;

/// The service's routes on `store`.
pub fn app(store: AsyncChatStore) -> Router {
    Router::new()
        .route(
            "/conversations",
            get(list_conversations)
                .post(create_conversation)
                .delete(purge_conversations),
        )
        .route(
            "/conversations/{id}",
            get(get_conversation)
                .patch(rename_conversation)
                .delete(delete_conversation),
        )
        .route(
            "/conversations/{id}/pinned",
            axum::routing::put(pin_conversation).delete(unpin_conversation),
        )
        .route(
            "/conversations/{id}/archived",
            axum::routing::put(archive_conversation).delete(restore_conversation),
        )
        .route(
            "/conversations/{id}/tags",
            axum::routing::put(set_conversation_tags),
        )
        .route(
            "/conversations/{id}/tags/{tag}",
            axum::routing::put(tag_conversation).delete(untag_conversation),
        )
        .route(
            "/conversations/{id}/metadata",
            axum::routing::put(set_conversation_metadata),
        )
        .route("/tags", get(list_tags))
        .route("/usage", get(usage))
        .route(
            "/conversations/{id}/messages",
            get(read_messages)
                .post(append_messages)
                .delete(remove_messages),
        )
        .route(
            "/conversations/{id}/messages/{message}/siblings",
            get(siblings).post(append_sibling),
        )
        .route("/conversations/{id}/branches", get(list_branches))
        .route(
            "/conversations/{id}/branches/{branch}",
            axum::routing::delete(delete_branch),
        )
        .route(
            "/conversations/{id}/branch",
            axum::routing::put(switch_branch),
        )
        .route("/conversations/{id}/pop", post(pop_messages))
        .route("/conversations/{id}/fork", post(fork_conversation))
        .route("/conversations/{id}/context", get(context_window))
        .route("/search", get(search))
        // The router's own answers, JSON like every other error. axum still adds `Allow` to a 405.
        .fallback(|| async { ApiError::Request(StatusCode::NOT_FOUND, "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::Request(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method".into(),
            )
        })
        .with_state(store)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://chat.db".into());
    let bind = env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let store = AsyncChatStore::open(&url).await?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    // Before the server says it listens, so that no signal finds it without its handlers.
    let shutdown = shutdown_signal()?;
    // The URL is not printed: it may hold a password.
    println!(
        "chatstore ({:?}) listening on http://{}; Ctrl-C or SIGTERM stops it",
        store.backend(),
        listener.local_addr()?
    );
    axum::serve(listener, app(store.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    // Every request has finished, and the router's copies of the store are gone: dropping the
    // last one closes its connections.
    drop(store);
    println!("stopped");
    Ok(())
}

/// A future that resolves on Ctrl-C or SIGTERM; the handlers are installed when this is called.
/// The server then stops accepting and lets requests in flight finish; a store call that has
/// started always runs to its end, so no write is cut in half either way. A request that never
/// ends would hold the shutdown up: put a timeout layer in front of slow clients if yours have any.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let stop = {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let stop = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot listen for Ctrl-C ({e}); stop the process another way");
            std::future::pending::<()>().await;
        }
    };
    Ok(async {
        stop.await;
        println!("shutting down");
    })
}

// ---------------------------------------------------------------------------------------------
// Errors: every failure of a request becomes its response here, and only here.

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// What the store refused, or failed at.
    Store(Error),
    /// No usable `x-user-id` header.
    Unauthorized(&'static str),
    /// A request that could not be read (body, query string, path): the status and a message for
    /// the client.
    Request(StatusCode, String),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError::Store(error)
    }
}

impl From<JsonRejection> for ApiError {
    /// axum's statuses: 400 for JSON that does not parse, 422 for JSON of the wrong shape, 415
    /// without `content-type: application/json`, 413 for a body over 2 MB.
    fn from(rejection: JsonRejection) -> Self {
        ApiError::Request(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Request(rejection.status(), rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized(why) => (StatusCode::UNAUTHORIZED, why.to_owned()),
            ApiError::Request(status, message) => (status, message),
            ApiError::Store(error) => {
                let status = match &error {
                    // Missing and someone else's look the same, by design of the store.
                    Error::NotFound => StatusCode::NOT_FOUND,
                    // The user id comes from the credentials, not from the request's data.
                    Error::InvalidUserId(_) => StatusCode::UNAUTHORIZED,
                    // A malformed part of the URL: an id, a cursor token, a search query.
                    Error::InvalidId(_) | Error::InvalidCursor(_) | Error::InvalidQuery(_) => {
                        StatusCode::BAD_REQUEST
                    }
                    // Well-formed JSON whose values the store refuses.
                    e if e.is_invalid_input() => StatusCode::UNPROCESSABLE_ENTITY,
                    e if e.is_conflict() => StatusCode::CONFLICT,
                    e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let message = match status {
                    // Input errors describe the client's own input: safe to send back.
                    s if s.is_client_error() => error.to_string(),
                    // The rest may name tables, hosts or SQL: the log gets them, the client not.
                    StatusCode::SERVICE_UNAVAILABLE => {
                        eprintln!("chatstore unavailable: {error}");
                        "the database is busy or unreachable; try again".to_owned()
                    }
                    _ => {
                        eprintln!("chatstore error: {error}");
                        "internal error".to_owned()
                    }
                };
                (status, message)
            }
        };
        let body = Json(json!({ "error": message }));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            (status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Extractors: who is asking, and about which conversation.

/// The acting user, from the `x-user-id` header: missing, not UTF-8 or not a valid user id is 401.
pub struct User(UserId);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(USER_HEADER)
            .ok_or(ApiError::Unauthorized("the x-user-id header is missing"))?;
        value
            .to_str()
            .ok()
            .and_then(|id| UserId::new(id).ok())
            .map(User)
            .ok_or(ApiError::Unauthorized(
                "the x-user-id header is not a valid user id",
            ))
    }
}

/// The conversation id in the path: one that is not a UUID is 400.
pub struct ConvId(ConversationId);

impl<S: Send + Sync> FromRequestParts<S> for ConvId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Request(e.status(), e.body_text()))?;
        Ok(ConvId(id.parse()?))
    }
}

type Store = State<AsyncChatStore>;

// ---------------------------------------------------------------------------------------------
// Pages: the body names the next page by its token, and a `Link` header by its URL.

/// `Link` headers, none when a list has no page beside this one.
type Links = AppendHeaders<Vec<(HeaderName, String)>>;

/// A `Link` header (RFC 8288) to another page of the list this request read: the same path and
/// query string, with `param` set to `value` and the parameters in `replaced` left out.
fn page_link(
    uri: &Uri,
    rel: &str,
    replaced: &[&str],
    (param, value): (&str, &str),
) -> (HeaderName, String) {
    let query = uri.query().unwrap_or_default();
    let kept = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name != param && !replaced.contains(&name.as_ref()));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .append_pair(param, value)
        .finish();
    (
        header::LINK,
        format!("<{}?{query}>; rel=\"{rel}\"", uri.path()),
    )
}

// ---------------------------------------------------------------------------------------------
// Conversations.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConversationBody {
    title: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    metadata: Option<Value>,
}

async fn create_conversation(
    User(user): User,
    State(store): Store,
    body: Result<Option<Json<NewConversationBody>>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let mut new = NewConversation::new();
    if let Some(Json(body)) = body? {
        if let Some(title) = body.title {
            new = new.with_title(title);
        }
        new = new.with_tags(body.tags);
        if let Some(metadata) = body.metadata {
            new = new.with_metadata(metadata);
        }
    }
    let conversation = store.create_conversation_with(&user, new).await?;
    let location = format!("/conversations/{}", conversation.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(conversation),
    ))
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
    /// `true`: the archived conversations instead.
    #[serde(default)]
    archived: bool,
    /// Only the conversations with this tag (of the default list).
    tag: Option<String>,
}

#[derive(Serialize)]
struct ConversationList {
    conversations: Vec<Conversation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

async fn list_conversations(
    User(user): User,
    OriginalUri(uri): OriginalUri,
    State(store): Store,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<(Links, Json<ConversationList>), ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    let page = match params.cursor {
        Some(token) => Page::after(ConversationCursor::from_token(&token, &user)?, limit),
        None => Page::first(limit),
    };
    let page = match (params.archived, params.tag) {
        (true, None) => store.list_archived_conversations(&user, page).await?,
        (false, None) => store.list_conversations(&user, page).await?,
        (false, Some(tag)) => {
            let tag = Tag::new(tag).map_err(bad_request)?;
            store.list_conversations_tagged(&user, &tag, page).await?
        }
        (true, Some(_)) => {
            return Err(ApiError::Request(
                StatusCode::BAD_REQUEST,
                "a tag filters the default list, not the archived one".into(),
            ))
        }
    };
    let next_cursor = page.next_token(&user);
    let links = next_cursor
        .iter()
        .map(|token| page_link(&uri, "next", &[], ("cursor", token)))
        .collect();
    let body = ConversationList {
        conversations: page.conversations,
        next_cursor,
    };
    Ok((AppendHeaders(links), Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeParams {
    /// An RFC 3339 time, not later than now.
    not_updated_since: chrono::DateTime<chrono::Utc>,
    /// `true`: count, delete nothing.
    #[serde(default)]
    dry_run: bool,
}

/// The user's own retention: their conversations not updated since a time, deleted (a batch per
/// transaction) or counted.
async fn purge_conversations(
    User(user): User,
    State(store): Store,
    params: Result<Query<PurgeParams>, QueryRejection>,
) -> Result<Json<DeletedCounts>, ApiError> {
    let Query(params) = params?;
    let retention = Retention::not_updated_since(params.not_updated_since).of_user(user);
    Ok(Json(match params.dry_run {
        true => store.purge_preview(&retention).await?,
        false => {
            store
                .purge(&retention, |_| std::ops::ControlFlow::Continue(()))
                .await?
        }
    }))
}

async fn get_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(store.conversation(&user, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    /// Required, but may be `null` (which clears the title): without `deserialize_with`, serde
    /// would read a missing `title` as `None`, and `{}` would clear it too.
    #[serde(deserialize_with = "Option::deserialize")]
    title: Option<String>,
}

async fn rename_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    body: Result<Json<RenameBody>, JsonRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let Json(body) = body?;
    let conversation = store
        .rename_conversation(&user, id, body.title.as_deref())
        .await?;
    Ok(Json(conversation))
}

async fn pin_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(store.pin_conversation(&user, id).await?))
}

async fn unpin_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(store.unpin_conversation(&user, id).await?))
}

async fn archive_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(store.archive_conversation(&user, id).await?))
}

async fn restore_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(store.restore_conversation(&user, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    tags: Vec<Tag>,
}

async fn set_conversation_tags(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    body: Result<Json<TagsBody>, JsonRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let Json(body) = body?;
    Ok(Json(
        store.set_conversation_tags(&user, id, &body.tags).await?,
    ))
}

/// The conversation and the tag in a path `/conversations/{id}/tags/{tag}`: either malformed is
/// 400.
fn tag_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(ConversationId, Tag), ApiError> {
    let Path((conversation, tag)) =
        path.map_err(|e| ApiError::Request(e.status(), e.body_text()))?;
    Ok((conversation.parse()?, Tag::new(tag).map_err(bad_request)?))
}

/// A store's refusal of part of the URL: 400, with its words.
fn bad_request(error: Error) -> ApiError {
    ApiError::Request(StatusCode::BAD_REQUEST, error.to_string())
}

async fn tag_conversation(
    User(user): User,
    State(store): Store,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let (id, tag) = tag_path(path)?;
    Ok(Json(store.tag_conversation(&user, id, &tag).await?))
}

async fn untag_conversation(
    User(user): User,
    State(store): Store,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let (id, tag) = tag_path(path)?;
    Ok(Json(store.untag_conversation(&user, id, &tag).await?))
}

/// The body is the metadata itself: a JSON object, or `null` to clear it.
async fn set_conversation_metadata(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let Json(metadata) = body?;
    let metadata = Some(metadata).filter(|m| !m.is_null());
    Ok(Json(
        store
            .set_conversation_metadata(&user, id, metadata.as_ref())
            .await?,
    ))
}

#[derive(Serialize)]
struct TagList {
    tags: Vec<TagCount>,
}

async fn list_tags(User(user): User, State(store): Store) -> Result<Json<TagList>, ApiError> {
    Ok(Json(TagList {
        tags: store.tags(&user).await?,
    }))
}

/// The user's token usage: each conversation's is in its own record (`usage`, when not zero).
async fn usage(User(user): User, State(store): Store) -> Result<Json<Usage>, ApiError> {
    Ok(Json(store.usage(&user).await?))
}

async fn delete_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
) -> Result<StatusCode, ApiError> {
    store.delete_conversation(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Messages.

#[derive(Deserialize)]
struct HistoryParams {
    limit: Option<u32>,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Serialize)]
struct History {
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    older: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    newer: Option<String>,
    total: i64,
}

/// The window a history request asks for. A cursor carries its page size; `limit` overrides it.
/// Every size is kept within `1..=MAX_HISTORY_LIMIT`, since the store reads whatever a window
/// names (a cursor made by hand could name four billion).
fn history_window(
    params: &HistoryParams,
    user: &UserId,
    conversation: ConversationId,
) -> Result<Window, ApiError> {
    let limit = |carried: u32| params.limit.unwrap_or(carried).clamp(1, MAX_HISTORY_LIMIT);
    let wrong_kind = |name: &str| {
        ApiError::Request(
            StatusCode::BAD_REQUEST,
            format!("`{name}` takes an `{name}` cursor from an earlier page"),
        )
    };
    match (&params.before, &params.after) {
        (Some(_), Some(_)) => Err(ApiError::Request(
            StatusCode::BAD_REQUEST,
            "give `before` or `after`, not both".into(),
        )),
        (Some(token), None) => match Window::from_token(token, user, conversation)? {
            Window::Before { seq, limit: n } => Ok(Window::Before {
                seq,
                limit: limit(n),
            }),
            _ => Err(wrong_kind("before")),
        },
        (None, Some(token)) => match Window::from_token(token, user, conversation)? {
            Window::After { seq, limit: n } => Ok(Window::After {
                seq,
                limit: limit(n),
            }),
            _ => Err(wrong_kind("after")),
        },
        (None, None) => Ok(Window::Latest(limit(DEFAULT_HISTORY_LIMIT))),
    }
}

async fn read_messages(
    User(user): User,
    ConvId(id): ConvId,
    OriginalUri(uri): OriginalUri,
    State(store): Store,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<(Links, Json<History>), ApiError> {
    let Query(params) = params?;
    let window = history_window(&params, &user, id)?;
    let page = store.messages(&user, id, window).await?;
    let history = History {
        older: page.older_token(&user),
        newer: page.newer_token(&user),
        messages: page.messages,
        total: page.total,
    };
    // Older is "prev", newer is "next": the pages in the order the messages were written.
    let cursors = ["before", "after"];
    let older = history
        .older
        .iter()
        .map(|token| page_link(&uri, "prev", &cursors, ("before", token)));
    let newer = history
        .newer
        .iter()
        .map(|token| page_link(&uri, "next", &cursors, ("after", token)));
    Ok((AppendHeaders(older.chain(newer).collect()), Json(history)))
}

#[derive(Deserialize)]
struct ContextParams {
    budget: u64,
}

/// The next prompt: the messages to send the model, within `budget` characters.
async fn context_window(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    params: Result<Query<ContextParams>, QueryRejection>,
) -> Result<Json<ContextWindow>, ApiError> {
    let Query(ContextParams { budget }) = params?;
    if budget > MAX_CONTEXT_BUDGET {
        return Err(ApiError::Request(
            StatusCode::BAD_REQUEST,
            format!("budget is {budget}, the maximum is {MAX_CONTEXT_BUDGET}"),
        ));
    }
    Ok(Json(store.context_window(&user, id, budget).await?))
}

/// A message to append, as a client sends it: its fields, with `content` or `parts` (or both).
#[derive(Deserialize)]
#[serde(try_from = "MessageFields")]
struct MessageBody(MessageFields);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageFields {
    role: Role,
    /// The plain text; may be left out when `parts` say everything.
    content: Option<String>,
    /// Text, images and files by reference, in order (see `chatstore::Part`):
    /// `{"type": "text", "text"}` or `{"type": "image" | "file", "url" | "key", "media_type",
    /// "size", "name"?}`.
    parts: Option<Vec<Part>>,
    metadata: Option<Value>,
    /// The tokens the model call behind it used: `{"input_tokens", "output_tokens",
    /// "total_tokens"?}`.
    usage: Option<Usage>,
    /// A fresh UUID of the client's, so that sending the message again cannot store it twice.
    id: Option<MessageId>,
}

impl TryFrom<MessageFields> for MessageBody {
    type Error = &'static str;

    /// A message says something: a body with neither `content` nor `parts` is a mistake.
    fn try_from(fields: MessageFields) -> Result<Self, &'static str> {
        match fields.content.is_some() || fields.parts.is_some() {
            true => Ok(MessageBody(fields)),
            false => Err("a message needs \"content\" or \"parts\""),
        }
    }
}

impl MessageBody {
    fn as_new(&self) -> NewMessage<'_> {
        let fields = &self.0;
        let content = fields.content.as_deref().unwrap_or("");
        let parts = fields.parts.as_deref().unwrap_or_default();
        let mut message = NewMessage::new(fields.role, content).with_parts(parts);
        if let Some(metadata) = &fields.metadata {
            message = message.with_metadata(metadata);
        }
        if let Some(usage) = fields.usage {
            message = message.with_usage(usage);
        }
        if let Some(id) = fields.id {
            message = message.with_id(id);
        }
        message
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    messages: Vec<MessageBody>,
}

/// What an append answers: the message, or the batch as `{"messages": [...]}`.
#[derive(Serialize)]
#[serde(untagged)]
enum Appended {
    One(Message),
    Batch { messages: Vec<Message> },
}

/// A message, or a batch (`{"messages": [...]}`), as a request body gives it.
enum Posted {
    One(MessageBody),
    Batch(Vec<MessageBody>),
}

impl Posted {
    /// Told apart by its key, not by trying both shapes: an error then names what is wrong with
    /// the shape the client meant.
    fn read(body: Result<Json<Value>, JsonRejection>) -> Result<Self, ApiError> {
        let Json(body) = body?;
        if !body.is_object() {
            return Err(ApiError::Request(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expected a message or {\"messages\": [...]}, as a JSON object".into(),
            ));
        }
        Ok(match body.get("messages").is_some() {
            true => Posted::Batch(from_json::<BatchBody>(body)?.messages),
            false => Posted::One(from_json(body)?),
        })
    }

    fn messages(&self) -> Vec<NewMessage<'_>> {
        match self {
            Posted::One(message) => vec![message.as_new()],
            Posted::Batch(batch) => batch.iter().map(MessageBody::as_new).collect(),
        }
    }

    /// The answer for what was stored of it.
    fn answer(&self, mut stored: Vec<Message>) -> Result<Appended, ApiError> {
        Ok(match self {
            Posted::Batch(_) => Appended::Batch { messages: stored },
            Posted::One(_) => Appended::One(stored.pop().ok_or(ApiError::Store(
                Error::TaskFailed("an append of one message stored none".into()),
            ))?),
        })
    }
}

/// One message, or a batch (`{"messages": [...]}`), stored all or nothing.
async fn append_messages(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let posted = Posted::read(body)?;
    let stored = store.append_messages(&user, id, &posted.messages()).await?;
    Ok((StatusCode::CREATED, Json(posted.answer(stored)?)))
}

// ---------------------------------------------------------------------------------------------
// Branches: edits, regenerations, and the versions of a message.

/// The conversation id and a message id in the path: either not a UUID is 400.
fn message_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(ConversationId, MessageId), ApiError> {
    let Path((conversation, message)) =
        path.map_err(|e| ApiError::Request(e.status(), e.body_text()))?;
    Ok((conversation.parse()?, message.parse()?))
}

/// A message (or a batch) as a sibling of the message in the path, on a new branch that becomes
/// active: an edit, or a regeneration.
async fn append_sibling(
    User(user): User,
    State(store): Store,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let (id, of) = message_path(path)?;
    let posted = Posted::read(body)?;
    let stored = store
        .append_sibling(&user, id, of, &posted.messages())
        .await?;
    Ok((StatusCode::CREATED, Json(posted.answer(stored)?)))
}

async fn siblings(
    User(user): User,
    State(store): Store,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Siblings>, ApiError> {
    let (id, of) = message_path(path)?;
    Ok(Json(store.siblings(&user, id, of).await?))
}

#[derive(Serialize)]
struct BranchList {
    branches: Vec<Branch>,
}

async fn list_branches(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
) -> Result<Json<BranchList>, ApiError> {
    let branches = store.branches(&user, id).await?;
    Ok(Json(BranchList { branches }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    branch: BranchId,
}

async fn switch_branch(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    body: Result<Json<SwitchBody>, JsonRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let Json(body) = body?;
    Ok(Json(store.switch_branch(&user, id, body.branch).await?))
}

async fn delete_branch(
    User(user): User,
    State(store): Store,
    path: Result<Path<(String, u32)>, PathRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let Path((conversation, branch)) =
        path.map_err(|e| ApiError::Request(e.status(), e.body_text()))?;
    let branch = BranchId::new(branch).ok_or_else(|| {
        ApiError::Request(StatusCode::BAD_REQUEST, "no such branch number".into())
    })?;
    let conversation = conversation.parse()?;
    Ok(Json(
        store.delete_branch(&user, conversation, branch).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveParams {
    after_seq: Option<i64>,
}

/// What a removal answers: the messages removed after a seq, or how many a clear removed.
#[derive(Serialize)]
#[serde(untagged)]
enum Removed {
    Messages { messages: Vec<Message> },
    Count { removed: u64 },
}

/// With `after_seq`, the messages after it (at most a window's cap: a larger truncation is a
/// 422); without, every message, the conversation kept.
async fn remove_messages(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    params: Result<Query<RemoveParams>, QueryRejection>,
) -> Result<Json<Removed>, ApiError> {
    let Query(params) = params?;
    Ok(Json(match params.after_seq {
        Some(seq) => Removed::Messages {
            messages: store.truncate_messages(&user, id, seq).await?,
        },
        None => Removed::Count {
            removed: store.clear_messages(&user, id).await?,
        },
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PopBody {
    n: Option<u32>,
}

/// The newest `n` messages (default 1), removed and returned: an undo.
async fn pop_messages(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    body: Result<Option<Json<PopBody>>, JsonRejection>,
) -> Result<Json<Removed>, ApiError> {
    let n = body?.and_then(|Json(body)| body.n).unwrap_or(1);
    let messages = store.pop_messages(&user, id, n).await?;
    Ok(Json(Removed::Messages { messages }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    through: MessageId,
}

/// A new conversation holding a copy of this one's messages through `through`.
async fn fork_conversation(
    User(user): User,
    ConvId(id): ConvId,
    State(store): Store,
    body: Result<Json<ForkBody>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body?;
    let fork = store.fork_conversation(&user, id, body.through).await?;
    let location = format!("/conversations/{}", fork.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(fork),
    ))
}

/// `value` as a `T`, or a 422 that says why not.
fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| {
        ApiError::Request(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid message: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Search.

#[derive(Deserialize)]
struct SearchParams {
    q: String,
    conversation: Option<String>,
    order: Option<SearchOrder>,
    limit: Option<u32>,
    offset: Option<u32>,
    /// `true`: the archived conversations too.
    #[serde(default)]
    archived: bool,
}

async fn search(
    User(user): User,
    OriginalUri(uri): OriginalUri,
    State(store): Store,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<(Links, Json<SearchResults>), ApiError> {
    let Query(params) = params?;
    let mut query = SearchQuery::new(&params.q)
        .include_archived(params.archived)
        .order(params.order.unwrap_or_default())
        .offset(params.offset.unwrap_or(0));
    if let Some(limit) = params.limit {
        query = query.limit(limit);
    }
    if let Some(conversation) = &params.conversation {
        query = query.in_conversation(conversation.parse()?);
    }
    let results = store.search_messages(&user, &query).await?;
    let links = results
        .next_offset
        .map(|offset| page_link(&uri, "next", &[], ("offset", &offset.to_string())))
        .into_iter()
        .collect();
    Ok((AppendHeaders(links), Json(results)))
}

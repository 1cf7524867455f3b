//! `AsyncChatStore`: the blocking store for async code. Each call runs on tokio's blocking pool, so
//! a slow query, a wait for a pooled connection or for SQLite's write lock holds a blocking thread,
//! never one of the runtime's workers. Diesel's connections are blocking; wrapping the store keeps
//! one implementation of every call, and a dropped future cannot stop a transaction halfway.

use tokio::runtime::Handle;
use tokio::task::JoinError;

use crate::{
    Backend, ChatStore, ContextOptions, ContextWindow, Conversation, ConversationId,
    ConversationPage, DeletedCounts, Error, Message, MessagePage, NewMessage, Page, Result,
    SchemaReport, SearchQuery, SearchResults, StoreBuilder, StoreStats, UserId, Window,
};

/// A [`ChatStore`] for async code (cargo feature `tokio`): the same calls as `async fn`s, each
/// running the blocking call on tokio's blocking pool
/// ([`spawn_blocking`](tokio::task::spawn_blocking)), with the same arguments, results and
/// guarantees.
///
/// Like the `ChatStore` it wraps, it is cheap to clone and safe to share: open one at start-up and
/// hand clones to your tasks. It works on current-thread and multi-thread runtimes alike. Borrowed
/// arguments (user ids, titles, batches, search text) are copied once, to move them to the
/// blocking pool.
///
/// ```
/// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// # runtime.block_on(async {
/// use chatstore::{AsyncChatStore, NewMessage, UserId, Window};
///
/// let store = AsyncChatStore::open(":memory:").await?;
/// let alice = UserId::new("alice")?;
/// let conv = store.create_conversation(&alice, Some("Groceries")).await?;
/// store.append_message(&alice, conv.id, NewMessage::user("Add oat milk")).await?;
/// let page = store.messages(&alice, conv.id, Window::Latest(50)).await?;
/// assert_eq!(page.messages[0].content, "Add oat milk");
/// # Ok::<(), chatstore::Error>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Cancellation
/// Dropping the future of a write never leaves the write half done. Once the future has been
/// polled, its call runs on the blocking pool to the end whether anyone awaits it or not — the
/// blocking task is not cancelled — so its transaction commits whole or rolls back whole; the
/// caller who dropped the future just does not learn which. (A future dropped before it was first
/// polled did nothing.) A runtime that shuts down lets a started call finish; one still queued
/// may not run at all. To learn the outcome, or make sure of it, append with client ids
/// ([`NewMessage::with_id`]) and send the same batch again: a stored batch is returned as stored,
/// never written twice (see [`ChatStore::append_messages`]).
///
/// # Errors
/// Each call fails as its `ChatStore` counterpart does, and with [`Error::TaskFailed`] if it
/// panicked (in a cost function of yours, say), if the runtime shut down before it ran, or if it
/// was polled outside a tokio runtime.
#[derive(Debug, Clone)]
pub struct AsyncChatStore {
    inner: ChatStore,
}

impl From<ChatStore> for AsyncChatStore {
    fn from(inner: ChatStore) -> Self {
        AsyncChatStore { inner }
    }
}

impl AsyncChatStore {
    /// Opens the store at `url` with default options, as [`ChatStore::open`]: connecting and
    /// running pending migrations on the blocking pool.
    ///
    /// # Errors
    /// As [`StoreBuilder::open`]; [`Error::TaskFailed`].
    pub async fn open(url: &str) -> Result<AsyncChatStore> {
        Self::open_with(ChatStore::builder(url)).await
    }

    /// Opens a store with the options of `builder` (made by [`ChatStore::builder`]), on the
    /// blocking pool.
    ///
    /// # Errors
    /// As [`StoreBuilder::open`]; [`Error::TaskFailed`].
    pub async fn open_with(builder: StoreBuilder) -> Result<AsyncChatStore> {
        blocking(move || builder.open()).await.map(Self::from)
    }

    /// The blocking store inside, for code that runs on a thread of its own.
    pub fn blocking(&self) -> &ChatStore {
        &self.inner
    }

    /// The database system behind this store. (No I/O: it is not `async`.)
    pub fn backend(&self) -> Backend {
        self.inner.backend()
    }

    /// Runs `f` with the store on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ChatStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.inner.clone();
        blocking(move || f(&store)).await
    }

    /// [`ChatStore::create_conversation`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::create_conversation`]; [`Error::TaskFailed`].
    pub async fn create_conversation(
        &self,
        user: &UserId,
        title: Option<&str>,
    ) -> Result<Conversation> {
        let (user, title) = (user.clone(), title.map(str::to_owned));
        self.run(move |s| s.create_conversation(&user, title.as_deref()))
            .await
    }

    /// [`ChatStore::conversation`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::conversation`]; [`Error::TaskFailed`].
    pub async fn conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.conversation(&user, id)).await
    }

    /// [`ChatStore::list_conversations`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::list_conversations`]; [`Error::TaskFailed`].
    pub async fn list_conversations(&self, user: &UserId, page: Page) -> Result<ConversationPage> {
        let user = user.clone();
        self.run(move |s| s.list_conversations(&user, page)).await
    }

    /// [`ChatStore::rename_conversation`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::rename_conversation`]; [`Error::TaskFailed`].
    pub async fn rename_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
        title: Option<&str>,
    ) -> Result<Conversation> {
        let (user, title) = (user.clone(), title.map(str::to_owned));
        self.run(move |s| s.rename_conversation(&user, id, title.as_deref()))
            .await
    }

    /// [`ChatStore::delete_conversation`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::delete_conversation`]; [`Error::TaskFailed`].
    pub async fn delete_conversation(&self, user: &UserId, id: ConversationId) -> Result<()> {
        let user = user.clone();
        self.run(move |s| s.delete_conversation(&user, id)).await
    }

    /// [`ChatStore::append_message`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::append_message`]; [`Error::TaskFailed`].
    pub async fn append_message(
        &self,
        user: &UserId,
        conversation: ConversationId,
        message: NewMessage<'_>,
    ) -> Result<Message> {
        let (user, message) = (user.clone(), message.into_owned());
        self.run(move |s| s.append_message(&user, conversation, message))
            .await
    }

    /// [`ChatStore::append_messages`], on the blocking pool: all or nothing, even if this future
    /// is dropped (see [Cancellation](Self#cancellation)).
    ///
    /// # Errors
    /// As [`ChatStore::append_messages`]; [`Error::TaskFailed`].
    pub async fn append_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        let (user, batch) = (user.clone(), owned(batch));
        self.run(move |s| s.append_messages(&user, conversation, &batch))
            .await
    }

    /// [`ChatStore::append_if_last_seq`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::append_if_last_seq`]; [`Error::TaskFailed`].
    pub async fn append_if_last_seq(
        &self,
        user: &UserId,
        conversation: ConversationId,
        last_seq: i64,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        let (user, batch) = (user.clone(), owned(batch));
        self.run(move |s| s.append_if_last_seq(&user, conversation, last_seq, &batch))
            .await
    }

    /// [`ChatStore::messages`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::messages`]; [`Error::TaskFailed`].
    pub async fn messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        window: Window,
    ) -> Result<MessagePage> {
        let user = user.clone();
        self.run(move |s| s.messages(&user, conversation, window))
            .await
    }

    /// [`ChatStore::context_window`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::context_window`]; [`Error::TaskFailed`].
    pub async fn context_window(
        &self,
        user: &UserId,
        conversation: ConversationId,
        budget: u64,
    ) -> Result<ContextWindow> {
        let user = user.clone();
        self.run(move |s| s.context_window(&user, conversation, budget))
            .await
    }

    /// [`ChatStore::context_window_with`], on the blocking pool, where `cost` runs too: it moves
    /// there, hence `Send + 'static`.
    ///
    /// # Errors
    /// As [`ChatStore::context_window_with`]; [`Error::TaskFailed`] if `cost` panics.
    pub async fn context_window_with<F>(
        &self,
        user: &UserId,
        conversation: ConversationId,
        budget: u64,
        options: ContextOptions,
        cost: F,
    ) -> Result<ContextWindow>
    where
        F: FnMut(&Message) -> u64 + Send + 'static,
    {
        let user = user.clone();
        self.run(move |s| s.context_window_with(&user, conversation, budget, options, cost))
            .await
    }

    /// [`ChatStore::search_messages`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::search_messages`]; [`Error::TaskFailed`].
    pub async fn search_messages(
        &self,
        user: &UserId,
        query: &SearchQuery<'_>,
    ) -> Result<SearchResults> {
        let (user, text) = (user.clone(), query.text().to_owned());
        let query = query.with_text("");
        self.run(move |s| s.search_messages(&user, &query.with_text(&text)))
            .await
    }

    /// [`ChatStore::delete_user_data`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::delete_user_data`]; [`Error::TaskFailed`].
    pub async fn delete_user_data(&self, user: &UserId) -> Result<DeletedCounts> {
        let user = user.clone();
        self.run(move |s| s.delete_user_data(&user)).await
    }

    /// [`ChatStore::stats`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::stats`]; [`Error::TaskFailed`].
    pub async fn stats(&self) -> Result<StoreStats> {
        self.run(ChatStore::stats).await
    }

    /// [`ChatStore::import_conversation`], on the blocking pool (the conversation and its
    /// messages are copied there). An export reads page by page as it is iterated: run
    /// [`ChatStore::export_user`] on the blocking store ([`blocking`](Self::blocking)) inside
    /// [`spawn_blocking`](tokio::task::spawn_blocking).
    ///
    /// # Errors
    /// As [`ChatStore::import_conversation`]; [`Error::TaskFailed`].
    pub async fn import_conversation(
        &self,
        user: &UserId,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()> {
        let (user, conversation, messages) =
            (user.clone(), conversation.clone(), messages.to_vec());
        self.run(move |s| s.import_conversation(&user, &conversation, &messages))
            .await
    }

    /// [`ChatStore::verify_schema`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::verify_schema`]; [`Error::TaskFailed`].
    pub async fn verify_schema(&self) -> Result<SchemaReport> {
        self.run(ChatStore::verify_schema).await
    }
}

/// Runs `f` on the current runtime's blocking pool. Once spawned it runs to its end: dropping the
/// returned future only detaches it. With the `tracing` feature, the caller's subscriber and span
/// go along, so the store's span is a child of the request's rather than a root of its own (or,
/// under a subscriber set for the caller's thread only, not recorded at all).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let runtime = Handle::try_current()
        .map_err(|_| Error::TaskFailed("no tokio runtime is running".into()))?;
    #[cfg(feature = "tracing")]
    let f = {
        let parent = tracing::Span::current();
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        move || tracing::dispatcher::with_default(&dispatch, || parent.in_scope(f))
    };
    runtime.spawn_blocking(f).await.map_err(task_failed)?
}

/// Why a blocking task did not return: a panic (with its message), or a runtime that shut down
/// before the task ran — a started blocking task is never cancelled.
fn task_failed(error: JoinError) -> Error {
    match error.try_into_panic() {
        Ok(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a panic without a message");
            Error::TaskFailed(format!("it panicked: {message}"))
        }
        Err(_) => Error::TaskFailed("the runtime shut down before it ran".into()),
    }
}

/// A batch, copied to move to the blocking pool.
fn owned(batch: &[NewMessage<'_>]) -> Vec<NewMessage<'static>> {
    batch.iter().cloned().map(NewMessage::into_owned).collect()
}

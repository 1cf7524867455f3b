//! `AsyncChatStore`: the blocking store for async code. Each call runs on tokio's blocking pool, so
//! a slow query, a wait for a pooled connection or for SQLite's write lock holds a blocking thread,
//! never one of the runtime's workers. Diesel's connections are blocking; wrapping the store keeps
//! one implementation of every call, and a dropped future cannot stop a transaction halfway.

use tokio::runtime::Handle;
use tokio::task::JoinError;

use crate::{
    Backend, Branch, BranchId, ChatStore, ContextOptions, ContextWindow, Conversation,
    ConversationId, ConversationPage, DeletedCounts, Error, Message, MessageId, MessagePage,
    NewConversation, NewMessage, Page, Result, Retention, SchemaReport, SearchQuery, SearchResults,
    Siblings, StoreBuilder, StoreStats, Tag, TagCount, Usage, UserId, Window,
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
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("chat.db");
    /// # let url = path.to_str().unwrap();
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// use chatstore::{AsyncChatStore, UserId};
    ///
    /// let alice = UserId::new("alice")?;
    /// let store = AsyncChatStore::open(url).await?; // a SQLite file, made and migrated
    /// let conv = store.create_conversation(&alice, Some("Groceries")).await?;
    /// drop(store);
    ///
    /// let store = AsyncChatStore::open(url).await?;
    /// let again = store.conversation(&alice, conv.id).await?;
    /// assert_eq!(again.title.as_deref(), Some("Groceries"));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`StoreBuilder::open`]; [`Error::TaskFailed`].
    pub async fn open(url: &str) -> Result<AsyncChatStore> {
        Self::open_with(ChatStore::builder(url)).await
    }

    /// Opens a store with the options of `builder` (made by [`ChatStore::builder`]), on the
    /// blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// use chatstore::{AsyncChatStore, ChatStore, Error, NewMessage, UserId};
    ///
    /// let builder = ChatStore::builder(":memory:").max_content_bytes(16);
    /// let store = AsyncChatStore::open_with(builder).await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// let long = NewMessage::user("more than sixteen bytes");
    /// let refused = store.append_message(&alice, conv.id, long).await;
    /// assert!(matches!(refused, Err(Error::ContentTooLarge { max: 16, .. })));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`StoreBuilder::open`]; [`Error::TaskFailed`].
    pub async fn open_with(builder: StoreBuilder) -> Result<AsyncChatStore> {
        blocking(move || builder.open()).await.map(Self::from)
    }

    /// The blocking store inside, for code that runs on a thread of its own.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, ExportItem, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, Some("Groceries")).await?;
    /// // An export is a blocking iterator: read it on a blocking thread.
    /// let (blocking, user) = (store.blocking().clone(), alice.clone());
    /// let items: Vec<ExportItem> = tokio::task::spawn_blocking(move || {
    ///     blocking.export_user(&user).collect::<chatstore::Result<_>>()
    /// })
    /// .await??;
    /// assert!(matches!(&items[..], [ExportItem::Conversation(c)] if c.id == conv.id));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blocking(&self) -> &ChatStore {
        &self.inner
    }

    /// The database system behind this store. (No I/O: it is not `async`.)
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// use chatstore::{AsyncChatStore, Backend};
    ///
    /// let store = AsyncChatStore::open(":memory:").await?;
    /// assert_eq!(store.backend(), Backend::Sqlite);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, Some("  Groceries ")).await?;
    /// assert_eq!(conv.title.as_deref(), Some("Groceries")); // trimmed
    /// assert_eq!(conv.message_count, 0);
    /// let untitled = store.create_conversation(&alice, None).await?;
    /// assert_eq!(untitled.title, None);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, Error, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, Some("Groceries")).await?;
    /// assert_eq!(store.conversation(&alice, conv.id).await?, conv);
    /// // Another user's conversation reads as one that does not exist.
    /// let bob = UserId::new("bob")?;
    /// let theirs = store.conversation(&bob, conv.id).await;
    /// assert!(matches!(theirs, Err(Error::NotFound)));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::conversation`]; [`Error::TaskFailed`].
    pub async fn conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.conversation(&user, id)).await
    }

    /// [`ChatStore::list_conversations`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, Page, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// for title in ["Groceries", "Holiday"] {
    ///     store.create_conversation(&alice, Some(title)).await?;
    /// }
    /// let first = store.list_conversations(&alice, Page::first(1)).await?;
    /// assert_eq!(first.conversations[0].title.as_deref(), Some("Holiday")); // newest first
    /// let next = store.list_conversations(&alice, first.next.unwrap()).await?;
    /// assert_eq!(next.conversations[0].title.as_deref(), Some("Groceries"));
    /// assert!(next.next.is_none(), "the last page");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::list_conversations`]; [`Error::TaskFailed`].
    pub async fn list_conversations(&self, user: &UserId, page: Page) -> Result<ConversationPage> {
        let user = user.clone();
        self.run(move |s| s.list_conversations(&user, page)).await
    }

    /// [`ChatStore::rename_conversation`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let renamed = store.rename_conversation(&alice, conv.id, Some("Groceries")).await?;
    /// assert_eq!(renamed.title.as_deref(), Some("Groceries"));
    /// let cleared = store.rename_conversation(&alice, conv.id, None).await?;
    /// assert_eq!(cleared.title, None);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// [`ChatStore::list_archived_conversations`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, Page, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.archive_conversation(&alice, conv.id).await?;
    /// let page = store.list_archived_conversations(&alice, Page::first(20)).await?;
    /// assert_eq!(page.conversations[0].id, conv.id);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::list_archived_conversations`]; [`Error::TaskFailed`].
    pub async fn list_archived_conversations(
        &self,
        user: &UserId,
        page: Page,
    ) -> Result<ConversationPage> {
        let user = user.clone();
        self.run(move |s| s.list_archived_conversations(&user, page))
            .await
    }

    /// [`ChatStore::pin_conversation`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// assert!(store.pin_conversation(&alice, conv.id).await?.pinned);
    /// assert!(!store.unpin_conversation(&alice, conv.id).await?.pinned);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::pin_conversation`]; [`Error::TaskFailed`].
    pub async fn pin_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
    ) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.pin_conversation(&user, id)).await
    }

    /// [`ChatStore::unpin_conversation`], on the blocking pool (see
    /// [`pin_conversation`](Self::pin_conversation)).
    ///
    /// # Errors
    /// As [`ChatStore::unpin_conversation`]; [`Error::TaskFailed`].
    pub async fn unpin_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
    ) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.unpin_conversation(&user, id)).await
    }

    /// [`ChatStore::archive_conversation`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// assert!(store.archive_conversation(&alice, conv.id).await?.archived);
    /// assert!(!store.restore_conversation(&alice, conv.id).await?.archived);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::archive_conversation`]; [`Error::TaskFailed`].
    pub async fn archive_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
    ) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.archive_conversation(&user, id)).await
    }

    /// [`ChatStore::restore_conversation`], on the blocking pool (see
    /// [`archive_conversation`](Self::archive_conversation)).
    ///
    /// # Errors
    /// As [`ChatStore::restore_conversation`]; [`Error::TaskFailed`].
    pub async fn restore_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
    ) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.restore_conversation(&user, id)).await
    }

    /// [`ChatStore::create_conversation_with`], on the blocking pool (the title is copied if it
    /// was borrowed).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewConversation, Tag, UserId};
    /// # use serde_json::json;
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let new = NewConversation::new()
    ///     .with_title("Kitchen")
    ///     .with_tag(Tag::new("home")?)
    ///     .with_metadata(json!({ "project": 42 }));
    /// let conv = store.create_conversation_with(&alice, new).await?;
    /// assert_eq!(conv.tags[0].as_str(), "home");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::create_conversation_with`]; [`Error::TaskFailed`].
    pub async fn create_conversation_with(
        &self,
        user: &UserId,
        new: NewConversation<'_>,
    ) -> Result<Conversation> {
        let (user, new) = (user.clone(), new.into_owned());
        self.run(move |s| s.create_conversation_with(&user, new))
            .await
    }

    /// [`ChatStore::set_conversation_metadata`], on the blocking pool (the metadata is copied).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, UserId};
    /// # use serde_json::json;
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let metadata = json!({ "model": "m-1" });
    /// let set = store.set_conversation_metadata(&alice, conv.id, Some(&metadata)).await?;
    /// assert_eq!(set.metadata, Some(metadata));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::set_conversation_metadata`]; [`Error::TaskFailed`].
    pub async fn set_conversation_metadata(
        &self,
        user: &UserId,
        id: ConversationId,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Conversation> {
        let (user, metadata) = (user.clone(), metadata.cloned());
        self.run(move |s| s.set_conversation_metadata(&user, id, metadata.as_ref()))
            .await
    }

    /// [`ChatStore::set_conversation_tags`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, Page, Tag, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let home = Tag::new("home")?;
    /// store.set_conversation_tags(&alice, conv.id, &[home.clone()]).await?;
    /// let page = store.list_conversations_tagged(&alice, &home, Page::first(20)).await?;
    /// assert_eq!(page.conversations[0].id, conv.id);
    /// assert_eq!(store.tags(&alice).await?[0].conversations, 1);
    /// store.untag_conversation(&alice, conv.id, &home).await?;
    /// assert!(store.tag_conversation(&alice, conv.id, &home).await?.tags.contains(&home));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::set_conversation_tags`]; [`Error::TaskFailed`].
    pub async fn set_conversation_tags(
        &self,
        user: &UserId,
        id: ConversationId,
        tags: &[Tag],
    ) -> Result<Conversation> {
        let (user, tags) = (user.clone(), tags.to_vec());
        self.run(move |s| s.set_conversation_tags(&user, id, &tags))
            .await
    }

    /// [`ChatStore::tag_conversation`], on the blocking pool (see
    /// [`set_conversation_tags`](Self::set_conversation_tags)).
    ///
    /// # Errors
    /// As [`ChatStore::tag_conversation`]; [`Error::TaskFailed`].
    pub async fn tag_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
        tag: &Tag,
    ) -> Result<Conversation> {
        let (user, tag) = (user.clone(), tag.clone());
        self.run(move |s| s.tag_conversation(&user, id, &tag)).await
    }

    /// [`ChatStore::untag_conversation`], on the blocking pool (see
    /// [`set_conversation_tags`](Self::set_conversation_tags)).
    ///
    /// # Errors
    /// As [`ChatStore::untag_conversation`]; [`Error::TaskFailed`].
    pub async fn untag_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
        tag: &Tag,
    ) -> Result<Conversation> {
        let (user, tag) = (user.clone(), tag.clone());
        self.run(move |s| s.untag_conversation(&user, id, &tag))
            .await
    }

    /// [`ChatStore::list_conversations_tagged`], on the blocking pool (see
    /// [`set_conversation_tags`](Self::set_conversation_tags)).
    ///
    /// # Errors
    /// As [`ChatStore::list_conversations_tagged`]; [`Error::TaskFailed`].
    pub async fn list_conversations_tagged(
        &self,
        user: &UserId,
        tag: &Tag,
        page: Page,
    ) -> Result<ConversationPage> {
        let (user, tag) = (user.clone(), tag.clone());
        self.run(move |s| s.list_conversations_tagged(&user, &tag, page))
            .await
    }

    /// [`ChatStore::tags`], on the blocking pool (see
    /// [`set_conversation_tags`](Self::set_conversation_tags)).
    ///
    /// # Errors
    /// As [`ChatStore::tags`]; [`Error::TaskFailed`].
    pub async fn tags(&self, user: &UserId) -> Result<Vec<TagCount>> {
        let user = user.clone();
        self.run(move |s| s.tags(&user)).await
    }

    /// [`ChatStore::delete_conversation`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, Error, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// store.delete_conversation(&alice, conv.id).await?;
    /// let gone = store.conversation(&alice, conv.id).await;
    /// assert!(matches!(gone, Err(Error::NotFound)));
    /// assert_eq!(store.stats().await?.messages, 0, "its messages went with it");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::delete_conversation`]; [`Error::TaskFailed`].
    pub async fn delete_conversation(&self, user: &UserId, id: ConversationId) -> Result<()> {
        let user = user.clone();
        self.run(move |s| s.delete_conversation(&user, id)).await
    }

    /// [`ChatStore::append_message`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, Role, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// let asked = store.append_message(&alice, conv.id, NewMessage::user("Add oat milk")).await?;
    /// let answer = NewMessage::assistant("Added.");
    /// let answered = store.append_message(&alice, conv.id, answer).await?;
    /// assert_eq!((asked.seq, answered.seq), (1, 2));
    /// assert_eq!(answered.role, Role::Assistant);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, MessageId, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// # use uuid::Uuid;
    /// // Ids of your own, made once and kept for retries.
    /// let batch = [
    ///     NewMessage::user("Add oat milk").with_id(MessageId::from(Uuid::now_v7())),
    ///     NewMessage::assistant("Added.").with_id(MessageId::from(Uuid::now_v7())),
    /// ];
    /// let stored = store.append_messages(&alice, conv.id, &batch).await?;
    /// // Sent again (its first future was dropped, say): nothing is written twice.
    /// assert_eq!(store.append_messages(&alice, conv.id, &batch).await?, stored);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, Error, NewMessage, UserId, Window};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// let seen = store.messages(&alice, conv.id, Window::Latest(20)).await?;
    /// let other_tab = NewMessage::user("sent from another tab");
    /// store.append_message(&alice, conv.id, other_tab).await?;
    /// let reply = [NewMessage::assistant("an answer to what I saw")];
    /// let result = store.append_if_last_seq(&alice, conv.id, seen.total, &reply).await;
    /// assert!(matches!(result, Err(Error::Conflict { expected: 0, actual: 1 })));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// [`ChatStore::append_if_last_seq_on`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, Error, NewMessage, UserId, Window};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// let asked = store.append_message(&alice, conv.id, NewMessage::user("Hi")).await?;
    /// let seen = store.messages(&alice, conv.id, Window::Latest(20)).await?;
    /// let edit = [NewMessage::user("Hello")];
    /// store.append_sibling(&alice, conv.id, asked.id, &edit).await?;
    /// let reply = [NewMessage::assistant("Hi!")];
    /// let result = store
    ///     .append_if_last_seq_on(&alice, conv.id, seen.branch, seen.total, &reply)
    ///     .await;
    /// assert!(matches!(result, Err(Error::BranchSwitched { .. })));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::append_if_last_seq_on`]; [`Error::TaskFailed`].
    pub async fn append_if_last_seq_on(
        &self,
        user: &UserId,
        conversation: ConversationId,
        branch: BranchId,
        last_seq: i64,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        let (user, batch) = (user.clone(), owned(batch));
        self.run(move |s| s.append_if_last_seq_on(&user, conversation, branch, last_seq, &batch))
            .await
    }

    /// [`ChatStore::pop_messages`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("oops")).await?;
    /// let undone = store.pop_messages(&alice, conv.id, 1).await?;
    /// assert_eq!(undone[0].content, "oops");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::pop_messages`]; [`Error::TaskFailed`].
    pub async fn pop_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        n: u32,
    ) -> Result<Vec<Message>> {
        let user = user.clone();
        self.run(move |s| s.pop_messages(&user, conversation, n))
            .await
    }

    /// [`ChatStore::truncate_messages`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("keep")).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("drop")).await?;
    /// let removed = store.truncate_messages(&alice, conv.id, 1).await?;
    /// assert_eq!(removed[0].content, "drop");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::truncate_messages`]; [`Error::TaskFailed`].
    pub async fn truncate_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        after_seq: i64,
    ) -> Result<Vec<Message>> {
        let user = user.clone();
        self.run(move |s| s.truncate_messages(&user, conversation, after_seq))
            .await
    }

    /// [`ChatStore::clear_messages`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("draft")).await?;
    /// assert_eq!(store.clear_messages(&alice, conv.id).await?, 1);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::clear_messages`]; [`Error::TaskFailed`].
    pub async fn clear_messages(&self, user: &UserId, conversation: ConversationId) -> Result<u64> {
        let user = user.clone();
        self.run(move |s| s.clear_messages(&user, conversation))
            .await
    }

    /// [`ChatStore::fork_conversation`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let first = store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// let fork = store.fork_conversation(&alice, conv.id, first.id).await?;
    /// assert_eq!(fork.message_count, 1);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::fork_conversation`]; [`Error::TaskFailed`].
    pub async fn fork_conversation(
        &self,
        user: &UserId,
        conversation: ConversationId,
        through: MessageId,
    ) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.fork_conversation(&user, conversation, through))
            .await
    }

    /// [`ChatStore::append_sibling`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let first = store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// let edit = [NewMessage::user("hello")];
    /// let edited = store.append_sibling(&alice, conv.id, first.id, &edit).await?;
    /// assert_eq!(edited[0].seq, 1);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::append_sibling`]; [`Error::TaskFailed`].
    pub async fn append_sibling(
        &self,
        user: &UserId,
        conversation: ConversationId,
        of: MessageId,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        let (user, batch) = (user.clone(), owned(batch));
        self.run(move |s| s.append_sibling(&user, conversation, of, &batch))
            .await
    }

    /// [`ChatStore::switch_branch`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let first = store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// store.append_sibling(&alice, conv.id, first.id, &[NewMessage::user("hello")]).await?;
    /// let back = store.switch_branch(&alice, conv.id, chatstore::BranchId::ROOT).await?;
    /// assert!(back.branch.is_root());
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::switch_branch`]; [`Error::TaskFailed`].
    pub async fn switch_branch(
        &self,
        user: &UserId,
        conversation: ConversationId,
        branch: BranchId,
    ) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.switch_branch(&user, conversation, branch))
            .await
    }

    /// [`ChatStore::siblings`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let first = store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// let versions = store.siblings(&alice, conv.id, first.id).await?;
    /// assert_eq!(versions.siblings.len(), 1);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::siblings`]; [`Error::TaskFailed`].
    pub async fn siblings(
        &self,
        user: &UserId,
        conversation: ConversationId,
        of: MessageId,
    ) -> Result<Siblings> {
        let user = user.clone();
        self.run(move |s| s.siblings(&user, conversation, of)).await
    }

    /// [`ChatStore::branches`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let first = store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// assert_eq!(store.branches(&alice, conv.id).await?.len(), 1);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::branches`]; [`Error::TaskFailed`].
    pub async fn branches(
        &self,
        user: &UserId,
        conversation: ConversationId,
    ) -> Result<Vec<Branch>> {
        let user = user.clone();
        self.run(move |s| s.branches(&user, conversation)).await
    }

    /// [`ChatStore::delete_branch`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let first = store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// let edit = store.append_sibling(&alice, conv.id, first.id, &[NewMessage::user("hello")]).await?;
    /// let after = store.delete_branch(&alice, conv.id, edit[0].branch).await?;
    /// assert!(after.branch.is_root());
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::delete_branch`]; [`Error::TaskFailed`].
    pub async fn delete_branch(
        &self,
        user: &UserId,
        conversation: ConversationId,
        branch: BranchId,
    ) -> Result<Conversation> {
        let user = user.clone();
        self.run(move |s| s.delete_branch(&user, conversation, branch))
            .await
    }

    /// [`ChatStore::messages`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId, Window};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// # let batch = ["one", "two", "three"].map(NewMessage::user);
    /// # store.append_messages(&alice, conv.id, &batch).await?;
    /// // The newest two, oldest first…
    /// let page = store.messages(&alice, conv.id, Window::Latest(2)).await?;
    /// let texts: Vec<&str> = page.messages.iter().map(|m| m.content.as_str()).collect();
    /// assert_eq!(texts, ["two", "three"]);
    /// // …and the ones before them, as the user scrolls up.
    /// let older = store.messages(&alice, conv.id, page.older.unwrap()).await?;
    /// assert_eq!(older.messages[0].content, "one");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// # store.append_messages(&alice, conv.id, &[
    /// #     NewMessage::system("You manage a todo list."),
    /// #     NewMessage::user("Add oat milk"),
    /// #     NewMessage::assistant("Added."),
    /// #     NewMessage::user("And bread"),
    /// # ]).await?;
    /// // A budget of 35 characters: the system message, then the newest messages that fit.
    /// let context = store.context_window(&alice, conv.id, 35).await?;
    /// let sent: Vec<&str> = context.messages.iter().map(|m| m.content.as_str()).collect();
    /// assert_eq!(sent, ["You manage a todo list.", "And bread"]);
    /// assert_eq!((context.cost, context.omitted), (32, 2));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, ContextOptions, Message, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None).await?;
    /// # let text = NewMessage::user("Add oat milk to the list");
    /// # store.append_message(&alice, conv.id, text).await?;
    /// // A rough token count: words, plus a few tokens of framing per message.
    /// let tokens = |m: &Message| m.content.split_whitespace().count() as u64 + 4;
    /// let options = ContextOptions::default();
    /// let context = store.context_window_with(&alice, conv.id, 4096, options, tokens).await?;
    /// assert_eq!(context.cost, 10);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, SearchQuery, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, Some("Groceries")).await?;
    /// let text = NewMessage::user("Add oat milk and a crème brûlée");
    /// store.append_message(&alice, conv.id, text).await?;
    /// let found = store.search_messages(&alice, &SearchQuery::new("creme brulee")).await?;
    /// assert_eq!(found.hits[0].conversation_title.as_deref(), Some("Groceries"));
    /// assert_eq!(found.hits[0].snippet.marked("[", "]"), "Add oat milk and a [crème] [brûlée]");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// [`ChatStore::index_pending`], on the blocking pool: for an idle task of the application's
    /// own, so that searches find the index caught up.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// assert_eq!(store.index_pending().await?, 1);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::index_pending`]; [`Error::TaskFailed`].
    pub async fn index_pending(&self) -> Result<u64> {
        self.run(ChatStore::index_pending).await
    }

    /// [`ChatStore::delete_user_data`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let bob = UserId::new("bob")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// store.create_conversation(&bob, None).await?;
    /// let deleted = store.delete_user_data(&alice).await?;
    /// assert_eq!((deleted.conversations, deleted.messages), (1, 1));
    /// assert_eq!(store.stats().await?.users, 1, "bob's data is untouched");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::delete_user_data`]; [`Error::TaskFailed`].
    pub async fn delete_user_data(&self, user: &UserId) -> Result<DeletedCounts> {
        let user = user.clone();
        self.run(move |s| s.delete_user_data(&user)).await
    }

    /// [`ChatStore::stats`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// store.append_message(&alice, conv.id, NewMessage::user("hi")).await?;
    /// let stats = store.stats().await?;
    /// assert_eq!((stats.users, stats.conversations, stats.messages), (1, 1, 1));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::stats`]; [`Error::TaskFailed`].
    pub async fn stats(&self) -> Result<StoreStats> {
        self.run(ChatStore::stats).await
    }

    /// [`ChatStore::purge`], on the blocking pool: `progress` runs there, after each batch.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use std::ops::ControlFlow;
    /// # use chatstore::{AsyncChatStore, Retention, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// store.create_conversation(&alice, None).await?;
    /// let everything = Retention::not_updated_since(chrono::Utc::now());
    /// let deleted = store.purge(&everything, |_| ControlFlow::Continue(())).await?;
    /// assert_eq!(deleted.conversations, 1);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::purge`]; [`Error::TaskFailed`].
    pub async fn purge(
        &self,
        retention: &Retention,
        progress: impl FnMut(&DeletedCounts) -> std::ops::ControlFlow<()> + Send + 'static,
    ) -> Result<DeletedCounts> {
        let retention = retention.clone();
        self.run(move |s| s.purge(&retention, progress)).await
    }

    /// [`ChatStore::purge_preview`], on the blocking pool.
    ///
    /// # Errors
    /// As [`ChatStore::purge_preview`]; [`Error::TaskFailed`].
    pub async fn purge_preview(&self, retention: &Retention) -> Result<DeletedCounts> {
        let retention = retention.clone();
        self.run(move |s| s.purge_preview(&retention)).await
    }

    /// [`ChatStore::usage`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, Usage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let reply = NewMessage::assistant("Sure.").with_usage(Usage::new(90, 12));
    /// store.append_message(&alice, conv.id, reply).await?;
    /// assert_eq!(store.usage(&alice).await?, Usage::new(90, 12));
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::usage`]; [`Error::TaskFailed`].
    pub async fn usage(&self, user: &UserId) -> Result<Usage> {
        let user = user.clone();
        self.run(move |s| s.usage(&user)).await
    }

    /// [`ChatStore::import_conversation`], on the blocking pool (the conversation and its
    /// messages are copied there). An export reads page by page as it is iterated: run
    /// [`ChatStore::export_user`] on the blocking store ([`blocking`](Self::blocking)) inside
    /// [`spawn_blocking`](tokio::task::spawn_blocking).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, NewMessage, UserId, Window};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, Some("Groceries")).await?;
    /// # store.append_message(&alice, conv.id, NewMessage::user("Add oat milk")).await?;
    /// // Copy a conversation, as stored, to another database.
    /// let conv = store.conversation(&alice, conv.id).await?;
    /// let messages = store.messages(&alice, conv.id, Window::Latest(100)).await?.messages;
    /// let copy = AsyncChatStore::open(":memory:").await?;
    /// copy.import_conversation(&alice, &conv, &messages).await?;
    /// assert_eq!(copy.conversation(&alice, conv.id).await?, conv);
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// [`ChatStore::import_tree`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore, ExportItem, NewMessage, UserId};
    /// # let store = AsyncChatStore::open(":memory:").await?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None).await?;
    /// let first = store.append_message(&alice, conv.id, NewMessage::user("Hi")).await?;
    /// store.append_sibling(&alice, conv.id, first.id, &[NewMessage::user("Hello")]).await?;
    /// // Copy a branched conversation, as stored, to another database.
    /// let (blocking, user) = (store.blocking().clone(), alice.clone());
    /// let items = tokio::task::spawn_blocking(move || {
    ///     blocking.export_user(&user).collect::<chatstore::Result<Vec<_>>>()
    /// })
    /// .await??;
    /// let (mut conversation, mut branches, mut messages) = (None, Vec::new(), Vec::new());
    /// for item in items {
    ///     match item {
    ///         ExportItem::Conversation(c) => conversation = Some(c),
    ///         ExportItem::Branch(b) => branches.push(b),
    ///         ExportItem::Message(m) => messages.push(m),
    ///         _ => {}
    ///     }
    /// }
    /// let copy = AsyncChatStore::open(":memory:").await?;
    /// copy.import_tree(&alice, &conversation.unwrap(), &branches, &messages).await?;
    /// assert_eq!(copy.branches(&alice, conv.id).await?, store.branches(&alice, conv.id).await?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ChatStore::import_tree`]; [`Error::TaskFailed`].
    pub async fn import_tree(
        &self,
        user: &UserId,
        conversation: &Conversation,
        branches: &[Branch],
        messages: &[Message],
    ) -> Result<()> {
        let (user, conversation, branches, messages) = (
            user.clone(),
            conversation.clone(),
            branches.to_vec(),
            messages.to_vec(),
        );
        self.run(move |s| s.import_tree(&user, &conversation, &branches, &messages))
            .await
    }

    /// [`ChatStore::verify_schema`], on the blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// # use chatstore::{AsyncChatStore};
    /// let store = AsyncChatStore::open(":memory:").await?;
    /// let report = store.verify_schema().await?;
    /// assert!(report.is_complete(), "{report}");
    /// # Ok::<(), chatstore::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

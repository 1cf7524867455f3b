#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "chatstore needs at least one backend: enable the feature \"sqlite\", \"postgres\" or \"mysql\""
);

#[cfg(feature = "tokio")]
mod async_store;
mod config;
mod conn;
mod context;
mod cursor;
mod error;
mod ids;
mod models;
mod ops;
mod page;
mod pool;
mod queries;
mod schema;
mod search;
mod store;
mod title;
mod trace;
mod tree;
mod turns;
mod verify;
#[cfg(all(test, feature = "serde"))]
mod wire;

#[cfg(feature = "tokio")]
pub use async_store::AsyncChatStore;
pub use config::{Limits, Migrations, StoreBuilder, Synchronous};
pub use conn::Backend;
pub use context::{char_cost, ContextOptions, ContextWindow};
pub use cursor::{ConversationCursor, Window};
pub use error::{DatabaseError, Error, ParseRoleError, Result, TextError};
pub use ids::{BranchId, ConversationId, MessageId, UserId};
pub use models::{
    Attachment, Branch, Conversation, DeletedCounts, Message, Metadata, NewConversation,
    NewMessage, Part, Reference, Retention, Role, Sibling, Siblings, StoreStats, Tag, TagCount,
    Usage, MAX_METADATA_DEPTH,
};
pub use page::{ConversationPage, MessagePage, Page};
pub use search::{SearchHit, SearchOrder, SearchQuery, SearchResults, Snippet, MAX_SEARCH_OFFSET};
pub use store::{ChatStore, ExportCounts, ExportItem, UserExport};
pub use title::MAX_TITLE_CHARS;
pub use verify::{ItemKind, SchemaItem, SchemaReport};

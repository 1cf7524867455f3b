#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "chatstore needs at least one backend: enable the feature \"sqlite\", \"postgres\" or \"mysql\""
);

mod admin;
#[cfg(feature = "tokio")]
mod async_store;
mod config;
mod conn;
mod context;
mod error;
mod ids;
mod migrations;
mod models;
mod page;
mod queries;
mod schema;
mod search;
mod store;
mod title;
mod token;
mod trace;
mod verify;
#[cfg(feature = "serde")]
mod wire;

pub use admin::{ExportCounts, ExportItem, StoreStats, UserExport};
#[cfg(feature = "tokio")]
pub use async_store::AsyncChatStore;
pub use config::{StoreBuilder, Synchronous};
pub use conn::Backend;
pub use context::{char_cost, ContextOptions, ContextWindow};
pub use error::{Error, Result, TextError};
pub use ids::{ConversationId, MessageId, UserId};
pub use models::{Conversation, Message, NewMessage, Role};
pub use page::{ConversationCursor, ConversationPage, MessagePage, Page, Window};
pub use search::{SearchHit, SearchOrder, SearchQuery, SearchResults, Snippet};
pub use store::{ChatStore, DeletedCounts};
pub use title::Title;
pub use verify::{ItemKind, SchemaItem, SchemaReport};

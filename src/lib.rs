#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "chatstore needs at least one backend: enable the feature \"sqlite\" or \"postgres\""
);

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

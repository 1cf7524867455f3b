//! Spans for the store's operations (cargo feature `tracing`).
//!
//! Each public operation runs in a `debug` span named `chatstore` with the fields `operation` (the
//! method's name, or `open` and `migrate`), `backend` (`"sqlite"`, `"postgres"` or `"mysql"`),
//! `rows` (rows written or returned; see [`Recorded::rows`] for where it stays empty) and
//! `elapsed_us` (microseconds), and ends with an event: `debug` on success, `warn` with the error on failure.
//! Nothing a user wrote is recorded — no content, title, metadata or search text — and no user id,
//! which is personal data; [`Error`](crate::Error)'s messages hold none of these either. Without
//! the feature, [`op`] is a plain call of its closure: no span, no clock, no field.
//!
//! A MySQL migration run also reports its steps, inside the `migrate` span: a `debug` event
//! `chatstore migration step` per step, and a `warn` event for a migration that an interrupted run
//! had left half applied (see `queries::migrations`).

use crate::conn::Backend;
use crate::context::ContextWindow;
use crate::ids::ConversationId;
use crate::models::{
    Branch, Conversation, DeletedCounts, Message, Siblings, StoreStats, TagCount, Usage,
};
use crate::page::{ConversationPage, MessagePage};
use crate::search::SearchResults;
use crate::verify::SchemaReport;
use crate::Result;

/// What an operation's result records on its span.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) trait Recorded {
    /// `rows`: the rows it wrote or returned, or `None` where that count is unknown (a deleted
    /// conversation's messages) or means nothing (opening a store, migrating).
    fn rows(&self) -> Option<usize>;

    /// `backend`, for an operation that learns it as it goes (opening a store reads the URL).
    fn backend(&self) -> Option<Backend> {
        None
    }
}

/// Runs `f` as the store operation `operation` on `backend` (`None` if the result tells it).
#[cfg(feature = "tracing")]
pub(crate) fn op<T: Recorded>(
    operation: &'static str,
    backend: Option<Backend>,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let span = tracing::debug_span!(
        "chatstore",
        operation,
        backend = backend.map(name),
        rows = tracing::field::Empty,
        elapsed_us = tracing::field::Empty,
    );
    let _entered = span.enter();
    let start = std::time::Instant::now();
    let result = f();
    let elapsed_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.record("elapsed_us", elapsed_us);
    match &result {
        Ok(value) => {
            if let Some(backend) = value.backend() {
                span.record("backend", name(backend));
            }
            let rows = value.rows();
            if let Some(rows) = rows {
                span.record("rows", rows);
            }
            tracing::debug!(operation, rows, elapsed_us, "chatstore operation done");
        }
        // A refused query word is named to the caller who wrote it, never to a subscriber: the
        // event says only that the query was refused.
        Err(crate::Error::InvalidQuery(_)) => {
            let error = "invalid search query";
            tracing::warn!(operation, elapsed_us, error, "chatstore operation failed");
        }
        Err(error) => {
            tracing::warn!(operation, elapsed_us, %error, "chatstore operation failed");
        }
    }
    result
}

/// Without the `tracing` feature: `f()`, nothing else.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn op<T: Recorded>(
    _operation: &'static str,
    _backend: Option<Backend>,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    f()
}

/// The backend as a field value.
#[cfg(feature = "tracing")]
fn name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Mysql => "mysql",
    }
}

/// `rows` of each result: `|value| count`.
macro_rules! rows {
    ($($t:ty: |$v:ident| $rows:expr;)*) => {$(
        impl Recorded for $t {
            fn rows(&self) -> Option<usize> {
                let $v = self;
                Some($rows)
            }
        }
    )*};
}

rows! {
    Conversation: |_one| 1;
    Message: |_one| 1;
    StoreStats: |_one| 1;
    Usage: |_one| 1;
    Vec<Message>: |messages| messages.len();
    Vec<Conversation>: |conversations| conversations.len();
    Vec<ConversationId>: |ids| ids.len();
    Vec<Branch>: |branches| branches.len();
    Vec<TagCount>: |tags| tags.len();
    Siblings: |siblings| siblings.siblings.len();
    ConversationPage: |page| page.conversations.len();
    MessagePage: |page| page.messages.len();
    ContextWindow: |window| window.messages.len();
    SearchResults: |results| results.hits.len();
    SchemaReport: |report| report.items.len();
    u64: |indexed| usize::try_from(*indexed).unwrap_or(usize::MAX);
}

impl Recorded for DeletedCounts {
    fn rows(&self) -> Option<usize> {
        usize::try_from(self.conversations.saturating_add(self.messages)).ok()
    }
}

/// A deleted conversation (whose messages went with it, uncounted), a migration run.
impl Recorded for () {
    fn rows(&self) -> Option<usize> {
        None
    }
}

//! Query functions: each takes the connection first, runs SQL and nothing else. They never validate
//! input and never open a transaction; the store does both.

pub(crate) mod catalog;
pub(crate) mod conversations;
pub(crate) mod messages;
pub(crate) mod search;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A statement of one fixed shape, marked safe for Diesel's prepared-statement cache. Diesel never
/// caches an UPDATE, because a changeset of `Option`s can skip columns and so give one Rust type
/// several SQL strings; ours set every column they name, always. Preparing the append's UPDATE on
/// every call was a quarter of a SQLite append's instructions (callgrind), and on PostgreSQL it
/// means a parse and plan per call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cached<Q>(pub(crate) Q);

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: QueryId> QueryId for Cached<Q> {
    type QueryId = Q::QueryId;
    // Without a static id the cache is keyed by the SQL text, which stays correct.
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> diesel::RunQueryDsl<C> for Cached<Q> {}

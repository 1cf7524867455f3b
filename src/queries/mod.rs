//! The query layer: every statement the store runs, and how rows and values map to SQL. Query
//! functions take the connection first, run SQL and nothing else: they never validate input and
//! never open a transaction (the facade does both). Where backends need different SQL, the query
//! function matches on the connection, exhaustively, so that a new backend is a compile error at
//! each place that must learn it.

pub(crate) mod branches;
pub(crate) mod catalog;
pub(crate) mod citus;
pub(crate) mod columns;
pub(crate) mod conversations;
pub(crate) mod layout_0_1;
pub(crate) mod messages;
pub(crate) mod migrations;
#[cfg(feature = "mysql")]
pub(crate) mod mysql_migrations;
pub(crate) mod retention;
pub(crate) mod rows;
pub(crate) mod search;
pub(crate) mod tags;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// The backend of the store's connection type, which boxed queries and raw SQL are built for.
pub(crate) type MultiBackend = <crate::conn::Conn as diesel::Connection>::Backend;

/// A statement marked safe for Diesel's prepared-statement cache. Diesel never caches an UPDATE,
/// because a changeset of `Option`s can skip columns and so give one Rust type several SQL strings,
/// nor raw SQL. Preparing the append's UPDATE on every call was a quarter of a SQLite append's
/// instructions (callgrind), and on PostgreSQL it means a parse and plan per call.
///
/// The cache entry is always keyed by the statement's SQL text, never by its Rust type: wrapped
/// around SQL that varies, each text gets a statement of its own, so a wrong statement can never be
/// reused. Wrap only statements of a few texts, or the cache grows with every text.
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

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    // Without a static id the cache is keyed by the SQL text (and the binds' types).
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> diesel::RunQueryDsl<C> for Cached<Q> {}

/// Raw SQL whose rows are decoded by position, as the SQL types `ST` (a tuple, one per column)
/// say, into a `Queryable` row, instead of by column name into a `QueryableByName` one. Diesel
/// finds each named column of each row by a linear search of the statement's column names: for a
/// window of fifteen columns that search was a fifth of a 10,000-message load on SQLite (perf,
/// 2026-12-04). The SQL's columns must be `ST`'s, in order.
pub(crate) struct Positional<Q, ST>(pub(crate) Q, std::marker::PhantomData<ST>);

impl<Q, ST> Positional<Q, ST> {
    pub(crate) fn new(query: Q) -> Self {
        Positional(query, std::marker::PhantomData)
    }
}

impl<Q: QueryFragment<DB>, ST, DB: Backend> QueryFragment<DB> for Positional<Q, ST> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, backend: &DB) -> QueryResult<bool> {
        self.0.is_safe_to_cache_prepared(backend)
    }
}

impl<Q, ST> QueryId for Positional<Q, ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, ST> Query for Positional<Q, ST> {
    type SqlType = ST;
}

impl<Q, ST, C> diesel::RunQueryDsl<C> for Positional<Q, ST> {}

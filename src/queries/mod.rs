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
///
/// On SQLite and PostgreSQL only: the MySQL connection asks through a reference, which walks the
/// wrapped statement instead of asking this wrapper (see `Raw`). Nor does it help an INSERT of a
/// slice of rows on SQLite, which Diesel runs through a wrapper of its own (see
/// `messages::pieces`).
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

/// `ids` padded for an `IN` list by repeating the last one (a value twice in an `IN` list matches
/// as once), so that the statement is one of a few texts and can be kept prepared: to the next
/// power of two up to 1,024 ids, then to the next multiple of 1,024. A list that would pad past
/// [`PADDED_IDS_MAX`] is left as it is (and should not be kept prepared): SQLite takes at most
/// 32,766 parameters a statement, MySQL 65,535.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn padded<T: Copy>(ids: &[T]) -> std::borrow::Cow<'_, [T]> {
    let len = ids.len();
    let target = match len <= 1024 {
        true => len.next_power_of_two(),
        false => len.next_multiple_of(1024),
    };
    match ids.last() {
        Some(&last) if target > len && target <= PADDED_IDS_MAX => {
            let mut padded = ids.to_vec();
            padded.resize(target, last);
            std::borrow::Cow::Owned(padded)
        }
        _ => std::borrow::Cow::Borrowed(ids),
    }
}

/// The longest list [`padded`] pads to.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) const PADDED_IDS_MAX: usize = 30 * 1024;

/// A value bound to a [`Raw`] statement.
#[cfg(feature = "mysql")]
pub(crate) enum Param<'a> {
    Binary(&'a [u8]),
    Text(&'a str),
    BigInt(i64),
}

/// Raw SQL with `?` for each parameter, in order (the text holds no other `?`): how the store
/// runs its hand-written SQL on MySQL. Diesel's MySQL connection asks whether a statement may be
/// cached through a reference to it, which walks the statement's SQL instead of asking the
/// statement, so [`Cached`] does nothing there, and raw SQL (which marks itself unsafe to cache as
/// it is walked) was prepared and closed on every call: a round trip and a server-side parse each
/// time. A statement made by [`Raw::kept`] never marks itself, so it stays prepared, its text the
/// cache's key; one made by [`Raw::new`] with `kept` false marks itself, for texts of too many
/// shapes to keep (the server holds at most `max_prepared_stmt_count` statements, 16,382 by
/// default, for every connection together).
#[cfg(feature = "mysql")]
pub(crate) struct Raw<'a> {
    sql: &'a str,
    params: Vec<Param<'a>>,
    kept: bool,
}

#[cfg(feature = "mysql")]
impl<'a> Raw<'a> {
    /// A statement of one of a few texts, kept prepared on the connection.
    pub(crate) fn kept(sql: &'a str, params: Vec<Param<'a>>) -> Self {
        Raw::new(sql, params, true)
    }

    /// A statement kept prepared if `kept`, else prepared for this call alone.
    pub(crate) fn new(sql: &'a str, params: Vec<Param<'a>>, kept: bool) -> Self {
        Raw { sql, params, kept }
    }
}

#[cfg(feature = "mysql")]
impl QueryFragment<diesel::mysql::Mysql> for Raw<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::mysql::Mysql>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary, Text};
        if !self.kept {
            out.unsafe_to_cache_prepared();
        }
        let mut pieces = self.sql.split('?');
        let mut params = self.params.iter();
        out.push_sql(pieces.next().unwrap_or_default());
        for piece in pieces {
            match params.next() {
                Some(Param::Binary(bytes)) => out.push_bind_param::<Binary, [u8]>(bytes)?,
                Some(Param::Text(text)) => out.push_bind_param::<Text, str>(text)?,
                Some(Param::BigInt(n)) => out.push_bind_param::<BigInt, i64>(n)?,
                None => return Err(raw_mismatch()),
            }
            out.push_sql(piece);
        }
        match params.next() {
            Some(_) => Err(raw_mismatch()),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "mysql")]
fn raw_mismatch() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError("a raw statement's parameters and marks differ".into())
}

#[cfg(feature = "mysql")]
impl QueryId for Raw<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

#[cfg(feature = "mysql")]
impl<C> diesel::RunQueryDsl<C> for Raw<'_> {}

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

#[cfg(all(test, any(feature = "sqlite", feature = "mysql")))]
mod tests {
    use super::{padded, PADDED_IDS_MAX};

    #[test]
    fn in_lists_pad_to_a_few_lengths_by_repeating_the_last_id() {
        for (len, expected) in [
            (1, 1),
            (2, 2),
            (3, 4),
            (17, 32),
            (1000, 1024),
            (1024, 1024),
            (1025, 2048),
            (3000, 3072),
            (PADDED_IDS_MAX, PADDED_IDS_MAX),
            // Past the largest padded length, as it is.
            (PADDED_IDS_MAX + 1, PADDED_IDS_MAX + 1),
        ] {
            let ids: Vec<usize> = (0..len).collect();
            let list = padded(&ids);
            assert_eq!(list.len(), expected, "{len}");
            assert_eq!(&list[..len], ids.as_slice(), "{len}");
            assert!(list[len..].iter().all(|&id| id == len - 1), "{len}");
        }
        assert!(padded::<usize>(&[]).is_empty());
    }
}

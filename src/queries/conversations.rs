use chrono::NaiveDateTime;
use diesel::dsl::{case_when, count, count_star, sql};
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::BigInt;

use super::columns::{BindTime, DbTime};
use super::rows::{ConversationRow, NewConversationRow};
use super::tags as tag_rows;
use super::Cached;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use super::MultiBackend;
use crate::conn::{Backend, Conn};
use crate::ids::{BranchId, ConversationId, UserId};
use crate::models::{Conversation, ListRank, Tag, Usage};
use crate::schema::conversations::dsl::*;
use crate::tree::KEPT_ANCESTORS;
use crate::{Error, Result};

/// Inserts the conversation. An id already stored, whoever owns it, is [`Error::AlreadyExists`]
/// (and the transaction must be rolled back).
pub(crate) fn insert(conn: &mut Conn, row: &NewConversationRow<'_>) -> Result<()> {
    match diesel::insert_into(conversations).values(row).execute(conn) {
        Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            Err(Error::AlreadyExists(row.id))
        }
        inserted => inserted.map(drop).map_err(Error::from),
    }
}

/// `SUM(expr)` over the conversations' rows as a 64-bit integer, 0 for none: PostgreSQL sums a
/// BIGINT as a NUMERIC and MySQL as a DECIMAL, so the sum is cast back (SQLite takes either cast).
pub(crate) fn sum(backend: Backend, expr: &str) -> diesel::expression::SqlLiteral<BigInt> {
    let cast = match backend {
        Backend::Sqlite | Backend::Postgres => "BIGINT",
        Backend::Mysql => "SIGNED",
    };
    sql::<BigInt>(&format!("CAST(COALESCE(SUM({expr}), 0) AS {cast})"))
}

/// A conversation's stored messages: its active branch's path, less what it shares with
/// ancestors, plus every other branch's own (see `tree.rs`); its count alone without branches.
pub(crate) const STORED_MESSAGES: &str = "message_count - branch_fork + off_branch";

/// Store-wide totals, in one statement over the conversations table: the users who own a
/// conversation, the conversations, and the sum of their message counts (which the store keeps
/// equal to their messages; the messages table is never read).
pub(crate) fn totals(conn: &mut Conn) -> Result<(i64, i64, i64)> {
    Ok(conversations
        .select((
            count(user_id).aggregate_distinct(),
            count_star(),
            sum(conn.backend(), STORED_MESSAGES),
        ))
        .get_result(conn)?)
}

/// The user's conversations as rows, a query for a page to narrow and order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
type Owned<'a> = crate::schema::conversations::BoxedQuery<
    'a,
    MultiBackend,
    diesel::dsl::SqlTypeOf<diesel::dsl::AsSelect<ConversationRow, MultiBackend>>,
>;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn owned_by(user: &UserId) -> Owned<'_> {
    conversations
        .filter(user_id.eq(user))
        .select(ConversationRow::as_select())
        .into_boxed()
}

/// The ids of up to `limit` of the user's conversations in id order, strictly after the id
/// `after`: an order that renames and appends never change, for an export.
pub(crate) fn ids_after(
    conn: &mut Conn,
    user: &UserId,
    after: Option<ConversationId>,
    limit: i64,
) -> Result<Vec<ConversationId>> {
    let mut query = conversations
        .filter(user_id.eq(user))
        .select(id)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(id.gt(after));
    }
    Ok(query.order(id).limit(limit).load(conn)?)
}

/// Whether the user has an archived conversation (one look into the list index).
pub(crate) fn has_archived(conn: &mut Conn, user: &UserId) -> Result<bool> {
    let archived = conversations
        .filter(user_id.eq(user))
        .filter(list_rank.eq(ListRank::Archived.as_db()));
    Ok(diesel::select(diesel::dsl::exists(archived)).get_result(conn)?)
}

/// The conversation `conv` if `user` owns it.
pub(crate) fn find(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
) -> Result<Option<ConversationRow>> {
    Ok(conversations
        .filter(id.eq(conv))
        .filter(user_id.eq(user))
        .select(ConversationRow::as_select())
        .first(conn)
        .optional()?)
}

/// The conversation `conv` as the store returns it; [`Error::NotFound`] unless `user` owns it.
pub(crate) fn get(conn: &mut Conn, user: &UserId, conv: ConversationId) -> Result<Conversation> {
    find(conn, user, conv)?.ok_or(Error::NotFound)?.into_model()
}

/// The conversation `conv` if `user` owns it, locked until the transaction ends: the lock an
/// append's reservation ([`reserve_seqs`]) takes, so appends to the conversation wait for the
/// caller's transaction, which sees the count the last of them committed. On SQLite the write
/// transaction (`BEGIN IMMEDIATE`) already holds the whole database.
pub(crate) fn lock(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
) -> Result<Option<ConversationRow>> {
    // The row type's select clause names its backend, so the statement is built in each arm.
    macro_rules! mine {
        () => {
            conversations
                .filter(id.eq(conv))
                .filter(user_id.eq(user))
                .select(ConversationRow::as_select())
        };
    }
    let found = match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => mine!().first(c),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => mine!().for_update().first(c),
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => mine!().for_update().first(c),
    };
    Ok(found.optional()?)
}

/// Makes `active` the conversation's active branch, `count` long, forking at `fork`, with
/// `off_branch` messages stored off its own run and `kept` its nearest ancestors
/// ([`Tree::ancestors`](crate::tree::Tree::ancestors)), and bumps `updated_at` (not before `now`);
/// returns the number of rows changed (0: not the user's).
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_active(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    active: BranchId,
    fork: i64,
    count: i64,
    off: i64,
    kept: [i64; KEPT_ANCESTORS],
    now: NaiveDateTime,
) -> Result<usize> {
    let update = diesel::update(conversations.filter(id.eq(conv)).filter(user_id.eq(user))).set((
        message_count.eq(count),
        branch.eq(active.as_i64()),
        branch_fork.eq(fork),
        off_branch.eq(off),
        (
            ancestor_1.eq(kept[0]),
            ancestor_2.eq(kept[1]),
            ancestor_3.eq(kept[2]),
            ancestor_4.eq(kept[3]),
        ),
        updated_at.eq(not_before(BindTime(now))),
    ));
    let changed = Cached(update).execute(conn)?;
    if changed > 0 {
        tag_rows::follow(conn, user, conv)?;
    }
    Ok(changed)
}

/// The user's conversations among `ids` (at most a page of them).
///
/// SQLite and MySQL bind each id (`IN (?, ?, …)`), and Diesel prepares such a statement on every
/// call: the list is padded ([`super::padded`]) so that the statement is one of a few texts, kept
/// prepared. PostgreSQL binds the ids as one array.
pub(crate) fn by_ids(
    conn: &mut Conn,
    user: &UserId,
    ids: &[ConversationId],
) -> Result<Vec<ConversationRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => {
            let padded = super::padded(ids);
            let query = owned_by(user).filter(id.eq_any(padded.as_ref()));
            match padded.len() <= super::PADDED_IDS_MAX {
                true => Ok(Cached(query).load(conn)?),
                false => Ok(query.load(conn)?),
            }
        }
        #[cfg(feature = "postgres")]
        Conn::Pg(_) => Ok(Cached(owned_by(user).filter(id.eq_any(ids))).load(conn)?),
        // The text by hand: Diesel's MySQL connection never keeps a statement with an `IN` list
        // prepared (see `Raw`).
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => {
            use super::Param;
            let padded = super::padded(ids);
            let sql = format!(
                "SELECT {} FROM chatstore_conversations WHERE user_id = ? AND id IN ({})",
                super::rows::CONVERSATION_COLUMNS,
                vec!["?"; padded.len()].join(", ")
            );
            let params = std::iter::once(Param::Text(user.as_str()))
                .chain(padded.iter().map(|conv| Param::Binary(conv.as_bytes())))
                .collect();
            let statement = super::Raw::new(&sql, params, padded.len() <= super::PADDED_IDS_MAX);
            Ok(super::Positional::<_, super::rows::ConversationSql>::new(statement).load(c)?)
        }
    }
}

/// Up to `limit` of the user's conversations ranked from `ranks.0` down to `ranks.1` (with `tag`,
/// those with that tag), highest rank first and within a rank most recently updated first,
/// strictly after the keyset position `after` (a rank among them, an `updated_at` and an id).
///
/// Each statement reads one range of an index: untagged, the conversations' `(user_id, list_rank
/// DESC, updated_at DESC, id DESC)`; tagged, the tags' `(user_id, tag, list_rank DESC, updated_at
/// DESC, conversation_id DESC)`, joined to each conversation by its key. The first page is one
/// statement over every rank; a later one reads on in its cursor's rank, and only when that rank
/// runs out before the page is full, from the top of the ranks below it in a second statement. (A
/// keyset bound across ranks would bound the index only on the rank, and read every row of it
/// before the cursor.)
pub(crate) fn list(
    conn: &mut Conn,
    user: &UserId,
    tag: Option<&Tag>,
    ranks: (ListRank, ListRank),
    after: Option<(ListRank, NaiveDateTime, ConversationId)>,
    limit: i64,
) -> Result<Vec<ConversationRow>> {
    let (highest, lowest) = ranks;
    let Some((rank, time, last)) = after else {
        return ranked(conn, user, tag, (highest, lowest), None, limit);
    };
    let mut rows = ranked(conn, user, tag, (rank, rank), Some((time, last)), limit)?;
    let short = limit - rows.len() as i64;
    if let Some(next) = rank.below().filter(|next| short > 0 && *next >= lowest) {
        rows.extend(ranked(conn, user, tag, (next, lowest), None, short)?);
    }
    Ok(rows)
}

/// Up to `limit` of the user's conversations (with `tag`, those with that tag) ranked from
/// `ranks.0` down to `ranks.1`, in list order, strictly after `(updated_at, id)` when given (which
/// only one rank may be read with).
fn ranked(
    conn: &mut Conn,
    user: &UserId,
    tag: Option<&Tag>,
    ranks: (ListRank, ListRank),
    after: Option<(NaiveDateTime, ConversationId)>,
    limit: i64,
) -> Result<Vec<ConversationRow>> {
    let (highest, lowest) = ranks;
    // The same page over either index: `$rank`, `$time` and `$id` are its list columns.
    macro_rules! page {
        ($conn:expr, $query:expr, $rank:expr, $time:expr, $id:expr) => {{
            let mut query = match highest == lowest {
                true => $query.filter($rank.eq(highest.as_db())),
                false => $query
                    .filter($rank.le(highest.as_db()))
                    .filter($rank.ge(lowest.as_db())),
            };
            if let Some((time, last)) = after {
                let time = BindTime(time);
                // `updated_at <= t AND (updated_at < t OR id < last)` rather than the plain
                // `updated_at < t OR (updated_at = t AND id < last)`: the same rows, but the first
                // conjunct is an index bound, where PostgreSQL filtered the OR row by row (17,600
                // rows read for a page of 21, measured with EXPLAIN ANALYZE).
                query = query.filter($time.le(time).and($time.lt(time).or($id.lt(last))));
            }
            query
                .order(($rank.desc(), $time.desc(), $id.desc()))
                .limit(limit)
                .load($conn)?
        }};
    }
    // On the backend's own connection: through the MultiConnection, Diesel writes the query's
    // SQL text again on every pass over it (binds, cache key), which cost SQLite's page of 21
    // about a quarter of its time against the same statement written by hand.
    macro_rules! on {
        ($conn:expr) => {
            match tag {
                None => {
                    let owned = conversations
                        .filter(user_id.eq(user))
                        .select(ConversationRow::as_select())
                        .into_boxed();
                    page!($conn, owned, list_rank, updated_at, id)
                }
                Some(wanted) => {
                    use crate::schema::conversation_tags as t;
                    let on = id.eq(t::conversation_id).and(user_id.eq(t::user_id));
                    let tagged = t::table
                        .inner_join(conversations.on(on))
                        .filter(t::user_id.eq(user))
                        .filter(t::tag.eq(wanted.as_str()))
                        .select(ConversationRow::as_select())
                        .into_boxed();
                    page!(
                        $conn,
                        tagged,
                        t::list_rank,
                        t::updated_at,
                        t::conversation_id
                    )
                }
            }
        };
    }
    Ok(match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => on!(c),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => on!(c),
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => on!(c),
    })
}

/// Moves the user's conversation to `rank` in the lists, from any rank in `from`; leaves
/// `updated_at` as it is. Returns the number of rows changed: 0 if the user owns no such
/// conversation or it is at none of those ranks.
pub(crate) fn set_rank(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    from: &[ListRank],
    rank: ListRank,
) -> Result<usize> {
    let from: Vec<i16> = from.iter().map(|r| r.as_db()).collect();
    let target = conversations
        .filter(id.eq(conv))
        .filter(user_id.eq(user))
        .filter(list_rank.eq_any(from));
    let moved = diesel::update(target)
        .set(list_rank.eq(rank.as_db()))
        .execute(conn)?;
    if moved > 0 {
        tag_rows::follow(conn, user, conv)?;
    }
    Ok(moved)
}

/// MySQL has no RETURNING: the user's conversations are read, locked, and exactly those deleted.
///
/// - The ids come from a plain read, one snapshot: a locking read through the list index
///   (ordered by `updated_at`) missed a conversation that an append moved ahead of the scan.
/// - They are locked by primary key, as an append's UPDATE locks its row. Locked through
///   `conversations_id_user` first, they deadlocked with an append that held its row and wanted that
///   index entry for the foreign key check of its INSERT (SHOW ENGINE INNODB STATUS).
/// - The counts are read under those locks, so they are exactly the messages deleted. A
///   conversation created after the read is not the caller's to count, and stays.
#[cfg(feature = "mysql")]
fn delete_all_mysql(conn: &mut diesel::MysqlConnection, user: &UserId) -> Result<Vec<i64>> {
    let ids: Vec<ConversationId> = conversations
        .filter(user_id.eq(user))
        .select(id)
        .load(conn)?;
    let mut counts = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        counts.extend(delete_locked_mysql(conn, user, chunk, None)?);
    }
    Ok(counts)
}

/// Locks those of the user's conversations `ids` (not updated since `before`, if given) by
/// primary key, reads how many messages each stores under the locks — a locking read sees what
/// an append committed — and deletes exactly those; returns their counts. See
/// [`delete_all_mysql`] for why by primary key.
#[cfg(feature = "mysql")]
pub(crate) fn delete_locked_mysql(
    conn: &mut diesel::MysqlConnection,
    user: &UserId,
    ids: &[ConversationId],
    before: Option<NaiveDateTime>,
) -> Result<Vec<i64>> {
    use diesel::sql_types::{Binary, Datetime, Text};
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Binary, column_name = id)]
        conversation: ConversationId,
        #[diesel(sql_type = diesel::sql_types::BigInt, column_name = message_count)]
        count: i64,
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let older = match before {
        Some(_) => " AND updated_at < ?",
        None => "",
    };
    let mut lock = diesel::sql_query(format!(
        "SELECT id, message_count - branch_fork + off_branch AS message_count \
         FROM chatstore_conversations FORCE INDEX (PRIMARY) \
         WHERE user_id = ?{older} AND id IN ({marks}) FOR UPDATE"
    ))
    .into_boxed::<diesel::mysql::Mysql>()
    .bind::<Text, _>(user.as_str());
    if let Some(before) = before {
        lock = lock.bind::<Datetime, _>(before);
    }
    for conv in ids {
        lock = lock.bind::<Binary, _>(conv);
    }
    let locked: Vec<Locked> = lock.load(conn)?;
    let locked_ids: Vec<ConversationId> = locked.iter().map(|l| l.conversation).collect();
    diesel::delete(
        conversations
            .filter(user_id.eq(user))
            .filter(id.eq_any(locked_ids)),
    )
    .execute(conn)?;
    Ok(locked.iter().map(|l| l.count).collect())
}

/// `now`, or the stored `updated_at` if that is later: a writer whose clock reading is older than the
/// last committed change (another thread took its reading later but committed first) never moves
/// `updated_at` backwards.
#[diesel::dsl::auto_type(no_type_alias)]
fn not_before(now: BindTime) -> _ {
    case_when(updated_at.gt(now), updated_at).otherwise(now)
}

/// Sets the title and bumps `updated_at`; returns the number of rows changed (0: not the user's).
pub(crate) fn rename(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    new_title: Option<&str>,
    now: NaiveDateTime,
) -> Result<usize> {
    let update = diesel::update(conversations.filter(id.eq(conv)).filter(user_id.eq(user))).set((
        title.eq(new_title),
        updated_at.eq(not_before(BindTime(now))),
    ));
    let renamed = Cached(update).execute(conn)?;
    if renamed > 0 {
        tag_rows::follow(conn, user, conv)?;
    }
    Ok(renamed)
}

/// Sets the metadata (JSON text, validated) and nothing else; returns the number of rows changed
/// (0: not the user's).
pub(crate) fn set_metadata(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    text: Option<&str>,
) -> Result<usize> {
    let target = conversations.filter(id.eq(conv)).filter(user_id.eq(user));
    Ok(diesel::update(target)
        .set(metadata.eq(text))
        .execute(conn)?)
}

/// Adds `usage` to the user's conversation's totals: messages that carry it were stored.
pub(crate) fn add_usage(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    usage: Usage,
) -> Result<()> {
    let (input, output, total) = usage.to_db();
    change_usage(conn, user, conv, [input, output, total])
}

/// Takes `usage` from the user's conversation's totals: messages that carried it went.
pub(crate) fn remove_usage(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    usage: Usage,
) -> Result<()> {
    let (input, output, total) = usage.to_db();
    change_usage(conn, user, conv, [-input, -output, -total])
}

fn change_usage(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    [input, output, total]: [i64; 3],
) -> Result<()> {
    let target = conversations.filter(id.eq(conv)).filter(user_id.eq(user));
    diesel::update(target)
        .set((
            input_tokens.eq(input_tokens + input),
            output_tokens.eq(output_tokens + output),
            total_tokens.eq(total_tokens + total),
        ))
        .execute(conn)?;
    Ok(())
}

/// The user's token usage over all their conversations, in one statement over their rows (the
/// index on `user_id` finds them).
pub(crate) fn user_usage(conn: &mut Conn, user: &UserId) -> Result<Usage> {
    let backend = conn.backend();
    let (input, output, total): (i64, i64, i64) = conversations
        .filter(user_id.eq(user))
        .select((
            sum(backend, "input_tokens"),
            sum(backend, "output_tokens"),
            sum(backend, "total_tokens"),
        ))
        .get_result(conn)?;
    Usage::from_db(input, output, total)
        .ok_or_else(|| crate::models::corrupt_row("a negative usage total"))
}

/// Deletes the conversation (its messages go by `ON DELETE CASCADE`); returns the rows deleted.
pub(crate) fn delete(conn: &mut Conn, user: &UserId, conv: ConversationId) -> Result<usize> {
    Ok(diesel::delete(conversations.filter(id.eq(conv)).filter(user_id.eq(user))).execute(conn)?)
}

/// Deletes every conversation the user owns, their messages by cascade, in one statement (MySQL:
/// see [`delete_all_mysql`]); returns how many messages each deleted conversation stored (its
/// count, with branches its every branch's). The count is read
/// from the row as deleted (on PostgreSQL after waiting for any append in flight), so it is exactly
/// the messages that went with it.
pub(crate) fn delete_all(conn: &mut Conn, user: &UserId) -> Result<Vec<i64>> {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    let mine = conversations.filter(user_id.eq(user));
    Ok(match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => diesel::delete(mine)
            .returning(message_count - branch_fork + off_branch)
            .get_results(c)?,
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => diesel::delete(mine)
            .returning(message_count - branch_fork + off_branch)
            .get_results(c)?,
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => delete_all_mysql(c, user)?,
    })
}

/// Reserves `n` seqs for an append: bumps the message count and `updated_at` and returns the new
/// count, `updated_at` and the active branch (whose run the messages extend), or `None` if the user owns no such conversation — or, with `last_seq`,
/// if its count is no longer `last_seq`. One statement, the first write of the transaction, so that
/// it takes the conversation's row lock before the transaction reads anything of the conversation:
/// concurrent appends queue on it and each sees the count the previous one committed (PostgreSQL
/// re-checks the `last_seq` filter against that committed row). Only a retry's look-up of its
/// client ids comes before it, and the store looks again when the reservation fails. The returned
/// time is the batch's `created_at`: never earlier than the previous append's, so time follows seq.
/// The batch's token `usage` is added to the conversation's totals in the same statement.
/// A conversation with tags has its tags' rows follow the new `updated_at` (see `tags.rs`), a
/// second statement that a conversation without tags does not run.
pub(crate) fn reserve_seqs(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    n: i64,
    usage: Usage,
    now: NaiveDateTime,
    last_seq: Option<i64>,
) -> Result<Option<(i64, DbTime, i64)>> {
    let (input, output, total) = usage.to_db();
    // With whether it has tags, whose rows then take the new `updated_at` (see `tags.rs`).
    let new = (message_count, updated_at, branch, tags.is_not_null());
    // Two statements of fixed shape, each cached, on each backend.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    macro_rules! reserve {
        ($c:expr) => {{
            let target = conversations.filter(id.eq(conv)).filter(user_id.eq(user));
            let bump = (
                message_count.eq(message_count + n),
                updated_at.eq(not_before(BindTime(now))),
                input_tokens.eq(input_tokens + input),
                output_tokens.eq(output_tokens + output),
                total_tokens.eq(total_tokens + total),
            );
            match last_seq {
                None => Cached(diesel::update(target).set(bump).returning(new)).get_result($c),
                Some(last) => {
                    let target = target.filter(message_count.eq(last));
                    Cached(diesel::update(target).set(bump).returning(new)).get_result($c)
                }
            }
        }};
    }
    let reserved = match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => reserve!(c),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => reserve!(c),
        // No RETURNING: the update takes the row lock, so the row read next is the one it wrote.
        // Updated rows are counted as matched (Diesel connects with CLIENT_FOUND_ROWS).
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => {
            let reserve = mysql::Reserve {
                n,
                usage: [input, output, total],
                now,
                conv,
                user,
                last_seq,
            };
            match reserve.execute(c)? {
                0 => Err(diesel::result::Error::NotFound),
                _ => conversations.filter(id.eq(conv)).select(new).get_result(c),
            }
        }
    };
    let reserved: Option<(i64, DbTime, i64, bool)> = reserved.optional()?;
    let Some((count, time, active, tagged)) = reserved else {
        return Ok(None);
    };
    if tagged {
        tag_rows::touch(conn, user, conv, time.0)?;
    }
    Ok(Some((count, time, active)))
}

/// MySQL's reservation, written out. Diesel prepares an UPDATE anew at every call unless it is
/// marked cacheable ([`Cached`]), and on MySQL that mark is lost: `MysqlConnection` executes a
/// statement through a reference to it, and a reference forwards only `walk_ast`, in which Diesel's
/// UPDATE marks itself unsafe to cache. Each single-message append prepared (and closed) its UPDATE
/// again: one more round trip and parse in every append's transaction (MariaDB's `Com_stmt_prepare`
/// counter, per append). Written out, the statement is one of two fixed texts, each prepared once
/// per connection; the SQL is what the DSL renders for the other backends, without RETURNING, and
/// the time is bound as a `DATETIME`, as [`BindTime`] binds it.
#[cfg(feature = "mysql")]
mod mysql {
    use chrono::NaiveDateTime;
    use diesel::mysql::{Mysql, MysqlConnection};
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::sql_types::{BigInt, Binary, Datetime, Text};
    use diesel::QueryResult;

    /// Adds `n` to the count of the user's conversation `conv`, and `usage` to its usage totals,
    /// if its count is `last_seq` (when given), and moves `updated_at` to `now` unless it is
    /// later.
    pub(super) struct Reserve<'a> {
        pub(super) n: i64,
        pub(super) usage: [i64; 3],
        pub(super) now: NaiveDateTime,
        pub(super) conv: crate::ids::ConversationId,
        pub(super) user: &'a crate::ids::UserId,
        pub(super) last_seq: Option<i64>,
    }

    impl QueryFragment<Mysql> for Reserve<'_> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
            out.push_sql(
                "UPDATE `chatstore_conversations` SET `message_count` = `message_count` + ",
            );
            out.push_bind_param::<BigInt, _>(&self.n)?;
            out.push_sql(", `updated_at` = CASE WHEN `updated_at` > ");
            out.push_bind_param::<Datetime, _>(&self.now)?;
            out.push_sql(" THEN `updated_at` ELSE ");
            out.push_bind_param::<Datetime, _>(&self.now)?;
            out.push_sql(" END");
            let sets = [
                ", `input_tokens` = `input_tokens` + ",
                ", `output_tokens` = `output_tokens` + ",
                ", `total_tokens` = `total_tokens` + ",
            ];
            for (set, tokens) in sets.into_iter().zip(&self.usage) {
                out.push_sql(set);
                out.push_bind_param::<BigInt, _>(tokens)?;
            }
            out.push_sql(" WHERE `id` = ");
            out.push_bind_param::<Binary, _>(&self.conv)?;
            out.push_sql(" AND `user_id` = ");
            out.push_bind_param::<Text, _>(self.user)?;
            if let Some(last) = &self.last_seq {
                out.push_sql(" AND `message_count` = ");
                out.push_bind_param::<BigInt, _>(last)?;
            }
            Ok(())
        }
    }

    // Two texts, so the cache is keyed by the SQL rather than by the type.
    impl QueryId for Reserve<'_> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl diesel::RunQueryDsl<MysqlConnection> for Reserve<'_> {}
}

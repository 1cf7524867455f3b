//! How the store's own types go into and out of SQL: ids as 16-byte binaries, user ids and roles as
//! text, timestamps as naive UTC.
//!
//! Binding is written once for every backend, by way of the bytes or text each type is stored as.
//! Decoding goes straight from the database's buffer into the final type, without the `Vec` or
//! `String` per value that loading them as bytes or text first would cost (3 allocations a message
//! row): that needs the raw value of each backend, so it is written per backend.
//!
//! Timestamps are stored as naive UTC, so a server's session time zone never shifts them. On SQLite
//! they are text that the store wrote itself, in one format, and are parsed here by hand: Diesel's
//! reader runs chrono's general parser once per format it tries (two per value for ours), which
//! was a fifth of a SQLite history load's instructions (callgrind). They are bound as
//! [`BindTime`], which on MySQL is a `DATETIME` parameter rather than Diesel's `TIMESTAMP` (a type
//! that ends in 2038).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::expression::{is_aggregate, AppearsOnTable, Expression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Binary, Text, Timestamp};
use diesel::QueryResult;
use uuid::Uuid;

use super::MultiBackend;
use crate::ids::{ConversationId, MessageId, UserId};
use crate::models::Role;

/// Binds each type as the bytes or text it is stored as, on any backend.
macro_rules! bind_as {
    ($($t:ty: $sql:ty => $raw:ty, |$v:ident| $as_raw:expr;)*) => {$(
        impl<DB: Backend> ToSql<$sql, DB> for $t
        where
            $raw: ToSql<$sql, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                let $v = self;
                <$raw as ToSql<$sql, DB>>::to_sql($as_raw, out)
            }
        }
    )*};
}

bind_as! {
    ConversationId: Binary => [u8], |id| id.as_bytes();
    MessageId: Binary => [u8], |id| id.as_bytes();
    UserId: Text => str, |user| user.as_str();
    Role: Text => str, |role| role.as_str();
}

/// A user id read back from the database, where the schema already constrains it.
impl<DB: Backend> FromSql<Text, DB> for UserId
where
    String: FromSql<Text, DB>,
{
    fn from_sql(value: DB::RawValue<'_>) -> deserialize::Result<Self> {
        String::from_sql(value).map(UserId::from_db)
    }
}

/// The store's connection enum decodes with the decoder of the backend it is connected to. (Its
/// backend type is the crate's own, so these impls are of no use outside it.)
macro_rules! for_the_connection_enum {
    ($($t:ty: $sql:ty),*) => {$(
        #[allow(private_interfaces)]
        impl FromSql<$sql, MultiBackend> for $t {
            fn from_sql(
                value: <MultiBackend as Backend>::RawValue<'_>,
            ) -> deserialize::Result<Self> {
                value.from_sql::<Self, $sql>()
            }
        }
    )*};
}

for_the_connection_enum!(ConversationId: Binary, MessageId: Binary, Role: Text, DbTime: Timestamp);

fn id<T: From<Uuid>>(bytes: &[u8]) -> deserialize::Result<T> {
    Uuid::from_slice(bytes)
        .map(T::from)
        .map_err(|_| format!("unreadable row: an id of {} bytes", bytes.len()).into())
}

fn role(text: &str) -> deserialize::Result<Role> {
    text.parse()
        .map_err(|e| format!("unreadable row: {e}").into())
}

/// Each backend's raw value, decoded without a copy: ids from their bytes, roles from their text.
macro_rules! decoders {
    ($($feature:literal, $db:ty, $value:ty, |$v:ident| $bytes:expr, $text:expr;)*) => {$(
        #[cfg(feature = $feature)]
        impl FromSql<Binary, $db> for ConversationId {
            #[allow(unused_mut)]
            fn from_sql(mut $v: $value) -> deserialize::Result<Self> {
                id($bytes)
            }
        }

        #[cfg(feature = $feature)]
        impl FromSql<Binary, $db> for MessageId {
            #[allow(unused_mut)]
            fn from_sql(mut $v: $value) -> deserialize::Result<Self> {
                id($bytes)
            }
        }

        #[cfg(feature = $feature)]
        impl FromSql<Text, $db> for Role {
            #[allow(unused_mut)]
            fn from_sql(mut $v: $value) -> deserialize::Result<Self> {
                role($text)
            }
        }
    )*};
}

decoders! {
    "sqlite", diesel::sqlite::Sqlite, diesel::sqlite::SqliteValue<'_, '_, '_>,
        |value| value.read_blob(), value.read_text();
    "postgres", diesel::pg::Pg, diesel::pg::PgValue<'_>,
        |value| value.as_bytes(), std::str::from_utf8(value.as_bytes())?;
    "mysql", diesel::mysql::Mysql, diesel::mysql::MysqlValue<'_>,
        |value| value.as_bytes(), std::str::from_utf8(value.as_bytes())?;
}

/// A timestamp column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub(crate) struct DbTime(pub(crate) NaiveDateTime);

impl DbTime {
    pub(crate) fn utc(self) -> DateTime<Utc> {
        self.0.and_utc()
    }
}

/// A time as a bind parameter for a timestamp column, in a comparison, an update or an insert:
/// `updated_at.le(BindTime(t))`.
///
/// On SQLite and PostgreSQL it is bound as Diesel binds a `Timestamp`. On MySQL it is bound as a
/// `DATETIME`, the columns' own type (`DATETIME(6)`, years 1000 to 9999, and in practice 1 to
/// 9999): Diesel binds a `Timestamp` as MySQL's `TIMESTAMP` type, whose range is 1970-01-01
/// 00:00:01 to 2038-01-19 03:14:07 UTC, and MariaDB turned a time outside it into NULL (which the
/// column refused: every write failed from 2038-01-19 on) or, in a comparison, into a value that
/// matched nothing. The parameter's type is chosen by the SQL type it is bound as, not by the
/// value, so it cannot be a `ToSql` of the value: it is an expression of its own, which binds
/// itself with the type each backend needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryId)]
pub(crate) struct BindTime(pub(crate) NaiveDateTime);

impl Expression for BindTime {
    type SqlType = Timestamp;
}

impl<QS> AppearsOnTable<QS> for BindTime {}

impl<GB> ValidGrouping<GB> for BindTime {
    type IsAggregate = is_aggregate::Never;
}

#[cfg(feature = "sqlite")]
impl QueryFragment<diesel::sqlite::Sqlite> for BindTime {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::sqlite::Sqlite>) -> QueryResult<()> {
        out.push_bind_param::<Timestamp, _>(self)
    }
}

/// The text Diesel writes for a `NaiveDateTime` on SQLite (`%F %T%.f`), written without
/// chrono's format-string interpreter, which was a twentieth of a SQLite append's time (perf).
#[cfg(feature = "sqlite")]
impl ToSql<Timestamp, diesel::sqlite::Sqlite> for BindTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::sqlite::Sqlite>) -> serialize::Result {
        out.set_value(sqlite_text(self.0));
        Ok(serialize::IsNull::No)
    }
}

/// `YYYY-MM-DD HH:MM:SS`, then `.` and 3, 6 or 9 digits when the time has a fraction (the fewest
/// that hold it): exactly chrono's `%F %T%.f`, which it falls back to for a year outside 0 to
/// 9999 or a leap second.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn sqlite_text(time: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;

    let nanos = time.nanosecond();
    if !(0..=9999).contains(&time.year()) || nanos >= 1_000_000_000 {
        return time.format("%F %T%.f").to_string();
    }
    let mut text = String::with_capacity(29);
    let _ = write!(
        text,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    let _ = match nanos {
        0 => Ok(()),
        n if n % 1_000_000 == 0 => write!(text, ".{:03}", n / 1_000_000),
        n if n % 1_000 == 0 => write!(text, ".{:06}", n / 1_000),
        n => write!(text, ".{n:09}"),
    };
    text
}

#[cfg(feature = "postgres")]
impl QueryFragment<diesel::pg::Pg> for BindTime {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_bind_param::<Timestamp, _>(&self.0)
    }
}

#[cfg(feature = "mysql")]
impl QueryFragment<diesel::mysql::Mysql> for BindTime {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::mysql::Mysql>) -> QueryResult<()> {
        out.push_bind_param::<diesel::sql_types::Datetime, _>(&self.0)
    }
}

/// On the connection enum, as the backend it is connected to binds it.
#[allow(private_interfaces)]
impl QueryFragment<MultiBackend> for BindTime {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        MultiBackend::walk_variant_ast(self, pass)
    }
}

#[cfg(feature = "sqlite")]
impl FromSql<Timestamp, diesel::sqlite::Sqlite> for DbTime {
    fn from_sql(mut value: diesel::sqlite::SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        if let Some(time) = parse_sqlite_text(value.read_text()) {
            return Ok(DbTime(time));
        }
        // Anything else SQLite may hold (another program's format, a Julian day number).
        <NaiveDateTime as FromSql<Timestamp, diesel::sqlite::Sqlite>>::from_sql(value).map(DbTime)
    }
}

#[cfg(feature = "postgres")]
impl FromSql<Timestamp, diesel::pg::Pg> for DbTime {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, diesel::pg::Pg>>::from_sql(value).map(DbTime)
    }
}

#[cfg(feature = "mysql")]
impl FromSql<Timestamp, diesel::mysql::Mysql> for DbTime {
    fn from_sql(value: diesel::mysql::MysqlValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, diesel::mysql::Mysql>>::from_sql(value).map(DbTime)
    }
}

/// `YYYY-MM-DD HH:MM:SS`, optionally followed by `.` and 1 to 9 digits: what Diesel writes for a
/// `NaiveDateTime` on SQLite. `None` for anything else.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn parse_sqlite_text(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    let (base, fraction) = b.split_at_checked(19)?;
    if [base[4], base[7], base[10], base[13], base[16]] != *b"-- ::" {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            number(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(&base[0..4])?).ok()?,
        number(&base[5..7])?,
        number(&base[8..10])?,
    )?;
    let time = NaiveTime::from_hms_nano_opt(
        number(&base[11..13])?,
        number(&base[14..16])?,
        number(&base[17..19])?,
        nanos,
    )?;
    Some(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_times_are_written_as_diesel_writes_them() {
        let mut nanos = [
            0,
            1,
            999,
            1_000,
            5_000,
            123_000_000,
            999_999_999,
            500_000_001,
        ]
        .to_vec();
        nanos.extend((0..2000u32).map(|i| i.wrapping_mul(2_654_435_761) % 1_000_000_000));
        let dates = [
            (0, 1, 1),
            (1, 1, 1),
            (999, 12, 31),
            (2026, 12, 3),
            (9999, 12, 31),
            (-1, 1, 1),
            (10000, 1, 1),
        ];
        for (y, m, d) in dates {
            for (i, &n) in nanos.iter().enumerate() {
                let time = NaiveDate::from_ymd_opt(y, m, d)
                    .unwrap()
                    .and_hms_nano_opt((i % 24) as u32, (i % 60) as u32, (i * 7 % 60) as u32, n)
                    .unwrap();
                assert_eq!(sqlite_text(time), time.format("%F %T%.f").to_string());
                if (0..=9999).contains(&y) {
                    assert_eq!(parse_sqlite_text(&sqlite_text(time)), Some(time));
                }
            }
        }
    }

    #[test]
    fn parses_what_diesel_writes_and_refuses_the_rest() {
        let times = [
            "2026-11-24 08:15:56",
            "2026-11-24 08:15:56.700",
            "2026-11-24 08:15:56.724622",
            "2026-11-24 08:15:56.000000001",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
        ];
        for text in times {
            // Diesel writes with "%F %T%.f"; chrono reads it back the slow way.
            let slow = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(parse_sqlite_text(text), Some(slow), "{text}");
            assert_eq!(slow.format("%F %T%.f").to_string(), text);
        }
        for text in [
            "",
            "2026-11-24",
            "2026-11-24T08:15:56",
            "2026-11-24 08:15:56.",
            "2026-11-24 08:15:56.1234567890",
            "2026-11-24 08:15:56+00:00",
            "2026-02-30 08:15:56",
            "2026-11-24 24:00:00",
            "+026-11-24 08:15:56",
            "2026-1a-24 08:15:56",
            "2460000.5",
        ] {
            assert_eq!(parse_sqlite_text(text), None, "{text:?}");
        }
    }
}

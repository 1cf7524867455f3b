//! Column decoders for the hot read paths: ids, roles and timestamps go straight from the
//! database's buffer into their final type, without the `Vec` or `String` per value that loading
//! them as bytes or text first would cost (3 allocations a message row).
//!
//! Timestamps are stored as naive UTC, so a server's session time zone never shifts them. On SQLite
//! they are text that the store wrote itself, in one format, and are parsed here by hand: Diesel's
//! reader runs chrono's general parser once per format it tries (two per value for ours), which
//! was a fifth of a SQLite history load's instructions (callgrind).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::sql_types::{Binary, Text, Timestamp};
use uuid::Uuid;

use crate::conn::Conn;
use crate::models::Role;

type MultiBackend = <Conn as diesel::Connection>::Backend;

/// The store's connection enum decodes with the decoder of the backend it is connected to.
macro_rules! for_the_connection_enum {
    ($($t:ty: $sql:ty),*) => {$(
        impl FromSql<$sql, MultiBackend> for $t {
            fn from_sql(
                value: <MultiBackend as diesel::backend::Backend>::RawValue<'_>,
            ) -> deserialize::Result<Self> {
                value.from_sql::<Self, $sql>()
            }
        }
    )*};
}

for_the_connection_enum!(DbId: Binary, DbRole: Text, DbTime: Timestamp);

/// A 16-byte id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub(crate) struct DbId(pub(crate) Uuid);

fn id(bytes: &[u8]) -> deserialize::Result<DbId> {
    Uuid::from_slice(bytes)
        .map(DbId)
        .map_err(|_| format!("unreadable row: an id of {} bytes", bytes.len()).into())
}

#[cfg(feature = "sqlite")]
impl FromSql<Binary, diesel::sqlite::Sqlite> for DbId {
    fn from_sql(mut value: diesel::sqlite::SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        id(value.read_blob())
    }
}

#[cfg(feature = "postgres")]
impl FromSql<Binary, diesel::pg::Pg> for DbId {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        id(value.as_bytes())
    }
}

#[cfg(feature = "mysql")]
impl FromSql<Binary, diesel::mysql::Mysql> for DbId {
    fn from_sql(value: diesel::mysql::MysqlValue<'_>) -> deserialize::Result<Self> {
        id(value.as_bytes())
    }
}

/// A role column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub(crate) struct DbRole(pub(crate) Role);

fn role(text: &str) -> deserialize::Result<DbRole> {
    text.parse()
        .map(DbRole)
        .map_err(|e| format!("unreadable row: {e}").into())
}

#[cfg(feature = "sqlite")]
impl FromSql<Text, diesel::sqlite::Sqlite> for DbRole {
    fn from_sql(mut value: diesel::sqlite::SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        role(value.read_text())
    }
}

#[cfg(feature = "postgres")]
impl FromSql<Text, diesel::pg::Pg> for DbRole {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        role(std::str::from_utf8(value.as_bytes())?)
    }
}

#[cfg(feature = "mysql")]
impl FromSql<Text, diesel::mysql::Mysql> for DbRole {
    fn from_sql(value: diesel::mysql::MysqlValue<'_>) -> deserialize::Result<Self> {
        role(std::str::from_utf8(value.as_bytes())?)
    }
}

/// A timestamp column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub(crate) struct DbTime(pub(crate) NaiveDateTime);

impl DbTime {
    pub(crate) fn utc(self) -> DateTime<Utc> {
        self.0.and_utc()
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

//! The backend matrix: each behaviour is written once, as a function, and run as one `#[test]` per
//! enabled backend.

use super::{Kind, TestDb};

/// Generates one `#[test]` per enabled backend for each behaviour, in a module per backend
/// (`sqlite_file`, `sqlite_memory`, `postgres`, `citus`, `mysql`) of the module that invokes it. `every`
/// runs on all of them; `persistent` needs a database that outlives a store (reopening, raw SQL,
/// two stores or processes on one database), so it skips in-memory SQLite.
///
/// A behaviour is a function of the invoking module that takes a fresh `&TestDb`
/// ([`with_db`]). `run: path` names another runner, a `fn(Kind, behaviour)` that sets up what the
/// behaviour takes instead (a server, a runtime); its path is resolved from the generated modules,
/// so it starts with `crate::`.
macro_rules! backend_tests {
    (
        every: [$($every:ident),* $(,)?],
        persistent: [$($persistent:ident),* $(,)?] $(,)?
    ) => {
        $crate::support::backend_tests! {
            run: $crate::support::with_db,
            every: [$($every),*],
            persistent: [$($persistent),*],
        }
    };
    (
        run: $run:path,
        every: [$($every:ident),* $(,)?],
        persistent: [$($persistent:ident),* $(,)?] $(,)?
    ) => {
        #[cfg(feature = "sqlite")]
        mod sqlite_file {
            $( #[test] fn $every() { $run($crate::support::Kind::SqliteFile, super::$every) } )*
            $( #[test] fn $persistent() {
                $run($crate::support::Kind::SqliteFile, super::$persistent)
            } )*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite_memory {
            $( #[test] fn $every() { $run($crate::support::Kind::SqliteMemory, super::$every) } )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $( #[test] fn $every() { $run($crate::support::Kind::Postgres, super::$every) } )*
            $( #[test] fn $persistent() {
                $run($crate::support::Kind::Postgres, super::$persistent)
            } )*
        }
        #[cfg(feature = "citus")]
        mod citus {
            $( #[test] fn $every() { $run($crate::support::Kind::Citus, super::$every) } )*
            $( #[test] fn $persistent() { $run($crate::support::Kind::Citus, super::$persistent) } )*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $( #[test] fn $every() { $run($crate::support::Kind::Mysql, super::$every) } )*
            $( #[test] fn $persistent() { $run($crate::support::Kind::Mysql, super::$persistent) } )*
        }
    };
}

pub(crate) use backend_tests;

/// The runner of a behaviour that takes a database: a fresh one of `kind`, dropped afterwards.
pub fn with_db(kind: Kind, behaviour: impl FnOnce(&TestDb)) {
    behaviour(&TestDb::new(kind))
}

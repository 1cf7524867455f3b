//! Opening a store and keeping its connections: URL forms, backends not compiled in, options out
//! of range, servers that are unreachable, silent or busy migrating, a locked SQLite file and
//! connections the server terminates. None of these runs on the backend matrix: each is about one
//! backend (a file of its own), or about none.

mod mysql;
mod postgres;
mod sqlite;

use chatstore::{ChatStore, Error};

#[test]
fn unsupported_urls_are_refused_with_a_clear_error() {
    for url in [
        "",
        "redis://127.0.0.1",
        "sqlite://",
        "sqlite:",
        "host=127.0.0.1 user=postgres dbname=test",
        "localhost:5432",
    ] {
        let err = ChatStore::open(url).unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl(_)), "{url}: {err:?}");
    }
}

/// An unknown scheme is refused, never taken for a file name: `sqlte:app.db` used to create a
/// SQLite file of that name. Refused SQLite parameters are named in the error, and nothing is
/// created for any of them.
#[test]
fn unknown_schemes_and_sqlite_parameters_are_refused_by_name_and_create_nothing() {
    let refused = [
        ("sqlte:refused-app.db", "\"sqlte\""),
        ("SQLTE://refused-app.db", "\"sqlte\""),
        ("db+file:refused-app.db", "\"db+file\""),
        ("sqlite://refused-app.db?foo=1", "\"foo\""),
        ("sqlite://refused-app.db?mode=rwc&Mode=ro", "\"Mode\""),
        ("file:refused-app.db?vfs=unix-none", "\"vfs\""),
        ("file:refused-app.db?nolock=1", "\"nolock\""),
        ("sqlite://refused-app.db?mode=xyz", "\"xyz\""),
        ("sqlite://refused-app.db?mode", "mode has no value"),
        (
            "sqlite://refused-app.db?mode=ro&mode=rw",
            "mode is given twice",
        ),
        ("sqlite://refused-app.db?immutable=maybe", "\"maybe\""),
        ("sqlite://refused-app.db?cache=shared", "cache=shared"),
        ("sqlite://refused-app.db?cache=public", "\"public\""),
        ("sqlite::memory:?cache=private", "cache=shared"),
        ("file:refused?mode=memory&cache=private", "cache=shared"),
        ("sqlite::memory:?mode=ro", "mode=ro"),
        ("file::memory:?immutable=1", "immutable"),
        ("file:?mode=memory", "needs a name"),
        ("sqlite://?mode=rwc", "needs a file path"),
        ("file:", "needs a file path"),
    ];
    for (url, named) in refused {
        let err = ChatStore::open(url).unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl(_)), "{url}: {err:?}");
        assert!(err.to_string().contains(named), "{url}: {err}");
    }
    for leftover in ["refused-app.db", "sqlte:refused-app.db", "refused"] {
        assert!(
            !std::path::Path::new(leftover).exists(),
            "{leftover} was created"
        );
    }
    let err = ChatStore::open("ftp://user:secret@host/db").unwrap_err();
    assert!(
        !err.to_string().contains("secret"),
        "a password never reaches an error message"
    );
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_names_the_feature_to_enable() {
    let err = ChatStore::open("postgres://postgres@127.0.0.1/test").unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackendNotEnabled {
                feature: "postgres",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"postgres\""));
}

#[cfg(not(feature = "mysql"))]
#[test]
fn a_mysql_url_names_the_feature_to_enable() {
    let err = ChatStore::open("mysql://root@127.0.0.1/test").unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackendNotEnabled {
                feature: "mysql",
                ..
            }
        ),
        "{err:?}"
    );
}

#[cfg(not(feature = "sqlite"))]
#[test]
fn a_sqlite_url_names_the_feature_to_enable() {
    let err = ChatStore::open(":memory:").unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackendNotEnabled {
                feature: "sqlite",
                ..
            }
        ),
        "{err:?}"
    );
}

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
        "file::memory:",
        "file:chat?mode=memory&cache=shared",
        "sqlite://chat.db?mode=rwc",
    ] {
        let err = ChatStore::open(url).unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl(_)), "{url}: {err:?}");
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

//! MySQL/MariaDB: a server that is unreachable or busy migrating.

#![cfg(feature = "mysql")]

use std::time::Duration;

use chatstore::{ChatStore, Error};

use crate::support::{Kind, TestDb};

#[test]
fn an_unreachable_mysql_server_fails_open_with_the_real_error() {
    for url in [
        "mysql://root@127.0.0.1:1/test",
        "mariadb://root@127.0.0.1:1/test",
    ] {
        let err = ChatStore::open(url).unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{url}: {err:?}");
    }
}

#[test]
fn mysql_open_waits_for_another_migrator_at_most_the_connection_timeout() {
    let db = TestDb::new(Kind::Mysql);
    {
        // The named lock chatstore's migration run takes, held by another session.
        let _migrating = db.hold("DO GET_LOCK(CONCAT('chatstore:', MD5(DATABASE())), 10)");
        let started = std::time::Instant::now();
        let err = ChatStore::builder(db.url.clone())
            .connection_timeout(Duration::from_millis(300))
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    assert!(db.open().verify_schema().unwrap().is_complete());
}

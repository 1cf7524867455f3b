//! Databases on the local Citus cluster that `../shared/citus/citus-cluster.sh start` runs: a
//! coordinator on 127.0.0.1:5440 and workers on 5441 and 5442. Citus keeps its node list per
//! database, so each test database is made on every node, with the extension, and the workers
//! registered in the coordinator's copy, as the script's `createdb` does. The store distributes its
//! tables when it first migrates one.

/// The coordinator's port, then the workers'.
#[cfg(feature = "citus")]
const NODES: [u16; 3] = [5440, 5441, 5442];

/// Makes the database `name` on every node; returns the coordinator's URL of it.
#[cfg(feature = "citus")]
pub fn create_database(name: &str) -> String {
    // One at a time: registering the nodes of two databases at once updates the same catalog
    // rows on the workers ("tuple concurrently updated").
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let made = std::panic::catch_unwind(|| {
        for port in NODES {
            execute(port, "postgres", &format!("CREATE DATABASE {name}"));
            execute(port, name, "CREATE EXTENSION citus");
        }
        let [coordinator, workers @ ..] = NODES;
        let mut register =
            format!("SELECT citus_set_coordinator_host('127.0.0.1', {coordinator});");
        for port in workers {
            register.push_str(&format!("SELECT citus_add_node('127.0.0.1', {port});"));
        }
        execute(coordinator, name, &register);
        url(coordinator, name)
    });
    // Half made, it is dropped on every node before the test fails.
    made.unwrap_or_else(|panic| {
        drop_database(name);
        std::panic::resume_unwind(panic)
    })
}

/// Drops the database `name` on every node.
#[cfg(feature = "citus")]
pub fn drop_database(name: &str) {
    for port in NODES {
        execute(
            port,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
}

#[cfg(feature = "citus")]
fn url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}")
}

#[cfg(feature = "citus")]
fn execute(port: u16, database: &str, sql: &str) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let url = url(port, database);
    let mut conn = diesel::pg::PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("the Citus tests need the local cluster (../shared/citus/citus-cluster.sh start): {url}: {e}")
    });
    conn.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{url}: {sql}: {e}"));
}

#[cfg(not(feature = "citus"))]
pub fn create_database(_: &str) -> String {
    unreachable!("Citus tests are compiled only with the citus feature")
}

#[cfg(not(feature = "citus"))]
pub fn drop_database(_: &str) {
    unreachable!("Citus tests are compiled only with the citus feature")
}

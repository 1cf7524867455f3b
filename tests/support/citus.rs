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

/// Drops the database `name` on every node. `WITH (FORCE)` ends the sessions still connected, but
/// Citus's maintenance daemon may connect again before the drop: "is being accessed by other
/// users" (seen once in CI). That refusal is tried again, up to 50 times 100 ms apart.
#[cfg(feature = "citus")]
pub fn drop_database(name: &str) {
    for port in NODES {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let mut attempts = 1;
        loop {
            match try_execute(port, "postgres", &sql) {
                Err(e) if e.contains("is being accessed by other users") && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                done => break done.unwrap_or_else(|e| panic!("{e}")),
            }
        }
    }
}

#[cfg(feature = "citus")]
fn url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}")
}

#[cfg(feature = "citus")]
fn execute(port: u16, database: &str, sql: &str) {
    try_execute(port, database, sql).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `sql` on the node's database; the server's refusal, with the URL and SQL, as an error.
#[cfg(feature = "citus")]
fn try_execute(port: u16, database: &str, sql: &str) -> Result<(), String> {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let url = url(port, database);
    let mut conn = diesel::pg::PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("the Citus tests need the local cluster (../shared/citus/citus-cluster.sh start): {url}: {e}")
    });
    conn.batch_execute(sql)
        .map_err(|e| format!("{url}: {sql}: {e}"))
}

#[cfg(not(feature = "citus"))]
pub fn create_database(_: &str) -> String {
    unreachable!("Citus tests are compiled only with the citus feature")
}

#[cfg(not(feature = "citus"))]
pub fn drop_database(_: &str) {
    unreachable!("Citus tests are compiled only with the citus feature")
}

//! Connections: which backend a URL names, how each connection is set up, and the store's pool of
//! them (the pool itself, which knows no backend, is `pool.rs`).

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
// Only for Diesel's `is_broken`: no r2d2 pool is built (see `pool.rs`).
use diesel::r2d2::R2D2Connection;
use parking_lot::{FairMutex, FairMutexGuard};

use crate::config::Synchronous;
use crate::pool::{Connector, Options, Pool};
use crate::turns::{Turn, TurnQueue};
use crate::{Error, Result};

/// The compiled-in connection types, as one Diesel connection so that queries are written once.
#[derive(diesel::MultiConnection)]
pub(crate) enum Conn {
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::sqlite::SqliteConnection),
    #[cfg(feature = "postgres")]
    Pg(diesel::pg::PgConnection),
    #[cfg(feature = "mysql")]
    Mysql(diesel::mysql::MysqlConnection),
}

/// The database systems chatstore can store into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Embedded SQLite (cargo feature `sqlite`, on by default).
    Sqlite,
    /// PostgreSQL (cargo feature `postgres`).
    Postgres,
    /// MariaDB or MySQL (cargo feature `mysql`).
    Mysql,
}

impl Conn {
    /// The database system this connection talks to: what a query function matches on where
    /// only its SQL differs (a match that needs the typed connection matches on `Conn` itself).
    pub(crate) fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Conn::Pg(_) => Backend::Postgres,
            #[cfg(feature = "mysql")]
            Conn::Mysql(_) => Backend::Mysql,
        }
    }
}

/// What a database URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite database file, and how to open it.
    SqliteFile(SqliteFile),
    /// An in-memory SQLite database that lives as long as the store: a shared-cache URI, so that
    /// every connection of the store reaches the same database — with a name of its own for
    /// `:memory:`, or the URL's name for `mode=memory`.
    SqliteMemory(String),
    /// A PostgreSQL URL, passed to libpq as given (sslmode and other parameters included), with
    /// a `connect_timeout` added if it has none.
    Postgres(String),
    /// A MariaDB or MySQL URL (`mysql://` or `mariadb://`, the latter passed on as `mysql://`).
    Mysql(String),
}

/// A SQLite database file and the URL's parameters for it, read once into these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqliteFile {
    /// The file's path as a `file:` URI writes it: percent-encoded where a URI needs it (a path
    /// from a `file:` URL is kept as written).
    path: String,
    mode: SqliteMode,
    /// `immutable=1`: the file is read-only media; SQLite takes no locks and opens it read-only.
    immutable: bool,
}

/// How a SQLite file is opened: its URL's `mode` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqliteMode {
    /// `mode=ro`: read-only; the file must exist.
    Ro,
    /// `mode=rw`: read and write; the file must exist.
    Rw,
    /// `mode=rwc`, the default: read and write, created if missing.
    Rwc,
}

impl SqliteFile {
    /// The URI SQLite opens (Diesel opens SQLite with `SQLITE_OPEN_URI`).
    pub(crate) fn uri(&self) -> String {
        let mode = match self.mode {
            SqliteMode::Ro => "ro",
            SqliteMode::Rw => "rw",
            SqliteMode::Rwc => "rwc",
        };
        let immutable = if self.immutable { "&immutable=1" } else { "" };
        format!("file:{}?mode={mode}{immutable}", self.path)
    }

    /// Whether the store may not write: `mode=ro` or `immutable=1`.
    pub(crate) fn read_only(&self) -> bool {
        self.mode == SqliteMode::Ro || self.immutable
    }
}

/// Characters a file path cannot hold as they are in a `file:` URI: `?` and `#` end the path,
/// `%` starts an escape; control characters are escaped too.
const URI_PATH: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b'%').add(b'?').add(b'#');

/// Where a SQLite URL's path came from.
enum SqlitePath<'a> {
    /// A file system path (a bare path, or `sqlite://` percent-decoded).
    Raw(String),
    /// The path of a `file:` URI, as written.
    Uri(&'a str),
}

/// The parameters of a SQLite URL, each at most once.
#[derive(Default)]
struct SqliteParams {
    mode: Option<String>,
    cache: Option<String>,
    immutable: Option<bool>,
}

impl SqliteParams {
    /// The parameters of `query` (`mode=ro&cache=private`); any other is refused by name.
    fn parse(query: &str) -> Result<SqliteParams> {
        let mut params = SqliteParams::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decoded(value)?;
            let key = decoded(key)?;
            let (slot, seen) = match key.as_str() {
                "mode" => {
                    let seen = params.mode.replace(value.clone()).is_some();
                    (value.as_str(), seen)
                }
                "cache" => {
                    let seen = params.cache.replace(value.clone()).is_some();
                    (value.as_str(), seen)
                }
                "immutable" => {
                    let flag = match value.as_str() {
                        "1" | "true" | "yes" | "on" => true,
                        "0" | "false" | "no" | "off" => false,
                        other => {
                            return refuse(format!(
                                "immutable must be 1 or 0, not {:?}",
                                shortened(other)
                            ))
                        }
                    };
                    (value.as_str(), params.immutable.replace(flag).is_some())
                }
                other => {
                    return refuse(format!(
                        "unknown SQLite parameter {:?}: the store accepts mode, cache and \
                         immutable",
                        shortened(other)
                    ))
                }
            };
            if seen {
                return refuse(format!("the SQLite parameter {key} is given twice"));
            }
            if slot.is_empty() {
                return refuse(format!("the SQLite parameter {key} has no value"));
            }
        }
        Ok(params)
    }
}

/// `text` percent-decoded, as UTF-8.
fn decoded(text: &str) -> Result<String> {
    match percent_encoding::percent_decode_str(text).decode_utf8() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => refuse("a SQLite URL is not UTF-8 once percent-decoded".to_owned()),
    }
}

/// At most 32 characters of a refused value, for the error.
fn shortened(text: &str) -> String {
    text.chars().take(32).collect()
}

fn refuse<T>(why: String) -> Result<T> {
    Err(Error::UnsupportedUrl(why))
}

/// Whether `text` is a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`) of
/// two characters or more: a single letter before a colon is a Windows drive, and a bare path
/// may hold a colon after any character a scheme cannot hold (`./a:b`, `/x/a:b`).
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && text.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl Target {
    /// Reads a database URL: `postgres://…`/`postgresql://…`, `mysql://…`/`mariadb://…`,
    /// `sqlite://path` or `sqlite:path` (percent-decoded, as sqlx reads it), a `file:` URI (as
    /// SQLite reads it), `sqlite::memory:`, `:memory:`, or a bare file path; the SQLite forms
    /// take the parameters `mode`, `cache` and `immutable` (see `ChatStore::open`).
    pub(crate) fn parse(url: &str) -> Result<Target> {
        let unsupported = |why: &str| Err(Error::UnsupportedUrl(why.to_owned()));
        // Schemes are case-insensitive; the rest of the URL is kept as given.
        let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
        let scheme = scheme.to_ascii_lowercase();
        let target = match scheme.as_str() {
            "postgres" | "postgresql" => Target::Postgres(url.to_owned()),
            "mysql" | "mariadb" => Target::Mysql(format!("mysql:{rest}")),
            "" if rest == "memory:" => Target::sqlite(SqlitePath::Raw(":memory:".into()), "")?,
            "sqlite" => {
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                Target::sqlite(SqlitePath::Raw(decoded(path)?), query)?
            }
            // An SQLite URI filename: the path ends at `?` or `#`, and the fragment is ignored.
            "file" => {
                let rest = rest.split('#').next().unwrap_or(rest);
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                Target::sqlite(SqlitePath::Uri(path), query)?
            }
            // Only the scheme is echoed: the rest may hold a password.
            scheme if is_scheme(scheme) => {
                return Err(Error::UnsupportedUrl(format!(
                    "unknown scheme {scheme:?} (expected sqlite:, file:, postgres://, \
                     postgresql://, mysql:// or mariadb://; a file whose name has a colon is \
                     sqlite://name or file:name)"
                )));
            }
            _ if url.trim().is_empty() => return unsupported("the url is empty"),
            // "host=db user=app" is a libpq connection string, not a file name: taking it for one
            // would quietly create a SQLite file instead of reaching the server.
            _ if url.contains('=') => {
                return unsupported(
                    "key=value connection strings are not accepted: use a postgres:// URL, or \
                     sqlite://… for a file whose name has '=' in it",
                );
            }
            // A bare path, taken as it is: no parameters.
            _ => Target::sqlite(SqlitePath::Raw(url.to_owned()), "")?,
        };
        match target.backend() {
            Backend::Sqlite if !cfg!(feature = "sqlite") => Err(target.not_enabled()),
            Backend::Postgres if !cfg!(feature = "postgres") => Err(target.not_enabled()),
            Backend::Mysql if !cfg!(feature = "mysql") => Err(target.not_enabled()),
            _ => Ok(target),
        }
    }

    /// A SQLite target: `path` opened as `query`'s parameters say.
    fn sqlite(path: SqlitePath<'_>, query: &str) -> Result<Target> {
        let params = SqliteParams::parse(query)?;
        let (path, private_memory) = match path {
            SqlitePath::Raw(path) => {
                let memory = path == ":memory:";
                let path = percent_encoding::utf8_percent_encode(&path, URI_PATH).to_string();
                // A path that starts with `//` would read as a URI's authority.
                let path = match path.starts_with("//") {
                    true => format!("//{path}"),
                    false => path,
                };
                (path, memory)
            }
            SqlitePath::Uri(path) => (path.to_owned(), path == ":memory:"),
        };
        let memory = private_memory || params.mode.as_deref() == Some("memory");
        if memory {
            if let Some(mode) = params.mode.as_deref().filter(|mode| *mode != "memory") {
                return refuse(format!(
                    "mode={mode} does not apply to an in-memory database"
                ));
            }
            if params.immutable.is_some() {
                return refuse("immutable does not apply to an in-memory database".to_owned());
            }
            match params.cache.as_deref() {
                None | Some("shared") => {}
                Some("private") => {
                    return refuse(
                        "an in-memory database needs cache=shared: with a private cache each of \
                         the store's connections would have a database of its own"
                            .to_owned(),
                    )
                }
                Some(other) => {
                    return refuse(format!(
                        "cache must be shared or private, not {:?}",
                        shortened(other)
                    ))
                }
            }
            let name = match private_memory {
                true => format!("chatstore-{}", uuid::Uuid::now_v7().simple()),
                false if path.is_empty() => {
                    return refuse("mode=memory needs a name for the database".to_owned())
                }
                false => path,
            };
            return Ok(Target::SqliteMemory(format!(
                "file:{name}?mode=memory&cache=shared"
            )));
        }
        if path.is_empty() {
            return refuse("a sqlite URL needs a file path".to_owned());
        }
        let mode = match params.mode.as_deref() {
            None | Some("rwc") => SqliteMode::Rwc,
            Some("rw") => SqliteMode::Rw,
            Some("ro") => SqliteMode::Ro,
            Some(other) => {
                return refuse(format!(
                    "mode must be ro, rw, rwc or memory, not {:?}",
                    shortened(other)
                ))
            }
        };
        match params.cache.as_deref() {
            None | Some("private") => {}
            Some("shared") => {
                return refuse(
                    "cache=shared is not accepted for a database file: its table locks fail at \
                     once instead of waiting, which SQLite itself advises against; the default, \
                     cache=private, is what the store uses"
                        .to_owned(),
                )
            }
            Some(other) => {
                return refuse(format!(
                    "cache must be shared or private, not {:?}",
                    shortened(other)
                ))
            }
        }
        Ok(Target::SqliteFile(SqliteFile {
            path,
            mode,
            immutable: params.immutable.unwrap_or(false),
        }))
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Target::SqliteFile(_) | Target::SqliteMemory(_) => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
            Target::Mysql(_) => Backend::Mysql,
        }
    }

    /// Bounds how long libpq may take to connect, unless the URL says so itself: libpq waits
    /// without limit by default, so a host that drops packets would hang `open` and the pool.
    pub(crate) fn bound_connect_time(&mut self, timeout: Duration) {
        if let Target::Postgres(url) = self {
            if !url.contains("connect_timeout=") {
                // Whole seconds, rounded up; libpq treats anything under 2 as 2.
                let secs = timeout.as_millis().div_ceil(1000).max(1);
                let separator = if url.contains('?') { '&' } else { '?' };
                url.push_str(&format!("{separator}connect_timeout={secs}"));
            }
        }
    }

    /// The error for a URL whose backend this build was compiled without.
    fn not_enabled(&self) -> Error {
        not_enabled(self.backend())
    }

    /// For an open that must not create the database: a SQLite file opened `mode=rwc` (the
    /// default) is opened `mode=rw`, so that SQLite itself refuses to create it, and the path of
    /// a file that does not exist is returned, for a clear error before connecting.
    pub(crate) fn refuse_to_create(&mut self) -> Option<String> {
        let Target::SqliteFile(file) = self else {
            return None;
        };
        if file.mode == SqliteMode::Rwc {
            file.mode = SqliteMode::Rw;
        }
        let path = percent_encoding::percent_decode_str(&file.path).decode_utf8_lossy();
        // A `file:` URI's path may keep an empty or `localhost` authority: `file:///abs`.
        let local = path
            .strip_prefix("//localhost/")
            .or_else(|| path.strip_prefix("///"))
            .map(|rest| format!("/{rest}"));
        let path = local.unwrap_or_else(|| path.into_owned());
        match std::path::Path::new(&path).exists() {
            true => None,
            false => Some(path),
        }
    }

    /// Whether the target is a private in-memory database.
    pub(crate) fn is_memory(&self) -> bool {
        matches!(self, Target::SqliteMemory(_))
    }
}

/// The error for a backend this build was compiled without.
#[cfg_attr(
    all(feature = "sqlite", feature = "postgres", feature = "mysql"),
    allow(dead_code)
)]
fn not_enabled(backend: Backend) -> Error {
    match backend {
        Backend::Sqlite => Error::BackendNotEnabled {
            backend: "SQLite",
            feature: "sqlite",
        },
        Backend::Postgres => Error::BackendNotEnabled {
            backend: "PostgreSQL",
            feature: "postgres",
        },
        Backend::Mysql => Error::BackendNotEnabled {
            backend: "MySQL",
            feature: "mysql",
        },
    }
}

/// Per-connection SQLite settings (they do not persist in the database file).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) struct SqliteSettings {
    pub(crate) busy_timeout: Duration,
    pub(crate) synchronous: Synchronous,
}

/// Makes connections for the pool: picks the backend from the URL itself (Diesel's own
/// `MultiConnection::establish` tries each backend in turn and hides the real error).
pub(crate) struct Manager {
    pub(crate) target: Target,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) sqlite: SqliteSettings,
    /// In-memory SQLite: a connection held, never used, for as long as the pool, which keeps the
    /// database alive while the pool replaces its connection.
    pub(crate) anchor: Option<std::sync::Mutex<Conn>>,
}

impl Manager {
    /// A new connection, set up for the store. (A target of a backend this build lacks is
    /// refused when the URL is parsed; it is refused here again rather than assumed away.)
    pub(crate) fn connect(&self) -> Result<Conn> {
        match &self.target {
            Target::SqliteFile(file) => self.connect_sqlite(&file.uri()),
            Target::SqliteMemory(uri) => self.connect_sqlite(uri),
            Target::Postgres(url) => connect_postgres(url),
            Target::Mysql(url) => connect_mysql(url),
        }
    }

    /// The store's first connection, which also prepares the database itself: a SQLite file
    /// (unless read-only) is switched to WAL (readers never block the writer), a setting that persists in the file and so is
    /// made once here rather than raced on by every pooled connection.
    pub(crate) fn connect_first(&self, changes_database: bool) -> Result<Conn> {
        let mut conn = self.connect()?;
        // A read-only store changes nothing, not even the journal mode, nor does an open that
        // only checks or leaves the schema (a database chatstore made is in WAL mode already).
        if let Target::SqliteFile(file) = &self.target {
            if changes_database && !file.read_only() {
                self.enable_wal(&mut conn)?;
            }
        }
        Ok(conn)
    }

    /// Switches to WAL. Two connections switching a fresh file at once both hold a shared lock and
    /// need an exclusive one; SQLite breaks that deadlock by failing one at once with "database is
    /// locked", without waiting on the busy timeout. So the switch is retried, for up to the busy
    /// timeout, until the other connection has finished.
    fn enable_wal(&self, conn: &mut Conn) -> Result<()> {
        let deadline = std::time::Instant::now() + self.sqlite.busy_timeout;
        loop {
            match conn
                .batch_execute("PRAGMA journal_mode = WAL")
                .map_err(Error::from)
            {
                Err(Error::Busy(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                result => return result,
            }
        }
    }

    #[cfg(not(feature = "sqlite"))]
    fn connect_sqlite(&self, _path: &str) -> Result<Conn> {
        Err(not_enabled(Backend::Sqlite))
    }

    #[cfg(feature = "sqlite")]
    fn connect_sqlite(&self, path: &str) -> Result<Conn> {
        let mut conn = diesel::sqlite::SqliteConnection::establish(path).map_err(Error::connect)?;
        // busy_timeout first: the other pragmas may already have to wait for a lock.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {};",
            self.sqlite.busy_timeout.as_millis(),
            match self.sqlite.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        ))?;
        Ok(Conn::Sqlite(conn))
    }
}

impl Connector for Manager {
    type Conn = Conn;

    fn connect(&self) -> Result<Conn> {
        Manager::connect(self)
    }

    fn is_broken(&self, conn: &mut Conn) -> bool {
        // Diesel's check: a transaction left open, or a transaction manager in error (a failed
        // rollback). Connections are checked when they fail (see `Pool::run`), not with an extra
        // round trip before every call.
        R2D2Connection::is_broken(conn)
    }
}

#[cfg(feature = "postgres")]
fn connect_postgres(url: &str) -> Result<Conn> {
    let mut conn = diesel::pg::PgConnection::establish(url).map_err(Error::connect)?;
    // Every statement is prepared once per connection and looks rows up by key or scans an index
    // range, the best plan whatever the values. Left to choose, PostgreSQL kept planning the
    // history read anew at every call (80 µs each, from the server log), its estimate for a
    // generic plan being no better. Except on Citus (a database with the `citus` extension): it
    // routes a statement to its owner's shard by the bound user id, which a generic plan does not
    // have ("could not create distributed plan" for the append); left to choose, Citus makes
    // PostgreSQL plan such statements with their values, and keeps the generic plans of the
    // simple ones (its fast path), pruning shards at execution.
    conn.batch_execute(
        "SELECT set_config('plan_cache_mode', CASE WHEN EXISTS \
         (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN 'auto' \
         ELSE 'force_generic_plan' END, false)",
    )?;
    Ok(Conn::Pg(conn))
}

#[cfg(not(feature = "postgres"))]
fn connect_postgres(_url: &str) -> Result<Conn> {
    Err(not_enabled(Backend::Postgres))
}

#[cfg(feature = "mysql")]
fn connect_mysql(url: &str) -> Result<Conn> {
    let mut conn = diesel::mysql::MysqlConnection::establish(url).map_err(Error::connect)?;
    // Diesel sets UTC and utf8mb4. READ COMMITTED as on PostgreSQL: under InnoDB's default,
    // REPEATABLE READ, a write also takes gap locks on the index ranges it checks, which made
    // concurrent appends to different conversations deadlock. Strict mode: a value that does not
    // fit is an error, never silently cut.
    conn.batch_execute(
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
    )?;
    Ok(Conn::Mysql(conn))
}

#[cfg(not(feature = "mysql"))]
fn connect_mysql(_url: &str) -> Result<Conn> {
    Err(not_enabled(Backend::Mysql))
}

/// The store's pool, whose first connection is `first`, the one that ran the migrations: the
/// store's first call needs no connection of its own. An in-memory database keeps `first` as its
/// anchor instead and has a pool of one.
pub(crate) fn pool(
    mut manager: Manager,
    first: Conn,
    size: u32,
    timeout: Duration,
) -> Pool<Manager> {
    let (max_size, first) = if manager.target.is_memory() {
        // An in-memory database lives as long as one connection to it is open: the first one
        // stays with the store, so a pooled connection can be replaced without losing data.
        manager.anchor = Some(std::sync::Mutex::new(first));
        // Connections to one shared in-memory database lock whole tables and fail at once
        // ("database table is locked") instead of waiting: one at a time.
        (1, None)
    } else {
        (size, Some(first))
    };
    let options = Options {
        max_size,
        timeout,
        idle_timeout: Options::IDLE_TIMEOUT,
        max_lifetime: Options::MAX_LIFETIME,
    };
    Pool::new(manager, options, first)
}

/// Runs `f`, whose statements must all see one snapshot of the database: a search that reads its
/// candidates page by page. On MySQL that is a read-only transaction `WITH CONSISTENT SNAPSHOT` at
/// REPEATABLE READ, since the store's sessions run at READ COMMITTED, where each statement sees a
/// snapshot of its own. On SQLite and PostgreSQL `f` runs as it is: their searches are one
/// statement. Nothing is written, so ending the snapshot cannot lose anything.
pub(crate) fn snapshot<T>(conn: &mut Conn, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => f(conn),
        #[cfg(feature = "postgres")]
        Conn::Pg(_) => f(conn),
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => {
            // One batch: Diesel sends each with multiple statements switched on and off around
            // it, three round trips apiece. (`SET TRANSACTION` sets only the next transaction's
            // level: the one that follows it here.)
            AnsiTransactionManager::begin_transaction_sql(
                c,
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                 START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            )?;
            let result = f(conn);
            let _ = match result {
                Ok(_) => <Conn as Connection>::TransactionManager::commit_transaction(conn),
                Err(_) => <Conn as Connection>::TransactionManager::rollback_transaction(conn),
            };
            result
        }
    }
}

/// Where a store's writers take turns, first come first served, before they ask the database for
/// its write lock. SQLite's busy handler is not fair — it polls with sleeps of up to 100 ms — and
/// under steady contention it starved writers for seconds (5.5 s with six processes of four
/// threads; issue 13). So on SQLite a store's writers queue in the process (a fair mutex), and the
/// one at its head queues with the other processes' on the database's lock file,
/// `<database>-chatstore.lock` ([`TurnQueue`]), which the kernel releases when a process dies. The
/// busy handler is then left to arbitrate only with what does not use the queue: other programs,
/// and stores whose lock file could not be opened (a read-only directory, a platform without the
/// locks), which fall back to it. The servers queue writers on row locks themselves: no gate there.
#[derive(Clone)]
pub(crate) struct WriteGate(Option<Arc<Gate>>);

/// A SQLite store's gate: the process's queue, then the file's.
struct Gate {
    /// The store was opened read-only (`mode=ro`, `immutable=1`): no writer gets a turn.
    read_only: bool,
    /// The in-process queue, holding the process's place in the file's queue (`None`: no lock file).
    turns: FairMutex<Option<TurnQueue>>,
    /// How long a writer waits for its turn among the processes: the busy timeout.
    timeout: Duration,
}

/// A writer's turn, over when dropped: the file's turn first, then the process's.
pub(crate) struct WriteTurn<'a> {
    _file: Option<Turn>,
    _process: FairMutexGuard<'a, Option<TurnQueue>>,
}

impl WriteGate {
    /// The gate of a store whose first connection is `first`. A SQLite file gets its lock file,
    /// made with the database's permissions; in-memory SQLite gets the in-process queue only, as
    /// does a file whose lock file cannot be opened. A read-only SQLite store (`mode=ro`,
    /// `immutable=1`) makes no lock file and lets no writer through; a store that opened without
    /// changing the database (see [`Migrations`](crate::Migrations)) uses a lock file that exists
    /// and makes none.
    pub(crate) fn new(manager: &Manager, first: &mut Conn, changes_database: bool) -> Self {
        let timeout = manager.sqlite.busy_timeout;
        let (turns, read_only) = match &manager.target {
            Target::SqliteFile(file) if file.read_only() => (None, true),
            Target::SqliteFile(_) => (sqlite_lock_file(first, changes_database), false),
            Target::SqliteMemory(_) => (None, false),
            Target::Postgres(_) | Target::Mysql(_) => return WriteGate(None),
        };
        WriteGate(Some(Arc::new(Gate {
            read_only,
            turns: FairMutex::new(turns),
            timeout,
        })))
    }

    /// Waits for this writer's turn, which lasts as long as the returned guard: after this store's
    /// earlier writers, then after the other processes' that queued before it.
    ///
    /// # Errors
    /// [`Error::Busy`] if the other processes' writers kept the turn past the busy timeout;
    /// [`Error::ReadOnly`] if the store was opened read-only.
    pub(crate) fn turn(&self) -> Result<Option<WriteTurn<'_>>> {
        let Some(gate) = &self.0 else {
            return Ok(None);
        };
        if gate.read_only {
            return Err(Error::ReadOnly { source: None });
        }
        let mut process = gate.turns.lock();
        let file = match process.as_mut().map(|queue| queue.turn(gate.timeout)) {
            None => None,
            Some(Ok(Some(turn))) => Some(turn),
            Some(Ok(None)) => {
                return Err(Error::busy_waiting(format!(
                    "other processes' writers kept the write turn for over {} ms",
                    gate.timeout.as_millis()
                )));
            }
            // The lock file failed (which a file that opened does not do): the write goes on
            // without it, and SQLite's busy handler decides, as without a lock file.
            Some(Err(_)) => None,
        };
        Ok(Some(WriteTurn {
            _file: file,
            _process: process,
        }))
    }
}

/// The lock file of the SQLite database `first` is connected to, beside it — the path SQLite
/// itself resolved, so that every way of naming the file finds the same lock file — or `None` if
/// it cannot be opened (a read-only directory, say).
fn sqlite_lock_file(first: &mut Conn, creates: bool) -> Option<TurnQueue> {
    let file = sqlite_main_file(first)?;
    let mode = database_mode(std::path::Path::new(&file));
    let lock = format!("{file}-chatstore.lock");
    if !creates && !std::path::Path::new(&lock).exists() {
        return None;
    }
    TurnQueue::open(std::path::Path::new(&lock), mode).ok()
}

/// The file of the database `first` is connected to, as SQLite resolved it; `None` for an
/// in-memory or temporary database.
#[cfg(feature = "sqlite")]
fn sqlite_main_file(first: &mut Conn) -> Option<String> {
    use diesel::dsl::sql;
    use diesel::sql_types::Text;
    let file: String = diesel::select(sql::<Text>(
        "(SELECT file FROM pragma_database_list WHERE name = 'main')",
    ))
    .get_result(first)
    .ok()?;
    (!file.is_empty()).then_some(file)
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_main_file(_first: &mut Conn) -> Option<String> {
    None
}

/// The database file's permission bits, which its lock file gets too.
#[cfg(unix)]
fn database_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::metadata(path).ok()?.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn database_mode(_path: &std::path::Path) -> Option<u32> {
    None
}

/// Runs `f` in a write transaction. On SQLite it begins with `BEGIN IMMEDIATE`, taking the write lock
/// up front: a deferred transaction that reads first and then writes cannot wait for the lock and fails
/// with "database is locked" under concurrent writers; an immediate one waits (up to the busy timeout).
/// Commits if `f` succeeds, rolls back if it fails.
pub(crate) fn write_transaction<T>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<T>,
) -> Result<T> {
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => AnsiTransactionManager::begin_transaction(c)?,
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(conn) {
        Ok(value) => {
            <Conn as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            // A failed rollback leaves the transaction manager broken, and the pool then drops the
            // connection: the caller still gets the error that caused the rollback.
            let _ = <Conn as Connection>::TransactionManager::rollback_transaction(conn);
            Err(e)
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use diesel::dsl::sql;
    use diesel::sql_types::Text;

    use super::*;
    use crate::Synchronous;

    /// A pragma's value, as text.
    fn pragma(conn: &mut Conn, name: &str) -> String {
        // The pragma's one column is named after it, but for busy_timeout.
        let column = if name == "busy_timeout" {
            "timeout"
        } else {
            name
        };
        let value = sql::<Text>(&format!(
            "(SELECT CAST({column} AS TEXT) FROM pragma_{name}())"
        ));
        diesel::select(value).get_result(conn).unwrap()
    }

    // The bundled SQLite turns foreign keys on by default, so this also checks that nothing turns
    // them off; busy_timeout and synchronous would go unnoticed by every behavioural test.
    #[test]
    fn every_sqlite_connection_gets_the_store_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pragmas.db").display().to_string();
        for (synchronous, level) in [(Synchronous::Full, "2"), (Synchronous::Normal, "1")] {
            let manager = Manager {
                target: Target::parse(&path).unwrap(),
                sqlite: SqliteSettings {
                    busy_timeout: Duration::from_millis(1234),
                    synchronous,
                },
                anchor: None,
            };
            let mut first = manager.connect_first(true).unwrap();
            let mut pooled = manager.connect().unwrap();
            for conn in [&mut first, &mut pooled] {
                assert_eq!(pragma(conn, "foreign_keys"), "1");
                assert_eq!(pragma(conn, "busy_timeout"), "1234");
                assert_eq!(pragma(conn, "synchronous"), level);
                assert_eq!(
                    pragma(conn, "journal_mode"),
                    "wal",
                    "WAL is in the file for all"
                );
            }
        }
    }
}

#[cfg(test)]
mod url_tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        // A failure prints its shrunk input; nothing is written into the source tree.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Any string at all is read as a target or refused with a typed error, never a panic; what
        /// is accepted is what the URL says.
        #[test]
        fn any_string_parses_or_is_refused(url in "(?s).{0,80}") {
            let lower = url.to_ascii_lowercase();
            match Target::parse(&url) {
                Ok(Target::Mysql(kept)) => {
                    prop_assert!(lower.starts_with("mysql:") || lower.starts_with("mariadb:"));
                    prop_assert!(kept.starts_with("mysql:"));
                }
                Ok(Target::Postgres(kept)) => {
                    prop_assert!(lower.starts_with("postgres:") || lower.starts_with("postgresql:"));
                    prop_assert_eq!(kept, url);
                }
                Ok(Target::SqliteMemory(_)) => {
                    prop_assert!(lower.contains(":memory:") || lower.contains("mode=memory"));
                }
                Ok(Target::SqliteFile(file)) => {
                    prop_assert!(!file.path.is_empty());
                    prop_assert!(file.uri().starts_with("file:"));
                }
                Err(Error::UnsupportedUrl(_) | Error::BackendNotEnabled { .. }) => {}
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }

        /// A URL the store refuses is never echoed past its scheme: it may hold a password.
        #[test]
        fn a_refused_url_never_echoes_its_password(
            scheme in "[a-zA-Z][a-zA-Z0-9+.-]{0,10}",
            secret in "[a-zA-Z0-9]{12}",
        ) {
            let url = format!("{scheme}://app:{secret}@db.internal/chat");
            if let Err(e) = Target::parse(&url) {
                prop_assert!(!e.to_string().contains(&secret), "{e}");
            }
        }
    }
}

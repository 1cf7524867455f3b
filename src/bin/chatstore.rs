//! `chatstore`: the admin tool for a chatstore database (cargo feature `cli`).
//!
//! ```sh
//! cargo run --features cli --bin chatstore -- --database-url sqlite://chat.db migrate
//! ```
//!
//! Subcommands: `migrate`, `verify`, `stats`, `index`, `export`, `import`, `delete-user`, `purge`,
//! `reset`; `--help`
//! on each says more. Only `migrate` changes the schema (and creates a SQLite file): the others
//! open a database only if chatstore's schema is there and up to date (exit 4 otherwise), and
//! `reset` drops it. Export and import use JSON lines: one [`ExportItem`] a line, each
//! conversation's record followed by its messages' records in seq order:
//!
//! ```json
//! {"type":"conversation","id":"…","user_id":"alice","title":"Groceries","created_at":"…","updated_at":"…","message_count":2}
//! {"type":"message","id":"…","conversation_id":"…","seq":1,"role":"user","content":"Add oat milk","metadata":null,"created_at":"…"}
//! ```
//!
//! Every command's result goes to standard output (one JSON object with `--json`), except the
//! summary of an export written to standard output, which goes to standard error beside the data.
//! Errors go to standard error as `error: …` (with `--json`, `{"error": …, "code": N}`). `--help`
//! lists the JSON shapes and the exit codes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chatstore::{
    Branch, ChatStore, Conversation, DeletedCounts, Error, ExportItem, Message, Migrations,
    Retention, SchemaReport, StoreBuilder, UserId,
};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

const AFTER_HELP: &str = "\
Schema: only migrate changes it, and only migrate creates a SQLite file that does not exist. The
other commands open a database only if chatstore's schema is there and up to date, and otherwise
change nothing and exit 4; verify then still reports the pending migrations and the objects it
finds. reset drops chatstore's own tables.

Output: a command's result (report, counts, summary) goes to standard output; only export's
summary goes to standard error when the export itself is written to standard output. Errors,
notes and progress bars go to standard error. With --json each result is one JSON object on one
line:
  migrate      {\"applied\":[\"<version>\",…],\"resumed\":[\"<version>\",…]}
               (resumed, MySQL: left half applied by an interrupted run, completed now)
  verify       {\"complete\":true,\"pending\":[\"<version>\",…],\"items\":[{\"kind\":\"table\"
               |\"index\"|\"constraint\",\"name\":\"chatstore_…\",\"present\":true},…]}
               (complete: nothing pending and every item present)
  stats        {\"users\":2,\"conversations\":4,\"messages\":1239}
  index        {\"indexed\":1238}
  export       {\"user\":\"alice\",\"conversations\":3,\"messages\":1238}
  import       {\"user\":\"alice\",\"conversations\":3,\"messages\":1238,\"skipped\":0}
  delete-user  {\"user\":\"alice\",\"conversations\":3,\"messages\":1238}
  purge        {\"cutoff\":\"<RFC 3339>\",\"user\":\"alice\"|null,\"dry_run\":false,
               \"conversations\":3,\"messages\":1238}
  reset        {\"reset\":true}
and an error is one JSON object on standard error: {\"error\":\"<message>\",\"code\":<exit code>},
with \"note\" when there is more to say and, from import, \"imported\" (what it wrote before the
error, as the import object). Usage errors (exit 2) stay plain text.

Exit codes:
  0  done
  1  refused or found wanting: verify found an object missing, delete-user or reset without
     --yes, an import line that is malformed or that the store refuses (nothing of that
     conversation is written)
  2  usage error
  3  the work failed: database, file or input/output error, or a database migrated by a newer
     chatstore (upgrade the tool)
  4  the database is not ready: no SQLite file at that path, or chatstore's schema is absent or
     has migrations pending (chatstore migrate applies them); nothing was created or changed";

const FORMAT: &str = "\
Format (JSON lines): one record a line; each conversation's record comes first, then its
messages' records in seq order:
  {\"type\":\"conversation\",\"id\":\"<uuid>\",\"user_id\":\"alice\",\"title\":\"Groceries\" or null,
   \"created_at\":\"<RFC 3339, UTC>\",\"updated_at\":\"…\",\"message_count\":2}
  {\"type\":\"message\",\"id\":\"<uuid>\",\"conversation_id\":\"<uuid>\",\"seq\":1,\"role\":\"user\",
   \"content\":\"Add oat milk\",\"metadata\":{…} or null,\"created_at\":\"…\"}";

/// Administers a chatstore database: schema, counts, a user's data out and in, deletion.
#[derive(Parser)]
#[command(name = "chatstore", version, after_help = AFTER_HELP)]
struct Cli {
    /// The database: sqlite://path (or a file path), postgres://…, mysql://… [default: the
    /// DATABASE_URL environment variable]
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,

    /// Prints the result, and an error, as one JSON object (shapes: chatstore --help).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates or updates the schema: applies the pending migrations and names them. The only
    /// command that changes the schema, and the only one that creates a SQLite file.
    Migrate,
    /// Checks every table, index and constraint the store relies on, and names the pending
    /// migrations; changes nothing (exit 1 if an object is missing, 4 if a migration is pending).
    Verify,
    /// Counts users (who own a conversation), conversations and messages, every user's.
    Stats,
    /// Indexes every message that waits for the search index (appends leave it to be caught
    /// up; searches catch up by themselves): after a large import, or from a scheduled job.
    Index,
    /// Writes a user's conversations and messages as JSON lines.
    ///
    /// Conversations come in id order, each as the export listed it (a page of 100 at a time),
    /// with its messages up to the count it had then. A progress bar counts messages on standard error
    /// when that is a terminal. The summary goes to standard output, or to standard error when
    /// the export itself goes to standard output.
    #[command(after_help = FORMAT)]
    Export {
        /// Whose data.
        #[arg(long, value_parser = parse_user)]
        user: UserId,
        /// The file to write ("-": standard output), readable by its owner only. It appears
        /// only once the export is complete and synced to disk: until then it is written as
        /// FILE.partial (replacing any file of that name), which is removed if the export fails
        /// or is interrupted (SIGINT, SIGTERM, SIGHUP; SIGKILL cannot be caught).
        #[arg(long, value_name = "FILE", default_value = "-")]
        output: String,
    },
    /// Reads JSON lines written by export and writes them back exactly (same ids, times, seqs).
    ///
    /// Each conversation is imported with its messages in one transaction, as its next record
    /// (or the end of the input) is reached. A malformed line or a conversation the store refuses
    /// stops the import with the line number: the conversations before it stay imported, nothing
    /// of the one at fault is written. The database must have chatstore's schema (chatstore
    /// migrate makes it).
    #[command(after_help = FORMAT)]
    Import {
        /// The user whose data this is: a record that names another owner is refused (exit 1),
        /// so a file cannot add data to an account it was not meant for.
        #[arg(long, value_parser = parse_user)]
        user: UserId,
        /// The file to read ("-": standard input).
        #[arg(long, value_name = "FILE", default_value = "-")]
        input: String,
        /// Skips a conversation whose id is already stored (not compared), instead of stopping:
        /// to resume an import that stopped.
        #[arg(long)]
        skip_existing: bool,
    },
    /// Deletes every conversation and message of a user. Refused without --yes.
    DeleteUser {
        /// Whose data.
        #[arg(long, value_parser = parse_user)]
        user: UserId,
        /// Confirms the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Deletes the conversations not updated since a time (a retention policy), every user's or
    /// one user's, with their messages. Refused without --yes, unless --dry-run.
    ///
    /// It deletes in batches, each its own short transaction, while the application keeps
    /// writing: a conversation appended to during the purge is kept. A purge that is interrupted
    /// keeps what it deleted; run it again to delete the rest. A progress display counts the
    /// deleted conversations on standard error when that is a terminal.
    Purge {
        /// The cutoff: an RFC 3339 time (2026-01-31T00:00:00Z), or a number of days before now
        /// (90d). Conversations whose last update is earlier go.
        #[arg(long, value_name = "TIME", value_parser = parse_cutoff)]
        not_updated_since: chrono::DateTime<chrono::Utc>,
        /// Only this user's conversations (default: every user's).
        #[arg(long, value_parser = parse_user)]
        user: Option<UserId>,
        /// Conversations per transaction.
        #[arg(long, default_value_t = Retention::DEFAULT_BATCH)]
        batch: u32,
        /// Counts what would be deleted, deleting nothing.
        #[arg(long)]
        dry_run: bool,
        /// Confirms the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Drops chatstore's own tables, with every conversation and message, and its version
    /// table. For development and test databases. Refused without --yes.
    ///
    /// Only chatstore's objects go (tables named chatstore_…, their indexes, constraints and
    /// triggers, and chatstore_schema_migrations): another application's tables in the same
    /// database are left alone. chatstore migrate makes the schema anew.
    Reset {
        /// Confirms that every conversation and message of every user goes.
        #[arg(long)]
        yes: bool,
    },
}

/// An RFC 3339 time, or `N` days before now (`90d`).
fn parse_cutoff(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Some(days) = s.strip_suffix('d') {
        let days: i64 = days
            .parse()
            .map_err(|_| format!("{s:?} is neither a number of days (90d) nor an RFC 3339 time"))?;
        return chrono::Duration::try_days(days)
            .and_then(|ago| chrono::Utc::now().checked_sub_signed(ago))
            .ok_or_else(|| format!("{s:?} is too many days"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|e| {
            format!("{s:?} is not an RFC 3339 time (2026-01-31T00:00:00Z) nor days (90d): {e}")
        })
}

fn parse_user(s: &str) -> Result<UserId, String> {
    UserId::new(s).map_err(|e| e.to_string())
}

/// The note on a database whose schema has migrations pending.
const PENDING: &str = "nothing was changed: chatstore migrate applies the pending migrations";

/// Why a command did not succeed: its exit code, what to say, a note to add, and (with
/// `--json`) fields to add to the error object.
struct Failure {
    code: u8,
    message: String,
    note: Option<String>,
    fields: serde_json::Map<String, Value>,
}

impl Failure {
    fn new(code: u8, message: String) -> Self {
        Failure {
            code,
            message,
            note: None,
            fields: serde_json::Map::new(),
        }
    }

    /// Refused or found wanting: exit 1.
    fn refused(message: String) -> Self {
        Failure::new(1, message)
    }

    /// Could not do the work: exit 3.
    fn failed(context: impl AsRef<str>, error: impl std::error::Error) -> Self {
        Failure::new(3, chain(context.as_ref(), &error))
    }

    /// The database is not ready for the command, and nothing was changed: exit 4.
    fn not_ready(message: String, note: &str) -> Self {
        Failure {
            note: Some(note.to_owned()),
            ..Failure::new(4, message)
        }
    }

    /// A store error: not ready if the schema or the file is not there, refused if the data was
    /// at fault, failed otherwise.
    fn store(context: impl AsRef<str>, error: Error) -> Self {
        let message = format!("{}: {error}", context.as_ref());
        match &error {
            Error::MigrationsPending { .. } => Failure::not_ready(message, PENDING),
            Error::DatabaseNotFound { .. } => Failure::not_ready(
                message,
                "nothing was created: chatstore migrate creates the database",
            ),
            _ if refusal(&error) => Failure::refused(message),
            _ => Failure::failed(context, error),
        }
    }

    /// This failure as the `--json` error object.
    fn to_json(&self) -> Value {
        let mut object = serde_json::Map::new();
        object.insert("error".into(), json!(self.message));
        object.insert("code".into(), json!(self.code));
        if let Some(note) = &self.note {
            object.insert("note".into(), json!(note));
        }
        object.extend(self.fields.clone());
        Value::Object(object)
    }
}

/// Whether the store refused the data itself (an input error, or a clash with what it holds),
/// rather than failing to run.
fn refusal(error: &Error) -> bool {
    error.is_invalid_input() || error.is_conflict()
}

type Outcome = Result<(), Failure>;

/// Where a command's result goes.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// How results are written: as text for people, or as one JSON object each (`--json`).
#[derive(Clone, Copy)]
struct Report {
    json: bool,
}

impl Report {
    /// Writes a result to `stream`: `text` (whole lines), or `value` as one line of JSON. A
    /// closed pipe is an error of the command (exit 3), not a panic.
    fn emit(self, stream: Stream, text: &str, value: &Value) -> Outcome {
        let written = match self.json {
            true => format!("{value}\n"),
            false => text.to_owned(),
        };
        let (name, result) = match stream {
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                let result = out.write_all(written.as_bytes()).and_then(|()| out.flush());
                ("standard output", result)
            }
            Stream::Stderr => (
                "standard error",
                io::stderr().lock().write_all(written.as_bytes()),
            ),
        };
        result.map_err(|e| Failure::failed(format!("writing {name}"), e))
    }

    /// Writes a result to standard output.
    fn result(self, text: &str, value: &Value) -> Outcome {
        self.emit(Stream::Stdout, text, value)
    }

    /// A note on standard error, in text mode only: with `--json` the result holds what it says.
    fn note(self, text: &str) {
        if !self.json {
            // Nothing more can be done if standard error is gone.
            let _ = writeln!(io::stderr(), "note: {text}");
        }
    }

    /// Reports `failure` on standard error.
    fn failure(self, failure: &Failure) {
        let text = match self.json {
            true => failure.to_json().to_string(),
            false => match &failure.note {
                Some(note) => format!("error: {}\n{note}", failure.message),
                None => format!("error: {}", failure.message),
            },
        };
        // Nothing more can be done if standard error is gone.
        let _ = writeln!(io::stderr(), "{text}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = match cli
        .database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
    {
        Some(url) if !url.is_empty() => url,
        _ => Cli::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "no database: pass --database-url URL or set DATABASE_URL",
            )
            .exit(),
    };
    let report = Report { json: cli.json };
    match run(&url, cli.command, report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            report.failure(&failure);
            ExitCode::from(failure.code)
        }
    }
}

/// `context: error`, then each cause the text so far does not already hold.
fn chain(context: &str, error: &impl std::error::Error) -> String {
    let mut text = format!("{context}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!("\n  caused by: {cause_text}"));
        }
        source = cause.source();
    }
    text
}

fn run(url: &str, command: Command, report: Report) -> Outcome {
    match command {
        Command::Migrate => migrate(&open(url, Migrations::Apply)?, report),
        Command::Verify => verify(url, report),
        Command::Stats => stats(&open(url, Migrations::Verify)?, report),
        Command::Index => index(&open(url, Migrations::Verify)?, report),
        Command::Export { user, output } => {
            export(&open(url, Migrations::Verify)?, &user, &output, report)
        }
        Command::Import {
            user,
            input,
            skip_existing,
        } => import(
            &open(url, Migrations::Verify)?,
            &input,
            &Target {
                user,
                skip_existing,
            },
            report,
        ),
        Command::DeleteUser { user, yes } => {
            // Refused before the database is even opened.
            confirmed(
                yes,
                &format!(
                    "refusing to delete every conversation and message of user {:?} without --yes",
                    user.as_str()
                ),
            )?;
            delete_user(&open(url, Migrations::Verify)?, &user, report)
        }
        Command::Purge {
            not_updated_since,
            user,
            batch,
            dry_run,
            yes,
        } => {
            if !dry_run {
                confirmed(
                    yes,
                    "refusing to delete the conversations not updated since the cutoff without \
                     --yes (--dry-run counts them)",
                )?;
            }
            let mut retention = Retention::not_updated_since(not_updated_since).batch_size(batch);
            if let Some(user) = user {
                retention = retention.of_user(user);
            }
            purge(&open(url, Migrations::Verify)?, &retention, dry_run, report)
        }
        Command::Reset { yes } => {
            confirmed(
                yes,
                "refusing to drop chatstore's tables, with every user's conversations and \
                 messages, without --yes",
            )?;
            reset(url, report)
        }
    }
}

/// The store at `url`, to open doing `migrations` with its schema.
fn builder(url: &str, migrations: Migrations) -> StoreBuilder {
    // One connection: the tool makes one call at a time. It also means no connection is still
    // being made in the background when the process exits, which crashed libpq now and then.
    // The URL is never echoed: it may hold a password.
    ChatStore::builder(url).pool_size(1).migrations(migrations)
}

/// Opens the store at `url`, doing `migrations` with its schema.
fn open(url: &str, migrations: Migrations) -> Result<ChatStore, Failure> {
    builder(url, migrations)
        .open()
        .map_err(|e| Failure::store("opening the database", e))
}

/// Refused (exit 1) with `refusal` unless the operator confirmed with `--yes`.
fn confirmed(yes: bool, refusal: &str) -> Outcome {
    match yes {
        true => Ok(()),
        false => Err(Failure::refused(refusal.to_owned())),
    }
}

fn migrate(store: &ChatStore, report: Report) -> Outcome {
    let applied = store.migrations_applied_at_open();
    let resumed = store.migrations_resumed_at_open();
    // MySQL: a run cut short (a killed process) had left these half applied; this one finished
    // them. Worth knowing when the tool is run to repair a database after a crash.
    for version in resumed {
        report.note(&format!(
            "migration {version} had been left half applied by an interrupted run; \
             this run completed it"
        ));
    }
    let text = match applied.is_empty() {
        true => "the schema is up to date: no migration was pending\n".to_owned(),
        false => applied
            .iter()
            .map(|version| format!("applied migration {version}\n"))
            .collect(),
    };
    report.result(&text, &json!({"applied": applied, "resumed": resumed}))
}

/// Reports the pending migrations and the schema objects, changing nothing: a database that is
/// not up to date is opened without migrating, to show what it has.
fn verify(url: &str, report: Report) -> Outcome {
    let (store, pending) = match builder(url, Migrations::Verify).open() {
        Ok(store) => (store, Vec::new()),
        Err(Error::MigrationsPending { pending }) => (open(url, Migrations::Skip)?, pending),
        Err(e) => return Err(Failure::store("opening the database", e)),
    };
    let schema = store
        .verify_schema()
        .map_err(|e| Failure::store("verifying the schema", e))?;
    report.result(
        &verify_text(&schema, &pending),
        &verify_json(&schema, &pending),
    )?;
    verify_outcome(&schema, &pending)
}

/// The verify report for people: one line per object (left out when the database has none of
/// chatstore's), then one per pending migration.
fn verify_text(schema: &SchemaReport, pending: &[String]) -> String {
    let mut text = match schema.items.iter().any(|item| item.present) || pending.is_empty() {
        true => schema.to_string(),
        false => String::new(),
    };
    for version in pending {
        text.push_str(&format!("pending migration {version}\n"));
    }
    text
}

fn verify_json(schema: &SchemaReport, pending: &[String]) -> Value {
    let items: Vec<Value> = schema
        .items
        .iter()
        .map(|item| json!({"kind": item.kind.to_string(), "name": item.name, "present": item.present}))
        .collect();
    json!({
        "complete": pending.is_empty() && schema.is_complete(),
        "pending": pending,
        "items": items,
    })
}

/// Pending migrations come first (exit 4): applying them may well make the missing objects.
fn verify_outcome(schema: &SchemaReport, pending: &[String]) -> Outcome {
    let missing = schema.missing().count();
    match (pending.len(), missing) {
        (0, 0) => Ok(()),
        (0, missing) => Err(Failure::refused(format!(
            "{missing} schema object(s) missing"
        ))),
        (n, _) if missing == schema.items.len() => Err(Failure::not_ready(
            format!("the database has no chatstore schema: {n} migration(s) pending"),
            "nothing was changed: chatstore migrate makes the schema",
        )),
        (n, 0) => Err(Failure::not_ready(
            format!("{n} migration(s) pending"),
            PENDING,
        )),
        (n, missing) => Err(Failure::not_ready(
            format!("{n} migration(s) pending, {missing} schema object(s) missing"),
            PENDING,
        )),
    }
}

fn stats(store: &ChatStore, report: Report) -> Outcome {
    let stats = store.stats().map_err(|e| Failure::store("counting", e))?;
    let text = format!(
        "users          {}\nconversations  {}\nmessages       {}\n",
        stats.users, stats.conversations, stats.messages
    );
    let value = serde_json::to_value(stats).map_err(|e| Failure::failed("writing JSON", e))?;
    report.result(&text, &value)
}

fn index(store: &ChatStore, report: Report) -> Outcome {
    let indexed = store
        .index_pending()
        .map_err(|e| Failure::store("indexing", e))?;
    report.result(
        &format!("indexed {indexed} message(s)\n"),
        &json!({ "indexed": indexed }),
    )
}

/// Drops chatstore's own tables: `drop_schema` names only those, never a host's.
fn reset(url: &str, report: Report) -> Outcome {
    builder(url, Migrations::Skip)
        .drop_schema()
        .map_err(|e| Failure::store("dropping chatstore's schema", e))?;
    report.result(
        "dropped chatstore's tables and its version table; no other table was touched\n",
        &json!({"reset": true}),
    )
}

/// A progress display on standard error, drawn only when that is a terminal.
fn progress(total: Option<u64>, template: &str) -> ProgressBar {
    let target = match io::stderr().is_terminal() {
        true => ProgressDrawTarget::stderr(),
        false => ProgressDrawTarget::hidden(),
    };
    let bar = ProgressBar::with_draw_target(total, target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn export(store: &ChatStore, user: &UserId, output: &str, report: Report) -> Outcome {
    // The summary goes where the data does not.
    let (counts, summary) = match output {
        "-" => {
            let target = "standard output";
            let mut out = BufWriter::new(io::stdout().lock());
            let counts = write_export(store, user, &mut out, target)?;
            out.flush()
                .map_err(|e| Failure::failed(format!("writing {target}"), e))?;
            (counts, Stream::Stderr)
        }
        path => (export_to_file(store, user, path)?, Stream::Stdout),
    };
    report.emit(
        summary,
        &format!(
            "exported {} conversations, {} messages\n",
            counts.conversations, counts.messages
        ),
        &json!({
            "user": user.as_str(),
            "conversations": counts.conversations,
            "messages": counts.messages,
        }),
    )
}

/// Writes the export to `FILE.partial`, readable by its owner only (it is personal data), syncs
/// it to disk, and renames it to `output`: the file appears only once it is complete and durable.
/// Whatever fails, the partial file goes with it (see [`Partial`]).
fn export_to_file(
    store: &ChatStore,
    user: &UserId,
    output: &str,
) -> Result<chatstore::ExportCounts, Failure> {
    let partial = Partial::create(PathBuf::from(format!("{output}.partial")))?;
    let target = partial.path.display().to_string();
    let writing = |e| Failure::failed(format!("writing {target}"), e);
    let mut out = BufWriter::new(&partial.file);
    let counts = write_export(store, user, &mut out, &target)?;
    out.flush().map_err(writing)?;
    drop(out);
    partial.file.sync_all().map_err(writing)?;
    partial.rename_to(output)?;
    Ok(counts)
}

/// An export being written: a file of this process's own, removed when this is dropped unless it
/// was renamed into place, so that no failure (an error returned anywhere, a panic) leaves a copy
/// of the user's data behind — nor an interruption: while it exists, SIGINT, SIGTERM and SIGHUP
/// remove it before the process dies of them (see [`remove_on_signals`]). Only SIGKILL, which no
/// program can catch, leaves it.
struct Partial {
    path: PathBuf,
    file: File,
    kept: bool,
}

/// The partial export this process is writing, for the signal handler. Held while the file is
/// renamed or removed, so that a signal arriving then waits for the outcome instead of racing it.
static WRITING: Mutex<Option<PathBuf>> = Mutex::new(None);

fn writing() -> MutexGuard<'static, Option<PathBuf>> {
    // Poisoned only by a panic while the guard was held; the path in it is still right.
    WRITING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// From now on, SIGINT, SIGTERM and SIGHUP first remove the partial export, if one is being
/// written, then end the process as they would have without this (killed by that signal): a
/// thread waits for them, so nothing is done inside a signal handler but recording the signal.
#[cfg(unix)]
fn remove_on_signals() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Held until the process is gone: the export can neither be renamed into place
                // nor left half-written after this.
                let partial = writing();
                if let Some(path) = partial.as_ref() {
                    let _ = std::fs::remove_file(path);
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                // Not reached for these signals, whose default is to end the process.
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

#[cfg(not(unix))]
fn remove_on_signals() -> io::Result<()> {
    Ok(())
}

impl Partial {
    /// Creates the file afresh, owner-only on Unix (0600). A file of that name left by an earlier
    /// run is removed first rather than reused: its permissions could be anyone's, and a symbolic
    /// link there would be followed.
    fn create(path: PathBuf) -> Result<Partial, Failure> {
        let creating = |e| Failure::failed(format!("creating {}", path.display()), e);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(creating(e)),
            _ => {}
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        remove_on_signals().map_err(|e| Failure::failed("watching for signals", e))?;
        let mut registered = writing();
        let file = options.open(&path).map_err(creating)?;
        *registered = Some(path.clone());
        Ok(Partial {
            path,
            file,
            kept: false,
        })
    }

    /// Renames the file to `output`; on failure it is removed (by `drop`).
    fn rename_to(mut self, output: &str) -> Result<(), Failure> {
        let mut registered = writing();
        std::fs::rename(&self.path, output)
            .map_err(|e| Failure::failed(format!("renaming to {output}"), e))?;
        self.kept = true;
        *registered = None;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let mut registered = writing();
        if !self.kept {
            // What was written is not an export: it goes. Nothing more can be done if it cannot.
            let _ = std::fs::remove_file(&self.path);
        }
        *registered = None;
    }
}

fn write_export(
    store: &ChatStore,
    user: &UserId,
    out: &mut impl Write,
    target: &str,
) -> Result<chatstore::ExportCounts, Failure> {
    let bar = progress(
        None,
        "{spinner} exporting: {pos} messages, {msg} conversations [{elapsed}]",
    );
    let mut items = store.export_user(user);
    let mut conversations = 0u64;
    for item in items.by_ref() {
        let item = item.map_err(|e| Failure::store("reading the user's data", e))?;
        match &item {
            ExportItem::Message(_) => bar.inc(1),
            ExportItem::Conversation(_) => {
                conversations += 1;
                bar.set_message(conversations.to_string());
            }
            _ => {}
        }
        serde_json::to_writer(&mut *out, &item)
            .map_err(|e| Failure::failed(format!("writing {target}"), e))?;
        out.write_all(b"\n")
            .map_err(|e| Failure::failed(format!("writing {target}"), e))?;
    }
    bar.finish_and_clear();
    Ok(items.counts())
}

/// A conversation being read: its record's line, the record, and its branches and messages so far.
struct Pending {
    line: u64,
    conversation: Conversation,
    branches: Vec<Branch>,
    messages: Vec<Message>,
}

/// Whose data an import writes, and whether it skips what is stored.
struct Target {
    user: UserId,
    skip_existing: bool,
}

/// What an import did.
#[derive(Default)]
struct Imported {
    conversations: u64,
    messages: u64,
    skipped: u64,
}

fn import(store: &ChatStore, input: &str, target: &Target, report: Report) -> Outcome {
    let (reader, size): (Box<dyn Read>, Option<u64>) = match input {
        "-" => (Box::new(io::stdin().lock()), None),
        path => {
            let file =
                File::open(path).map_err(|e| Failure::failed(format!("opening {path}"), e))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size)
        }
    };
    let source = match input {
        "-" => "standard input".to_owned(),
        path => path.to_owned(),
    };
    let bar = match size {
        Some(size) => progress(
            Some(size),
            "{bar:30} {bytes}/{total_bytes} imported: {msg} [{elapsed}]",
        ),
        None => progress(None, "{spinner} imported: {msg} [{elapsed}]"),
    };
    let mut done = Imported::default();
    bar.set_message("0 conversations, 0 messages");
    let result = read_import(
        store,
        BufReader::new(reader),
        &source,
        target,
        &bar,
        &mut done,
    );
    bar.finish_and_clear();
    let summary = format!(
        "imported {} conversations, {} messages{}",
        done.conversations,
        done.messages,
        match done.skipped {
            0 => String::new(),
            n => format!("; skipped {n} already stored"),
        }
    );
    let value = json!({
        "user": target.user.as_str(),
        "conversations": done.conversations,
        "messages": done.messages,
        "skipped": done.skipped,
    });
    match result {
        Ok(()) => report.result(&format!("{summary}\n"), &value),
        Err(mut failure) => {
            failure.note = Some(format!("{summary} before the error"));
            failure.fields.insert("imported".into(), value);
            Err(failure)
        }
    }
}

fn read_import(
    store: &ChatStore,
    mut reader: impl BufRead,
    source: &str,
    target: &Target,
    bar: &ProgressBar,
    done: &mut Imported,
) -> Outcome {
    let mut pending: Option<Pending> = None;
    let mut line = String::new();
    let mut number = 0u64;
    let mut read = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => {
                Failure::refused(format!("{source}, line {}: not UTF-8", number + 1))
            }
            _ => Failure::failed(format!("reading {source} after line {number}"), e),
        })?;
        if n == 0 {
            break;
        }
        number += 1;
        read += n as u64;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let item: ExportItem = serde_json::from_str(text)
            .map_err(|e| Failure::refused(format!("{source}, line {number}{}", json_error(&e))))?;
        match item {
            ExportItem::Conversation(conversation) => {
                if let Some(previous) = pending.take() {
                    write(store, previous, target, bar, done)?;
                }
                pending = Some(Pending {
                    line: number,
                    conversation,
                    branches: Vec::new(),
                    messages: Vec::new(),
                });
            }
            ExportItem::Branch(branch) => match &mut pending {
                Some(p) if p.messages.is_empty() => p.branches.push(branch),
                Some(p) => {
                    return Err(Failure::refused(format!(
                        "{source}, line {number}: a branch record after the messages of \
                         conversation {} (line {}): its branches come first",
                        p.conversation.id, p.line
                    )))
                }
                None => {
                    return Err(Failure::refused(format!(
                        "{source}, line {number}: a branch record before any conversation record"
                    )))
                }
            },
            ExportItem::Message(message) => match &mut pending {
                Some(p) if p.conversation.id == message.conversation_id => p.messages.push(message),
                Some(p) => {
                    return Err(Failure::refused(format!(
                        "{source}, line {number}: a message of conversation {} among the \
                         messages of conversation {} (line {})",
                        message.conversation_id, p.conversation.id, p.line
                    )))
                }
                None => {
                    return Err(Failure::refused(format!(
                        "{source}, line {number}: a message before any conversation record"
                    )))
                }
            },
            _ => {
                return Err(Failure::refused(format!(
                    "{source}, line {number}: a record this version cannot import"
                )))
            }
        }
        bar.set_position(read);
    }
    if let Some(last) = pending {
        write(store, last, target, bar, done)?;
    }
    Ok(())
}

/// Imports one conversation with its branches and messages.
fn write(
    store: &ChatStore,
    p: Pending,
    target: &Target,
    bar: &ProgressBar,
    done: &mut Imported,
) -> Outcome {
    let counts = |done: &Imported| {
        format!(
            "{} conversations, {} messages",
            done.conversations, done.messages
        )
    };
    bar.set_message(format!(
        "{}; writing {} more",
        counts(done),
        p.messages.len()
    ));
    match store.import_tree(&target.user, &p.conversation, &p.branches, &p.messages) {
        Ok(()) => {
            done.conversations += 1;
            done.messages += p.messages.len() as u64;
            bar.set_message(counts(done));
            Ok(())
        }
        Err(Error::AlreadyExists(_)) if target.skip_existing => {
            done.skipped += 1;
            Ok(())
        }
        Err(e) => Err(Failure::store(
            format!(
                "conversation {} (line {}) was not imported",
                p.conversation.id, p.line
            ),
            e,
        )),
    }
}

/// `, column 7: what` for a JSON error: serde_json's own position ("at line 1 column 7") counts
/// lines within the one line it was given.
fn json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(message, _)| message);
    match error.column() {
        0 => format!(": {message}"),
        column => format!(", column {column}: {message}"),
    }
}

fn purge(store: &ChatStore, retention: &Retention, dry_run: bool, report: Report) -> Outcome {
    let counts = match dry_run {
        true => store
            .purge_preview(retention)
            .map_err(|e| Failure::store("counting what the purge would delete", e))?,
        false => {
            let bar = progress(None, "{spinner} deleted: {msg} [{elapsed}]");
            let deleted = store.purge(retention, |so_far: &DeletedCounts| {
                bar.set_message(format!(
                    "{} conversations, {} messages",
                    so_far.conversations, so_far.messages
                ));
                std::ops::ControlFlow::Continue(())
            });
            bar.finish_and_clear();
            deleted.map_err(|e| Failure::store("purging", e))?
        }
    };
    let cutoff = retention
        .cutoff()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let whose = match retention.user() {
        Some(user) => format!(" of user {:?}", user.as_str()),
        None => String::new(),
    };
    let verb = match dry_run {
        true => "would delete",
        false => "deleted",
    };
    report.result(
        &format!(
            "{verb} {} conversations, {} messages{whose} not updated since {cutoff}\n",
            counts.conversations, counts.messages
        ),
        &json!({
            "cutoff": cutoff,
            "user": retention.user().map(UserId::as_str),
            "dry_run": dry_run,
            "conversations": counts.conversations,
            "messages": counts.messages,
        }),
    )
}

fn delete_user(store: &ChatStore, user: &UserId, report: Report) -> Outcome {
    let deleted = store
        .delete_user_data(user)
        .map_err(|e| Failure::store("deleting the user's data", e))?;
    report.result(
        &format!(
            "deleted {} conversations, {} messages of user {:?}\n",
            deleted.conversations,
            deleted.messages,
            user.as_str()
        ),
        &json!({
            "user": user.as_str(),
            "conversations": deleted.conversations,
            "messages": deleted.messages,
        }),
    )
}

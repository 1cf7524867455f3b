//! MySQL's migrations, run statement by statement, each guarded by the catalog.
//!
//! MySQL and MariaDB commit every DDL statement on its own and cannot roll one back, so a process
//! killed in the middle of a migration leaves part of it applied and its version unrecorded; run
//! again as a batch, it fails on the first statement that already took effect. So each statement
//! of a MySQL migration is parsed into a [`Step`] that names the object it creates (or removes),
//! and before it runs, `information_schema` says whether that object is already in `DATABASE()`
//! (or already gone): if it is (in the shape the statement makes), the statement is skipped. A migration is thereby safe to run again
//! after a crash at any point, on MySQL 8 as well as MariaDB (MySQL has no `ADD COLUMN IF NOT
//! EXISTS` nor `CREATE INDEX IF NOT EXISTS`).
//!
//! Each statement is atomic on its own (MariaDB 10.6+ and MySQL 8 have atomic DDL), and the server
//! finishes a statement whose client died, so "present" or "absent" is all a statement can be.
//!
//! Only the shapes below are understood, and a unit test parses every embedded MySQL migration: a
//! statement of another shape (data changes included: they are not safe to repeat) fails that test,
//! not a user's database. To add a shape, give [`Step`] a variant, its parse and its catalog check.

use std::fmt;

use diesel::connection::{BoxableConnection, SimpleConnection};
use diesel::migration::MigrationSource;
use diesel::mysql::{Mysql, MysqlConnection};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_migrations::EmbeddedMigrations;

use crate::{Error, Result};

/// One embedded MySQL migration, its statements parsed.
#[derive(Debug)]
pub(crate) struct Migration {
    /// Its folder's name, such as `2026-11-25-000003_message_search`.
    pub(crate) name: String,
    /// Its version, such as `20261125000003`.
    pub(crate) version: String,
    pub(crate) statements: Vec<Statement>,
}

/// A statement of a migration and what it creates.
#[derive(Debug)]
pub(crate) struct Statement {
    /// The statement as written (comments between its words kept, the final `;` dropped).
    pub(crate) sql: String,
    pub(crate) step: Step,
}

/// What a statement creates, as far as the catalog check needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `CREATE TABLE name (columns and constraints) options`.
    CreateTable { table: String, columns: Vec<Column> },
    /// `CREATE [UNIQUE] INDEX name ON table (column [ASC|DESC], …)`.
    CreateIndex {
        index: String,
        table: String,
        unique: bool,
        columns: Vec<String>,
    },
    /// `ALTER TABLE table ADD [COLUMN] name type …`, one clause.
    AddColumn { table: String, column: Column },
    /// `DROP INDEX name ON table`: done once the index is gone.
    DropIndex { index: String, table: String },
}

/// A column as a statement declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    /// The type's name as `information_schema.COLUMNS.DATA_TYPE` spells it (`longtext`, `int`).
    pub(crate) data_type: String,
    pub(crate) nullable: bool,
}

impl fmt::Display for Step {
    /// The object: `table chatstore_messages`, `index chatstore_messages_system on
    /// chatstore_messages`, `column chatstore_messages.search_text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateTable { table, .. } => write!(f, "table {table}"),
            Step::CreateIndex { index, table, .. } => write!(f, "index {index} on {table}"),
            Step::AddColumn { table, column } => write!(f, "column {table}.{}", column.name),
            Step::DropIndex { index, table } => {
                write!(f, "the removal of index {index} on {table}")
            }
        }
    }
}

/// What the catalog holds of a step's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Not there: the statement must run.
    Absent,
    /// There, in the shape the statement makes: the statement took effect before.
    Present,
    /// There, but not as the statement makes it: what differs.
    Differs(String),
}

/// Every migration of `source`, its statements parsed. Fails on a statement whose shape this
/// module does not know (the unit tests make sure none ships).
pub(crate) fn load(source: &EmbeddedMigrations) -> Result<Vec<Migration>> {
    let migrations = MigrationSource::<Mysql>::migrations(source).map_err(Error::migration)?;
    migrations
        .iter()
        .map(|migration| {
            let name = migration.name().to_string();
            let mut reader = ReadSql(None);
            migration.run(&mut reader).map_err(Error::migration)?;
            let sql = reader.0.unwrap_or_default();
            let statements = parse_migration(&sql).map_err(|unguarded| {
                Error::migration(UnguardedStatement {
                    migration: name.clone(),
                    reason: unguarded,
                })
            })?;
            Ok(Migration {
                version: migration.name().version().to_string(),
                name,
                statements,
            })
        })
        .collect()
}

/// Stands in for a connection to read an embedded migration's SQL: diesel_migrations runs a
/// migration by handing its whole `up.sql` to `batch_execute`, and keeps the text private otherwise.
struct ReadSql(Option<String>);

impl SimpleConnection for ReadSql {
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.0 = Some(query.to_owned());
        Ok(())
    }
}

impl BoxableConnection<Mysql> for ReadSql {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A migration holds a statement this module cannot guard.
#[derive(Debug)]
struct UnguardedStatement {
    migration: String,
    reason: String,
}

impl fmt::Display for UnguardedStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "migration {} cannot be run safely on MySQL: {}",
            self.migration, self.reason
        )
    }
}

impl std::error::Error for UnguardedStatement {}

/// A statement of a migration failed.
#[derive(Debug)]
pub(crate) struct StatementFailed {
    pub(crate) migration: String,
    pub(crate) step: String,
    pub(crate) source: diesel::result::Error,
}

impl fmt::Display for StatementFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            // The driver's words are the source, not this text.
            "migration {} failed at {}",
            self.migration, self.step
        )
    }
}

impl std::error::Error for StatementFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Runs `statement` of `migration`.
pub(crate) fn execute(
    conn: &mut MysqlConnection,
    migration: &Migration,
    statement: &Statement,
) -> Result<()> {
    conn.batch_execute(&statement.sql).map_err(|source| {
        Error::migration(StatementFailed {
            migration: migration.name.clone(),
            step: statement.step.to_string(),
            source,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// The catalog check.

#[derive(QueryableByName)]
struct CatalogColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    nullable: String,
}

#[derive(QueryableByName)]
struct IndexColumn {
    /// NULL for an expression (MySQL 8's functional indexes).
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = BigInt)]
    non_unique: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// What the catalog of `DATABASE()` holds of `step`'s object.
pub(crate) fn state(conn: &mut MysqlConnection, step: &Step) -> Result<State> {
    match step {
        Step::CreateTable { table, columns } => {
            let exists: Count = diesel::sql_query(
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?",
            )
            .bind::<Text, _>(table)
            .get_result(conn)?;
            if exists.n == 0 {
                return Ok(State::Absent);
            }
            let found = table_columns(conn, table)?;
            // Later migrations may have added columns: only the declared ones are compared.
            for column in columns {
                if let Some(difference) = column_difference(table, column, &found) {
                    return Ok(State::Differs(difference));
                }
            }
            Ok(State::Present)
        }
        Step::AddColumn { table, column } => {
            let found = table_columns(conn, table)?;
            if !found
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&column.name))
            {
                return Ok(State::Absent);
            }
            Ok(column_difference(table, column, &found).map_or(State::Present, State::Differs))
        }
        Step::CreateIndex {
            index,
            table,
            unique,
            columns,
        } => {
            let found: Vec<IndexColumn> = diesel::sql_query(
                "SELECT CAST(column_name AS CHAR) AS name, CAST(non_unique AS SIGNED) AS non_unique \
                 FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ? \
                 ORDER BY seq_in_index",
            )
            .bind::<Text, _>(table)
            .bind::<Text, _>(index)
            .load(conn)?;
            if found.is_empty() {
                return Ok(State::Absent);
            }
            let names: Vec<String> = found
                .iter()
                .map(|c| c.name.clone().unwrap_or_else(|| "(expression)".into()))
                .collect();
            let same_columns = names.len() == columns.len()
                && names
                    .iter()
                    .zip(columns)
                    .all(|(found, declared)| found.eq_ignore_ascii_case(declared));
            let found_unique = found.iter().all(|c| c.non_unique == 0);
            if !same_columns || found_unique != *unique {
                let kind = |unique: bool| if unique { "a unique index" } else { "an index" };
                return Ok(State::Differs(format!(
                    "index {index} on {table} is {} on ({}), the migration makes {} on ({})",
                    kind(found_unique),
                    names.join(", "),
                    kind(*unique),
                    columns.join(", ")
                )));
            }
            Ok(State::Present)
        }
        Step::DropIndex { index, table } => {
            let found: Count = diesel::sql_query(
                "SELECT COUNT(*) AS n FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?",
            )
            .bind::<Text, _>(table)
            .bind::<Text, _>(index)
            .get_result(conn)?;
            // The statement's work is the index's absence.
            Ok(if found.n == 0 {
                State::Present
            } else {
                State::Absent
            })
        }
    }
}

fn table_columns(conn: &mut MysqlConnection, table: &str) -> Result<Vec<CatalogColumn>> {
    Ok(diesel::sql_query(
        "SELECT CAST(column_name AS CHAR) AS name, CAST(LOWER(data_type) AS CHAR) AS data_type, \
         CAST(is_nullable AS CHAR) AS nullable \
         FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?",
    )
    .bind::<Text, _>(table)
    .load(conn)?)
}

/// How the catalog's column differs from the declared one, if it does (or is missing).
fn column_difference(table: &str, declared: &Column, found: &[CatalogColumn]) -> Option<String> {
    let Some(column) = found
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(&declared.name))
    else {
        return Some(format!(
            "table {table} has no column {}, which the migration makes",
            declared.name
        ));
    };
    let nullable = column.nullable.eq_ignore_ascii_case("YES");
    if column.data_type != declared.data_type || nullable != declared.nullable {
        let null = |nullable: bool| if nullable { "NULL" } else { "NOT NULL" };
        return Some(format!(
            "column {table}.{} is {} {}, the migration makes it {} {}",
            declared.name,
            column.data_type,
            null(nullable),
            declared.data_type,
            null(declared.nullable)
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Parsing: a small lexer for MySQL's syntax (comments, quotes) and a reader of the shapes above.

/// A token of MySQL's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A keyword, an unquoted name or a number.
    Word(&'a str),
    /// A name in backquotes, without them.
    Quoted(&'a str),
    /// A string literal.
    Text,
    /// Any other character.
    Punct(char),
}

/// A token and where it is in the text.
#[derive(Debug, Clone, Copy)]
struct Lexed<'a> {
    token: Token<'a>,
    start: usize,
    end: usize,
}

/// The statements of a migration's SQL, each parsed.
fn parse_migration(sql: &str) -> Result<Vec<Statement>, String> {
    let tokens = lex(sql)?;
    tokens
        .split(|t| t.token == Token::Punct(';'))
        .filter(|statement| !statement.is_empty())
        .map(|lexed| {
            let (first, last) = (lexed[0], lexed[lexed.len() - 1]);
            let text = &sql[first.start..last.end];
            let tokens: Vec<Token<'_>> = lexed.iter().map(|l| l.token).collect();
            let step = parse(&tokens).map_err(|reason| {
                let start: String = text
                    .split_whitespace()
                    .take(6)
                    .collect::<Vec<_>>()
                    .join(" ");
                format!("\"{start} …\": {reason}")
            })?;
            Ok(Statement {
                sql: text.to_owned(),
                step,
            })
        })
        .collect()
}

fn lex(sql: &str) -> Result<Vec<Lexed<'_>>, String> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        let start = at;
        let rest = &sql[at..];
        if c.is_ascii_whitespace() {
            at += 1;
        } else if rest.starts_with("--") || c == b'#' {
            at += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*!") {
            // Run by MySQL, hidden from this reader: refused rather than guessed at.
            return Err("an executable comment (/*! … */) cannot be checked".into());
        } else if rest.starts_with("/*") {
            at += rest
                .find("*/")
                .ok_or("a comment is not closed")?
                .saturating_add(2);
        } else if matches!(c, b'\'' | b'"' | b'`') {
            at = closing_quote(bytes, at).ok_or("a quote is not closed")?;
            tokens.push(Lexed {
                token: match c {
                    b'`' => Token::Quoted(&sql[start + 1..at - 1]),
                    _ => Token::Text,
                },
                start,
                end: at,
            });
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            while at < bytes.len()
                && (bytes[at].is_ascii_alphanumeric()
                    || bytes[at] == b'_'
                    || bytes[at] == b'$'
                    || bytes[at] >= 0x80)
            {
                at += 1;
            }
            tokens.push(Lexed {
                token: Token::Word(&sql[start..at]),
                start,
                end: at,
            });
        } else {
            // ASCII: one byte, one character.
            at += 1;
            tokens.push(Lexed {
                token: Token::Punct(char::from(c)),
                start,
                end: at,
            });
        }
    }
    Ok(tokens)
}

/// The index just past the quote that closes the one at `open` (a doubled quote, or a backslash in
/// a string, escapes it).
fn closing_quote(bytes: &[u8], open: usize) -> Option<usize> {
    let quote = bytes[open];
    let mut at = open + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if quote != b'`' => at += 2,
            c if c == quote => {
                if bytes.get(at + 1) == Some(&quote) {
                    at += 2;
                } else {
                    return Some(at + 1);
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// Reads tokens from the front.
struct Reader<'t, 'a> {
    tokens: &'t [Token<'a>],
}

impl<'t, 'a> Reader<'t, 'a> {
    /// Takes the keyword `word` if it comes next.
    fn keyword(&mut self, word: &str) -> bool {
        match self.tokens.first() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.tokens = &self.tokens[1..];
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        match self.keyword(word) {
            true => Ok(()),
            false => Err(format!("expected {word}")),
        }
    }

    /// A name, quoted or not (not a keyword that starts a clause).
    fn name(&mut self) -> Result<String, String> {
        match self.tokens.first() {
            Some(Token::Word(w)) if !is_clause_keyword(w) => {
                self.tokens = &self.tokens[1..];
                Ok(w.to_string())
            }
            Some(Token::Quoted(q)) => {
                self.tokens = &self.tokens[1..];
                Ok(q.replace("``", "`"))
            }
            _ => Err("expected a name".into()),
        }
    }

    /// The tokens inside the parenthesized group that comes next.
    fn group(&mut self) -> Result<&'t [Token<'a>], String> {
        if self.tokens.first() != Some(&Token::Punct('(')) {
            return Err("expected (".into());
        }
        let mut depth = 0;
        for (i, token) in self.tokens.iter().enumerate() {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        let inside = &self.tokens[1..i];
                        self.tokens = &self.tokens[i + 1..];
                        return Ok(inside);
                    }
                }
                _ => {}
            }
        }
        Err("a parenthesis is not closed".into())
    }

    fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Words that start a table's constraint or index rather than name a column.
fn is_clause_keyword(word: &str) -> bool {
    [
        "CONSTRAINT",
        "PRIMARY",
        "UNIQUE",
        "KEY",
        "INDEX",
        "FOREIGN",
        "CHECK",
        "FULLTEXT",
        "SPATIAL",
        "PERIOD",
    ]
    .iter()
    .any(|k| word.eq_ignore_ascii_case(k))
}

/// The step a statement's tokens make, or why it is not one this module can guard.
fn parse(tokens: &[Token<'_>]) -> Result<Step, String> {
    let mut r = Reader { tokens };
    if r.keyword("CREATE") {
        if r.keyword("TABLE") {
            return create_table(&mut r);
        }
        let unique = r.keyword("UNIQUE");
        if r.keyword("INDEX") {
            return create_index(&mut r, unique);
        }
    } else if r.keyword("ALTER") {
        r.expect("TABLE")?;
        let table = r.name()?;
        r.expect("ADD")?;
        r.keyword("COLUMN");
        let definition = r.tokens;
        if split_commas(definition).len() != 1 {
            return Err("an ALTER TABLE of several clauses is not guarded as one".into());
        }
        let column = column(definition)?;
        return Ok(Step::AddColumn { table, column });
    } else if r.keyword("DROP") {
        r.expect("INDEX")?;
        let index = r.name()?;
        r.expect("ON")?;
        let table = r.name()?;
        if !r.tokens.is_empty() {
            return Err("only DROP INDEX name ON table is guarded".into());
        }
        return Ok(Step::DropIndex { index, table });
    }
    Err(
        "only CREATE TABLE, CREATE [UNIQUE] INDEX, ALTER TABLE … ADD COLUMN and DROP INDEX … ON … \
         are guarded"
            .into(),
    )
}

fn create_table(r: &mut Reader<'_, '_>) -> Result<Step, String> {
    if r.keyword("IF") {
        return Err("IF NOT EXISTS is not needed (the catalog check guards it)".into());
    }
    let table = r.name()?;
    let body = r.group()?;
    // Table options only: `AS SELECT`, `LIKE` or partitions would make more than a table.
    for token in r.tokens {
        match token {
            Token::Word(w)
                if ["SELECT", "AS", "LIKE", "IGNORE", "REPLACE", "PARTITION"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                return Err(format!("{w} after a table's definition is not guarded"));
            }
            Token::Punct('(') => return Err("a group after a table's definition".into()),
            _ => {}
        }
    }
    let mut columns = Vec::new();
    let mut primary_key: Vec<String> = Vec::new();
    for element in split_commas(body) {
        match element.first() {
            Some(Token::Word(w)) if is_clause_keyword(w) => {
                // A table-level PRIMARY KEY makes its columns NOT NULL.
                let mut at = element;
                while let [first, second, rest @ ..] = at {
                    if matches!((first, second), (Token::Word(p), Token::Word(k))
                        if p.eq_ignore_ascii_case("PRIMARY") && k.eq_ignore_ascii_case("KEY"))
                    {
                        let mut key = Reader { tokens: rest };
                        for part in split_commas(key.group()?) {
                            primary_key.push(Reader { tokens: part }.name()?);
                        }
                        break;
                    }
                    at = &at[1..];
                }
            }
            _ => columns.push(column(element)?),
        }
    }
    if columns.is_empty() {
        return Err("a table without columns".into());
    }
    for column in &mut columns {
        if primary_key
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&column.name))
        {
            column.nullable = false;
        }
    }
    Ok(Step::CreateTable { table, columns })
}

fn create_index(r: &mut Reader<'_, '_>, unique: bool) -> Result<Step, String> {
    let index = r.name()?;
    r.expect("ON")?;
    let table = r.name()?;
    let mut columns = Vec::new();
    for part in split_commas(r.group()?) {
        let mut column = Reader { tokens: part };
        columns.push(column.name()?);
        let _ = column.keyword("ASC") || column.keyword("DESC");
        if !column.is_empty() {
            return Err(
                "only plain columns are guarded in an index (no prefix or expression)".into(),
            );
        }
    }
    if !r.is_empty() {
        return Err("options after an index's columns are not guarded".into());
    }
    Ok(Step::CreateIndex {
        index,
        table,
        unique,
        columns,
    })
}

/// A column definition: its name, its type's name, and whether it takes NULL (`NOT NULL` or
/// `PRIMARY KEY` outside any parentheses say not).
fn column(tokens: &[Token<'_>]) -> Result<Column, String> {
    let mut r = Reader { tokens };
    let name = r.name()?;
    let data_type = match r.tokens.first() {
        Some(Token::Word(w)) => data_type(w),
        _ => return Err(format!("column {name} has no type")),
    };
    let mut words = Vec::new();
    let mut depth = 0;
    for token in &r.tokens[1..] {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            Token::Word(w) if depth == 0 => words.push(w.to_ascii_uppercase()),
            _ => {}
        }
    }
    let pairs = || words.windows(2).map(|p| (p[0].as_str(), p[1].as_str()));
    let nullable = !pairs().any(|pair| matches!(pair, ("NOT", "NULL") | ("PRIMARY", "KEY")));
    Ok(Column {
        name,
        data_type,
        nullable,
    })
}

/// A type's name as `information_schema.COLUMNS.DATA_TYPE` reports it: lowercase, synonyms
/// resolved. (MariaDB reports `JSON` as `longtext` and MySQL as `json`: not used here.)
fn data_type(word: &str) -> String {
    let word = word.to_ascii_lowercase();
    match word.as_str() {
        "integer" => "int".into(),
        "bool" | "boolean" => "tinyint".into(),
        "dec" | "numeric" | "fixed" => "decimal".into(),
        _ => word,
    }
}

/// The parts of a list separated by commas outside parentheses.
fn split_commas<'t, 'a>(tokens: &'t [Token<'a>]) -> Vec<&'t [Token<'a>]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MYSQL: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/mysql");

    fn step(sql: &str) -> Result<Step, String> {
        let mut statements = parse_migration(sql)?;
        assert_eq!(statements.len(), 1, "{sql}");
        Ok(statements.remove(0).step)
    }

    /// Every statement of every MySQL migration is one the runner can guard: a migration that
    /// is not fails here, not in a user's database after a crash.
    #[test]
    fn every_mysql_migration_statement_is_guarded() {
        let migrations = load(&MYSQL).unwrap_or_else(|e| panic!("{e}"));
        assert!(migrations.len() >= 4);
        for migration in &migrations {
            // Only a migration whose work is the store's own (re-reading the search words) or
            // PostgreSQL's alone (keys that include the owner) has no statement.
            assert!(
                !migration.statements.is_empty()
                    || ["20261202000004", "20261203000008"].contains(&migration.version.as_str()),
                "{}",
                migration.name
            );
            for statement in &migration.statements {
                // The statement text is whole: it starts with its verb and does not end in `;`.
                assert!(
                    ["CREATE", "ALTER", "DROP"]
                        .iter()
                        .any(|verb| statement.sql.starts_with(verb)),
                    "{}",
                    statement.sql
                );
                assert!(!statement.sql.ends_with(';'));
            }
        }
        let steps: Vec<String> = migrations
            .iter()
            .flat_map(|m| m.statements.iter().map(|s| s.step.to_string()))
            .collect();
        assert_eq!(
            steps,
            [
                "table chatstore_conversations",
                "index chatstore_conversations_user_updated on chatstore_conversations",
                "table chatstore_messages",
                "index chatstore_messages_system on chatstore_messages",
                "column chatstore_messages.search_text",
                "table chatstore_message_words",
                "index chatstore_messages_search on chatstore_message_words",
                "table chatstore_search_pending",
                "index chatstore_search_pending_user on chatstore_search_pending",
                "column chatstore_conversations.branch",
                "column chatstore_conversations.branch_fork",
                "column chatstore_conversations.off_branch",
                "table chatstore_branches",
                "column chatstore_conversations.ancestor_1",
                "column chatstore_conversations.ancestor_2",
                "column chatstore_conversations.ancestor_3",
                "column chatstore_conversations.ancestor_4",
                "column chatstore_conversations.list_rank",
                "index chatstore_conversations_user_rank on chatstore_conversations",
                "the removal of index chatstore_conversations_user_updated on chatstore_conversations",
                "column chatstore_conversations.metadata",
                "column chatstore_conversations.tags",
                "table chatstore_conversation_tags",
                "index chatstore_conversation_tags_list on chatstore_conversation_tags",
                "column chatstore_messages.input_tokens",
                "column chatstore_messages.output_tokens",
                "column chatstore_messages.total_tokens",
                "column chatstore_conversations.input_tokens",
                "column chatstore_conversations.output_tokens",
                "column chatstore_conversations.total_tokens",
                "column chatstore_messages.parts",
            ]
        );
    }

    #[test]
    fn a_table_lists_its_columns_types_and_nullability() {
        let sql = "-- a comment; with a semicolon\n\
                   CREATE TABLE `t` (\n\
                     id VARBINARY(16) NOT NULL PRIMARY KEY,\n\
                     n INTEGER DEFAULT 0 CHECK (n IS NOT NULL), -- still nullable\n\
                     s VARCHAR(8) CHARACTER SET ascii NULL,\n\
                     w BIGINT,\n\
                     CONSTRAINT t_s CHECK (s IN ('a;b', 'c''d')),\n\
                     PRIMARY KEY (w)\n\
                   ) ENGINE = InnoDB;";
        let column = |name: &str, data_type: &str, nullable| Column {
            name: name.into(),
            data_type: data_type.into(),
            nullable,
        };
        assert_eq!(
            step(sql).unwrap(),
            Step::CreateTable {
                table: "t".into(),
                columns: vec![
                    column("id", "varbinary", false),
                    column("n", "int", true),
                    column("s", "varchar", true),
                    column("w", "bigint", false),
                ],
            }
        );
    }

    #[test]
    fn an_index_lists_its_columns_in_order() {
        assert_eq!(
            step("CREATE UNIQUE INDEX i ON t (b DESC, a)").unwrap(),
            Step::CreateIndex {
                index: "i".into(),
                table: "t".into(),
                unique: true,
                columns: vec!["b".into(), "a".into()],
            }
        );
        assert_eq!(
            step("DROP INDEX `i` ON t").unwrap(),
            Step::DropIndex {
                index: "i".into(),
                table: "t".into(),
            }
        );
        assert_eq!(
            step("ALTER TABLE t ADD c LONGTEXT NOT NULL").unwrap(),
            Step::AddColumn {
                table: "t".into(),
                column: Column {
                    name: "c".into(),
                    data_type: "longtext".into(),
                    nullable: false,
                },
            }
        );
    }

    #[test]
    fn statements_that_cannot_be_guarded_are_refused() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DROP TABLE t",
            "CREATE TABLE t2 AS SELECT * FROM t",
            "CREATE TABLE t2 LIKE t",
            "CREATE TABLE IF NOT EXISTS t (a INT)",
            "CREATE INDEX i ON t (a(10))",
            "CREATE INDEX i ON t ((a + 1))",
            "CREATE INDEX i ON t (a) USING HASH",
            "CREATE FULLTEXT INDEX i ON t (a)",
            "ALTER TABLE t ADD COLUMN a INT, ADD COLUMN b INT",
            "ALTER TABLE t ADD INDEX i (a)",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)",
            "ALTER TABLE t DROP COLUMN a",
            "DROP INDEX i",
            "DROP INDEX i ON t ALGORITHM = INPLACE",
            "/*!50000 CREATE TABLE t (a INT) */",
        ] {
            assert!(step(sql).is_err(), "{sql}");
        }
        assert!(lex("SELECT 'open").is_err());
        assert!(lex("/* open").is_err());
    }
}

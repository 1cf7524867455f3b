//! The layering rules of ARCHITECTURE.md, checked on the source itself: no import cycles between
//! the crate's top-level modules, backend features tested only where the backends differ, and no
//! match over backends that a new backend could fall through.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The one mutual reference allowed: `Error::DuplicateId(MessageId)` names an id type while the
/// ids' constructors return `Error`, two leaf modules of plain types.
const ALLOWED_CYCLES: &[&[&str]] = &[&["error", "ids"]];

/// Where `#[cfg(feature = "sqlite" | "postgres" | "mysql")]` may stand: the connection module, the
/// query layer, and the crate root (which refuses a build without a backend).
const BACKEND_PLACES: &[&str] = &["conn.rs", "queries/", "lib.rs"];

/// Every library source file (the admin binary is a client of the library, not part of it), with
/// its path relative to `src/` and its text without comments and unit tests.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("read source");
            let relative = path.strip_prefix(&src).expect("under src");
            (relative.display().to_string(), code_only(&text))
        })
        .collect()
}

/// The text without comments (doc links are not imports) and without its `mod tests`.
fn code_only(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a source file belongs to (`queries/search.rs` → `queries`).
fn module_of(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    first.trim_end_matches(".rs").to_owned()
}

/// The names each `crate::` path starts with: `crate::a::B` gives `a`, `crate::{a::B, C}` gives
/// `a` and `C`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group up to its matching brace; the first name of each item at depth 0.
            let (mut depth, mut item_start) = (0, true);
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !name.is_empty() {
                            names.push(std::mem::take(&mut name));
                        }
                        item_start = true;
                    }
                    c if item_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ if item_start && !name.is_empty() => {
                        names.push(std::mem::take(&mut name));
                        item_start = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                names.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

/// What the crate root re-exports: each public name, with the module it comes from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        for item in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !item.is_empty() {
                names.insert(item.to_owned(), module.to_owned());
            }
        }
    }
    names
}

/// Each module's imports of other top-level modules.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let lib = &sources
        .iter()
        .find(|(path, _)| path == "lib.rs")
        .expect("lib.rs")
        .1;
    let reexported = reexports(lib);
    let modules: BTreeSet<String> = sources
        .iter()
        .map(|(path, _)| module_of(path))
        .filter(|m| m != "lib")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in &sources {
        let from = module_of(path);
        if from == "lib" {
            continue;
        }
        let edges = graph.entry(from.clone()).or_default();
        for name in crate_paths(code) {
            let to = match name.as_str() {
                "Error" | "Result" => "error".to_owned(),
                _ => reexported.get(&name).cloned().unwrap_or(name),
            };
            if to != from && modules.contains(&to) {
                edges.insert(to);
            }
        }
    }
    graph
}

/// The groups of two or more modules that reach each other (Tarjan's strongly connected
/// components), each sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Search<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    self.low.insert(v, self.low[v].min(self.low[w]));
                } else if self.stack.contains(&w) {
                    self.low.insert(v, self.low[v].min(self.index[w]));
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !search.index.contains_key(v.as_str()) {
            search.visit(v);
        }
    }
    search.found
}

#[test]
fn modules_import_each_other_in_no_circle() {
    let graph = imports();
    // The check sees imports at all: the facade uses the query layer.
    assert!(graph["store"].contains("queries"), "{graph:?}");
    let unexpected: Vec<_> = cycles(&graph)
        .into_iter()
        .filter(|group| !ALLOWED_CYCLES.iter().any(|allowed| group == allowed))
        .collect();
    assert!(
        unexpected.is_empty(),
        "modules that import each other: {unexpected:?}\n{graph:#?}"
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
    assert_eq!(
        crate_paths("use crate::{a::{B, C}, Error, d};\nlet x = crate::e::f();"),
        ["a", "Error", "d", "e"]
    );
}

#[test]
fn backend_features_are_tested_only_where_backends_differ() {
    let misplaced: Vec<String> = sources()
        .into_iter()
        .filter(|(path, _)| !BACKEND_PLACES.iter().any(|place| path.starts_with(place)))
        .filter(|(_, code)| {
            ["sqlite", "postgres", "mysql"]
                .iter()
                .any(|backend| code.contains(&format!("#[cfg(feature = \"{backend}\")]")))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        misplaced.is_empty(),
        "backend cfgs outside {BACKEND_PLACES:?}: {misplaced:?}"
    );
}

#[test]
fn no_match_over_backends_falls_through() {
    for (path, code) in sources() {
        assert!(
            !code.contains("unreachable_patterns"),
            "{path}: a catch-all arm where a new backend would run another backend's code"
        );
    }
}

/// What would start a thread of the library's own, or a pool that does: connections are opened
/// only on the calling thread (`src/pool.rs`), so that nothing of the store runs once a program's
/// last call has returned. (The async store hands calls to tokio's blocking pool: the caller's
/// runtime, whose shutdown waits for them.)
const THREAD_STARTERS: &[&str] = &[
    "thread::spawn",
    "thread::scope",
    "thread::Builder",
    "r2d2::Pool",
    "ManageConnection",
];

/// The one module that may start a thread: the SQLite lock-file queue's waiter, which blocks in
/// `fcntl` on the lock file so that the caller can give up at its timeout. It never touches a
/// connection (no libpq, no TLS), so a program may exit while it waits.
const THREAD_ALLOWED: &[&str] = &["turns.rs"];

#[test]
fn the_library_starts_no_thread_of_its_own() {
    for (path, code) in sources() {
        if THREAD_ALLOWED.contains(&path.as_str()) {
            continue;
        }
        for starter in THREAD_STARTERS {
            assert!(
                !code.contains(starter),
                "{path}: `{starter}`: the store opens connections on the calling thread only, so \
                 that nothing of it outlives a program's last call (see src/pool.rs)"
            );
        }
    }
}

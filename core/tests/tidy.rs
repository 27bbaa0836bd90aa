//! Repository hygiene, enforced as a test: every Rust source file of ours
//! opens with a `//!` header saying what it owns; no stub (`todo!`,
//! `unimplemented!`) ships, in our code or in vendored code; every table of
//! the schema has the one owner ARCHITECTURE.md names, and no other source
//! writes it; every core module names only the modules ARCHITECTURE.md's
//! import rule allows; and every document a doc or source names is in the
//! repository, so a clone stands on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use creditgate::{Gate, ManualClock, StoreOptions};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `path` relative to the workspace root, with `/` separators.
fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    for member in ["core", "appliance", "tests"] {
        rust_files(&root.join(member), &mut files);
    }
    assert!(files.len() > 10, "found the workspace's sources");
    files
}

#[test]
fn every_rust_file_opens_with_a_module_header() {
    let missing: Vec<_> = workspace_sources()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:?}"
    );
}

/// Everything compiled into what we ship: our sources and the vendored
/// tiny_http (upstream's code, so it is not held to our header rule).
fn shipped_sources() -> Vec<PathBuf> {
    let mut files = workspace_sources();
    let vendored = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor/tiny_http/src");
    let before = files.len();
    rust_files(&vendored, &mut files);
    assert!(files.len() > before, "found the vendored tiny_http");
    files
}

#[test]
fn no_stub_ships() {
    let stubs = ["todo!(", "unimplemented!("];
    let found: Vec<_> = shipped_sources()
        .into_iter()
        .filter(|path| !path.ends_with("tidy.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            stubs.iter().any(|stub| text.contains(stub))
        })
        .collect();
    assert!(found.is_empty(), "stubs in: {found:?}");
}

/// The tables a database migrated by this build has: `schema.sql` as the
/// store applies it, every migration included.
fn schema_tables() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = Gate::open(
        &StoreOptions::new(dir.path().join("tables.db")),
        std::sync::Arc::new(ManualClock::new(0)),
    )
    .expect("open");
    let tables: Vec<String> = gate
        .store_for_tests()
        .read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT name FROM sqlite_schema
                  WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )?;
            let names = stmt.query_map([], |row| row.get(0))?;
            Ok(names.collect::<rusqlite::Result<_>>()?)
        })
        .expect("list tables");
    assert!(tables.len() > 5, "found the schema's tables: {tables:?}");
    tables.into_iter().collect()
}

/// The rows of ARCHITECTURE.md's "Table ownership" section:
/// `| `table` | `owner file` |`, in document order.
fn documented_owners() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n### Table ownership\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a '### Table ownership' section");
    section
        .lines()
        .take_while(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line
                .split('|')
                .map(|cell| cell.trim().trim_matches('`'))
                .filter(|cell| !cell.is_empty())
                .collect();
            assert_eq!(cells.len(), 2, "an ownership row is table | owner: {line}");
            (cells[0].to_owned(), cells[1].to_owned())
        })
        .collect()
}

/// The tables a piece of Rust source writes: the table after `INSERT [OR
/// x] INTO`, `REPLACE INTO`, `UPDATE [OR x]` and `DELETE FROM`, if it is one
/// of `tables` (so prose such as "`UPDATE ... WHERE`" is not a write).
fn written_tables(source: &str, tables: &BTreeSet<String>) -> Vec<String> {
    let words: Vec<&str> = source
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .collect();
    let word = |at: usize| words.get(at).copied().unwrap_or("");
    let skip_or = |at: usize| if word(at) == "OR" { at + 2 } else { at };
    let mut written = Vec::new();
    for at in 0..words.len() {
        let target = match word(at) {
            "INSERT" => {
                let into = skip_or(at + 1);
                (word(into) == "INTO").then(|| word(into + 1))
            }
            "REPLACE" => (word(at + 1) == "INTO").then(|| word(at + 2)),
            "UPDATE" => Some(word(skip_or(at + 1))),
            "DELETE" => (word(at + 1) == "FROM").then(|| word(at + 2)),
            _ => None,
        };
        if let Some(table) = target.filter(|table| tables.contains(*table)) {
            written.push(table.to_owned());
        }
    }
    written
}

/// A source file without its unit tests (which write tables freely to set
/// up cases): everything before `#[cfg(test)] mod tests`.
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

#[test]
fn every_table_has_one_documented_owner_that_alone_writes_it() {
    let tables = schema_tables();
    let rows = documented_owners();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for (table, owner) in &rows {
        if owners.insert(table.clone(), owner.clone()).is_some() {
            problems.push(format!("`{table}` has two rows in the ownership table"));
        }
        if !tables.contains(table) {
            problems.push(format!("`{table}` is documented but not in schema.sql"));
        }
        if !root().join(owner).is_file() {
            problems.push(format!("`{table}`'s owner {owner} does not exist"));
        }
    }
    for table in &tables {
        if !owners.contains_key(table) {
            problems.push(format!("`{table}` has no owner in ARCHITECTURE.md"));
        }
    }
    let mut written: BTreeSet<(String, String)> = BTreeSet::new();
    let mut sources = Vec::new();
    rust_files(&root().join("core/src"), &mut sources);
    rust_files(&root().join("appliance/src"), &mut sources);
    for path in sources {
        let text = std::fs::read_to_string(&path).expect("read source");
        let file = relative(&path);
        for table in written_tables(without_tests(&text), &tables) {
            written.insert((table, file.clone()));
        }
    }
    for (table, file) in &written {
        if owners.get(table) != Some(file) {
            problems.push(format!(
                "{file} writes `{table}`, owned by {}",
                owners.get(table).map_or("nobody", String::as_str)
            ));
        }
    }
    for (table, owner) in &owners {
        if tables.contains(table) && !written.contains(&(table.clone(), owner.clone())) {
            problems.push(format!("{owner} is `{table}`'s owner but never writes it"));
        }
    }
    assert!(problems.is_empty(), "table ownership: {problems:#?}");
}

#[test]
fn the_write_scanner_sees_every_form_of_write() {
    let tables: BTreeSet<String> = ["jobs", "transfers"].map(String::from).into();
    let source = "INSERT INTO jobs; INSERT OR IGNORE INTO transfers; REPLACE INTO jobs;
        UPDATE jobs SET; UPDATE OR ROLLBACK transfers; DELETE FROM\n jobs;
        a conditional `UPDATE ... WHERE`; SELECT * FROM jobs; DO UPDATE SET x";
    assert_eq!(
        written_tables(source, &tables),
        ["jobs", "transfers", "jobs", "jobs", "transfers", "jobs"]
    );
}

/// Every document (`*.md`) a text names, as written: `DIR/NAME.md`,
/// `NAME.md`, `../NAME.md`. URLs are not documents of the repository.
fn named_documents(text: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut names = Vec::new();
    for (at, _) in text.match_indices(".md") {
        let end = at + ".md".len();
        if text[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        let start = text[..at]
            .rfind(|c: char| !is_name(c))
            .map_or(0, |before| before + 1);
        let name = &text[start..end];
        let url = text[..start].ends_with(':') || name.starts_with("//");
        if !url && name.len() > ".md".len() {
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn every_document_a_doc_or_source_names_is_in_the_repository() {
    let root = root();
    // This file names documents in its own test cases.
    let mut texts: Vec<PathBuf> = workspace_sources()
        .into_iter()
        .filter(|path| !path.ends_with("tidy.rs"))
        .collect();
    for entry in std::fs::read_dir(&root).expect("read root").flatten() {
        if entry.path().extension().is_some_and(|ext| ext == "md") {
            texts.push(entry.path());
        }
    }
    texts.push(root.join("fixtures/catalogs/README.md"));
    texts.push(root.join("vendor/tiny_http/README.md"));
    texts.push(root.join(".ci/run"));
    let mut missing = Vec::new();
    for path in &texts {
        let text = std::fs::read_to_string(path).expect("read text");
        let dir = path.parent().expect("a file has a folder");
        for name in named_documents(&text) {
            let inside = !name.starts_with('/') && !name.split('/').any(|part| part == "..");
            if !(inside && (root.join(&name).is_file() || dir.join(&name).is_file())) {
                missing.push(format!("{} names {name}", relative(path)));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents named but not in the repository: {missing:#?}"
    );
}

#[test]
fn the_document_finder_sees_relative_and_outside_names() {
    let text = "see `CONTRACTS.md` §2, fixtures/catalogs/README.md and ../elsewhere/x.md;
        not https://example.com/y.md, not a.mdx, not .md alone";
    assert_eq!(
        named_documents(text),
        [
            "CONTRACTS.md",
            "fixtures/catalogs/README.md",
            "../elsewhere/x.md"
        ]
    );
}

/// ARCHITECTURE.md's "Import rule" section: the layer of each core module
/// (from its `| n | `a`, `b` |` rows) and the allowed exceptions (from its
/// `| `module` | `may name` | why |` rows).
struct ImportRule {
    layers: BTreeMap<String, u32>,
    exceptions: BTreeSet<(String, String)>,
}

fn documented_import_rule() -> ImportRule {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n### Import rule\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a '### Import rule' section");
    let mut rule = ImportRule {
        layers: BTreeMap::new(),
        exceptions: BTreeSet::new(),
    };
    for line in section.lines().take_while(|line| !line.starts_with('#')) {
        let cells: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .collect();
        match cells.as_slice() {
            [layer, modules] if layer.parse::<u32>().is_ok() => {
                let layer = layer.parse().expect("checked");
                for module in modules.split(',') {
                    let module = module.trim().trim_matches('`').to_owned();
                    assert!(
                        rule.layers.insert(module.clone(), layer).is_none(),
                        "`{module}` has two layers"
                    );
                }
            }
            [module, named, _why] if module.starts_with('`') => {
                rule.exceptions.insert((
                    module.trim_matches('`').to_owned(),
                    named.trim_matches('`').to_owned(),
                ));
            }
            _ => {}
        }
    }
    assert!(rule.layers.len() > 5, "found the layers: {:?}", rule.layers);
    rule
}

/// The first path segment after each `crate::` in Rust code (comments
/// stripped): `use crate::ledger::X` and `crate::ledger::f()` name
/// `ledger`; `use crate::{a::X, b}` names `a` and `b`. A macro's
/// `$crate::` is not a path of this crate's code.
fn named_modules(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        named.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.push(ident(rest));
        }
    }
    named
}

#[test]
fn every_core_module_names_only_what_the_import_rule_allows() {
    let rule = documented_import_rule();
    let lib = std::fs::read_to_string(root().join("core/src/lib.rs")).expect("lib.rs");
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .collect();
    let mut problems = Vec::new();
    for module in &declared {
        if !rule.layers.contains_key(module) {
            problems.push(format!("`{module}` has no layer in ARCHITECTURE.md"));
        }
    }
    for module in rule.layers.keys() {
        if !declared.contains(module) {
            problems.push(format!(
                "`{module}` has a layer but is not a module of lib.rs"
            ));
        }
    }
    let src = root().join("core/src");
    let mut sources = Vec::new();
    rust_files(&src, &mut sources);
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for path in sources {
        let file = relative(&path);
        let inside = path.strip_prefix(&src).expect("under core/src");
        let first = inside.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        let code = without_tests(&text);
        if code.contains("super::super::") {
            problems.push(format!(
                "{file} climbs with super::super::; name the path from crate::"
            ));
        }
        for named in named_modules(code) {
            if named == module {
                continue;
            }
            let (Some(own), Some(theirs)) = (rule.layers.get(&module), rule.layers.get(&named))
            else {
                problems.push(format!(
                    "{file} names crate::{named}, which is not a layered module \
                     (a crate-root re-export? name the defining module)"
                ));
                continue;
            };
            let pair = (module.clone(), named.clone());
            if rule.exceptions.contains(&pair) {
                used.insert(pair);
            } else if theirs <= own {
                problems.push(format!(
                    "{file}: `{module}` (layer {own}) may not name `{named}` (layer {theirs})"
                ));
            }
        }
    }
    for (module, named) in &rule.exceptions {
        if !used.contains(&(module.clone(), named.clone())) {
            problems.push(format!(
                "the exception `{module}` → `{named}` is not used: drop it"
            ));
        }
    }
    assert!(problems.is_empty(), "import rule: {problems:#?}");
}

#[test]
fn the_import_scanner_sees_paths_and_groups_but_not_comments() {
    let source = "use crate::ledger::{chain_hash, X};
        use crate::{money::Micros, clock,
            store::{Store, Tx}};
        let x = crate::jobs::get(conn);
        // see crate::verify
        /// [`crate::Gate`]
        macro_rules! m { () => { $crate::error::Error } }
        let y = crate::Error::Busy;";
    assert_eq!(
        named_modules(source),
        ["ledger", "money", "clock", "store", "jobs", "Error"]
    );
}

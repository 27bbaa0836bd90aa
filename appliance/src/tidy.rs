//! The appliance's import order, enforced as a test: ARCHITECTURE.md's
//! appliance section gives every module of `appliance/src` a layer, and
//! non-test code of a module may name only modules of a lower layer, so
//! the modules form no cycle (`router` names `handlers`; `handlers` never
//! names `router`: what both need of a request is `http::request`'s). The
//! same approach as the core's `core/tests/tidy.rs`. Test-only code (this
//! file, `http/test_support.rs`, `#[cfg(test)] mod tests`) does not count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The appliance's `src` folder.
fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer of each appliance module, from the `| n | `a`, `b` |` rows
/// of ARCHITECTURE.md's appliance section.
fn documented_layers() -> BTreeMap<String, u32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    let text = std::fs::read_to_string(path).expect("ARCHITECTURE.md");
    let section = text
        .split("\n### `appliance/`")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("ARCHITECTURE.md has a '### `appliance/`' section");
    let mut layers = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .collect();
        if let [layer, modules] = cells.as_slice() {
            if let Ok(layer) = layer.parse::<u32>() {
                for module in modules.split(',') {
                    let module = module.trim().trim_matches('`').to_owned();
                    assert!(
                        layers.insert(module.clone(), layer).is_none(),
                        "`{module}` has two layers"
                    );
                }
            }
        }
    }
    assert!(layers.len() > 5, "found the layers: {layers:?}");
    layers
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file is: `http/router.rs` is `http::router`,
/// `http/mod.rs` is `http`, `main.rs` is `main` (the crate root).
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a source: comments and the trailing test module dropped.
fn code_of(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifier paths of a use tree at the start of `text`:
/// `a::b::C` is `[a, b, C]`; `{a, b::{C, d}}` is `[a]`, `[b, C]`, `[b, d]`.
fn use_paths(text: &str) -> Vec<Vec<String>> {
    fn tree(chars: &[char], at: &mut usize) -> Vec<Vec<String>> {
        let skip = |at: &mut usize| {
            while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
                *at += 1;
            }
        };
        skip(at);
        if chars.get(*at) == Some(&'{') {
            *at += 1;
            let mut out = Vec::new();
            loop {
                skip(at);
                match chars.get(*at) {
                    Some('}') => {
                        *at += 1;
                        return out;
                    }
                    Some(',') => *at += 1,
                    None => return out,
                    _ => out.extend(tree(chars, at)),
                }
            }
        }
        let start = *at;
        while chars
            .get(*at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            *at += 1;
        }
        let ident: String = chars[start..*at].iter().collect();
        if ident.is_empty() {
            *at += 1;
            return Vec::new();
        }
        if chars.get(*at) == Some(&':') && chars.get(*at + 1) == Some(&':') {
            *at += 2;
            return tree(chars, at)
                .into_iter()
                .map(|mut rest| {
                    rest.insert(0, ident.clone());
                    rest
                })
                .collect();
        }
        vec![vec![ident]]
    }
    let chars: Vec<char> = text.chars().collect();
    tree(&chars, &mut 0)
}

/// The modules `code` (of `module`) names: paths from `crate::`, from
/// `super::`, and from a child module's bare name, each resolved to the
/// longest known module it lies in.
fn named_modules(code: &str, module: &str, known: &[String]) -> Vec<String> {
    let parent = |m: &str| m.rsplit_once("::").map_or(String::new(), |(p, _)| p.into());
    // Where a bare name or `super::` starts from: the module itself for a
    // crate root or a `mod.rs`, whose children are named bare.
    let here = if module == "main" { "" } else { module };
    let resolve = |base: &str, path: &[String]| -> String {
        let mut best = if base.is_empty() {
            "main".to_owned()
        } else {
            base.to_owned()
        };
        let mut prefix = base.to_owned();
        for segment in path {
            prefix = if prefix.is_empty() {
                segment.clone()
            } else {
                format!("{prefix}::{segment}")
            };
            if known.contains(&prefix) {
                best.clone_from(&prefix);
            }
        }
        best
    };
    let mut named = Vec::new();
    for (at, _) in code.match_indices("::") {
        let before = &code[..at];
        let word_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let word = &before[word_start..];
        let preceded = before[..word_start].ends_with("::") || before[..word_start].ends_with('$');
        if word.is_empty() || preceded {
            continue;
        }
        let paths = use_paths(&code[at + 2..]);
        let base = match word {
            "crate" => String::new(),
            "super" => parent(module),
            "self" => continue,
            child
                if known.contains(&resolve(here, &[child.to_owned()]))
                    && resolve(here, &[child.to_owned()]) != resolve(here, &[]) =>
            {
                for path in &paths {
                    let mut full = vec![child.to_owned()];
                    full.extend(path.iter().cloned());
                    named.push(resolve(here, &full));
                }
                continue;
            }
            _ => continue,
        };
        for path in &paths {
            named.push(resolve(&base, path));
        }
    }
    named
}

#[test]
fn every_appliance_module_names_only_lower_layers() {
    let layers = documented_layers();
    let known: Vec<String> = layers.keys().cloned().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for path in files {
        let relative = path.strip_prefix(src()).expect("under src").to_owned();
        let module = module_of(&relative);
        if module == "tidy" || module == "http::test_support" {
            continue; // test-only
        }
        seen.push(module.clone());
        let Some(own) = layers.get(&module) else {
            problems.push(format!("`{module}` has no layer in ARCHITECTURE.md"));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read source");
        for named in named_modules(&code_of(&text), &module, &known) {
            if named == module {
                continue;
            }
            let theirs = layers[&named];
            if theirs <= *own {
                problems.push(format!(
                    "{}: `{module}` (layer {own}) may not name `{named}` (layer {theirs})",
                    relative.display()
                ));
            }
        }
    }
    for module in layers.keys() {
        if !seen.contains(module) {
            problems.push(format!("`{module}` has a layer but no source file"));
        }
    }
    assert!(problems.is_empty(), "appliance import order: {problems:#?}");
}

#[test]
fn the_import_scanner_resolves_crate_super_and_child_paths() {
    let known: Vec<String> = ["main", "cli", "http", "http::router", "http::handlers"]
        .map(str::to_owned)
        .to_vec();
    let router = "use super::handlers::{self, Handled};
        use super::{handle, handlers::poll};
        let x = crate::cli::run(); // crate::main
        let y = handlers::poll; let z = std::fmt::Debug;";
    assert_eq!(
        named_modules(&code_of(router), "http::router", &known),
        [
            "http::handlers",
            "http::handlers",
            "http",
            "http::handlers",
            "cli"
        ]
    );
    let mod_rs = "use router::dispatch; pub fn f() { handlers::poll(); self::g(); }";
    assert_eq!(
        named_modules(mod_rs, "http", &known),
        ["http::router", "http::handlers"]
    );
    let main = "fn main() { cli::run(); http::router::ROUTES; }";
    assert_eq!(named_modules(main, "main", &known), ["cli", "http::router"]);
    // A handler naming the router, in any of these forms, is caught.
    for handlers in [
        "use super::router::Params;",
        "use crate::http::router;",
        "let p = super::router::ROUTES;",
    ] {
        assert_eq!(
            named_modules(handlers, "http::handlers", &known),
            ["http::router"],
            "{handlers}"
        );
    }
}

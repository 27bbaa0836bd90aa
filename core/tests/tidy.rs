//! Repository hygiene, enforced as a test: every Rust source file of ours
//! opens with a `//!` header saying what it owns, and no stub (`todo!`,
//! `unimplemented!`) ships, in our code or in vendored code.

use std::path::{Path, PathBuf};

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
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

#[test]
fn the_embedded_schema_is_the_workspace_schema() {
    let on_disk =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.sql"))
            .expect("schema.sql");
    assert_eq!(on_disk, creditgate::store::SCHEMA_SQL);
}

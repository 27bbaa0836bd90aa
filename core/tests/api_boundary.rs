//! The core's public API holds no storage engine type: an embedder compiles
//! against `Gate`, the typed results and the error enum only (issue 12).
//! Read from the source, like `tidy.rs`: every public signature outside the
//! private `store` module is free of rusqlite, r2d2 and the store's own
//! handles; the store is a private module; its one way out for tests is
//! behind the `test-support` feature; the only conversion from a rusqlite
//! error is hidden from the documentation.
//!
//! What `cargo doc` shows is checked by the same rule from the outside:
//! `cargo doc -p creditgate --no-deps` then
//! `grep -rl 'rusqlite\|r2d2' target/doc/creditgate` finds nothing.

use std::path::{Path, PathBuf};

/// Identifiers that must not appear in a public signature of the core:
/// the engine's crates and types, and the store's own handles.
const ENGINE_NAMES: &[&str] = &[
    "rusqlite",
    "r2d2",
    "r2d2_sqlite",
    "Connection",
    "Statement",
    "CachedStatement",
    "Row",
    "Rows",
    "Tx",
    "ReadOnly",
    "Query",
    "Store",
];

/// Public items that may name the store: the hidden test hook.
const ALLOWED: &[&str] = &["pub fn store_for_tests"];

fn core_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The source without its `#[cfg(test)]` module (tests are not API).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

/// Each public item's signature: from `pub ` (not `pub(crate)`) to the
/// first `{` or `;` at the end of a line, joined onto one line. Struct
/// fields (`pub name: Type,`) end at their comma.
fn public_signatures(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with("pub ") {
            continue;
        }
        let mut signature = trimmed.to_owned();
        let is_field = trimmed
            .split_whitespace()
            .nth(1)
            .is_some_and(|word| word.ends_with(':'));
        while !(signature.ends_with('{')
            || signature.ends_with(';')
            || (is_field && signature.ends_with(',')))
        {
            match lines.next() {
                Some(more) => {
                    signature.push(' ');
                    signature.push_str(more.trim());
                }
                None => break,
            }
        }
        found.push(signature);
    }
    found
}

#[test]
fn no_public_signature_outside_the_store_names_the_storage_engine() {
    let mut files = Vec::new();
    rust_files(&core_src(), &mut files);
    let mut offending = Vec::new();
    for path in &files {
        if path.ends_with("store.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read");
        for signature in public_signatures(without_tests(&text)) {
            if ALLOWED.iter().any(|allowed| signature.starts_with(allowed)) {
                continue;
            }
            let mut identifiers =
                signature.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            if let Some(name) = identifiers.find(|word| ENGINE_NAMES.contains(word)) {
                offending.push(format!("{}: {name} in `{signature}`", path.display()));
            }
        }
    }
    assert!(offending.is_empty(), "{offending:#?}");
}

#[test]
fn the_store_is_private_and_its_test_hook_needs_the_feature() {
    let lib = std::fs::read_to_string(core_src().join("lib.rs")).expect("lib.rs");
    assert!(lib.contains("\nmod store;"), "store is a private module");
    assert!(!lib.contains("pub mod store"), "store is not public");
    for line in lib
        .lines()
        .filter(|line| line.starts_with("pub use store::"))
    {
        for name in ["Store,", "Store}", "Tx", "ReadOnly", "Query"] {
            assert!(!line.contains(name), "re-exported: {line}");
        }
    }
    let gate = std::fs::read_to_string(core_src().join("gate/mod.rs")).expect("gate");
    let hook = gate
        .find("pub fn store_for_tests")
        .expect("the test hook exists");
    let before = &gate[..hook];
    let attributes = &before[before.rfind("///").expect("documented")..];
    assert!(
        attributes.contains("#[cfg(feature = \"test-support\")]")
            && attributes.contains("#[doc(hidden)]"),
        "store_for_tests is hidden and feature-gated: {attributes}"
    );
}

#[test]
fn the_error_enum_wraps_storage_failures_opaquely() {
    let error = std::fs::read_to_string(core_src().join("error.rs")).expect("error.rs");
    let error = without_tests(&error);
    assert!(error.contains("Storage(StorageError)"));
    assert!(error.contains("Pool(StorageError)"));
    assert!(
        !error.contains("#[from] r2d2"),
        "no public From<r2d2::Error>"
    );
    for (at, _) in error.match_indices("impl From<rusqlite::Error> for Error") {
        let head = &error[at.saturating_sub(200)..at];
        assert!(
            head.contains("#[doc(hidden)]"),
            "the rusqlite conversion is hidden"
        );
    }
}

#[test]
fn the_http_client_is_behind_its_feature() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("Cargo.toml");
    let ureq = manifest
        .lines()
        .find(|line| line.starts_with("ureq "))
        .expect("ureq is a dependency");
    assert!(ureq.contains("optional = true"), "{ureq}");
    assert!(
        manifest
            .lines()
            .any(|line| line.starts_with("http = [\"dep:ureq\"")),
        "the feature `http` brings the client"
    );
    let default = manifest.lines().find(|line| line.starts_with("default "));
    assert!(
        default.is_none_or(|line| !line.contains("http")),
        "not on by default"
    );
    let mut files = Vec::new();
    rust_files(&core_src(), &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        if text.contains("ureq::") {
            // The six clients: Moltbook's verifier, the one the provider
            // adapters share, the media store's downloads (its own agent:
            // redirects followed, never a credential sent), Stripe's, the
            // x402 facilitator's and the outgoing webhooks' sender, each
            // behind the feature (`#[cfg(feature = "http")]`, checked below
            // for the last three).
            assert!(
                path.ends_with("identity/moltbook_client.rs")
                    || path.ends_with("providers/http.rs")
                    || path.ends_with("media/fetch.rs")
                    || path.ends_with("payments/stripe.rs")
                    || path.ends_with("payments/x402.rs")
                    || path.ends_with("outbox.rs"),
                "ureq used outside the clients: {}",
                path.display()
            );
        }
    }
    for file in ["payments/stripe.rs", "payments/x402.rs", "outbox.rs"] {
        let stripe = std::fs::read_to_string(core_src().join(file)).expect("read");
        for (at, _) in stripe.match_indices("ureq::") {
            let before = &stripe[..at];
            let item = before.rfind("\n#[cfg(feature = \"http\")]");
            let unguarded = before.rfind("\n}\n");
            assert!(
                item.is_some_and(|item| unguarded.is_none_or(|end| end < item)),
                "{file}: a ureq use at byte {at} is outside a #[cfg(feature = \"http\")] item"
            );
        }
    }
    let providers = std::fs::read_to_string(core_src().join("providers/mod.rs")).expect("read");
    let at = providers.find("pub mod http;").expect("the shared client");
    assert!(
        providers[..at]
            .trim_end()
            .ends_with("#[cfg(feature = \"http\")]"),
        "the shared HTTP client is built only with the feature"
    );
}

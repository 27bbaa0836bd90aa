//! Shared helpers for the black-box tests live in the test files; this crate exists so `cargo test` builds `tests/`.

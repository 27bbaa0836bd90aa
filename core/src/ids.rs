//! Identifier minting and validation. Ids the core makes are a short prefix
//! naming the kind (`acct_`, `grant_`) and 128 random bits in hex; ids callers
//! choose are bounded printable ASCII.
//!
//! The random bits of the ids a gate mints (accounts, jobs, usage events,
//! keys, agents, token families) come from its [`IdSource`]: the OS by
//! default ([`OsIds`]), or a seeded deterministic source ([`SeededIds`]) so
//! that a failing property test replays with the same ids. Secrets (API
//! keys, tokens, registration codes, output tokens) never come from an
//! `IdSource`: they always take the OS's randomness.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::error::{Error, Result};

/// The longest caller-chosen id the core accepts (transfer ids, request ids).
pub const CALLER_ID_CHARS_MAX: usize = 128;

/// Where the random bits of minted ids come from (never a secret's).
pub trait IdSource: std::fmt::Debug + Send + Sync {
    /// Fills `bytes` with the random bits of one id.
    fn fill(&self, bytes: &mut [u8]);
}

/// Ids from the operating system's randomness: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsIds;

impl IdSource for OsIds {
    fn fill(&self, bytes: &mut [u8]) {
        rand::rng().fill_bytes(bytes);
    }
}

/// Ids from a seeded generator: the same seed and the same sequence of
/// operations mint the same ids. For tests (a property test's failing case
/// replays with its ids); unique across runs only if the seeds are.
#[derive(Debug)]
pub struct SeededIds {
    rng: Mutex<StdRng>,
}

impl SeededIds {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> SeededIds {
        SeededIds {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl IdSource for SeededIds {
    fn fill(&self, bytes: &mut [u8]) {
        // A panic while filling leaves the generator usable.
        self.rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .fill_bytes(bytes);
    }
}

/// A fresh id from the OS's randomness: `prefix` followed by 32 lowercase
/// hex digits. For ids outside a gate (request ids, the CLI's grant ids)
/// and unguessable tokens.
pub fn random_id(prefix: &str) -> String {
    random_id_from(&OsIds, prefix)
}

/// A fresh id from `source`: `prefix` followed by 32 lowercase hex digits.
pub fn random_id_from(source: &dyn IdSource, prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    source.fill(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A fresh id from `source` that sorts by creation time: `prefix`, the
/// time in milliseconds as 12 hex digits, then 80 random bits as 20 hex
/// digits. Time-ordered keys append to the right edge of SQLite's indexes
/// instead of dirtying a random page per insert.
pub fn sortable_id_from(
    source: &dyn IdSource,
    prefix: &str,
    now: crate::clock::UnixMillis,
) -> String {
    let mut bytes = [0u8; 10];
    source.fill(&mut bytes);
    format!(
        "{prefix}{:012x}{}",
        now.clamp(0, 0xffff_ffff_ffff),
        hex::encode(bytes)
    )
}

/// Checks a caller-chosen id: 1 to [`CALLER_ID_CHARS_MAX`] printable ASCII
/// characters, no spaces. `field` names it in the error.
pub fn validate_caller_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > CALLER_ID_CHARS_MAX {
        return Err(Error::invalid(
            field,
            format!("must be at most {CALLER_ID_CHARS_MAX} characters"),
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_prefixed_and_distinct() {
        let a = random_id("acct_");
        let b = random_id("acct_");
        assert!(a.starts_with("acct_") && a.len() == 5 + 32);
        assert_ne!(a, b);
    }

    #[test]
    fn sortable_ids_sort_by_time() {
        let early = sortable_id_from(&OsIds, "job_", 1_790_000_000_000);
        let late = sortable_id_from(&OsIds, "job_", 1_790_000_000_001);
        assert!(early < late && early.len() == 4 + 32);
    }

    #[test]
    fn a_seeded_source_replays_its_ids_and_seeds_differ() {
        let mint = |seed| {
            let source = SeededIds::new(seed);
            (
                random_id_from(&source, "acct_"),
                sortable_id_from(&source, "job_", 7),
            )
        };
        assert_eq!(mint(42), mint(42));
        assert_ne!(mint(42), mint(43));
        let source = SeededIds::new(42);
        assert_ne!(
            random_id_from(&source, "a"),
            random_id_from(&source, "a"),
            "one source mints distinct ids"
        );
    }

    #[test]
    fn caller_ids_are_bounded() {
        assert!(validate_caller_id("id", "capture:job_1").is_ok());
        assert!(validate_caller_id("id", "").is_err());
        assert!(validate_caller_id("id", "has space").is_err());
        assert!(validate_caller_id("id", "é").is_err());
        assert!(validate_caller_id("id", &"x".repeat(CALLER_ID_CHARS_MAX)).is_ok());
        assert!(validate_caller_id("id", &"x".repeat(CALLER_ID_CHARS_MAX + 1)).is_err());
    }
}

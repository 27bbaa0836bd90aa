//! Identifier minting and validation. Ids the core makes are a short prefix
//! naming the kind (`acct_`, `grant_`) and 128 random bits in hex; ids callers
//! choose are bounded printable ASCII.

use rand::RngCore;

use crate::error::{Error, Result};

/// The longest caller-chosen id the core accepts (transfer ids, request ids).
pub const CALLER_ID_CHARS_MAX: usize = 128;

/// A fresh random id: `prefix` followed by 32 lowercase hex digits.
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A fresh id that sorts by creation time: `prefix`, the time in
/// milliseconds as 12 hex digits, then 80 random bits as 20 hex digits.
/// Time-ordered keys append to the right edge of SQLite's indexes instead of
/// dirtying a random page per insert.
pub fn sortable_id(prefix: &str, now: crate::clock::UnixMillis) -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
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
        let early = sortable_id("job_", 1_790_000_000_000);
        let late = sortable_id("job_", 1_790_000_000_001);
        assert!(early < late && early.len() == 4 + 32);
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

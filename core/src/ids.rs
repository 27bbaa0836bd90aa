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
    fn caller_ids_are_bounded() {
        assert!(validate_caller_id("id", "capture:job_1").is_ok());
        assert!(validate_caller_id("id", "").is_err());
        assert!(validate_caller_id("id", "has space").is_err());
        assert!(validate_caller_id("id", "é").is_err());
        assert!(validate_caller_id("id", &"x".repeat(CALLER_ID_CHARS_MAX)).is_ok());
        assert!(validate_caller_id("id", &"x".repeat(CALLER_ID_CHARS_MAX + 1)).is_err());
    }
}

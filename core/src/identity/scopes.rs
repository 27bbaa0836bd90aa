//! Scopes: what a credential may do. A scope is data, a string of
//! `[a-z0-9_-]{1,32}` (products such as `image`, `video`, `music`, `chat`),
//! plus [`ADMIN_SCOPE`] for owner operations, which implies every other
//! but [`OPERATOR_SCOPE`]: the operator's, for the whole box (the admin
//! HTTP API), which no account's admin key implies and only the CLI
//! grants.
//! Owns their validation, their one stored form (sorted, deduplicated,
//! space-separated) and the covering rule; owns no table.

use crate::error::{Error, Result};

/// The scope of owner operations; it implies every other scope.
pub const ADMIN_SCOPE: &str = "admin";
/// The scope of the operator's HTTP API (`/v1/admin/*`): every account's
/// money in, codes and webhooks. Only itself covers it.
pub const OPERATOR_SCOPE: &str = "operator";
/// The longest scope name.
pub const SCOPE_CHARS_MAX: usize = 32;
/// Scopes on one credential, at most.
pub const SCOPES_PER_CREDENTIAL_MAX: usize = 32;

/// Checks one scope name: 1 to [`SCOPE_CHARS_MAX`] of `[a-z0-9_-]`.
pub fn validate_scope(field: &str, scope: &str) -> Result<()> {
    let well_formed = !scope.is_empty()
        && scope.len() <= SCOPE_CHARS_MAX
        && scope
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("scope {scope:?} must be 1 to {SCOPE_CHARS_MAX} of a-z, 0-9, _ and -"),
        ))
    }
}

/// Validates a non-empty list of scopes and returns it sorted and without
/// duplicates (the one form kept and compared).
pub fn normalize(field: &str, scopes: &[String]) -> Result<Vec<String>> {
    if scopes.is_empty() {
        return Err(Error::invalid(field, "at least one scope is required"));
    }
    if scopes.len() > SCOPES_PER_CREDENTIAL_MAX {
        return Err(Error::invalid(
            field,
            format!("at most {SCOPES_PER_CREDENTIAL_MAX} scopes"),
        ));
    }
    for scope in scopes {
        validate_scope(field, scope)?;
    }
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    Ok(sorted)
}

/// Whether `granted` allows `scope`: it names it, or it holds
/// [`ADMIN_SCOPE`] and `scope` is not [`OPERATOR_SCOPE`].
pub fn covers(granted: &[String], scope: &str) -> bool {
    granted
        .iter()
        .any(|g| g == scope || (g == ADMIN_SCOPE && scope != OPERATOR_SCOPE))
}

/// The first of `wanted` that `granted` does not cover, if any.
pub fn first_uncovered<'a>(granted: &[String], wanted: &'a [String]) -> Option<&'a str> {
    wanted
        .iter()
        .map(String::as_str)
        .find(|scope| !covers(granted, scope))
}

/// The product scopes of a catalog's products: every product that is a
/// well-formed scope and not [`ADMIN_SCOPE`], sorted and deduplicated. The
/// one rule for "every product" (see `Gate::product_scopes`).
pub fn product_scopes<'a>(products: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scopes: Vec<String> = products
        .into_iter()
        .filter(|product| {
            *product != ADMIN_SCOPE
                && *product != OPERATOR_SCOPE
                && validate_scope("product", product).is_ok()
        })
        .map(str::to_owned)
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// The stored form: normalized scopes joined by single spaces.
pub(crate) fn encode(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Reads the stored form back.
pub(crate) fn decode(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scope_names_are_checked() {
        for good in [
            "image",
            "video",
            "a",
            "x_y-z9",
            &"s".repeat(SCOPE_CHARS_MAX),
        ] {
            assert!(validate_scope("scopes", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Image",
            "im age",
            "émoji",
            "a.b",
            &"s".repeat(SCOPE_CHARS_MAX + 1),
        ] {
            assert!(validate_scope("scopes", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalize_sorts_dedups_and_refuses_empty() {
        assert_eq!(
            normalize("scopes", &owned(&["video", "image", "video"])).expect("valid"),
            owned(&["image", "video"])
        );
        assert!(normalize("scopes", &[]).is_err());
        let too_many: Vec<String> = (0..=SCOPES_PER_CREDENTIAL_MAX)
            .map(|i| format!("s{i}"))
            .collect();
        assert!(normalize("scopes", &too_many).is_err());
    }

    #[test]
    fn admin_covers_everything_else_only_what_it_names() {
        assert!(covers(&owned(&["image"]), "image"));
        assert!(!covers(&owned(&["image"]), "video"));
        assert!(covers(&owned(&["admin"]), "video"));
        assert!(
            !covers(&owned(&["admin"]), OPERATOR_SCOPE),
            "an account's admin is not the operator"
        );
        assert!(covers(&owned(&["operator"]), OPERATOR_SCOPE));
        assert!(!covers(&owned(&["operator"]), "video"));
        assert_eq!(
            first_uncovered(&owned(&["image"]), &owned(&["image", "video"])),
            Some("video")
        );
        assert_eq!(
            first_uncovered(&owned(&["admin"]), &owned(&["image", "video"])),
            None
        );
    }

    #[test]
    fn product_scopes_are_the_products_never_admin() {
        assert_eq!(
            product_scopes(["video", "image", "admin", "Bad Name", "image", "tools"]),
            owned(&["image", "tools", "video"])
        );
    }

    #[test]
    fn stored_form_round_trips() {
        let scopes = owned(&["chat", "image"]);
        assert_eq!(decode(&encode(&scopes)), scopes);
        assert!(decode("").is_empty());
    }
}

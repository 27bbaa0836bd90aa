//! A secret the operator gives through the environment (a payment
//! provider's key, a webhook signing key): kept in memory only, and its
//! `Debug` prints nothing of it, so it cannot reach a log line by
//! accident. A leaf: it names no other module.

/// A secret from the environment: kept in memory only, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

//! Gate operations on spend caps per API key: setting a key's daily and
//! monthly caps and reading where it stands. The caps are enforced by the
//! submit ([`Gate::submit_for`]), in the same transaction as the job's
//! hold, and given back when a job ends unpaid or is charged less.

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::identity::keys;
use crate::spendcaps::{self, KeySpend, SpendCaps};
use crate::store::ReadOnly;

impl Gate {
    /// Sets key `key_id`'s caps (both `None` removes them). Counting starts
    /// now for a key that had none; an edit takes effect on the next
    /// submit. `not_found` for an unknown key.
    pub fn set_key_spend_caps(&self, key_id: &str, caps: SpendCaps) -> Result<KeySpend> {
        let now = self.clock.now();
        let key_id = key_id.to_owned();
        self.store.write(move |tx| {
            known_key(tx, &key_id)?;
            spendcaps::set(tx, &key_id, caps, now)?;
            spendcaps::spend(tx, &key_id, now)
        })
    }

    /// Where key `key_id` stands against its caps now; `not_found` for an
    /// unknown key.
    pub fn key_spend(&self, key_id: &str) -> Result<KeySpend> {
        let now = self.clock.now();
        self.store.read(|conn| {
            known_key(conn, key_id)?;
            spendcaps::spend(conn, key_id, now)
        })
    }
}

/// `not_found` unless key `key_id` exists.
fn known_key(conn: &ReadOnly<'_>, key_id: &str) -> Result<()> {
    keys::get(conn, key_id)?.ok_or_else(|| Error::NotFound {
        what: "key",
        id: key_id.to_owned(),
    })?;
    Ok(())
}

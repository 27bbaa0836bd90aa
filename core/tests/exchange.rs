//! The external identity exchange through the facade with an in-process
//! stand-in verifier (an `IdentityVerifier` that answers from a table, no
//! socket): the exchange logic builds and runs without the `http`
//! feature, as it must for an embedder that brings its own verifier. The
//! HTTP verifier itself is tested against a stand-in server in
//! `moltbook.rs`, with the feature.

use std::sync::Arc;

use creditgate::identity::external::MOLTBOOK_PROVIDER;
use creditgate::{
    Error, ExchangeOutcome, Gate, IdentityVerifier, ManualClock, NewAccount, StoreOptions,
    VerifiedIdentity,
};

const CATALOG: &str = include_str!("../../fixtures/catalogs/rynjer.json");

/// Vouches for `ok-<id>` tokens as agent `<id>`; refuses everything else.
#[derive(Debug)]
struct StandInVerifier;

impl IdentityVerifier for StandInVerifier {
    fn provider(&self) -> &'static str {
        MOLTBOOK_PROVIDER
    }

    fn verify(&self, identity_token: &str) -> creditgate::Result<VerifiedIdentity> {
        match identity_token.strip_prefix("ok-") {
            Some(id) => Ok(VerifiedIdentity {
                external_id: id.to_owned(),
                name: format!("Bot {id}"),
                karma: Some(7),
                owner_handle: None,
            }),
            None => Err(Error::IdentityRefused {
                provider: MOLTBOOK_PROVIDER,
                reason: "invalid_token".to_owned(),
            }),
        }
    }
}

#[test]
fn an_in_process_verifier_drives_the_exchange_without_the_http_feature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_790_000_000_000));
    let plain = Gate::open(&StoreOptions::new(dir.path().join("x.db")), clock).expect("open");
    plain.import_catalog(CATALOG).expect("catalog");
    let pool = plain
        .create_account(&NewAccount::named("pool"))
        .expect("account")
        .id;
    let gate = plain.with_identity_verifier(Arc::new(StandInVerifier), Some(pool.clone()));

    let grant = match gate.moltbook_exchange("ok-a1").expect("exchange") {
        ExchangeOutcome::Granted(grant) => grant,
        other => panic!("expected a grant, got {other:?}"),
    };
    assert_eq!(grant.account_id, pool);
    let principal = gate
        .authenticate(&grant.access_token)
        .expect("authenticates");
    assert_eq!(principal.agent_id(), Some(grant.agent_id.as_str()));
    let mapped = gate
        .external_identity(MOLTBOOK_PROVIDER, "a1")
        .expect("read")
        .expect("mapped");
    assert_eq!((mapped.agent_id, mapped.karma), (grant.agent_id, Some(7)));

    let refused = gate.moltbook_exchange("nope").expect_err("refused");
    assert_eq!(refused.code(), "identity_refused");
    assert!(gate
        .external_identity(MOLTBOOK_PROVIDER, "nope")
        .expect("read")
        .is_none());
    assert!(gate.verify_ledger().expect("verify").is_ok());
}

//! Gate operations on outgoing webhooks: the operator's endpoints and
//! deliveries, and the sending step a worker runs (claim due deliveries,
//! send each outside any transaction, record the answers). Events enter
//! the outbox in the transactions of what they report (`outbox::emit`,
//! called by the submit, the worker's records, redemptions and top-ups).

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::outbox::{self, Delivery, Endpoint, NewEndpoint, WebhookSender};
use crate::secret::Secret;

/// Deliveries one sending step takes, at most.
pub const DELIVERIES_PER_STEP_MAX: usize = 32;
/// How long a claimed delivery is kept from other steps (a crash resends
/// it after this).
pub const DELIVERY_LEASE_MS: i64 = 60_000;

impl Gate {
    /// Sets the server's webhook signing key (from the environment, at
    /// least [`outbox::SIGNING_KEY_BYTES_MIN`] bytes): endpoints' secrets
    /// derive from it, and deliveries are signed with them.
    pub fn with_webhook_signing_key(mut self, key: Secret) -> Result<Gate> {
        if key.expose().len() < outbox::SIGNING_KEY_BYTES_MIN {
            return Err(Error::invalid(
                "webhook_signing_key",
                format!("must be at least {} bytes", outbox::SIGNING_KEY_BYTES_MIN),
            ));
        }
        self.webhook_key = Some(key);
        Ok(self)
    }

    fn signing_key(&self) -> Result<&Secret> {
        self.webhook_key
            .as_ref()
            .ok_or_else(|| Error::NotConfigured {
                feature: "outgoing webhooks".into(),
                hint: "set CREDITGATE_WEBHOOK_SIGNING_KEY (32 or more random characters) \
                   in the environment"
                    .into(),
            })
    }

    /// Adds an endpoint; with it, its signing secret (shown to the
    /// operator, derived again whenever asked, never stored). Needs the
    /// signing key.
    pub fn add_webhook_endpoint(&self, new: &NewEndpoint) -> Result<(Endpoint, String)> {
        let key = self.signing_key()?.clone();
        let now = self.clock.now();
        let new = new.clone();
        let endpoint = self.store.write(move |tx| outbox::add(tx, &new, now))?;
        let secret = outbox::endpoint_secret(&key, &endpoint.id);
        Ok((endpoint, secret))
    }

    /// An endpoint's signing secret again.
    pub fn webhook_endpoint_secret(&self, endpoint_id: &str) -> Result<String> {
        let key = self.signing_key()?;
        let endpoint = self.store.read(|conn| outbox::get(conn, endpoint_id))?;
        Ok(outbox::endpoint_secret(key, &endpoint.id))
    }

    /// Removes an endpoint; its pending deliveries are dropped.
    pub fn remove_webhook_endpoint(&self, endpoint_id: &str) -> Result<Endpoint> {
        let now = self.clock.now();
        let id = endpoint_id.to_owned();
        self.store.write(move |tx| outbox::remove(tx, &id, now))
    }

    /// Every endpoint.
    pub fn webhook_endpoints(&self) -> Result<Vec<Endpoint>> {
        self.store.read(outbox::list)
    }

    /// Deliveries, newest first, of `status` if given.
    pub fn webhook_deliveries(&self, status: Option<&str>) -> Result<Vec<Delivery>> {
        if let Some(status) = status {
            if !["pending", "delivered", "failed"].contains(&status) {
                return Err(Error::invalid(
                    "status",
                    "must be pending, delivered or failed",
                ));
            }
        }
        self.store.read(|conn| outbox::deliveries(conn, status))
    }

    /// Sends a delivery again, from its first attempt, at the next step.
    pub fn replay_webhook_delivery(&self, delivery_id: &str) -> Result<Delivery> {
        let now = self.clock.now();
        let id = delivery_id.to_owned();
        self.store.write(move |tx| outbox::replay(tx, &id, now))
    }

    /// One sending step: claims due deliveries, sends each with `sender`
    /// (outside any transaction), records the answers; retries wait
    /// `first_retry_ms`, doubling. Returns how many were sent. Without a
    /// signing key nothing is sent (deliveries wait).
    pub fn run_due_deliveries(
        &self,
        sender: &dyn WebhookSender,
        first_retry_ms: i64,
    ) -> Result<usize> {
        let Some(key) = self.webhook_key.clone() else {
            return Ok(0);
        };
        let now = self.clock.now();
        let due = self.store.write(move |tx| {
            outbox::claim_due(tx, now, DELIVERIES_PER_STEP_MAX, DELIVERY_LEASE_MS)
        })?;
        let sent = due.len();
        let mut answers = Vec::with_capacity(due.len());
        for delivery in due {
            let headers = outbox::signed_headers(&key, &delivery, self.clock.now());
            let answer = sender.send(&delivery.url, &headers, &delivery.payload);
            answers.push((delivery, answer));
        }
        if !answers.is_empty() {
            let now = self.clock.now();
            self.store.write(move |tx| {
                for (delivery, answer) in &answers {
                    outbox::record(tx, delivery, answer, now, first_retry_ms)?;
                }
                Ok(())
            })?;
        }
        Ok(sent)
    }
}

/// Puts `job.finished` for `job` in the outbox (in the caller's write).
pub(crate) fn job_finished(
    tx: &crate::store::Tx<'_>,
    job: &crate::jobs::Job,
    now: crate::clock::UnixMillis,
) -> Result<()> {
    let data = serde_json::json!({
        "job_id": job.id,
        "account_id": job.account_id,
        "request_id": job.request_id,
        "model": job.model,
        "status": job.status.as_str(),
        "charged": job.charged_micros.map(crate::money::credits_json),
        "error": job.error_code,
    });
    outbox::emit(tx, outbox::JOB_FINISHED, &data, now)
}

/// Tells `balance.low` endpoints where `account_id`'s balance stands now
/// (in the caller's write); reads nothing when none listens.
pub(crate) fn balance_moved(
    tx: &crate::store::Tx<'_>,
    account_id: &str,
    now: crate::clock::UnixMillis,
) -> Result<()> {
    if !outbox::wants_balances(tx)? {
        return Ok(());
    }
    let balance = crate::ledger::balance(tx, account_id)?;
    outbox::balance_changed(tx, account_id, balance.available, now)
}

//! Gate operations on upstream webhooks: a verified callback makes its job
//! due at once, so the worker polls it and records the answer exactly as
//! any poll would (one path records answers, so a callback racing a poll is
//! safe by construction, and polling stays the fallback when callbacks never
//! come). Each delivery is applied once: a repeat of its delivery id changes
//! nothing. An unverified callback changes nothing at all.

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::jobs;
use crate::providers::WEBHOOK_BODY_BYTES_MAX;

/// What a webhook delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReceipt {
    /// The job it was about, if we have one for its task.
    pub job_id: Option<String>,
    /// False when the delivery was seen before (a retry): nothing applied.
    pub applied: bool,
}

impl Gate {
    /// Takes an upstream callback for provider instance `instance`: checks
    /// its signature through the provider ([`Error::WebhookUnverified`] if
    /// it does not verify; [`Error::NotFound`] for an instance we do not
    /// have), records the delivery once, and makes its job due now.
    pub fn provider_webhook(
        &self,
        instance: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<WebhookReceipt> {
        let provider = self
            .providers
            .get(instance)
            .ok_or_else(|| Error::NotFound {
                what: "provider",
                id: instance.to_owned(),
            })?;
        let unverified = |reason: String| Error::WebhookUnverified {
            provider: instance.to_owned(),
            reason,
        };
        if body.len() > WEBHOOK_BODY_BYTES_MAX {
            return Err(unverified(format!(
                "the body is larger than {WEBHOOK_BODY_BYTES_MAX} bytes"
            )));
        }
        let now = self.clock.now();
        let event = provider
            .verify_webhook(headers, body, now)
            .map_err(unverified)?;
        let instance = instance.to_owned();
        let receipt = self.store.write(move |tx| {
            let job = jobs::find_by_provider_task(tx, &instance, &event.task_id)?;
            let job_id = job.map(|job| job.id);
            let applied =
                jobs::record_delivery(tx, &instance, &event.delivery_id, job_id.as_deref(), now)?;
            if applied {
                if let Some(job_id) = &job_id {
                    jobs::nudge(tx, job_id, now)?;
                }
            }
            Ok(WebhookReceipt { job_id, applied })
        })?;
        if let (Some(job_id), true) = (&receipt.job_id, receipt.applied) {
            // A running job is polled from the schedule in memory.
            self.schedule.make_due(job_id, now);
        }
        Ok(receipt)
    }
}

//! The owner's console: signing in and out, the session a request
//! carries, and the bounded views its pages read. The pages themselves
//! (HTML) are the appliance's; every change they make goes through the
//! same `Gate` operations as the CLI and the APIs.

use crate::accounts::{self, Account};
use crate::error::{Error, Result};
use crate::identity::agents::{self, Agent};
use crate::identity::keys;
use crate::identity::scopes::OPERATOR_SCOPE;
use crate::identity::sessions::{self, ConsoleSession, SignedIn};
use crate::identity::Via;
use crate::jobs::{self, JobFilter, JobStatus, JobsPage};
use crate::ledger::{self, DailyTotal, HistoryPage, TransferKind};

/// The newest jobs the overview counts by status, at most: a bounded read
/// whatever the table's size.
pub const OVERVIEW_JOBS_MAX: usize = 10_000;
/// The overview counts the jobs of this last stretch of time.
pub const OVERVIEW_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The overview's money chart covers this many days, today included.
pub const OVERVIEW_DAYS: i64 = 30;
/// The newest transfers the money chart reads, at most.
pub const OVERVIEW_TRANSFERS_MAX: usize = 10_000;

/// What the console's overview shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// Credits granted, spent and refunded per UTC day of the last
    /// [`OVERVIEW_DAYS`], by product (of the newest
    /// [`OVERVIEW_TRANSFERS_MAX`] transfers and as many usage events at
    /// most); spending is `Capture`.
    pub daily: Vec<DailyTotal>,
    /// Whether there were more transfers in the window than were read.
    pub daily_capped: bool,
    /// The first day the chart covers (whole days since the epoch).
    pub first_day: i64,
    /// Jobs created in the last [`OVERVIEW_WINDOW_MS`] by status (of the
    /// newest [`OVERVIEW_JOBS_MAX`] at most), in status order.
    pub jobs_by_status: Vec<(JobStatus, u64)>,
    /// The same jobs by provider instance and status: where failures
    /// come from.
    pub jobs_by_provider: Vec<(String, JobStatus, u64)>,
    /// How many jobs those counts cover.
    pub jobs_counted: u64,
    /// Whether there were more jobs in the window than were counted.
    pub jobs_capped: bool,
}

use super::Gate;

impl Gate {
    /// Signs in to the console with an API key holding the `operator`
    /// scope, from `address` (the connection's peer). Refused with
    /// [`Error::RateLimited`] after too many failures from the address,
    /// [`Error::Unauthorized`] for a credential that is not a live API key
    /// and [`Error::Forbidden`] for a key without the operator scope; each
    /// refusal counts as a failure.
    pub fn console_sign_in(&self, key: &str, address: &str) -> Result<SignedIn> {
        let now = self.clock.now();
        self.sign_ins.check(address, now)?;
        let principal = match self.authenticate(key) {
            Ok(principal) if matches!(principal.via, Via::Key { .. }) => principal,
            Ok(_) => {
                self.sign_ins.failed(address, now);
                return Err(Error::Unauthorized {
                    reason: "sign in with an API key, not a token",
                });
            }
            Err(err) => {
                self.sign_ins.failed(address, now);
                return Err(err);
            }
        };
        if let Err(err) = principal.require_scope(OPERATOR_SCOPE) {
            self.sign_ins.failed(address, now);
            return Err(err);
        }
        let (key_id, account_id) = (principal.key_id().to_owned(), principal.account_id);
        self.store
            .write(move |tx| sessions::open(tx, &key_id, &account_id, now))
    }

    /// The live console session of `secret` (a session cookie), moving its
    /// idle clock; [`Error::Unauthorized`] when there is none.
    pub fn console_session(&self, secret: &str) -> Result<ConsoleSession> {
        let now = self.clock.now();
        let found = self.store.read(|conn| sessions::find(conn, secret, now))?;
        if found.touch {
            let id = found.session.id.clone();
            self.store.write(move |tx| sessions::touch(tx, &id, now))?;
        }
        Ok(found.session)
    }

    /// The console's overview: the last day's jobs by status (bounded).
    pub fn console_overview(&self) -> Result<Overview> {
        let now = self.clock.now();
        let since = now - OVERVIEW_WINDOW_MS;
        let by_provider = self
            .store
            .read(|conn| jobs::recent_counts(conn, since, OVERVIEW_JOBS_MAX))?;
        let mut jobs_by_status: Vec<(JobStatus, u64)> = Vec::new();
        for (_, status, count) in &by_provider {
            match jobs_by_status.iter_mut().find(|(s, _)| s == status) {
                Some((_, total)) => *total += count,
                None => jobs_by_status.push((*status, *count)),
            }
        }
        jobs_by_status.sort_by_key(|(status, _)| JobStatus::ALL.iter().position(|s| s == status));
        let jobs_counted = jobs_by_status.iter().map(|(_, count)| count).sum();
        let first_day = now.div_euclid(crate::plans::DAY_MS) - (OVERVIEW_DAYS - 1);
        let since = first_day * crate::plans::DAY_MS;
        let (mut daily, transfers_capped) = self
            .store
            .read(|conn| ledger::daily_totals(conn, since, OVERVIEW_TRANSFERS_MAX))?;
        let (spend, spend_capped) = self
            .store
            .read(|conn| jobs::daily_spend(conn, since, OVERVIEW_TRANSFERS_MAX))?;
        // Spending by product: a model's product from the active catalog
        // (a model it no longer prices counts under its own name).
        let catalog = self.catalog(None).ok();
        for (day, model, micros) in spend {
            let product = catalog
                .as_ref()
                .and_then(|catalog| catalog.model(&model))
                .map_or(model.clone(), |spec| spec.product.clone());
            match daily
                .iter_mut()
                .find(|t| t.day == day && t.kind == TransferKind::Capture && t.product == product)
            {
                Some(total) => total.micros += micros,
                None => daily.push(DailyTotal {
                    day,
                    kind: TransferKind::Capture,
                    product,
                    micros,
                }),
            }
        }
        let daily_capped = transfers_capped || spend_capped;
        Ok(Overview {
            jobs_by_provider: by_provider,
            daily,
            daily_capped,
            first_day,
            jobs_by_status,
            jobs_counted,
            jobs_capped: jobs_counted >= OVERVIEW_JOBS_MAX as u64,
        })
    }

    /// Accounts in creation order after the account `after` (a page's
    /// cursor), at most `limit`.
    pub fn accounts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Account>> {
        self.store.read(|conn| accounts::page(conn, after, limit))
    }

    /// Every transfer of the ledger, newest first, a page at a time.
    pub fn ledger_page(&self, cursor: Option<&str>, limit: usize) -> Result<HistoryPage> {
        self.store.read(|conn| ledger::recent(conn, cursor, limit))
    }

    /// Agents waiting to be bound (their code unexpired), newest first, and
    /// the latest bound, at most `limit` of each.
    pub fn agents_overview(&self, limit: usize) -> Result<(Vec<Agent>, Vec<Agent>)> {
        let now = self.clock.now();
        self.store.read(|conn| {
            Ok((
                agents::pending(conn, now, limit)?,
                agents::bound(conn, limit)?,
            ))
        })
    }

    /// Revokes every key an agent created (and with them its tokens); how
    /// many. An unknown agent is `not_found`.
    pub fn revoke_agent_keys(&self, agent_id: &str) -> Result<usize> {
        let now = self.clock.now();
        let agent_id = agent_id.to_owned();
        self.store.write(move |tx| {
            agents::get(tx, &agent_id)?.ok_or_else(|| Error::NotFound {
                what: "agent",
                id: agent_id.clone(),
            })?;
            keys::revoke_agent_keys(tx, &agent_id, now)
        })
    }

    /// A page of jobs by `filter`, newest first, walking a bounded stretch
    /// of the creation index (a rare filter answers a short page and where
    /// to go on).
    pub fn jobs_page(&self, filter: &JobFilter) -> Result<JobsPage> {
        let mut page = self
            .store
            .read(|conn| jobs::page(conn, filter, jobs::JOBS_SCAN_MAX))?;
        page.jobs = page
            .jobs
            .into_iter()
            .map(|job| self.with_unwritten_polls(job))
            .collect();
        Ok(page)
    }

    /// The agents bound to an account, at most `limit`.
    pub fn agents_of(&self, account_id: &str, limit: usize) -> Result<Vec<Agent>> {
        self.store
            .read(|conn| agents::of_account(conn, account_id, limit))
    }

    /// Accounts with auto top-up below their threshold, the furthest below
    /// first, at most `limit`: (account, available, threshold) in
    /// micro-credits.
    pub fn wallets_below_threshold(&self, limit: usize) -> Result<Vec<(String, i64, i64)>> {
        self.store
            .read(|conn| crate::autotopup::below_threshold(conn, limit))
    }

    /// The provider instances this gate routes to.
    pub fn providers(&self) -> &crate::providers::ProviderRegistry {
        &self.providers
    }

    /// Ends the console session of `secret` (signing out). Idempotent.
    pub fn console_sign_out(&self, secret: &str) -> Result<()> {
        let now = self.clock.now();
        let secret = secret.to_owned();
        self.store
            .write(move |tx| sessions::end(tx, &secret, now))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::test_support::funded_gate;
    use serde_json::json;

    /// A rare filter walks a bounded stretch of the index per page, says
    /// where it stopped, and following the cursors finds every match once.
    #[test]
    fn a_filtered_page_walks_a_bounded_stretch_and_its_cursors_find_every_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (gate, clock, account) = funded_gate(dir.path(), "pages.db");
        gate.grant("more", &account, 1_000.into(), "")
            .expect("grant");
        let mut canceled = Vec::new();
        for i in 0..30 {
            clock.advance(std::time::Duration::from_millis(5));
            let body = json!({"request_id": format!("r{i}"), "model": "z-image", "prompt": "p"});
            let job = gate.submit(&account, &body).expect("submit").job;
            if i == 3 || i == 17 {
                gate.cancel(&account, &job.id).expect("cancel");
                canceled.push(job.id);
            }
        }
        let mut found = Vec::new();
        let mut filter = JobFilter {
            account_id: Some(account.clone()),
            status: Some(JobStatus::Canceled),
            limit: 5,
            ..JobFilter::default()
        };
        let mut pages = 0;
        loop {
            let page = gate
                .store
                .read(|conn| jobs::page(conn, &filter, 10))
                .expect("page");
            pages += 1;
            assert!(page.jobs.iter().all(|j| j.status == JobStatus::Canceled));
            found.extend(page.jobs.iter().map(|j| j.id.clone()));
            match page.next_before {
                Some(before) => {
                    assert!(page.scan_stopped, "short pages stop at the bound");
                    filter.before = Some(before);
                }
                None => break,
            }
            assert!(pages < 10, "the cursors move on");
        }
        canceled.reverse();
        assert_eq!(found, canceled, "newest first, each once");
        assert_eq!(pages, 3, "30 jobs walked 10 at a time");
    }
}

//! Gate operations on plan tiers: listing and editing plans, naming the
//! default plan, putting an account on a plan, and where an account stands
//! against its plan's cap on a product. The cap itself is enforced by the
//! submit ([`Gate::submit`]), in the same transaction as the job's hold.

use crate::accounts::{self, Account};
use crate::error::Result;
use crate::gate::Gate;
use crate::plans::{self, Plan, PlanEdit};
use crate::ratelimit::Quota;

impl Gate {
    /// Every plan, by name (at most [`plans::PLANS_LIST_MAX`]).
    pub fn plans(&self) -> Result<Vec<Plan>> {
        self.store.read(plans::list)
    }

    /// A plan by name, or `not_found`.
    pub fn plan(&self, name: &str) -> Result<Plan> {
        self.store.read(|conn| plans::get(conn, name))
    }

    /// Creates or changes a plan: each cap of `edit` set or removed, the
    /// others kept. Takes effect on the next submit of every account on it.
    pub fn edit_plan(&self, edit: &PlanEdit) -> Result<Plan> {
        let now = self.clock.now();
        let edit = edit.clone();
        self.store.write(move |tx| plans::edit(tx, &edit, now))
    }

    /// Names the plan accounts created without one are put on (`None`:
    /// none, so they have no caps). The plan must exist. Accounts already
    /// created keep their plan.
    pub fn set_default_plan(&self, name: Option<&str>) -> Result<()> {
        let now = self.clock.now();
        let name = name.map(str::to_owned);
        self.store
            .write(move |tx| plans::set_default(tx, name.as_deref(), now))
    }

    /// Puts an account on plan `plan`. Like [`Gate::create_account`], any
    /// name is taken; a name with no plan row means no caps (shells warn).
    /// Today's counts are kept: they are the account's, not the plan's.
    pub fn set_account_plan(&self, account_id: &str, plan: &str) -> Result<Account> {
        let (id, plan) = (account_id.to_owned(), plan.to_owned());
        self.store
            .write(move |tx| accounts::set_plan(tx, &id, &plan))
    }

    /// Where an account stands today against its plan's cap on `product`,
    /// counting nothing; `None` when its plan does not cap the product.
    pub fn plan_quota(&self, account_id: &str, product: &str) -> Result<Option<Quota>> {
        let now = self.clock.now();
        self.store.read(|conn| {
            let account = accounts::get(conn, account_id)?;
            Ok(plans::usage(conn, &account.plan, account_id, product, now)?.map(quota_of))
        })
    }
}

/// The `X-RateLimit-*` numbers of a plan cap.
pub(crate) fn quota_of(usage: plans::PlanUsage) -> Quota {
    Quota {
        limit: usage.limit,
        remaining: usage.remaining(),
        reset_at: usage.reset_at,
    }
}

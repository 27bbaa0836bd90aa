-- Migration 1: index jobs for listing by creation time only.
--
-- `jobs_status_created` was rewritten by every status change (three per
-- job: pending, running, and its end), which the load benchmark paid for
-- on the single writer. Listing all jobs now walks `jobs_created` (written
-- once, at insert) newest first and filters by status as it goes; an
-- account's jobs keep `jobs_account_created`.
DROP INDEX jobs_status_created;
CREATE INDEX jobs_created ON jobs (created_at);

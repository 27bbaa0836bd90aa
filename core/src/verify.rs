//! `ledger verify`: checks the database file (SQLite's own integrity and
//! foreign-key checks), then every ledger invariant of CONTRACTS.md §2, from
//! the outside, by reading the database, never by trusting the code that
//! wrote it. Read-only; it owns no table. Each violation names the check and
//! the rows involved, so an operator can find what was tampered with. A
//! damaged file is reported as such and its ledger is not checked: rows
//! read through a broken b-tree prove nothing.

use crate::error::Result;
use crate::ledger::{chain_hash, ChainFields};
use crate::store::ReadOnly;

/// Violations reported in full, at most; the count beyond is still given.
pub const VIOLATIONS_REPORTED_MAX: usize = 1_000;

/// Problems `PRAGMA integrity_check` lists, at most (it stops there).
pub const INTEGRITY_PROBLEMS_MAX: usize = 100;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The check that failed, e.g. `balance_replay`.
    pub check: &'static str,
    /// What exactly is wrong, naming accounts, transfers or holds.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Transfers read.
    pub transfers: i64,
    /// Ledger accounts read.
    pub accounts: i64,
    /// Holds still open.
    pub open_holds: i64,
    /// What is broken; empty when the ledger is sound.
    pub violations: Vec<Violation>,
    /// Violations found beyond [`VIOLATIONS_REPORTED_MAX`].
    pub violations_omitted: usize,
    /// SQLite's integrity check found the file damaged (its problems are
    /// the `integrity_check` violations); the ledger was then not checked
    /// and the counts above are not known.
    pub damaged: bool,
}

impl VerifyReport {
    /// True when no invariant is broken.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn push(&mut self, check: &'static str, detail: String) {
        if self.violations.len() < VIOLATIONS_REPORTED_MAX {
            self.violations.push(Violation { check, detail });
        } else {
            self.violations_omitted += 1;
        }
    }
}

/// Runs every check, inside one read transaction so that all checks see
/// the same snapshot. Every step gets a [`ReadOnly`]: a write here does not
/// compile.
pub(crate) fn verify(conn: &ReadOnly<'_>) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    conn.begin_snapshot()?;
    let result = check_file(conn, &mut report).and_then(|()| {
        if report.damaged {
            Ok(())
        } else {
            run_checks(conn, &mut report)
        }
    });
    // A read transaction: ending it changes nothing. SQLite may have ended
    // it already on finding damage, and on a damaged file ending it can
    // fail again; the report says what matters then.
    let ended = conn.end_snapshot();
    result?;
    if !report.damaged {
        ended?;
    }
    Ok(report)
}

/// SQLite's integrity check (b-trees, page references, every index against
/// its table, constraints) and foreign-key check. An integrity problem
/// marks the report `damaged`; a file too damaged to be read at all is
/// damaged too, not an error.
fn check_file(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    let problems: rusqlite::Result<Vec<String>> = conn
        .prepare(&format!("PRAGMA integrity_check({INTEGRITY_PROBLEMS_MAX})"))
        .and_then(|mut stmt| stmt.query_map([], |row| row.get::<_, String>(0))?.collect());
    let problems = match problems {
        Ok(problems) => problems,
        Err(err) if is_damage(&err) => vec![format!("SQLite cannot read the file: {err}")],
        Err(err) => return Err(err.into()),
    };
    if problems != ["ok"] {
        // A row that breaks a CHECK or NOT NULL constraint is tampered data,
        // which the ledger checks still describe; anything else (b-tree
        // structure, page references, an index that disagrees with its
        // table) is a damaged file.
        report.damaged = problems
            .iter()
            .any(|problem| !is_constraint_problem(problem));
        for problem in problems {
            report.push("integrity_check", problem);
        }
        if report.damaged {
            return Ok(());
        }
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |row| {
        Ok(format!(
            "{} row {} refers to a missing row of {}",
            row.get::<_, String>(0)?,
            row.get::<_, Option<i64>>(1)?
                .map_or_else(|| "(without rowid)".to_owned(), |id| id.to_string()),
            row.get::<_, String>(2)?,
        ))
    })?;
    for detail in rows {
        report.push("foreign_key_check", detail?);
    }
    Ok(())
}

/// Whether an `integrity_check` line reports a row that breaks a column
/// constraint (rather than damage to the file's structure).
fn is_constraint_problem(problem: &str) -> bool {
    problem.starts_with("CHECK constraint failed in ")
        || problem.starts_with("NULL value in ")
        || problem.starts_with("non-")
}

/// Whether SQLite failed because the file is damaged.
fn is_damage(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn run_checks(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    report.transfers = conn.query_row("SELECT count(*) FROM transfers", [], |r| r.get(0))?;
    report.accounts = conn.query_row("SELECT count(*) FROM ledger_accounts", [], |r| r.get(0))?;
    report.open_holds = conn.query_row("SELECT count(*) FROM open_holds", [], |r| r.get(0))?;
    check_debits_equal_credits(conn, report)?;
    check_balances_replay(conn, report)?;
    check_no_wallet_below_zero(conn, report)?;
    check_open_holds(conn, report)?;
    check_resolutions(conn, report)?;
    check_refunds(conn, report)?;
    check_shapes(conn, report)?;
    check_immutability(conn, report)?;
    check_jobs(conn, report)?;
    check_codes(conn, report)?;
    check_key_spend(conn, report)?;
    check_topups(conn, report)?;
    check_promotional(conn, report)?;
    Ok(())
}

/// Collects `(label, detail)` rows of a query that lists violations.
fn each_row(
    conn: &ReadOnly<'_>,
    sql: &str,
    report: &mut VerifyReport,
    check: &'static str,
) -> Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    for detail in rows {
        report.push(check, detail?);
    }
    Ok(())
}

fn check_debits_equal_credits(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    let (dp, cp, dq, cq): (i64, i64, i64, i64) = conn.query_row(
        "SELECT coalesce(sum(debits_posted), 0), coalesce(sum(credits_posted), 0),
                coalesce(sum(debits_pending), 0), coalesce(sum(credits_pending), 0)
         FROM ledger_accounts",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    if dp != cp {
        report.push(
            "debits_equal_credits",
            format!("posted debits {dp} != posted credits {cp}"),
        );
    }
    if dq != cq {
        report.push(
            "debits_equal_credits",
            format!("pending debits {dq} != pending credits {cq}"),
        );
    }
    Ok(())
}

fn check_balances_replay(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    // Posted amounts: grants, captures and refunds. Pending: holds with no
    // resolution. Each materialised column must equal its replay.
    each_row(
        conn,
        "WITH replay AS (
            SELECT a.id, a.code, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
              (SELECT coalesce(sum(amount), 0) FROM transfers
                 WHERE debit_account = a.id
                   AND kind IN ('grant', 'capture', 'refund', 'reversal')) AS r_dp,
              (SELECT coalesce(sum(amount), 0) FROM transfers
                 WHERE credit_account = a.id
                   AND kind IN ('grant', 'capture', 'refund', 'reversal')) AS r_cp,
              (SELECT coalesce(sum(h.amount), 0) FROM transfers h
                 WHERE h.debit_account = a.id AND h.kind = 'hold'
                   AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = h.id)) AS r_dq,
              (SELECT coalesce(sum(h.amount), 0) FROM transfers h
                 WHERE h.credit_account = a.id AND h.kind = 'hold'
                   AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = h.id)) AS r_cq
            FROM ledger_accounts a)
         SELECT code || ': materialised (debits_posted ' || debits_posted || ', credits_posted '
                || credits_posted || ', debits_pending ' || debits_pending || ', credits_pending '
                || credits_pending || ') != replay of transfers (' || r_dp || ', ' || r_cp || ', '
                || r_dq || ', ' || r_cq || ')'
         FROM replay
         WHERE debits_posted != r_dp OR credits_posted != r_cp
            OR debits_pending != r_dq OR credits_pending != r_cq
         ORDER BY id",
        report,
        "balance_replay",
    )
}

fn check_no_wallet_below_zero(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "SELECT code || ': available ' || (credits_posted - debits_posted - debits_pending)
                || ' below zero without allow_negative'
         FROM ledger_accounts
         WHERE allow_negative = 0 AND credits_posted - debits_posted - debits_pending < 0
         ORDER BY id",
        report,
        "wallet_below_zero",
    )
}

fn check_open_holds(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "SELECT a.code || ': debits_pending ' || a.debits_pending || ' != sum of open holds '
                || coalesce((SELECT sum(amount) FROM open_holds o WHERE o.wallet = a.id), 0)
         FROM ledger_accounts a
         WHERE a.kind = 'wallet'
           AND a.debits_pending != coalesce((SELECT sum(amount) FROM open_holds o WHERE o.wallet = a.id), 0)
         ORDER BY a.id",
        report,
        "pending_equals_open_holds",
    )?;
    each_row(
        conn,
        "SELECT 'hold ' || h.id || ' is unresolved but not in open_holds (or differs there)'
         FROM transfers h
         WHERE h.kind = 'hold'
           AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = h.id)
           AND NOT EXISTS (SELECT 1 FROM open_holds o WHERE o.transfer_id = h.id
                             AND o.wallet = h.debit_account AND o.amount = h.amount
                             AND o.deadline IS h.deadline)
         ORDER BY h.seq",
        report,
        "open_holds_match_transfers",
    )?;
    each_row(
        conn,
        "SELECT 'open hold ' || o.transfer_id || ' has no unresolved hold transfer'
         FROM open_holds o
         WHERE NOT EXISTS (SELECT 1 FROM transfers h WHERE h.id = o.transfer_id AND h.kind = 'hold')
            OR EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = o.transfer_id)
         ORDER BY o.transfer_id",
        report,
        "open_holds_match_transfers",
    )
}

fn check_resolutions(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "SELECT 'hold ' || pending_id || ' resolved ' || count(*) || ' times'
         FROM transfers WHERE pending_id IS NOT NULL
         GROUP BY pending_id HAVING count(*) > 1 ORDER BY pending_id",
        report,
        "hold_resolved_once",
    )?;
    each_row(
        conn,
        "SELECT r.kind || ' ' || r.id || ' resolves ' || r.pending_id || ', which is '
                || coalesce('a ' || h.kind, 'missing')
         FROM transfers r LEFT JOIN transfers h ON h.id = r.pending_id
         WHERE r.pending_id IS NOT NULL AND (h.id IS NULL OR h.kind != 'hold')
         ORDER BY r.seq",
        report,
        "resolution_targets_hold",
    )?;
    each_row(
        conn,
        "SELECT r.kind || ' ' || r.id || ' of ' || r.amount || ' does not fit hold ' || h.id
                || ' of ' || h.amount
         FROM transfers r JOIN transfers h ON h.id = r.pending_id
         WHERE (r.kind = 'capture' AND r.amount > h.amount)
            OR (r.kind IN ('release', 'expire') AND r.amount != h.amount)
            OR r.debit_account != h.debit_account OR r.credit_account != h.credit_account
            OR r.seq < h.seq
         ORDER BY r.seq",
        report,
        "resolution_fits_hold",
    )
}

fn check_refunds(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    // A refund gives back (part of) a capture; a reversal takes back (part
    // of) a grant. Either way: within what it gives back, of the right
    // kind, between the same two ledger accounts in the other direction.
    for (kind, of_kind, noun, check) in [
        ("refund", "capture", "refunds", "refund_within_charge"),
        ("reversal", "grant", "reversals", "reversal_within_grant"),
    ] {
        each_row(
            conn,
            &format!(
                "SELECT '{noun} of ' || c.id || ' total ' || sum(f.amount) || ', above its '
                        || c.amount || ' (or it is a ' || c.kind || ')'
                 FROM transfers f JOIN transfers c ON c.id = f.refund_of
                 WHERE f.kind = '{kind}'
                 GROUP BY c.id
                 HAVING sum(f.amount) > c.amount OR c.kind != '{of_kind}'
                     OR sum(f.debit_account != c.credit_account
                            OR f.credit_account != c.debit_account) > 0
                 ORDER BY c.seq"
            ),
            report,
            check,
        )?;
    }
    Ok(())
}

fn check_shapes(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    // Which ledger accounts each kind may move between.
    each_row(
        conn,
        "SELECT t.kind || ' ' || t.id || ' moves ' || d.code || ' -> ' || c.code
         FROM transfers t
         JOIN ledger_accounts d ON d.id = t.debit_account
         JOIN ledger_accounts c ON c.id = t.credit_account
         WHERE NOT CASE t.kind
           WHEN 'grant' THEN d.code = 'system:grants' AND c.kind = 'wallet'
           WHEN 'refund' THEN d.code = 'system:revenue' AND c.kind = 'wallet'
           WHEN 'reversal' THEN d.kind = 'wallet' AND c.code = 'system:grants'
           ELSE d.kind = 'wallet' AND c.code = 'system:revenue'
         END
         ORDER BY t.seq",
        report,
        "transfer_shape",
    )
}

/// Promotional buckets: each is a grant of its amount to its wallet; what
/// it holds equals its open holds' draws (and only open holds draw); what
/// expired equals the reversals of its grant; a hold draws at most its
/// amount; an unflagged wallet holds at least its buckets' available.
fn check_promotional(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "SELECT 'bucket ' || b.grant_id || ' is not a grant of ' || b.amount || ' to its wallet'
         FROM grant_buckets b LEFT JOIN transfers g ON g.id = b.grant_id
         WHERE g.id IS NULL OR g.kind != 'grant' OR g.amount != b.amount
            OR g.credit_account != b.wallet
         ORDER BY b.grant_id",
        report,
        "promotional",
    )?;
    each_row(
        conn,
        "SELECT 'bucket ' || b.grant_id || ' holds ' || b.held || ' but its draws total '
                || coalesce((SELECT sum(d.amount) FROM hold_draws d WHERE d.grant_id = b.grant_id), 0)
         FROM grant_buckets b
         WHERE b.held != coalesce((SELECT sum(d.amount) FROM hold_draws d
                                    WHERE d.grant_id = b.grant_id), 0)
         UNION ALL
         SELECT 'bucket ' || b.grant_id || ' expired ' || b.expired || ' but reversals of it total '
                || coalesce((SELECT sum(r.amount) FROM transfers r
                              WHERE r.refund_of = b.grant_id AND r.kind = 'reversal'), 0)
         FROM grant_buckets b
         WHERE b.expired != coalesce((SELECT sum(r.amount) FROM transfers r
                                       WHERE r.refund_of = b.grant_id AND r.kind = 'reversal'), 0)
         UNION ALL
         SELECT 'hold ' || d.hold_id || ' draws ' || sum(d.amount) || ' (or is not open)'
         FROM hold_draws d LEFT JOIN open_holds o ON o.transfer_id = d.hold_id
         GROUP BY d.hold_id
         HAVING max(o.transfer_id IS NULL) = 1 OR sum(d.amount) > max(o.amount)
         UNION ALL
         SELECT a.code || ' has ' || (a.credits_posted - a.debits_posted - a.debits_pending)
                || ' available but ' || sum(b.available) || ' promotional'
         FROM grant_buckets b JOIN ledger_accounts a ON a.id = b.wallet
         WHERE a.allow_negative = 0
         GROUP BY a.id
         HAVING sum(b.available) > max(a.credits_posted - a.debits_posted - a.debits_pending)",
        report,
        "promotional",
    )
}

/// Each credited top-up is one grant of its credits to its account.
fn check_topups(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "SELECT 'top-up ' || p.id || ' is credited without a grant of '
                || p.credits_micros || ' to ' || p.account_id
         FROM topups p
         LEFT JOIN transfers t ON t.id = p.transfer_id
         LEFT JOIN ledger_accounts w ON w.id = t.credit_account
         WHERE p.status = 'credited'
           AND (t.id IS NULL OR t.kind != 'grant' OR t.amount != p.credits_micros
                OR w.account_id IS NOT p.account_id)",
        report,
        "topups",
    )?;
    // What a top-up records as taken back is what the reversals of its
    // grant took.
    each_row(
        conn,
        "SELECT 'top-up ' || p.id || ' records ' || p.reversed_micros
                || ' reversed but its grant''s reversals total '
                || coalesce((SELECT sum(r.amount) FROM transfers r
                              WHERE r.refund_of = p.transfer_id AND r.kind = 'reversal'), 0)
         FROM topups p
         WHERE p.status = 'credited'
           AND p.reversed_micros != coalesce((SELECT sum(r.amount) FROM transfers r
                                               WHERE r.refund_of = p.transfer_id
                                                 AND r.kind = 'reversal'), 0)",
        report,
        "topups",
    )?;
    // ... and was credited because of exactly one verified rail event.
    each_row(
        conn,
        "SELECT 'top-up ' || p.id || ' is credited by ' || count(e.event_id) || ' events'
         FROM topups p
         LEFT JOIN payment_events e ON e.topup_id = p.id AND e.outcome = 'credited'
         WHERE p.status = 'credited'
         GROUP BY p.id
         HAVING count(e.event_id) != 1",
        report,
        "topups",
    )
}

/// Each key's count per period equals what its jobs counted there, and a
/// finished job counts no more than its charge (nothing when unpaid).
fn check_key_spend(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "WITH counted AS (
             SELECT key_id, day_period AS period, counted_micros FROM key_spend_jobs
             UNION ALL
             SELECT key_id, month_period, counted_micros FROM key_spend_jobs)
         SELECT 'key ' || s.key_id || ' counts ' || s.spent_micros || ' in ' || s.period
                || ' but its jobs counted ' || coalesce(sum(c.counted_micros), 0)
         FROM key_spend s
         LEFT JOIN counted c ON c.key_id = s.key_id AND c.period = s.period
         GROUP BY s.key_id, s.period
         HAVING s.spent_micros != coalesce(sum(c.counted_micros), 0)
         ORDER BY s.key_id, s.period",
        report,
        "key_spend_counts",
    )?;
    each_row(
        conn,
        "SELECT 'job ' || j.id || ' (' || j.status || ') still counts '
                || k.counted_micros || ' against key ' || k.key_id
         FROM key_spend_jobs k JOIN jobs j ON j.id = k.job_id
         WHERE (j.status IN ('failed', 'canceled', 'expired') AND k.counted_micros != 0)
            OR (j.status = 'succeeded' AND k.counted_micros != coalesce(j.charged_micros, 0))
            OR (j.status IN ('pending', 'running') AND k.counted_micros != j.estimate_micros)
         ORDER BY j.id",
        report,
        "key_spend_jobs",
    )
}

/// Each code's uses equal its redemptions, within its bound, and each
/// redemption is a grant of the code's amount to the redeeming account.
fn check_codes(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "SELECT 'code ' || c.id || ' counts ' || c.uses || ' uses of ' || c.uses_max
                || ' but has ' || count(r.use_number) || ' redemptions'
         FROM redemption_codes c LEFT JOIN code_redemptions r ON r.code_id = c.id
         GROUP BY c.id
         HAVING count(r.use_number) != c.uses OR c.uses > c.uses_max
         ORDER BY c.id",
        report,
        "code_uses",
    )?;
    each_row(
        conn,
        "SELECT 'redemption ' || r.code_id || ' #' || r.use_number || ' is not a grant of '
                || c.amount_micros || ' to ' || r.account_id
         FROM code_redemptions r
         JOIN redemption_codes c ON c.id = r.code_id
         LEFT JOIN transfers t ON t.id = r.transfer_id
         LEFT JOIN ledger_accounts w ON w.id = t.credit_account
         WHERE t.id IS NULL OR t.kind != 'grant' OR t.amount != c.amount_micros
            OR w.account_id IS NOT r.account_id
         ORDER BY r.code_id, r.use_number",
        report,
        "code_grants",
    )
}

fn check_jobs(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    each_row(
        conn,
        "SELECT 'job ' || j.id || ' is ' || j.status || ' but its hold ' || j.hold_id || ' is still open'
         FROM jobs j JOIN open_holds o ON o.transfer_id = j.hold_id
         WHERE j.status NOT IN ('pending', 'running') ORDER BY j.id",
        report,
        "terminal_job_has_no_open_hold",
    )?;
    each_row(
        conn,
        "SELECT 'job ' || j.id || ' is ' || j.status || ' but its hold ' || j.hold_id || ' was resolved by '
                || r.id
         FROM jobs j JOIN transfers r ON r.pending_id = j.hold_id
         WHERE j.status IN ('pending', 'running') ORDER BY j.id",
        report,
        "live_job_keeps_its_hold",
    )?;
    each_row(
        conn,
        "SELECT 'job ' || j.id || ': hold ' || coalesce(j.hold_id, '(none)') || ' of '
                || coalesce(h.amount, 0) || ' does not match the estimate ' || j.estimate_micros
                || ' or the account'
         FROM jobs j
         LEFT JOIN transfers h ON h.id = j.hold_id
         LEFT JOIN ledger_accounts w ON w.account_id = j.account_id
         WHERE j.hold_id IS NOT NULL
           AND (h.id IS NULL OR h.kind != 'hold' OR h.amount != j.estimate_micros
                OR h.debit_account != w.id)
         ORDER BY j.id",
        report,
        "job_hold_matches_estimate",
    )?;
    each_row(
        conn,
        "SELECT 'succeeded job ' || j.id || ' has ' || count(c.id) || ' capture(s) and charged '
                || coalesce(j.charged_micros, 'nothing')
         FROM jobs j LEFT JOIN transfers c ON c.pending_id = j.hold_id AND c.kind = 'capture'
         WHERE j.status = 'succeeded' AND j.hold_id IS NOT NULL
         GROUP BY j.id
         HAVING count(c.id) != 1 OR max(c.id) != 'capture:' || j.id
             OR max(c.amount) != j.charged_micros
         ORDER BY j.id",
        report,
        "succeeded_job_captured_once",
    )?;
    each_row(
        conn,
        "SELECT j.status || ' job ' || j.id || ' was charged by ' || c.id
         FROM jobs j JOIN transfers c ON c.pending_id = j.hold_id AND c.kind = 'capture'
         WHERE j.status != 'succeeded' ORDER BY j.id",
        report,
        "unsuccessful_job_not_charged",
    )?;
    each_row(
        conn,
        "SELECT 'succeeded job ' || j.id || ' has no usage event matching its charge'
         FROM jobs j LEFT JOIN usage_events u ON u.job_id = j.id
         WHERE j.status = 'succeeded'
           AND (u.id IS NULL OR u.id != j.usage_event_id OR u.amount != j.charged_micros
                OR u.transfer_id IS NOT ('capture:' || j.id) AND j.hold_id IS NOT NULL)
         ORDER BY j.id",
        report,
        "usage_event_per_charge",
    )
}

fn check_immutability(conn: &ReadOnly<'_>, report: &mut VerifyReport) -> Result<()> {
    let triggers: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'
         AND name IN ('transfers_are_never_updated', 'transfers_are_never_deleted')",
        [],
        |r| r.get(0),
    )?;
    if triggers != 2 {
        report.push(
            "transfers_immutable",
            "the triggers that forbid updating or deleting transfers are missing".to_owned(),
        );
    }
    let sequence: i64 = conn
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'transfers'), 0)",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let mut stmt = conn.prepare(
        "SELECT seq, id, kind, debit_account, credit_account, amount, pending_id, refund_of,
                deadline, memo, created_at, chain
         FROM transfers ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut previous: Vec<u8> = Vec::new();
    let mut expected_seq = 1i64;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let id: String = row.get(1)?;
        let kind: String = row.get(2)?;
        let pending_id: Option<String> = row.get(6)?;
        let refund_of: Option<String> = row.get(7)?;
        let memo: String = row.get(9)?;
        let stored: Vec<u8> = row.get(11)?;
        if seq != expected_seq {
            report.push(
                "transfers_immutable",
                format!(
                    "transfers {expected_seq}..{} are missing (deleted)",
                    seq - 1
                ),
            );
        }
        let computed = chain_hash(
            &previous,
            &ChainFields {
                seq,
                id: &id,
                kind: &kind,
                debit: row.get(3)?,
                credit: row.get(4)?,
                amount: row.get(5)?,
                pending_id: pending_id.as_deref(),
                refund_of: refund_of.as_deref(),
                deadline: row.get(8)?,
                memo: &memo,
                created_at: row.get(10)?,
            },
        );
        if computed.as_slice() != stored.as_slice() {
            report.push(
                "transfers_immutable",
                format!("transfer {id} (seq {seq}) was changed after it was written: its chain hash does not match"),
            );
        }
        // Chain onward from what is stored, so one changed row is reported once.
        previous = stored;
        expected_seq = seq + 1;
    }
    if sequence > expected_seq - 1 {
        report.push(
            "transfers_immutable",
            format!(
                "transfers {}..{sequence} are missing (deleted)",
                expected_seq
            ),
        );
    }
    Ok(())
}

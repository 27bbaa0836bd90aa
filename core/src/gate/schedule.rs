//! The poll schedule of running jobs, in memory: which running job a
//! worker polls next, and when. It owns nothing durable; it is rebuilt
//! from the jobs' stored `next_run_at` whenever the gate opens or
//! recovers, so that a poll answering "still running" writes nothing.
//!
//! Why: every running job is polled until it ends, often dozens of times
//! for a video. When each of those answers rewrote the job row (and its
//! index entry) and a worker's lease, most of the single writer's work was
//! bookkeeping that a restart does not need: after a crash, polling a job
//! sooner than planned is harmless. Only answers that change what is
//! stored (a status, outputs, a transient error's message) are written;
//! the polls counted in between are carried here and written with them.
//!
//! Pending jobs are not here: their claim is durable, because a submission
//! must be marked before it is sent (see [`super::work`]).
//!
//! Bounded: at most [`RUNNING_JOBS_MAX`] entries. The worker hands no
//! pending job to a provider while the schedule is full, so a running job
//! is always in it (or will be, after a restart, from its row).
//!
//! Concurrency: one process serves a database (the worker's `recover` at
//! start already assumes it); within it, a job taken by one worker step is
//! leased here and is not given to another until it is put back.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::clock::UnixMillis;

/// Running jobs the schedule holds, at most: a gate hands no more jobs to
/// providers while this many are running.
pub const RUNNING_JOBS_MAX: usize = 100_000;

/// Polls made since a job's last durable write, to be written with the
/// next one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Unwritten {
    /// Polls answered "still running".
    pub(crate) polls: i64,
    /// Polls that failed transiently (without a message to record).
    pub(crate) poll_errors: i64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    due: UnixMillis,
    unwritten: Unwritten,
    /// Taken by a worker step, not yet put back.
    leased: bool,
    /// Made due by an upstream's notice while leased.
    nudged: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Unleased entries by when they are due.
    by_due: BTreeSet<(UnixMillis, String)>,
    entries: HashMap<String, Entry>,
}

/// The running jobs of a gate and when each is next polled.
#[derive(Debug, Default)]
pub(crate) struct PollSchedule {
    inner: Mutex<Inner>,
}

impl PollSchedule {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change below leaves both maps consistent before it can
        // panic (none of them does), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces every entry with `running` (job id, next poll), as stored.
    pub(crate) fn rebuild(&self, running: Vec<(String, UnixMillis)>) {
        let mut inner = self.lock();
        inner.by_due.clear();
        inner.entries.clear();
        // All of them, even past the bound (it was lower when they started):
        // a running job left out would never be polled.
        for (id, due) in running {
            inner.by_due.insert((due, id.clone()));
            inner.entries.insert(
                id,
                Entry {
                    due,
                    unwritten: Unwritten::default(),
                    leased: false,
                    nudged: false,
                },
            );
        }
    }

    /// How many running jobs it holds.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// A job whose running state was just written: next polled at `due`,
    /// with nothing unwritten. Replaces any entry it had.
    pub(crate) fn insert(&self, id: &str, due: UnixMillis) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(id) {
            inner.by_due.remove(&(old.due, id.to_owned()));
        }
        inner.by_due.insert((due, id.to_owned()));
        inner.entries.insert(
            id.to_owned(),
            Entry {
                due,
                unwritten: Unwritten::default(),
                leased: false,
                nudged: false,
            },
        );
    }

    /// Takes up to `limit` jobs due at `now`, earliest first, leasing them;
    /// each with the polls not yet written.
    pub(crate) fn take_due(&self, now: UnixMillis, limit: usize) -> Vec<(String, Unwritten)> {
        let mut inner = self.lock();
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(first) = inner.by_due.first() else {
                break;
            };
            if first.0 > now {
                break;
            }
            let Some((_, id)) = inner.by_due.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.get_mut(&id) {
                entry.leased = true;
                entry.nudged = false;
                taken.push((id, entry.unwritten));
            }
        }
        taken
    }

    /// Puts back a taken job that is still running, due at `due` (or at
    /// once if an upstream's notice came meanwhile), with `more` polls not
    /// written.
    pub(crate) fn put_back(&self, id: &str, due: UnixMillis, more: Unwritten) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(id) else {
            return;
        };
        if !entry.leased {
            return;
        }
        let due = if entry.nudged {
            due.min(entry.due)
        } else {
            due
        };
        entry.leased = false;
        entry.nudged = false;
        entry.due = due;
        entry.unwritten.polls += more.polls;
        entry.unwritten.poll_errors += more.poll_errors;
        inner.by_due.insert((due, id.to_owned()));
    }

    /// Forgets a job (it ended, or it is not running).
    pub(crate) fn remove(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(id) {
            if !old.leased {
                inner.by_due.remove(&(old.due, id.to_owned()));
            }
        }
    }

    /// Makes a running job due at `now` (an upstream said it changed); a
    /// leased one is put back due at once.
    pub(crate) fn make_due(&self, id: &str, now: UnixMillis) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(id) else {
            return;
        };
        if entry.leased {
            entry.nudged = true;
            entry.due = now;
            return;
        }
        if entry.due <= now {
            return;
        }
        let old = entry.due;
        entry.due = now;
        inner.by_due.remove(&(old, id.to_owned()));
        inner.by_due.insert((now, id.to_owned()));
    }

    /// When the first unleased job is due.
    pub(crate) fn next_due(&self) -> Option<UnixMillis> {
        self.lock().by_due.first().map(|(due, _)| *due)
    }

    /// The polls of `id` not yet written (none if it is not held).
    pub(crate) fn unwritten(&self, id: &str) -> Unwritten {
        self.lock()
            .entries
            .get(id)
            .map(|entry| entry.unwritten)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polls(n: i64) -> Unwritten {
        Unwritten {
            polls: n,
            poll_errors: 0,
        }
    }

    #[test]
    fn due_jobs_are_taken_earliest_first_once_until_put_back() {
        let schedule = PollSchedule::default();
        schedule.rebuild(vec![("b".into(), 20), ("a".into(), 10), ("c".into(), 99)]);
        assert_eq!(schedule.next_due(), Some(10));
        let taken = schedule.take_due(50, 8);
        let ids: Vec<&str> = taken.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(
            schedule.take_due(50, 8).is_empty(),
            "leased: not taken twice"
        );
        assert_eq!(schedule.next_due(), Some(99));

        schedule.put_back("a", 60, polls(1));
        schedule.put_back("a", 10, polls(1));
        assert_eq!(
            schedule.unwritten("a"),
            polls(1),
            "a second put back is ignored"
        );
        let again = schedule.take_due(60, 8);
        assert_eq!(again, vec![("a".to_owned(), polls(1))]);
        schedule.put_back("a", 70, polls(1));
        assert_eq!(schedule.unwritten("a"), polls(2), "unwritten polls add up");

        schedule.insert("a", 80);
        assert_eq!(schedule.unwritten("a"), Unwritten::default(), "written");
        schedule.remove("b");
        schedule.remove("a");
        assert_eq!(schedule.len(), 1);
        assert_eq!(schedule.take_due(1_000, 8).len(), 1);
    }

    #[test]
    fn a_notice_makes_a_job_due_now_even_while_it_is_polled() {
        let schedule = PollSchedule::default();
        schedule.insert("idle", 1_000);
        schedule.insert("busy", 5);
        assert_eq!(schedule.take_due(5, 8).len(), 1);
        schedule.make_due("idle", 7);
        schedule.make_due("busy", 7);
        assert_eq!(schedule.next_due(), Some(7));
        schedule.put_back("busy", 10_000, polls(1));
        let taken: Vec<String> = schedule
            .take_due(7, 8)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(taken, ["busy", "idle"], "the notice outranks the backoff");
    }

    #[test]
    fn a_rebuild_leaves_no_running_job_out_even_past_the_bound() {
        let schedule = PollSchedule::default();
        schedule.rebuild(
            (0..RUNNING_JOBS_MAX + 5)
                .map(|i| (format!("job{i}"), i as i64))
                .collect(),
        );
        assert_eq!(schedule.len(), RUNNING_JOBS_MAX + 5, "none left out");
        for i in 0..6 {
            schedule.remove(&format!("job{i}"));
        }
        assert_eq!(schedule.len(), RUNNING_JOBS_MAX - 1);
    }
}

//! Waiting for a job to finish, for the synchronous surfaces (an OpenAI-style
//! images or chat call answers with the result, not a task id). A waiter
//! blocks on a condition variable that every write finishing or changing
//! jobs notifies (the worker's record write, a cancel, an expiry): no
//! database polling loop on the caller's thread, only a re-read of the one
//! job when something changed. Bounded: at most [`JOB_WAITERS_MAX`] callers
//! wait at once (one more is refused at once, to poll instead), each at most
//! [`JOB_WAIT_MS_MAX`].
//!
//! Waiting is the one place the core measures wall time (a blocking wait's
//! timeout, like ureq's I/O timeouts); every decision still reads the
//! injected clock.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::jobs::Job;

/// Callers waiting for jobs at once, at most.
pub const JOB_WAITERS_MAX: usize = 256;
/// The longest one wait may last, in milliseconds.
pub const JOB_WAIT_MS_MAX: u64 = 10 * 60 * 1000;

/// Where job changes are announced to waiters.
#[derive(Debug, Default)]
pub(crate) struct JobEvents {
    /// How many changes were announced (a waiter sleeps until it moves)
    /// and how many callers wait.
    state: Mutex<EventState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct EventState {
    generation: u64,
    waiters: usize,
}

impl JobEvents {
    /// Announces that jobs changed: every waiter re-reads its job.
    pub(crate) fn notify(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.generation = state.generation.wrapping_add(1);
        self.changed.notify_all();
    }
}

/// What waiting for a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// The job finished (succeeded, failed, canceled or expired).
    Finished(Job),
    /// It is still live after the wait: fetch it later.
    StillRunning(Job),
}

impl Gate {
    /// How many callers are waiting for jobs right now (at most
    /// [`JOB_WAITERS_MAX`]): a gauge for the operator.
    pub fn job_waiters(&self) -> usize {
        self.job_events
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .waiters
    }

    /// Waits, up to `within` (at most [`JOB_WAIT_MS_MAX`]), for account
    /// `account_id`'s job `request_or_task_id` to finish, and answers it;
    /// a job still live by then is answered as it is. Another account's job
    /// is `not_found`; with [`JOB_WAITERS_MAX`] callers already waiting the
    /// answer is [`Error::ServerBusy`] at once.
    pub fn wait_for_job(
        &self,
        account_id: &str,
        request_or_task_id: &str,
        within: Duration,
    ) -> Result<Waited> {
        let job = self.job_for(account_id, request_or_task_id)?;
        if job.status.is_terminal() {
            return Ok(Waited::Finished(job));
        }
        let within = within.min(Duration::from_millis(JOB_WAIT_MS_MAX));
        let until = Instant::now() + within;
        let events = &self.job_events;
        let mut state = events
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.waiters >= JOB_WAITERS_MAX {
            return Err(Error::ServerBusy);
        }
        state.waiters += 1;
        let outcome = loop {
            let seen = state.generation;
            drop(state);
            // Re-read after taking the generation: a change committed after
            // this read moves the generation, so it is never slept through.
            let job = match self.job(&job.id) {
                Ok(job) => job,
                Err(err) => {
                    state = events
                        .state
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    break Err(err);
                }
            };
            state = events
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if job.status.is_terminal() {
                break Ok(Waited::Finished(job));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(Waited::StillRunning(job));
            }
            while state.generation == seen {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = events
                    .changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
        };
        state.waiters -= 1;
        outcome
    }
}

//! The worker's decisions: what a provider's answer (or a media store's)
//! means for a job. Pure functions of the answer, the job's counters and
//! the timing settings: no provider, no database, no clock. The worker
//! step ([`super::work`]) makes the calls and records what is decided here.
//!
//! The three kinds of failed call decide everything:
//! - **not sent**: retried with backoff (at least the upstream's own
//!   `Retry-After`), and the job is marked as certainly not submitted, so a
//!   non-idempotent upstream may be asked again;
//! - **outcome unknown**: an idempotent upstream is asked again; any other
//!   is asked whether it has the job ([`Step::Reconcile`]), and the job
//!   fails as `submission_uncertain` (hold released) only when it cannot be;
//! - **permanent**: the job fails with the mapped code.

use crate::jobs::Job;
use crate::media::{KeepError, KeptFile};
use crate::providers::{
    check_task_id, Completion, PollStatus, ProviderError, Reconciled, Submission, Usage,
    FAILURE_CODE_CHARS_MAX, PROVIDER_STATE_BYTES_MAX,
};

/// Submissions tried before a job fails, at most.
pub const SUBMIT_ATTEMPTS_MAX: i64 = 5;
/// Transient poll (or output download) errors tolerated before a job
/// fails, at most.
pub const POLL_ERRORS_MAX: i64 = 10;

/// The delays the decisions use, from the gate's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// The first poll's delay, and every backoff's base.
    pub(crate) poll_min_ms: i64,
    /// The longest wait between polls.
    pub(crate) poll_max_ms: i64,
    /// The longest wait before a submission is retried.
    pub(crate) submit_max_ms: i64,
}

/// The counters of a claimed job the decisions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    /// Submissions tried, the claimed one included.
    pub(crate) submit_attempts: i64,
    /// Polls answered "still running" so far.
    pub(crate) polls: i64,
    /// Polls (and output downloads) that failed transiently so far.
    pub(crate) poll_errors: i64,
}

impl Counters {
    pub(crate) fn of(job: &Job) -> Counters {
        Counters {
            submit_attempts: job.submit_attempts,
            polls: job.polls,
            poll_errors: job.poll_errors,
        }
    }
}

/// What an answer means for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The provider accepted it: pending becomes running.
    Running {
        task_id: String,
        state: Option<String>,
    },
    /// Done, outputs not yet kept: the worker keeps them next (from pending
    /// when the provider answered synchronously, with its task id).
    Succeed {
        task_id: Option<String>,
        completion: Completion,
    },
    /// Done, outputs kept (or served by us): capture and succeed, charging
    /// `charge_micros` (a usage price; `None`: the estimate), never more
    /// than the hold.
    Kept {
        task_id: Option<String>,
        outputs: Vec<crate::jobs::Output>,
        files: Vec<KeptFile>,
        seed: Option<i64>,
        usage: Option<Usage>,
        charge_micros: Option<i64>,
    },
    /// Done, but copying its outputs failed for now: keep the remote
    /// outputs on the job and try again after `delay_ms`.
    Collect {
        task_id: Option<String>,
        pending_outputs: String,
        delay_ms: i64,
        message: String,
    },
    /// Failed: release.
    Fail { code: String, message: String },
    /// Ask again later. `not_sent`: a submission certainly did not reach
    /// the provider (so asking again is a first submission).
    Retry {
        delay_ms: i64,
        add_polls: i64,
        add_poll_errors: i64,
        message: Option<String>,
        not_sent: bool,
    },
    /// Not asked: give the claimed job back, unsubmitted, due again after
    /// `delay_ms`.
    Defer { delay_ms: i64 },
}

impl Decision {
    /// A failure; a code that is not a short machine code is replaced by
    /// `provider_failed` (it is stored and shown to agents).
    pub(crate) fn fail(code: &str, message: impl Into<String>) -> Decision {
        let machine = !code.is_empty()
            && code.len() <= FAILURE_CODE_CHARS_MAX
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        Decision::Fail {
            code: if machine { code } else { "provider_failed" }.to_owned(),
            message: message.into(),
        }
    }

    /// Whether this is the failure of an answer that could not be recorded
    /// as given (reported to the operator as a fault).
    pub(crate) fn is_invalid_answer(&self) -> bool {
        matches!(self, Decision::Fail { code, .. } if code == INVALID_ANSWER)
    }

    /// The provider's task id this answer carries, if any.
    pub(crate) fn task_id(self) -> Option<String> {
        match self {
            Decision::Running { task_id, .. } => Some(task_id),
            Decision::Succeed { task_id, .. }
            | Decision::Kept { task_id, .. }
            | Decision::Collect { task_id, .. } => task_id,
            Decision::Fail { .. } | Decision::Retry { .. } | Decision::Defer { .. } => None,
        }
    }
}

/// The code of a job failed because its provider answered something that
/// cannot be recorded.
pub(crate) const INVALID_ANSWER: &str = "invalid_provider_answer";

/// What follows a submission call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Record this.
    Decided(Decision),
    /// The submission's outcome is unknown and the provider is not
    /// idempotent: ask it whether it has the job.
    Reconcile { message: String },
}

/// Exponential backoff from `base`, doubling per step, capped at `max`.
pub(crate) fn backoff(base: i64, step: i64, max: i64) -> i64 {
    let shift = step.clamp(0, 16) as u32;
    base.saturating_mul(1_i64 << shift).min(max)
}

/// A retry's delay: the backoff, but never sooner than the upstream asked.
fn retry_delay(backoff_ms: i64, retry_after_ms: Option<i64>) -> i64 {
    retry_after_ms.map_or(backoff_ms, |hint| backoff_ms.max(hint))
}

/// What a submission's answer means.
pub(crate) fn after_submit(
    answer: Result<Submission, ProviderError>,
    counters: Counters,
    idempotent: bool,
    timing: Timing,
) -> Step {
    let retry = |message: String, retry_after_ms: Option<i64>, not_sent: bool| {
        if counters.submit_attempts >= SUBMIT_ATTEMPTS_MAX {
            return Decision::fail(
                "provider_unavailable",
                format!(
                    "the provider could not take the job after {} tries: {message}",
                    counters.submit_attempts
                ),
            );
        }
        Decision::Retry {
            delay_ms: retry_delay(
                backoff(
                    timing.poll_min_ms,
                    counters.submit_attempts - 1,
                    timing.submit_max_ms,
                ),
                retry_after_ms,
            ),
            add_polls: 0,
            add_poll_errors: 0,
            message: Some(message),
            not_sent,
        }
    };
    Step::Decided(match answer {
        Ok(submission) => accepted(submission),
        Err(ProviderError::NotSent {
            message,
            retry_after_ms,
        }) => retry(message, retry_after_ms, true),
        Err(ProviderError::OutcomeUnknown { message }) if idempotent => retry(message, None, false),
        Err(ProviderError::OutcomeUnknown { message }) => return Step::Reconcile { message },
        Err(ProviderError::Permanent { code, message }) => Decision::fail(&code, message),
    })
}

/// A submission the provider answered: checked, then running or done.
fn accepted(submission: Submission) -> Decision {
    match submission {
        Submission::Accepted { task_id, state } => {
            if let Err(reason) = check_task_id(&task_id) {
                return Decision::fail(INVALID_ANSWER, reason);
            }
            let state = state.map(|state| state.to_string());
            if state
                .as_ref()
                .is_some_and(|state| state.len() > PROVIDER_STATE_BYTES_MAX)
            {
                return Decision::fail(
                    INVALID_ANSWER,
                    format!("the provider's state is larger than {PROVIDER_STATE_BYTES_MAX} bytes"),
                );
            }
            Decision::Running { task_id, state }
        }
        Submission::Completed {
            task_id,
            completion,
        } => match check_task_id(&task_id).and_then(|()| completion.check()) {
            Ok(()) => Decision::Succeed {
                task_id: Some(task_id),
                completion,
            },
            Err(reason) => Decision::fail(INVALID_ANSWER, reason),
        },
    }
}

/// What asking the provider about an uncertain submission means.
/// `why` says what made it uncertain.
pub(crate) fn after_reconcile(
    answer: Result<Reconciled, ProviderError>,
    why: &str,
    counters: Counters,
    timing: Timing,
) -> Decision {
    let uncertain = |detail: &str| {
        Decision::fail(
            "submission_uncertain",
            format!(
                "a submission may have reached the provider ({why}) and it cannot be asked \
                 whether it did ({detail}); the job was failed and its hold released rather \
                 than risk running it twice"
            ),
        )
    };
    match answer {
        Ok(Reconciled::Found(submission)) => accepted(submission),
        Ok(Reconciled::Absent) => {
            if counters.submit_attempts >= SUBMIT_ATTEMPTS_MAX {
                return Decision::fail(
                    "provider_unavailable",
                    format!(
                        "the provider could not take the job after {} tries",
                        counters.submit_attempts
                    ),
                );
            }
            Decision::Retry {
                delay_ms: backoff(
                    timing.poll_min_ms,
                    counters.submit_attempts - 1,
                    timing.submit_max_ms,
                ),
                add_polls: 0,
                add_poll_errors: 0,
                message: Some(format!(
                    "{why}; the provider does not have it: resubmitting"
                )),
                not_sent: true,
            }
        }
        Ok(Reconciled::Unsupported) => uncertain("this provider cannot be asked by our id"),
        Err(ProviderError::NotSent { message, .. } | ProviderError::OutcomeUnknown { message })
            if counters.submit_attempts < SUBMIT_ATTEMPTS_MAX =>
        {
            // Still uncertain: ask again later (the job stays "possibly
            // submitted", so the next claim reconciles again).
            Decision::Retry {
                delay_ms: backoff(
                    timing.poll_min_ms,
                    counters.submit_attempts - 1,
                    timing.submit_max_ms,
                ),
                add_polls: 0,
                add_poll_errors: 0,
                message: Some(format!("{why}; asking the provider failed: {message}")),
                not_sent: false,
            }
        }
        Err(err) => uncertain(&err.to_string()),
    }
}

/// What a poll's answer means.
pub(crate) fn after_poll(
    answer: Result<PollStatus, ProviderError>,
    counters: Counters,
    timing: Timing,
) -> Decision {
    match answer {
        Ok(PollStatus::Running) => Decision::Retry {
            delay_ms: backoff(timing.poll_min_ms, counters.polls + 1, timing.poll_max_ms),
            add_polls: 1,
            add_poll_errors: 0,
            message: None,
            not_sent: false,
        },
        Ok(PollStatus::Succeeded(completion)) => match completion.check() {
            Ok(()) => Decision::Succeed {
                task_id: None,
                completion,
            },
            Err(reason) => Decision::fail(INVALID_ANSWER, reason),
        },
        Ok(PollStatus::Failed { code, message }) => Decision::fail(&code, message),
        Ok(PollStatus::Abandoned { message }) => Decision::fail(
            "upstream_aborted",
            format!("the provider ended the job before it ran (not billed): {message}"),
        ),
        Err(ProviderError::NotSent {
            message,
            retry_after_ms,
        }) => poll_error(message, retry_after_ms, counters, timing),
        Err(ProviderError::OutcomeUnknown { message }) => {
            poll_error(message, None, counters, timing)
        }
        Err(ProviderError::Permanent { code, message }) => Decision::fail(&code, message),
    }
}

fn poll_error(
    message: String,
    retry_after_ms: Option<i64>,
    counters: Counters,
    timing: Timing,
) -> Decision {
    if counters.poll_errors + 1 >= POLL_ERRORS_MAX {
        return Decision::fail("provider_unavailable", message);
    }
    Decision::Retry {
        delay_ms: retry_delay(
            backoff(
                timing.poll_min_ms,
                counters.poll_errors + 1,
                timing.poll_max_ms,
            ),
            retry_after_ms,
        ),
        add_polls: 0,
        add_poll_errors: 1,
        message: Some(message),
        not_sent: false,
    }
}

/// The note every failure after the upstream finished carries, for the
/// operator: the agent is not charged, but the upstream may have billed us.
pub(crate) const UPSTREAM_MAY_HAVE_BILLED: &str =
    "the upstream finished the generation and may have billed for it";

/// What trying to keep a finished job's outputs means. `remote_only`: every
/// artifact is a URL (so a later try can fetch them again).
pub(crate) fn after_keep(
    kept: Result<Vec<KeptFile>, KeepError>,
    done: KeepContext,
    counters: Counters,
    timing: Timing,
) -> Decision {
    match kept {
        Ok(files) => {
            let outputs = files
                .iter()
                .enumerate()
                .map(|(index, file)| crate::jobs::Output {
                    url: format!("{}/{index}/{}", done.output_url_base, file.name),
                    mime: file.mime.clone(),
                    file: None,
                })
                .collect();
            Decision::Kept {
                task_id: done.task_id,
                outputs,
                files,
                seed: done.completion.seed,
                usage: done.completion.usage,
                charge_micros: None,
            }
        }
        Err(KeepError::Transient { message }) => {
            let Some(pending_outputs) = done.pending_outputs else {
                return Decision::fail(
                    "output_not_kept",
                    format!("{message} ({UPSTREAM_MAY_HAVE_BILLED})"),
                );
            };
            if counters.poll_errors + 1 >= POLL_ERRORS_MAX {
                return Decision::fail(
                    "output_download_failed",
                    format!(
                        "the outputs could not be downloaded after {} tries: {message} \
                         ({UPSTREAM_MAY_HAVE_BILLED})",
                        counters.poll_errors + 1
                    ),
                );
            }
            Decision::Collect {
                task_id: done.task_id,
                pending_outputs,
                delay_ms: backoff(
                    timing.poll_min_ms,
                    counters.poll_errors + 1,
                    timing.poll_max_ms,
                ),
                message,
            }
        }
        Err(KeepError::Permanent { code, message }) => {
            Decision::fail(&code, format!("{message} ({UPSTREAM_MAY_HAVE_BILLED})"))
        }
    }
}

/// A finished job whose outputs are being kept.
#[derive(Debug, Clone)]
pub(crate) struct KeepContext {
    /// The task id to record (a synchronous answer's).
    pub(crate) task_id: Option<String>,
    /// The completion.
    pub(crate) completion: Completion,
    /// Its remote outputs, encoded for a later try, when every output is
    /// remote.
    pub(crate) pending_outputs: Option<String>,
    /// `<public>/v1/files/<job>/<token>`.
    pub(crate) output_url_base: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Artifact;

    const TIMING: Timing = Timing {
        poll_min_ms: 1_000,
        poll_max_ms: 15_000,
        submit_max_ms: 30_000,
    };

    fn first() -> Counters {
        Counters {
            submit_attempts: 1,
            ..Counters::default()
        }
    }

    fn decided(step: Step) -> Decision {
        match step {
            Step::Decided(decision) => decision,
            Step::Reconcile { .. } => panic!("asked to reconcile"),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let steps: Vec<i64> = (0..7).map(|s| backoff(1_000, s, 15_000)).collect();
        assert_eq!(steps, [1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
        assert_eq!(backoff(1_000, 99, 30_000), 30_000);
    }

    #[test]
    fn a_submission_not_sent_is_retried_as_unsent_and_honours_retry_after() {
        let answer = Err(ProviderError::NotSent {
            message: "429".into(),
            retry_after_ms: Some(7_000),
        });
        match decided(after_submit(answer, first(), false, TIMING)) {
            Decision::Retry {
                delay_ms, not_sent, ..
            } => {
                assert_eq!(delay_ms, 7_000, "the upstream's hint beats the backoff");
                assert!(not_sent, "a non-idempotent upstream may be asked again");
            }
            other => panic!("{other:?}"),
        }
        // The fifth try that is not sent ends it.
        let last = Counters {
            submit_attempts: SUBMIT_ATTEMPTS_MAX,
            ..Counters::default()
        };
        let answer = Err(ProviderError::not_sent("dns"));
        assert!(matches!(
            decided(after_submit(answer, last, false, TIMING)),
            Decision::Fail { code, .. } if code == "provider_unavailable"
        ));
    }

    #[test]
    fn a_lost_answer_is_resent_only_to_an_idempotent_provider_else_reconciled() {
        let lost = || {
            Err(ProviderError::OutcomeUnknown {
                message: "timeout".into(),
            })
        };
        assert!(matches!(
            decided(after_submit(lost(), first(), true, TIMING)),
            Decision::Retry {
                not_sent: false,
                ..
            }
        ));
        assert_eq!(
            after_submit(lost(), first(), false, TIMING),
            Step::Reconcile {
                message: "timeout".into()
            }
        );
    }

    #[test]
    fn reconciling_finds_the_task_resubmits_when_absent_and_fails_when_it_cannot_ask() {
        let found = Ok(Reconciled::Found(Submission::Accepted {
            task_id: "t1".into(),
            state: None,
        }));
        assert_eq!(
            after_reconcile(found, "a timeout", first(), TIMING),
            Decision::Running {
                task_id: "t1".into(),
                state: None
            }
        );
        assert!(matches!(
            after_reconcile(Ok(Reconciled::Absent), "a timeout", first(), TIMING),
            Decision::Retry { not_sent: true, .. }
        ));
        match after_reconcile(Ok(Reconciled::Unsupported), "a timeout", first(), TIMING) {
            Decision::Fail { code, message } => {
                assert_eq!(code, "submission_uncertain");
                assert!(message.contains("a timeout"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Asking failed: still uncertain, asked again later.
        assert!(matches!(
            after_reconcile(Err(ProviderError::not_sent("down")), "x", first(), TIMING),
            Decision::Retry {
                not_sent: false,
                ..
            }
        ));
    }

    #[test]
    fn polls_count_running_answers_and_errors_apart() {
        let c = Counters {
            submit_attempts: 1,
            polls: 2,
            poll_errors: 0,
        };
        assert!(matches!(
            after_poll(Ok(PollStatus::Running), c, TIMING),
            Decision::Retry {
                add_polls: 1,
                add_poll_errors: 0,
                delay_ms: 8_000,
                ..
            }
        ));
        assert!(matches!(
            after_poll(
                Err(ProviderError::OutcomeUnknown {
                    message: "reset".into()
                }),
                c,
                TIMING
            ),
            Decision::Retry {
                add_polls: 0,
                add_poll_errors: 1,
                ..
            }
        ));
        let worn = Counters {
            poll_errors: POLL_ERRORS_MAX - 1,
            ..c
        };
        assert!(matches!(
            after_poll(Err(ProviderError::not_sent("503")), worn, TIMING),
            Decision::Fail { code, .. } if code == "provider_unavailable"
        ));
        assert!(matches!(
            after_poll(Ok(PollStatus::Abandoned { message: "aborted".into() }), c, TIMING),
            Decision::Fail { code, .. } if code == "upstream_aborted"
        ));
    }

    #[test]
    fn bad_answers_fail_as_invalid_and_bad_codes_are_replaced() {
        let empty = Ok(Submission::Accepted {
            task_id: " ".into(),
            state: None,
        });
        assert!(decided(after_submit(empty, first(), false, TIMING)).is_invalid_answer());
        let huge = Ok(Submission::Accepted {
            task_id: "t".into(),
            state: Some(serde_json::json!({ "x": "y".repeat(PROVIDER_STATE_BYTES_MAX) })),
        });
        assert!(decided(after_submit(huge, first(), false, TIMING)).is_invalid_answer());
        let none = Ok(PollStatus::Succeeded(Completion::of(vec![])));
        assert!(after_poll(none, first(), TIMING).is_invalid_answer());
        assert!(matches!(
            Decision::fail("Bad Code!", "x"),
            Decision::Fail { code, .. } if code == "provider_failed"
        ));
    }

    #[test]
    fn a_download_that_fails_for_now_is_collected_later_and_says_the_upstream_may_have_billed() {
        let completion = Completion::of(vec![Artifact::Remote {
            url: "https://cdn/x.png".into(),
            mime: None,
        }]);
        let context = |pending: Option<&str>| KeepContext {
            task_id: Some("t".into()),
            completion: completion.clone(),
            pending_outputs: pending.map(str::to_owned),
            output_url_base: "http://h/v1/files/j/tok".into(),
        };
        let transient = || {
            Err(KeepError::Transient {
                message: "503".into(),
            })
        };
        assert!(matches!(
            after_keep(transient(), context(Some("[]")), first(), TIMING),
            Decision::Collect { .. }
        ));
        // Inline outputs cannot wait: nowhere to keep them meanwhile.
        assert!(matches!(
            after_keep(transient(), context(None), first(), TIMING),
            Decision::Fail { code, .. } if code == "output_not_kept"
        ));
        let gone = Err(KeepError::Permanent {
            code: "output_unavailable".into(),
            message: "404".into(),
        });
        match after_keep(gone, context(Some("[]")), first(), TIMING) {
            Decision::Fail { code, message } => {
                assert_eq!(code, "output_unavailable");
                assert!(message.contains(UPSTREAM_MAY_HAVE_BILLED));
            }
            other => panic!("{other:?}"),
        }
        let file = KeptFile {
            path: "j/0.png".into(),
            name: "0.png".into(),
            mime: "image/png".into(),
            bytes: 3,
            sha256: [0; 32],
            upstream_url: Some("https://cdn/x.png".into()),
        };
        match after_keep(Ok(vec![file]), context(Some("[]")), first(), TIMING) {
            Decision::Kept { outputs, .. } => {
                assert_eq!(outputs[0].url, "http://h/v1/files/j/tok/0/0.png");
                assert_eq!(outputs[0].file, None);
            }
            other => panic!("{other:?}"),
        }
    }
}

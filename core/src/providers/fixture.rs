//! The fixture provider: deterministic and offline, so agent builders can
//! drive every path of a job from outside. A [`Scenarios`] file decides, per
//! model, product or prompt pattern, how many polls a job takes and whether
//! and how it fails; outputs are real sample files shipped in
//! `fixtures/media/` and embedded in the binary, served by the appliance.
//!
//! Determinism: the task id is `fx_<job id>` (so submitting twice yields one
//! task: submission is idempotent), and every answer depends only on the
//! job's request and its counters (submit attempts, polls, poll errors),
//! never on time or randomness.

use serde::Deserialize;

use super::{Artifact, Completion, PollStatus, Provider, ProviderError, ProviderJob, Submission};
use crate::jobs::Output;

/// Calls the fixture provider takes at once: more than any worker step
/// claims (it does no I/O, so it has no upstream to protect).
pub const FIXTURE_CONCURRENCY: usize = 4_096;
/// Rules in one scenario file, at most.
pub const SCENARIO_RULES_MAX: usize = 256;
/// Polls a scenario may ask for, at most.
pub const SCENARIO_POLLS_MAX: u32 = 1_000;
/// The scenario file `serve` uses unless told otherwise.
pub const DEFAULT_SCENARIOS: &str = include_str!("../../../fixtures/scenarios/default.json");

/// A sample file the fixture provider's outputs point at.
#[derive(Debug, Clone, Copy)]
pub struct SampleFile {
    /// Its name in `fixtures/media/`.
    pub name: &'static str,
    /// Its media type.
    pub mime: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

const SAMPLES: &[SampleFile] = &[
    SampleFile {
        name: "sample.png",
        mime: "image/png",
        bytes: include_bytes!("../../../fixtures/media/sample.png"),
    },
    SampleFile {
        name: "sample.mp4",
        mime: "video/mp4",
        bytes: include_bytes!("../../../fixtures/media/sample.mp4"),
    },
    SampleFile {
        name: "sample.wav",
        mime: "audio/wav",
        bytes: include_bytes!("../../../fixtures/media/sample.wav"),
    },
    SampleFile {
        name: "reply.txt",
        mime: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../../fixtures/media/reply.txt"),
    },
];

/// The sample file called `name`, if it is one of the shipped ones.
pub fn sample_file(name: &str) -> Option<&'static SampleFile> {
    SAMPLES.iter().find(|sample| sample.name == name)
}

/// How a matching job ends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// It succeeds with sample outputs.
    Succeed,
    /// It fails with this reason after its polls.
    Fail {
        /// A machine code.
        code: String,
        /// The reason.
        message: String,
    },
    /// It never finishes: it runs until its deadline expires it.
    Hang,
}

/// A provider refusal at submission.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// A machine code.
    pub code: String,
    /// The reason.
    pub message: String,
}

/// What happens to a job. Every field is optional in a rule; what a rule
/// leaves out comes from the file's `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// "Still running" answers before the outcome.
    pub polls: Option<u32>,
    /// The outcome after those polls.
    pub outcome: Option<Outcome>,
    /// Submissions that fail transiently before one is accepted.
    pub submit_transient_failures: Option<u32>,
    /// Polls that fail transiently before they answer.
    pub poll_transient_failures: Option<u32>,
    /// Refuse the submission outright.
    pub submit_error: Option<Refusal>,
}

/// Which jobs a rule applies to; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The model id, exactly.
    pub model: Option<String>,
    /// The product, exactly.
    pub product: Option<String>,
    /// A substring of the prompt.
    pub prompt_contains: Option<String>,
}

/// One rule: a match and the behaviour it sets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Which jobs.
    #[serde(rename = "match")]
    pub matches: Match,
    /// What happens to them.
    #[serde(flatten)]
    pub behaviour: Behaviour,
}

/// A scenario file: a default behaviour and rules, first match wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenarios {
    /// What happens to a job no rule matches.
    pub default: Behaviour,
    /// Rules, tried in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// The behaviour resolved for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    polls: u32,
    outcome: Outcome,
    submit_transient_failures: u32,
    poll_transient_failures: u32,
    submit_error: Option<Refusal>,
}

impl Scenarios {
    /// Parses and validates a scenario file.
    pub fn parse(json: &str) -> Result<Scenarios, String> {
        let scenarios: Scenarios =
            serde_json::from_str(json).map_err(|err| format!("invalid scenario file: {err}"))?;
        if scenarios.rules.len() > SCENARIO_RULES_MAX {
            return Err(format!("at most {SCENARIO_RULES_MAX} rules"));
        }
        let too_many = |b: &Behaviour| b.polls.is_some_and(|p| p > SCENARIO_POLLS_MAX);
        if too_many(&scenarios.default) || scenarios.rules.iter().any(|r| too_many(&r.behaviour)) {
            return Err(format!("polls must be at most {SCENARIO_POLLS_MAX}"));
        }
        Ok(scenarios)
    }

    /// The scenarios shipped in `fixtures/scenarios/default.json`.
    pub fn shipped() -> Scenarios {
        // Checked by a test; a broken shipped file is a build defect.
        Scenarios::parse(DEFAULT_SCENARIOS).expect("the shipped scenario file is valid")
    }

    fn resolve(&self, job: &ProviderJob<'_>) -> Resolved {
        let rule = self.rules.iter().find(|rule| {
            let m = &rule.matches;
            m.model.as_deref().is_none_or(|model| model == job.model)
                && m.product
                    .as_deref()
                    .is_none_or(|product| product == job.product)
                && m.prompt_contains
                    .as_deref()
                    .is_none_or(|needle| job.prompt.is_some_and(|p| p.contains(needle)))
        });
        let pick = |f: fn(&Behaviour) -> Option<u32>| {
            rule.and_then(|r| f(&r.behaviour))
                .or(f(&self.default))
                .unwrap_or(0)
        };
        Resolved {
            polls: pick(|b| b.polls),
            outcome: rule
                .and_then(|r| r.behaviour.outcome.clone())
                .or_else(|| self.default.outcome.clone())
                .unwrap_or(Outcome::Succeed),
            submit_transient_failures: pick(|b| b.submit_transient_failures),
            poll_transient_failures: pick(|b| b.poll_transient_failures),
            submit_error: rule
                .and_then(|r| r.behaviour.submit_error.clone())
                .or_else(|| self.default.submit_error.clone()),
        }
    }
}

/// The fixture provider.
#[derive(Debug, Clone)]
pub struct FixtureProvider {
    scenarios: Scenarios,
}

impl FixtureProvider {
    /// A fixture provider running `scenarios`.
    pub fn new(scenarios: Scenarios) -> Self {
        FixtureProvider { scenarios }
    }

    fn completion(job: &ProviderJob<'_>) -> Completion {
        let (sample, count) = match job.product {
            "image" => ("sample.png", job.units.count.unwrap_or(1).max(1)),
            "video" => ("sample.mp4", 1),
            "music" | "audio" => ("sample.wav", 1),
            _ => ("reply.txt", 1),
        };
        let count = (count as usize).min(super::PROVIDER_OUTPUTS_MAX);
        let file = sample_file(sample).expect("every sample named here is shipped");
        let artifacts = (0..count)
            .map(|index| {
                Artifact::Hosted(Output {
                    url: format!("{}/{index}/{}", job.output_url_base, file.name),
                    mime: file.mime.to_owned(),
                    file: Some(file.name.to_owned()),
                })
            })
            .collect();
        Completion {
            artifacts,
            seed: Some(job.seed),
            usage: None,
        }
    }
}

impl Provider for FixtureProvider {
    fn submit(&self, job: &ProviderJob<'_>) -> Result<Submission, ProviderError> {
        let behaviour = self.scenarios.resolve(job);
        if let Some(refusal) = behaviour.submit_error {
            return Err(ProviderError::Permanent {
                code: refusal.code,
                message: refusal.message,
            });
        }
        if job.submit_attempts <= i64::from(behaviour.submit_transient_failures) {
            return Err(ProviderError::not_sent(format!(
                "fixture: submission {} of {} fails transiently",
                job.submit_attempts, behaviour.submit_transient_failures
            )));
        }
        Ok(Submission::Accepted {
            task_id: format!("fx_{}", job.job_id),
            state: None,
        })
    }

    fn poll(&self, job: &ProviderJob<'_>) -> Result<PollStatus, ProviderError> {
        let behaviour = self.scenarios.resolve(job);
        if job.poll_errors < i64::from(behaviour.poll_transient_failures) {
            return Err(ProviderError::not_sent(format!(
                "fixture: poll error {} of {}",
                job.poll_errors + 1,
                behaviour.poll_transient_failures
            )));
        }
        if behaviour.outcome == Outcome::Hang || job.polls < i64::from(behaviour.polls) {
            return Ok(PollStatus::Running);
        }
        Ok(match behaviour.outcome {
            Outcome::Fail { code, message } => PollStatus::Failed { code, message },
            Outcome::Succeed | Outcome::Hang => PollStatus::Succeeded(Self::completion(job)),
        })
    }

    fn cancel(&self, _job: &ProviderJob<'_>) -> Result<(), ProviderError> {
        Ok(())
    }

    fn idempotent_submit(&self) -> bool {
        true
    }

    fn in_process(&self) -> bool {
        true
    }

    /// No upstream to protect: as many calls as a step claims.
    fn concurrency(&self) -> usize {
        FIXTURE_CONCURRENCY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::BilledUnits;

    fn job<'a>(prompt: &'a str, units: &'a BilledUnits, product: &'a str) -> ProviderJob<'a> {
        ProviderJob {
            job_id: "job_1",
            model: "m",
            upstream_model: "m",
            product,
            prompt: Some(prompt),
            units,
            input_image_urls: &[],
            provider_task_id: None,
            submit_attempts: 1,
            resubmission: false,
            polls: 0,
            poll_errors: 0,
            seed: 7,
            output_url_base: "http://h/v1/files/job_1/t".into(),
            provider_state: None,
            webhook_url: None,
        }
    }

    #[test]
    fn the_shipped_scenarios_parse_and_drive_each_path() {
        let provider = FixtureProvider::new(Scenarios::shipped());
        let units = BilledUnits {
            count: Some(2),
            ..BilledUnits::default()
        };
        let mut j = job("a cat", &units, "image");
        assert_eq!(
            provider.submit(&j),
            Ok(Submission::Accepted {
                task_id: "fx_job_1".into(),
                state: None,
            })
        );
        // Default: one "running" answer, then success with `count` outputs.
        assert_eq!(provider.poll(&j), Ok(PollStatus::Running));
        j.polls = 1;
        match provider.poll(&j) {
            Ok(PollStatus::Succeeded(done)) => {
                assert_eq!(done.artifacts.len(), 2);
                match &done.artifacts[1] {
                    Artifact::Hosted(output) => {
                        assert_eq!(output.url, "http://h/v1/files/job_1/t/1/sample.png")
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(done.seed, Some(7));
            }
            other => panic!("{other:?}"),
        }
        let j = job("[fail] a cat", &units, "image");
        let mut failing = j.clone();
        failing.polls = 1;
        assert!(matches!(
            provider.poll(&failing),
            Ok(PollStatus::Failed { .. })
        ));
        let mut hang = job("[hang]", &units, "image");
        hang.polls = 999;
        assert_eq!(provider.poll(&hang), Ok(PollStatus::Running));
        let transient = job("[transient]", &units, "image");
        assert!(matches!(
            provider.submit(&transient),
            Err(ProviderError::NotSent { .. })
        ));
        let reject = job("[reject]", &units, "image");
        assert!(matches!(
            provider.submit(&reject),
            Err(ProviderError::Permanent { .. })
        ));
    }

    #[test]
    fn every_sample_is_a_real_file_of_its_type() {
        let magic = |name: &str| sample_file(name).expect("shipped").bytes;
        assert!(magic("sample.png").starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&magic("sample.mp4")[4..8], b"ftyp");
        assert!(magic("sample.wav").starts_with(b"RIFF") && &magic("sample.wav")[8..12] == b"WAVE");
        assert!(std::str::from_utf8(magic("reply.txt")).is_ok());
    }

    #[test]
    fn bad_scenario_files_are_refused() {
        assert!(Scenarios::parse("{}").is_err());
        assert!(Scenarios::parse(
            r#"{"default": {"polls": 1}, "rules": [{"match": {"colour": "red"}}]}"#
        )
        .is_err());
        assert!(Scenarios::parse(r#"{"default": {"polls": 100000}}"#).is_err());
    }
}

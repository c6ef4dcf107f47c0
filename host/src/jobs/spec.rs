//! The job kinds a plugin declares: parsed and validated from its manifest (name, handler
//! function, trigger patterns, attempts, backoff, timeout, dedupe template, priority), and the
//! backoff delay between attempts. Pure: no I/O.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::KeyTemplate;
use crate::bus::Pattern;
use crate::error::{Error, Result};
use crate::manifest::{FunctionSpec, validate_name};

/// The default number of attempts (plugin-api's `Job::DEFAULT_MAX_ATTEMPTS`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = plugin_api::Job::DEFAULT_MAX_ATTEMPTS;

/// Exponential backoff with full jitter: after attempt `n` (1 for the first) fails, the next
/// waits a delay drawn uniformly in `[0, min(cap_ms, base_ms × 2^(n−1))]` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    /// The ceiling of the first delay, in milliseconds (at least 1).
    pub base_ms: u64,
    /// The largest ceiling, in milliseconds (at least `base_ms`).
    pub cap_ms: u64,
}

impl Default for BackoffSpec {
    fn default() -> Self {
        let d = plugin_api::Backoff::DEFAULT;
        Self {
            base_ms: d.base_ms,
            cap_ms: d.cap_ms,
        }
    }
}

impl BackoffSpec {
    /// The largest delay after attempt `attempt` (1-based; 0 counts as 1) failed:
    /// `min(cap_ms, base_ms × 2^(attempt−1))`, without overflow.
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1);
        let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.cap_ms)
    }

    /// The delay after attempt `attempt` failed, for a random draw `draw` (any `u64`): the
    /// draw reduced uniformly (up to a negligible modulo bias) into `[0, ceiling_ms(attempt)]`.
    pub fn delay_for_draw(&self, attempt: u32, draw: u64) -> Duration {
        let ceiling = self.ceiling_ms(attempt);
        let ms = match ceiling.checked_add(1) {
            Some(span) => draw % span,
            None => draw,
        };
        Duration::from_millis(ms)
    }

    /// The delay after attempt `attempt` failed, with a fresh random draw.
    pub fn delay(&self, attempt: u32) -> Duration {
        // A randomly keyed SipHash of nothing: a random u64 without a random-number crate.
        let draw = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        self.delay_for_draw(attempt, draw)
    }
}

/// Most attempts a kind may declare.
pub const MAX_ATTEMPTS: u32 = 1_000;

/// Longest backoff cap and attempt timeout a kind may declare: 7 days, in milliseconds.
pub const MAX_DELAY_MS: u64 = 7 * 24 * 3_600_000;

/// A validated job kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JobSpec {
    /// The kind's name (the plugin-name rule), unique among the plugin's kinds.
    pub name: String,
    /// The declared function that runs a job of this kind.
    pub function: String,
    /// Bus patterns whose events enqueue a job, as declared.
    pub triggers: Vec<String>,
    /// Attempts before a job is discarded (at least 1).
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: BackoffSpec,
    /// Time one attempt may take, in milliseconds (`None`: the host's execute timeout).
    pub timeout_ms: Option<u64>,
    /// The dedupe key template (`None`: no dedupe).
    pub dedupe: Option<KeyTemplate>,
    /// Priority: a smaller number runs first.
    pub priority: i16,
}

/// A job kind as the manifest JSON writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    name: String,
    function: String,
    #[serde(default)]
    triggers: Vec<String>,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default)]
    backoff: BackoffSpec,
    #[serde(default)]
    timeout_ms: u64,
    #[serde(default)]
    dedupe: String,
    #[serde(default)]
    priority: i16,
}

fn default_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

impl JobSpec {
    /// Validates a manifest's raw job kinds against its declared functions.
    ///
    /// # Errors
    /// `invalid_job` for a bad or duplicate name, an undeclared function, a bad trigger
    /// pattern (or one listed twice), `max_attempts` 0, a backoff base of 0 or a cap below the
    /// base, or a bad dedupe template.
    pub(crate) fn parse_all(
        plugin: &str,
        raw: Vec<RawJob>,
        functions: &[FunctionSpec],
    ) -> Result<Vec<Self>> {
        let mut jobs: Vec<Self> = Vec::with_capacity(raw.len());
        for r in raw {
            let spec = Self::parse(r, functions).map_err(|(job, reason)| Error::InvalidJob {
                plugin: plugin.to_owned(),
                job,
                reason,
            })?;
            if jobs.iter().any(|j| j.name == spec.name) {
                return Err(Error::InvalidJob {
                    plugin: plugin.to_owned(),
                    job: spec.name,
                    reason: "a job kind of that name is declared twice".into(),
                });
            }
            jobs.push(spec);
        }
        Ok(jobs)
    }

    /// One kind, or its name and what is wrong with it.
    fn parse(r: RawJob, functions: &[FunctionSpec]) -> std::result::Result<Self, (String, String)> {
        let fail = |reason: String| (r.name.clone(), reason);
        if let Err(Error::InvalidName { reason, .. }) = validate_name(&r.name) {
            return Err(fail(format!("the name breaks the name rule: {reason}")));
        }
        if !functions.iter().any(|f| f.name == r.function) {
            return Err(fail(format!(
                "its function `{}` is not declared in the manifest",
                r.function
            )));
        }
        for (i, t) in r.triggers.iter().enumerate() {
            Pattern::parse(t).map_err(|e| fail(format!("trigger {e}")))?;
            if r.triggers[..i].contains(t) {
                return Err(fail(format!("trigger `{t}` is listed twice")));
            }
        }
        if r.max_attempts == 0 {
            return Err(fail("max_attempts is 0; a job runs at least once".into()));
        }
        if r.max_attempts > MAX_ATTEMPTS {
            return Err(fail(format!(
                "max_attempts is {}; the most is {MAX_ATTEMPTS}",
                r.max_attempts
            )));
        }
        if r.timeout_ms > MAX_DELAY_MS {
            return Err(fail(format!(
                "timeout_ms is {}; the most is {MAX_DELAY_MS} (7 days)",
                r.timeout_ms
            )));
        }
        let b = r.backoff;
        if b.base_ms == 0 {
            return Err(fail("the backoff base is 0 ms; it is at least 1".into()));
        }
        if b.cap_ms > MAX_DELAY_MS {
            return Err(fail(format!(
                "the backoff cap is {} ms; the most is {MAX_DELAY_MS} (7 days)",
                b.cap_ms
            )));
        }
        if b.cap_ms < b.base_ms {
            return Err(fail(format!(
                "the backoff cap ({} ms) is below its base ({} ms)",
                b.cap_ms, b.base_ms
            )));
        }
        let dedupe = if r.dedupe.is_empty() {
            None
        } else {
            Some(
                KeyTemplate::parse(&r.dedupe)
                    .map_err(|e| fail(format!("dedupe template {:?}: {e}", r.dedupe)))?,
            )
        };
        Ok(Self {
            dedupe,
            max_attempts: r.max_attempts,
            backoff: b,
            timeout_ms: (r.timeout_ms > 0).then_some(r.timeout_ms),
            priority: r.priority,
            name: r.name,
            function: r.function,
            triggers: r.triggers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = BackoffSpec {
            base_ms: 100,
            cap_ms: 1_000,
        };
        let ceilings: Vec<u64> = (0..=6).map(|n| b.ceiling_ms(n)).collect();
        assert_eq!(ceilings, [100, 100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(b.ceiling_ms(u32::MAX), 1_000);
        let huge = BackoffSpec {
            base_ms: u64::MAX / 2,
            cap_ms: u64::MAX,
        };
        assert_eq!(huge.ceiling_ms(3), u64::MAX);
        assert_eq!(huge.ceiling_ms(200), u64::MAX);
    }

    #[test]
    fn a_draw_maps_into_zero_to_the_ceiling() {
        let b = BackoffSpec {
            base_ms: 100,
            cap_ms: 1_000,
        };
        assert_eq!(b.delay_for_draw(1, 0), Duration::ZERO);
        assert_eq!(b.delay_for_draw(1, 100), Duration::from_millis(100));
        assert_eq!(b.delay_for_draw(1, 101), Duration::ZERO);
        assert_eq!(b.delay_for_draw(9, 1_000), Duration::from_millis(1_000));
        assert!(b.delay_for_draw(9, u64::MAX) <= Duration::from_millis(1_000));
        let max = BackoffSpec {
            base_ms: 1,
            cap_ms: u64::MAX,
        };
        assert_eq!(
            max.delay_for_draw(70, u64::MAX),
            Duration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn random_delays_stay_in_range_and_spread() {
        let b = BackoffSpec {
            base_ms: 1_000,
            cap_ms: 8_000,
        };
        for attempt in 1..=6 {
            let ceiling = Duration::from_millis(b.ceiling_ms(attempt));
            let delays: Vec<Duration> = (0..200).map(|_| b.delay(attempt)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Full jitter: 200 draws over 1,001+ values are not all in one half.
            assert!(delays.iter().any(|d| *d < ceiling / 2), "attempt {attempt}");
            assert!(delays.iter().any(|d| *d > ceiling / 2), "attempt {attempt}");
        }
    }

    #[test]
    fn default_backoff_matches_plugin_api() {
        let d = BackoffSpec::default();
        assert_eq!((d.base_ms, d.cap_ms), (1_000, 3_600_000));
    }
}

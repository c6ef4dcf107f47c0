//! The schedules a plugin declares: parsed and validated from its manifest (a cron expression
//! read in an IANA time zone, or a fixed interval, enqueueing one of its job kinds), and the
//! next time each fires. Pure but for reading the time zone database (the system's
//! `/usr/share/zoneinfo`, or the copy built in when the system has none).

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::spec::JobSpec;
use crate::error::{Error, Result};
use crate::manifest::validate_name;

/// When a schedule fires.
#[derive(Debug, Clone)]
enum Trigger {
    /// At the times a cron expression names, read in a time zone.
    Cron(Box<Cron>, TimeZone),
    /// At every multiple of the interval since the Unix epoch, in milliseconds.
    Every(u64),
}

/// A validated schedule. Serialized as declared: `name`, `job`, and either `cron` and
/// `time_zone` (with `every_ms` null) or `every_ms` (with the other two null).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ScheduleSpec {
    /// The schedule's name (the plugin-name rule), unique among the plugin's schedules.
    pub name: String,
    /// The job kind it enqueues.
    pub job: String,
    /// The cron expression, as declared (`None`: an interval schedule).
    pub cron: Option<String>,
    /// The IANA time zone the expression is read in, as declared.
    pub time_zone: Option<String>,
    /// The interval, in milliseconds (`None`: a cron schedule).
    pub every_ms: Option<u64>,
    #[serde(skip)]
    trigger: Trigger,
}

impl PartialEq for ScheduleSpec {
    /// Equal declarations (the parsed forms follow from them).
    fn eq(&self, other: &Self) -> bool {
        (
            &self.name,
            &self.job,
            &self.cron,
            &self.time_zone,
            self.every_ms,
        ) == (
            &other.name,
            &other.job,
            &other.cron,
            &other.time_zone,
            other.every_ms,
        )
    }
}

impl Eq for ScheduleSpec {}

/// A schedule as the manifest JSON writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    name: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    every_ms: u64,
    job: String,
}

/// Parses a cron expression of the accepted dialect: 5 fields (minute to day of week) or 6
/// (seconds first), croner's syntax (`*`, lists, ranges, steps, names, `L`, `W`, `#`,
/// `@daily` and the other nicknames); no year field.
///
/// # Errors
/// croner's message, saying what does not parse.
pub fn parse_cron(expression: &str) -> std::result::Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())
}

impl ScheduleSpec {
    /// Validates a manifest's raw schedules against its job kinds.
    ///
    /// # Errors
    /// `invalid_schedule` for a bad or duplicate name, an unknown job kind, a cron expression
    /// that does not parse, an unknown time zone, an interval of 0, or a schedule that is both
    /// (or neither) cron and interval.
    pub(crate) fn parse_all(
        plugin: &str,
        raw: Vec<RawSchedule>,
        jobs: &[JobSpec],
    ) -> Result<Vec<Self>> {
        let mut schedules: Vec<Self> = Vec::with_capacity(raw.len());
        for r in raw {
            let name = r.name.clone();
            let fail = |reason: String| Error::InvalidSchedule {
                plugin: plugin.to_owned(),
                schedule: name.clone(),
                reason,
            };
            let spec = Self::parse(r, jobs).map_err(fail)?;
            if schedules.iter().any(|s| s.name == spec.name) {
                return Err(fail("a schedule of that name is declared twice".into()));
            }
            schedules.push(spec);
        }
        Ok(schedules)
    }

    fn parse(r: RawSchedule, jobs: &[JobSpec]) -> std::result::Result<Self, String> {
        if let Err(Error::InvalidName { reason, .. }) = validate_name(&r.name) {
            return Err(format!("the name breaks the name rule: {reason}"));
        }
        if !jobs.iter().any(|j| j.name == r.job) {
            return Err(format!(
                "its job kind `{}` is not declared in the manifest's jobs",
                r.job
            ));
        }
        let trigger = match (r.cron.is_empty(), r.every_ms) {
            (true, 0) if r.time_zone.is_empty() => {
                return Err(
                    "it has neither a cron expression nor an interval (every_ms is 0)".into(),
                );
            }
            (true, 0) => return Err("it has a time zone but no cron expression".into()),
            (false, n) if n > 0 => {
                return Err("it has both a cron expression and an interval".into());
            }
            (false, _) => {
                let cron = parse_cron(&r.cron)
                    .map_err(|e| format!("cron expression {:?} does not parse: {e}", r.cron))?;
                if r.time_zone.is_empty() {
                    return Err("a cron schedule needs a time zone (`UTC` for UTC)".into());
                }
                let tz = TimeZone::get(&r.time_zone)
                    .map_err(|e| format!("time zone {:?} is unknown: {e}", r.time_zone))?;
                Trigger::Cron(Box::new(cron), tz)
            }
            (true, _) if !r.time_zone.is_empty() => {
                return Err("an interval schedule takes no time zone".into());
            }
            (true, n) => Trigger::Every(n),
        };
        let is_cron = matches!(trigger, Trigger::Cron(..));
        Ok(Self {
            cron: is_cron.then_some(r.cron),
            time_zone: is_cron.then_some(r.time_zone),
            every_ms: (!is_cron).then_some(r.every_ms),
            trigger,
            name: r.name,
            job: r.job,
        })
    }

    /// The first time strictly after `after` at which the schedule fires; `None` when it never
    /// fires again (a cron expression with no future match, or past the representable range).
    ///
    /// A cron schedule follows croner's daylight saving rules: a fixed time that falls in a gap
    /// (clocks jump forward) fires at the first instant after the gap, once; a fixed time that
    /// occurs twice (clocks fall back) fires once, at its first occurrence; wildcard and step
    /// fields fire at each real occurrence. An interval schedule fires at the multiples of its
    /// interval since the Unix epoch, so every host agrees on the instants.
    pub fn next_fire(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.trigger {
            Trigger::Cron(cron, tz) => {
                let start = after.to_zoned(tz.clone());
                cron.find_next_occurrence(&start, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
            Trigger::Every(every) => {
                let every = i64::try_from(*every).ok()?;
                let ms = after.as_millisecond();
                let next = ms.div_euclid(every).checked_add(1)?.checked_mul(every)?;
                Timestamp::from_millisecond(next).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expr: &str, tz: &str) -> ScheduleSpec {
        ScheduleSpec::parse(
            RawSchedule {
                name: "s".into(),
                cron: expr.into(),
                time_zone: tz.into(),
                every_ms: 0,
                job: "j".into(),
            },
            &[job()],
        )
        .unwrap()
    }

    fn job() -> JobSpec {
        let functions = [crate::manifest::FunctionSpec {
            name: "f".into(),
            summary: String::new(),
            input_schema: None,
            output_schema: None,
        }];
        let raw: Vec<super::super::RawJob> =
            serde_json::from_str(r#"[{"name":"j","function":"f"}]"#).unwrap();
        JobSpec::parse_all("p", raw, &functions).unwrap().remove(0)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The successive fires after `from`.
    fn fires(s: &ScheduleSpec, from: &str, n: usize) -> Vec<String> {
        let mut at = ts(from);
        (0..n)
            .map(|_| {
                at = s.next_fire(at).unwrap();
                at.to_string()
            })
            .collect()
    }

    #[test]
    fn daily_at_three_in_paris_across_spring_forward() {
        // 2026-03-29: Paris goes from +01:00 to +02:00 at 02:00 local (01:00 UTC).
        let s = cron("0 3 * * *", "Europe/Paris");
        assert_eq!(
            fires(&s, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T01:00:00Z"
            ]
        );
    }

    #[test]
    fn a_time_in_the_gap_fires_once_right_after_it() {
        // 02:30 does not exist in Paris on 2026-03-29: it fires at 03:00 local (01:00 UTC).
        let s = cron("30 2 * * *", "Europe/Paris");
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
        );
    }

    #[test]
    fn a_time_that_occurs_twice_fires_once() {
        // 2026-10-25: Paris falls back from 03:00 +02:00 to 02:00 +01:00; 02:30 occurs twice.
        let s = cron("30 2 * * *", "Europe/Paris");
        assert_eq!(
            fires(&s, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn hourly_fires_at_each_real_hour_when_clocks_fall_back() {
        let s = cron("0 * * * *", "Europe/Paris");
        assert_eq!(
            fires(&s, "2026-10-24T23:30:00Z", 4),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T03:00:00Z"
            ]
        );
    }

    #[test]
    fn next_fire_is_strictly_after() {
        let s = cron("0 3 * * *", "UTC");
        assert_eq!(
            s.next_fire(ts("2026-05-01T03:00:00Z")),
            Some(ts("2026-05-02T03:00:00Z"))
        );
        let secs = cron("*/15 * * * * *", "UTC");
        assert_eq!(
            fires(&secs, "2026-05-01T03:00:00Z", 2),
            ["2026-05-01T03:00:15Z", "2026-05-01T03:00:30Z"]
        );
        let daily = cron("@daily", "Asia/Tokyo");
        assert_eq!(
            daily.next_fire(ts("2026-05-01T03:00:00Z")),
            Some(ts("2026-05-01T15:00:00Z"))
        );
    }

    #[test]
    fn a_cron_that_never_matches_has_no_next_fire() {
        let s = cron("0 0 30 2 *", "UTC");
        assert_eq!(s.next_fire(ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn intervals_fire_at_multiples_since_the_epoch() {
        let s = ScheduleSpec::parse(
            RawSchedule {
                name: "s".into(),
                cron: String::new(),
                time_zone: String::new(),
                every_ms: 30_000,
                job: "j".into(),
            },
            &[job()],
        )
        .unwrap();
        assert_eq!(
            fires(&s, "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z"]
        );
        assert_eq!(
            s.next_fire(ts("2026-01-01T00:00:29.999999Z")),
            Some(ts("2026-01-01T00:00:30Z"))
        );
        assert_eq!(s.next_fire(Timestamp::MAX), None);
    }
}

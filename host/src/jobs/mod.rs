//! Durable jobs. A plugin's manifest declares job kinds ([`JobSpec`]: handler function,
//! trigger patterns, attempts, backoff, timeout, dedupe key template, priority) and schedules
//! ([`ScheduleSpec`]: cron in a time zone, or an interval) that enqueue them; the host validates
//! them at inspect and load (`invalid_job`, `invalid_schedule`) and shows them.
//!
//! At run time the [`JobQueue`] (in `queue.rs`) enqueues on emit, claims and runs jobs under
//! leases and records every attempt, on a [`JobStore`] (`store.rs`): SQLite (`sqlite.rs`) or
//! PostgreSQL (`postgres/`). See `docs/jobs.md`.

mod commit;
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod queue;
mod schedule;
mod spec;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod store;
mod template;

pub(crate) use queue::JobHost;
pub use queue::{EnqueueOptions, JobQueue};
pub(crate) use schedule::RawSchedule;
pub use schedule::{ScheduleSpec, parse_cron};
pub(crate) use spec::RawJob;
pub use spec::{BackoffSpec, DEFAULT_MAX_ATTEMPTS, JobSpec, MAX_ATTEMPTS, MAX_DELAY_MS};
pub use store::{
    AttemptRecord, AttemptStatus, Claimed, Finish, JobFilter, JobRecord, JobState, JobStore,
    NewJob, Next, Refused, Rescued, StateCount,
};
pub use template::{EventFields, KeyTemplate, MAX_TEMPLATE_BYTES};

/// The bus namespace of the queue's events (`job:enqueued`, `job:completed`, ...): the host's,
/// so no plugin emits in it, and its events never trigger jobs.
pub const JOB_NAMESPACE: &str = "job";

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Opens the store a configuration names (`None` when it names none).
///
/// # Errors
/// `backend_unavailable` when it cannot be opened; `invalid_config`-like `bad_request` when
/// this build lacks the backend's feature.
pub(crate) fn open_store(
    config: &crate::config::JobStoreConfig,
) -> crate::error::Result<Option<std::sync::Arc<dyn JobStore>>> {
    use crate::config::JobStoreConfig;
    match config {
        JobStoreConfig::None => Ok(None),
        #[cfg(feature = "sqlite")]
        JobStoreConfig::Sqlite {
            path,
            synchronous_full,
        } => Ok(Some(std::sync::Arc::new(sqlite::SqliteJobs::open(
            path,
            *synchronous_full,
        )?))),
        #[cfg(feature = "postgres")]
        JobStoreConfig::Postgres { url } => Ok(Some(std::sync::Arc::new(postgres::PgJobs::open(
            url,
            "plugin_host",
        )?))),
        #[allow(
            unreachable_patterns,
            reason = "reached only in builds without the sqlite or postgres feature"
        )]
        _ => Err(crate::error::Error::BadRequest {
            message: "this build has no job queue backend for the configured store".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jiff::Timestamp;

    use crate::error::{Error, ErrorCode};
    use crate::manifest::PluginManifest;

    const FUNCTIONS: &str = r#""functions":[{"name":"send_fn"},{"name":"clean_fn"}]"#;

    fn manifest(jobs: &str, schedules: &str) -> crate::error::Result<PluginManifest> {
        let json = format!(
            r#"{{"name":"p","version":"1.0.0",{FUNCTIONS},"jobs":[{jobs}],"schedules":[{schedules}]}}"#
        );
        PluginManifest::parse(Path::new("p.so"), json.as_bytes())
    }

    const SEND: &str = r#"{"name":"send","function":"send_fn","triggers":["form:submitted","user:*"],
        "max_attempts":5,"backoff":{"base_ms":500,"cap_ms":60000},"timeout_ms":10000,
        "dedupe":"{event.id}","priority":-3}"#;

    #[test]
    fn parses_jobs_and_schedules() {
        let m = manifest(
            &format!(r#"{SEND},{{"name":"clean","function":"clean_fn"}}"#),
            r#"{"name":"nightly","cron":"0 3 * * *","time_zone":"Europe/Paris","job":"clean"},
               {"name":"poll","every_ms":30000,"job":"send"}"#,
        )
        .unwrap();
        let send = &m.jobs[0];
        assert_eq!(send.function, "send_fn");
        assert_eq!(send.triggers, ["form:submitted", "user:*"]);
        assert_eq!(send.max_attempts, 5);
        assert_eq!((send.backoff.base_ms, send.backoff.cap_ms), (500, 60_000));
        assert_eq!(send.timeout_ms, Some(10_000));
        assert_eq!(send.dedupe.as_ref().unwrap().as_str(), "{event.id}");
        assert_eq!(send.priority, -3);
        let clean = &m.jobs[1];
        assert_eq!(clean.max_attempts, super::DEFAULT_MAX_ATTEMPTS);
        assert_eq!(clean.backoff, super::BackoffSpec::default());
        assert_eq!(
            (clean.timeout_ms, &clean.dedupe, clean.priority),
            (None, &None, 0)
        );
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["jobs"][0]["dedupe"], "{event.id}");
        assert_eq!(v["jobs"][1]["dedupe"], serde_json::Value::Null);
        assert_eq!(v["schedules"][0]["time_zone"], "Europe/Paris");
        assert_eq!(v["schedules"][0]["every_ms"], serde_json::Value::Null);
        assert_eq!(v["schedules"][1]["every_ms"], 30_000);
        assert_eq!(v["schedules"][1]["cron"], serde_json::Value::Null);
        let at: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let next: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        assert_eq!(m.schedules[1].next_fire(at), Some(next));
    }

    #[test]
    fn a_manifest_without_jobs_has_none() {
        let m =
            PluginManifest::parse(Path::new("p.so"), br#"{"name":"p","version":"1.0.0"}"#).unwrap();
        assert!(m.jobs.is_empty() && m.schedules.is_empty());
    }

    /// Each bad job: its JSON and a word of the expected reason.
    const BAD_JOBS: &[(&str, &str)] = &[
        (
            r#"{"name":"j","function":"nope"}"#,
            "`nope` is not declared",
        ),
        (r#"{"name":"J","function":"send_fn"}"#, "name rule"),
        (
            r#"{"name":"j","function":"send_fn","triggers":["da*"]}"#,
            "trigger",
        ),
        (
            r#"{"name":"j","function":"send_fn","triggers":["a::b"]}"#,
            "trigger",
        ),
        (
            r#"{"name":"j","function":"send_fn","triggers":["a","a"]}"#,
            "listed twice",
        ),
        (
            r#"{"name":"j","function":"send_fn","dedupe":"{event.ts}"}"#,
            "dedupe template",
        ),
        (
            r#"{"name":"j","function":"send_fn","dedupe":"{event.id"}"#,
            "dedupe template",
        ),
        (
            r#"{"name":"j","function":"send_fn","max_attempts":0}"#,
            "max_attempts is 0",
        ),
        (
            r#"{"name":"j","function":"send_fn","backoff":{"base_ms":1000,"cap_ms":999}}"#,
            "below its base",
        ),
        (
            r#"{"name":"j","function":"send_fn","backoff":{"base_ms":0,"cap_ms":10}}"#,
            "base is 0",
        ),
        (
            r#"{"name":"j","function":"send_fn"},{"name":"j","function":"clean_fn"}"#,
            "declared twice",
        ),
        (
            r#"{"name":"j","function":"send_fn","max_attempts":1001}"#,
            "the most is 1000",
        ),
        (
            r#"{"name":"j","function":"send_fn","backoff":{"base_ms":1,"cap_ms":604800001}}"#,
            "the most is 604800000",
        ),
        (
            r#"{"name":"j","function":"send_fn","timeout_ms":604800001}"#,
            "timeout_ms is 604800001",
        ),
    ];

    #[test]
    fn refuses_bad_jobs_with_invalid_job() {
        for (jobs, says) in BAD_JOBS {
            let e = manifest(jobs, "").unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidJob, "{jobs}: {e}");
            assert!(e.to_string().contains(says), "{jobs}: {e}");
            assert!(matches!(&e, Error::InvalidJob { plugin, .. } if plugin == "p"));
        }
    }

    /// Each bad schedule: its JSON and a word of the expected reason.
    const BAD_SCHEDULES: &[(&str, &str)] = &[
        (
            r#"{"name":"s","every_ms":1000,"job":"missing"}"#,
            "`missing` is not declared",
        ),
        (
            r#"{"name":"s","cron":"61 * * * *","time_zone":"UTC","job":"send"}"#,
            "does not parse",
        ),
        (
            r#"{"name":"s","cron":"0 3 * *","time_zone":"UTC","job":"send"}"#,
            "does not parse",
        ),
        (
            r#"{"name":"s","cron":"0 0 3 * * * 2030","time_zone":"UTC","job":"send"}"#,
            "does not parse",
        ),
        (
            r#"{"name":"s","cron":"0 3 * * *","time_zone":"Europe/Atlantis","job":"send"}"#,
            "is unknown",
        ),
        (
            r#"{"name":"s","cron":"0 3 * * *","time_zone":"","job":"send"}"#,
            "needs a time zone",
        ),
        (r#"{"name":"s","every_ms":0,"job":"send"}"#, "neither"),
        (
            r#"{"name":"s","cron":"0 3 * * *","time_zone":"UTC","every_ms":5,"job":"send"}"#,
            "both",
        ),
        (
            r#"{"name":"s","every_ms":5,"time_zone":"UTC","job":"send"}"#,
            "takes no time zone",
        ),
        (r#"{"name":"S!","every_ms":5,"job":"send"}"#, "name rule"),
        (
            r#"{"name":"s","every_ms":5,"job":"send"},{"name":"s","every_ms":6,"job":"send"}"#,
            "declared twice",
        ),
    ];

    #[test]
    fn refuses_bad_schedules_with_invalid_schedule() {
        for (schedules, says) in BAD_SCHEDULES {
            let e = manifest(SEND, schedules).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidSchedule, "{schedules}: {e}");
            assert!(e.to_string().contains(says), "{schedules}: {e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = manifest(r#"{"name":"j","function":"send_fn","retries":3}"#, "").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidPlugin);
    }
}

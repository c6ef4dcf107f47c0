//! Durable jobs at run time, in-process against the real core and the real `job-runner` plugin,
//! on both queue backends: SQLite (a file in a temporary folder) and PostgreSQL (a fresh
//! database on the machine's server). Each test runs once per backend.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::jobs::{AttemptStatus, EnqueueOptions, JobFilter, JobRecord, JobState};
use plugin_host::{ErrorCode, JobStoreConfig, JobsConfig, ManagerConfig, PluginManager};
use serde_json::{Value, json};

/// Where a test's queue lives; kept alive for the test.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(temp_dir())
    }

    fn postgres() -> Self {
        Self::Postgres(PgDatabase::create("jobs"))
    }

    fn store(&self) -> JobStoreConfig {
        match self {
            Self::Sqlite(dir) => JobStoreConfig::Sqlite {
                path: dir.path().join("jobs.db"),
                synchronous_full: false,
            },
            Self::Postgres(db) => JobStoreConfig::Postgres {
                url: db.url.clone(),
            },
        }
    }

    /// A manager whose queue is this backend: 2 workers, 1 s leases, 50 ms polls.
    fn manager(&self) -> PluginManager {
        let mut jobs = JobsConfig::default();
        jobs.store = self.store();
        jobs.host_id = "test-host".into();
        jobs.workers = 2;
        jobs.lease = Duration::from_secs(1);
        jobs.poll = Duration::from_millis(50);
        PluginManager::new(
            ManagerConfig::default()
                .with_cleanup_timeout(Duration::from_secs(10))
                .with_jobs(jobs),
        )
        .unwrap()
    }
}

/// Runs `test` on each backend.
fn each_backend(test: impl Fn(&Backend)) {
    for backend in [Backend::sqlite(), Backend::postgres()] {
        test(&backend);
    }
}

fn runner(m: &PluginManager) {
    m.load(plugin("job-runner")).unwrap();
}

/// Waits (polling the queue, 20 s at most) until job `id` satisfies `done`.
fn wait_job(m: &PluginManager, id: i64, done: impl Fn(&JobRecord) -> bool) -> JobRecord {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (job, attempts) = m.jobs().unwrap().get(id).unwrap();
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never got there: {job:?}\nattempts: {attempts:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn finished(job: &JobRecord) -> bool {
    matches!(
        job.state,
        JobState::Completed | JobState::Discarded | JobState::Cancelled
    )
}

/// The jobs of a kind of `job-runner`, newest first.
fn jobs_of(m: &PluginManager, kind: &str) -> Vec<JobRecord> {
    m.jobs()
        .unwrap()
        .list(&JobFilter {
            plugin: Some("job-runner".into()),
            kind: Some(kind.into()),
            limit: 1000,
            ..JobFilter::default()
        })
        .unwrap()
}

/// Emits `work:go` with `payload` as the host; returns the one job it enqueued.
fn emit_work(m: &PluginManager, payload: Value) -> JobRecord {
    let before = jobs_of(m, "work").first().map_or(0, |j| j.id);
    m.bus()
        .emit_host("work:go", payload.to_string().as_bytes())
        .unwrap();
    // Durable before emit returns: the job is there now, no waiting.
    let new: Vec<JobRecord> = jobs_of(m, "work")
        .into_iter()
        .filter(|j| j.id > before)
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.into_iter().next().unwrap()
}

fn statuses(m: &PluginManager, id: i64) -> Vec<AttemptStatus> {
    let (_, attempts) = m.jobs().unwrap().get(id).unwrap();
    attempts.iter().map(|a| a.status).collect()
}

#[test]
fn an_event_enqueues_a_job_that_runs_and_is_logged() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        m.bus()
            .subscribe_host(
                "job:*",
                false,
                Arc::new(move |e: &plugin_host::BusEvent| {
                    seen.lock().unwrap().push(e.name.to_string());
                }),
            )
            .unwrap();
        let job = emit_work(&m, json!({"id": "a"}));
        assert_eq!(job.source, "event:work:go");
        assert!(job.event_id.as_deref().unwrap().starts_with("evt_"));
        let done = wait_job(&m, job.id, finished);
        assert_eq!(done.state, JobState::Completed, "{done:?}");
        assert_eq!(done.attempt, 1);
        let (_, attempts) = m.jobs().unwrap().get(job.id).unwrap();
        assert_eq!(attempts.len(), 1);
        let a = &attempts[0];
        assert_eq!(a.status, AttemptStatus::Succeeded);
        assert_eq!(
            (a.plugin.as_str(), a.version.as_str()),
            ("job-runner", "1.0.0")
        );
        assert_eq!((a.kind.as_str(), a.host.as_str()), ("work", "test-host"));
        assert_eq!(
            serde_json::from_str::<Value>(a.output.as_deref().unwrap()).unwrap(),
            json!({"id": "a", "run": 1})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&a.input).unwrap(),
            json!({"id": "a"})
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !events.lock().unwrap().contains(&"job:completed".to_owned()) {
            assert!(Instant::now() < deadline, "{:?}", events.lock().unwrap());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(events.lock().unwrap().contains(&"job:enqueued".to_owned()));
    });
}

#[test]
fn a_failing_job_is_retried_with_backoff_until_it_succeeds() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let job = emit_work(&m, json!({"id": "r", "fail_times": 2}));
        let done = wait_job(&m, job.id, finished);
        assert_eq!(done.state, JobState::Completed, "{done:?}");
        assert_eq!(done.attempt, 3);
        assert_eq!(
            statuses(&m, job.id),
            [
                AttemptStatus::Failed,
                AttemptStatus::Failed,
                AttemptStatus::Succeeded
            ]
        );
        let (_, attempts) = m.jobs().unwrap().get(job.id).unwrap();
        assert!(
            attempts[0]
                .error
                .as_deref()
                .unwrap()
                .contains("fails as asked"),
            "{attempts:?}"
        );
    });
}

#[test]
fn a_job_is_discarded_after_its_last_attempt_and_an_operator_can_retry_it() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let job = emit_work(&m, json!({"id": "d", "fail_times": 4}));
        let done = wait_job(&m, job.id, finished);
        assert_eq!(done.state, JobState::Discarded, "{done:?}");
        assert_eq!((done.attempt, done.max_attempts), (3, 3));
        assert!(done.last_error.as_deref().unwrap().contains("run 3 of d"));
        // Retrying a waiting or finished job is checked; a discarded one gets 3 more attempts.
        let again = m.jobs().unwrap().retry(job.id).unwrap();
        assert_eq!((again.max_attempts, again.attempt), (6, 3));
        let done = wait_job(&m, job.id, finished);
        assert_eq!(done.state, JobState::Completed, "{done:?}");
        assert_eq!(done.attempt, 5);
        assert_eq!(statuses(&m, job.id).len(), 5);
    });
}

#[test]
fn an_attempt_that_takes_too_long_times_out() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let job = m
            .jobs()
            .unwrap()
            .enqueue(
                "job-runner",
                "slow",
                &json!({"id": "t", "sleep_ms": 1000}),
                EnqueueOptions::default(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(job.source, "api");
        let done = wait_job(&m, job.id, finished);
        assert_eq!(done.state, JobState::Discarded, "{done:?}");
        assert_eq!(
            statuses(&m, job.id),
            [AttemptStatus::TimedOut, AttemptStatus::TimedOut]
        );
        let (_, attempts) = m.jobs().unwrap().get(job.id).unwrap();
        assert!(
            attempts[0].error.as_deref().unwrap().contains("300ms"),
            "{attempts:?}"
        );
    });
}

#[test]
fn a_panicking_job_is_contained_retried_and_discarded() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let job = emit_work(&m, json!({"id": "p", "panic": true}));
        let done = wait_job(&m, job.id, finished);
        assert_eq!(done.state, JobState::Discarded, "{done:?}");
        assert_eq!(statuses(&m, job.id), [AttemptStatus::Panicked; 3]);
        // The plugin keeps serving.
        let job = emit_work(&m, json!({"id": "after-panic"}));
        assert_eq!(wait_job(&m, job.id, finished).state, JobState::Completed);
    });
}

#[test]
fn an_input_the_function_cannot_take_fails_once_and_is_not_retried() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let job = emit_work(&m, json!({"id": 5}));
        let done = wait_job(&m, job.id, finished);
        assert_eq!(done.state, JobState::Discarded, "{done:?}");
        assert_eq!(done.attempt, 1);
        assert_eq!(statuses(&m, job.id), [AttemptStatus::Failed]);
        assert!(
            done.last_error
                .as_deref()
                .unwrap()
                .contains("does not fit its type"),
            "{done:?}"
        );
    });
}

#[test]
fn a_dedupe_key_keeps_one_waiting_job() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let q = m.jobs().unwrap();
        q.set_paused("job-runner", "work", true).unwrap();
        let first = emit_work(&m, json!({"id": "k1", "key": "same"}));
        assert_eq!(first.dedupe_key.as_deref(), Some("same"));
        m.bus()
            .emit_host(
                "work:go",
                json!({"id": "k2", "key": "same"}).to_string().as_bytes(),
            )
            .unwrap();
        let waiting = jobs_of(&m, "work");
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        // A different key, or none, is another job.
        emit_work(&m, json!({"id": "k3", "key": "other"}));
        emit_work(&m, json!({"id": "k4"}));
        assert_eq!(q.paused().unwrap(), [("job-runner".into(), "work".into())]);
        q.set_paused("job-runner", "work", false).unwrap();
        assert_eq!(wait_job(&m, first.id, finished).state, JobState::Completed);
        // Once the first is no longer waiting, the key is free again.
        let next = emit_work(&m, json!({"id": "k5", "key": "same"}));
        assert_ne!(next.id, first.id);
    });
}

#[test]
fn a_schedule_fires_on_its_interval_and_can_be_run_now() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        // `ticker` fires every second, at the multiples of a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        let fired = loop {
            if let Some(job) = jobs_of(&m, "tick").into_iter().next() {
                break job;
            }
            assert!(Instant::now() < deadline, "the schedule never fired");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(fired.source, "schedule:ticker:fire");
        let input: Value = serde_json::from_str(&fired.input).unwrap();
        assert_eq!(input["schedule"], "ticker");
        assert_eq!(fired.run_at % 1000, 0, "{fired:?}");
        assert_eq!(wait_job(&m, fired.id, finished).state, JobState::Completed);
        let now = m
            .jobs()
            .unwrap()
            .run_schedule("job-runner", "ticker")
            .unwrap()
            .unwrap();
        assert_eq!(now.source, "schedule:ticker:run");
        assert_eq!(wait_job(&m, now.id, finished).state, JobState::Completed);
        let e = m
            .jobs()
            .unwrap()
            .run_schedule("job-runner", "nope")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::ScheduleNotFound);
    });
}

#[test]
fn jobs_of_an_unloaded_plugin_wait_and_run_when_it_is_loaded_again() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        m.disable("job-runner").unwrap();
        // A disabled plugin's triggers still enqueue; its jobs wait.
        let jobs: Vec<JobRecord> = (0..3)
            .map(|i| emit_work(&m, json!({"id": format!("w{i}")})))
            .collect();
        m.unload("job-runner", false).unwrap();
        for job in &jobs {
            let (now, attempts) = m.jobs().unwrap().get(job.id).unwrap();
            assert_eq!(
                (now.state, now.attempt),
                (JobState::Available, 0),
                "{now:?}"
            );
            assert!(attempts.is_empty());
        }
        runner(&m);
        for job in &jobs {
            let done = wait_job(&m, job.id, finished);
            assert_eq!(
                (done.state, done.attempt),
                (JobState::Completed, 1),
                "{done:?}"
            );
        }
    });
}

#[test]
fn jobs_claimed_but_not_started_at_shutdown_wait_again_uncounted() {
    each_backend(|b| {
        let ids: Vec<i64> = {
            let m = b.manager();
            runner(&m);
            m.disable("job-runner").unwrap();
            // Four slow jobs wait; the plugin runs one call at a time, so once it is enabled
            // the two workers claim more than it can start before the shutdown.
            let ids = (0..4)
                .map(|i| emit_work(&m, json!({"id": format!("s{i}"), "sleep_ms": 400})).id)
                .collect::<Vec<_>>();
            m.enable("job-runner").unwrap();
            wait_job(&m, ids[0], |j| j.state != JobState::Available);
            ids
        };
        // The shutdown let the started attempts finish and gave back the others.
        let m = b.manager();
        let q = m.jobs().unwrap();
        let mut completed = 0;
        for id in ids {
            let (job, attempts) = q.get(id).unwrap();
            match job.state {
                JobState::Completed => {
                    completed += 1;
                    assert_eq!((job.attempt, attempts.len()), (1, 1), "{job:?}");
                }
                JobState::Available => {
                    assert_eq!(job.attempt, 0, "{job:?}");
                    assert!(attempts.is_empty(), "{attempts:?}");
                }
                _ => panic!("a job was left claimed: {job:?} {attempts:?}"),
            }
        }
        assert!((1..=3).contains(&completed), "{completed} completed");
    });
}

#[test]
fn a_job_emitted_by_a_plugin_is_durable_before_its_emit_returns() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        m.jobs()
            .unwrap()
            .set_paused("job-runner", "work", true)
            .unwrap();
        m.call(
            "job-runner",
            "emit_fn",
            &json!({"name": "work:from-plugin", "payload": {"id": "e"}}),
        )
        .unwrap();
        let jobs = jobs_of(&m, "work");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].source, "event:work:from-plugin");
        // The host's namespaces are closed to plugins.
        let e = m
            .call(
                "job-runner",
                "emit_fn",
                &json!({"name": "job:completed", "payload": {}}),
            )
            .unwrap_err();
        assert!(e.to_string().contains("job"), "{e}");
    });
}

#[test]
fn a_job_survives_a_restart_of_its_host() {
    each_backend(|b| {
        let id = {
            let m = b.manager();
            runner(&m);
            m.jobs()
                .unwrap()
                .set_paused("job-runner", "work", true)
                .unwrap();
            emit_work(&m, json!({"id": "s"})).id
        };
        // The manager is gone with its threads; the job and the pause are in the store.
        let m = b.manager();
        let (job, _) = m.jobs().unwrap().get(id).unwrap();
        assert_eq!((job.state, job.attempt), (JobState::Available, 0));
        runner(&m);
        let q = m.jobs().unwrap();
        assert_eq!(q.paused().unwrap(), [("job-runner".into(), "work".into())]);
        q.set_paused("job-runner", "work", false).unwrap();
        assert_eq!(wait_job(&m, id, finished).state, JobState::Completed);
    });
}

#[test]
fn an_operator_cancels_a_waiting_job_and_not_a_finished_one() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let q = m.jobs().unwrap();
        let later = jiff_ms() + 3_600_000;
        let job = q
            .enqueue(
                "job-runner",
                "work",
                &json!({"id": "c"}),
                EnqueueOptions {
                    run_at: Some(later),
                    ..EnqueueOptions::default()
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(job.state, JobState::Scheduled);
        assert_eq!(q.cancel(job.id).unwrap().state, JobState::Cancelled);
        let e = q.cancel(job.id).unwrap_err();
        assert_eq!(e.code(), ErrorCode::JobStateConflict);
        let e = q.retry(i64::MAX).unwrap_err();
        assert_eq!(e.code(), ErrorCode::JobNotFound);
        let e = q
            .enqueue(
                "job-runner",
                "nope",
                &Value::Null,
                EnqueueOptions::default(),
            )
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::JobKindNotFound);
    });
}

fn jiff_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn a_reload_lets_the_running_attempt_finish_and_a_shutdown_waits_for_it() {
    each_backend(|b| {
        let id = {
            let m = b.manager();
            runner(&m);
            let job = emit_work(&m, json!({"id": "reload", "sleep_ms": 600}));
            wait_job(&m, job.id, |j| j.state == JobState::Running);
            // The attempt runs on the old instance; the reload waits for it, and loses nothing.
            m.reload("job-runner").unwrap();
            let done = wait_job(&m, job.id, finished);
            assert_eq!((done.state, done.attempt), (JobState::Completed, 1));
            // A shutdown stops claiming and waits for the attempt running now.
            let job = emit_work(&m, json!({"id": "shutdown", "sleep_ms": 600}));
            wait_job(&m, job.id, |j| j.state == JobState::Running);
            job.id
        };
        let m = b.manager();
        let (job, attempts) = m.jobs().unwrap().get(id).unwrap();
        assert_eq!(
            (job.state, job.attempt),
            (JobState::Completed, 1),
            "{attempts:?}"
        );
        assert_eq!(attempts.len(), 1);
    });
}

#[test]
fn a_failed_reload_leaves_the_running_version_in_charge_of_its_jobs() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        // New settings reload the plugin; this config makes the new instance's initialize
        // fail, after it was started, so the old instance keeps running.
        let mut settings = plugin_host::PluginSettings::default();
        settings.config = Some(json!({"fail_init": true}));
        let e = m.set_settings("job-runner", Some(settings)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InitializeFailed, "{e}");
        // The old instance still has its triggers, runs its jobs and takes operator calls.
        let job = emit_work(&m, json!({"id": "after-failed-reload"}));
        assert_eq!(wait_job(&m, job.id, finished).state, JobState::Completed);
        m.jobs()
            .unwrap()
            .set_paused("job-runner", "work", true)
            .unwrap();
    });
}

#[test]
fn any_dedupe_key_can_be_stored_and_compared() {
    each_backend(|b| {
        let m = b.manager();
        runner(&m);
        let q = m.jobs().unwrap();
        q.set_paused("job-runner", "work", true).unwrap();
        // Longer than an index entry may be, and with a NUL, which PostgreSQL text refuses.
        let key = format!("{}\u{0}", "k".repeat(5000));
        let first = emit_work(&m, json!({"id": "long", "key": key}));
        let stored = first.dedupe_key.clone().unwrap();
        assert!(
            stored.starts_with("sha256:") && stored.len() == 71,
            "{stored}"
        );
        m.bus()
            .emit_host(
                "work:go",
                json!({"id": "long-again", "key": key})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(jobs_of(&m, "work").len(), 1);
        let short = emit_work(&m, json!({"id": "short", "key": "k"}));
        assert_eq!(short.dedupe_key.as_deref(), Some("k"));
    });
}

//! Durable jobs benchmark (run by `scripts/bench.sh`), on SQLite (a file in a temporary folder)
//! and PostgreSQL (a fresh database on the machine's server), with the real `job-runner`
//! plugin's no-op kind `noop` (1 attempt, triggered by `noop:*` events):
//!
//! - **throughput**: `--emitters` threads (default 8; emits at the same time share one commit)
//!   emit `--jobs` events in all as the host (each emit commits its job before it returns);
//!   the clock runs from the first emit to the last `job:completed` event of the no-op kind
//!   (every job enqueued, claimed under a lease, run on the plugin's thread, its attempt logged
//!   and its completion committed). Goals: SQLite ≥ 5,000 jobs/s, PostgreSQL ≥ 2,000 jobs/s.
//! - **idle latency**: one job at a time on an idle queue, `--samples` times: from the emit to
//!   the attempt's start (the execution log's `started_at` minus the job's `created_at`, in
//!   ms) and from the emit to the `job:completed` event (measured here, in µs). Goal: p50 of
//!   the queue latency ≤ 10 ms.
//!
//! `cargo bench -p integration --bench jobs -- [--quick] [--jobs N] [--emitters N] [--samples N] [--workers N]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::jobs::JobFilter;
use plugin_host::{JobStoreConfig, JobsConfig, ManagerConfig, PluginManager};

struct Args {
    jobs: u64,
    emitters: u64,
    samples: u64,
    workers: usize,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let value = |name: &str, default: u64| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    Args {
        jobs: value("--jobs", if quick { 1_000 } else { 20_000 }),
        emitters: value("--emitters", 8),
        samples: value("--samples", if quick { 20 } else { 200 }),
        workers: usize::try_from(value("--workers", JobsConfig::default().workers as u64)).unwrap(),
    }
}

/// Counts `job:completed` events and wakes whoever waits for a count.
#[derive(Default)]
struct Completed {
    n: Mutex<u64>,
    changed: Condvar,
}

impl Completed {
    fn wait_for(&self, target: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut n = self.n.lock().unwrap();
        while *n < target {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "only {} of {target} jobs completed", *n);
            n = self.changed.wait_timeout(n, left).unwrap().0;
        }
    }
}

fn manager(store: JobStoreConfig, workers: usize) -> (PluginManager, Arc<Completed>) {
    let mut jobs = JobsConfig::default();
    jobs.store = store;
    jobs.workers = workers;
    let m = PluginManager::new(ManagerConfig::default().with_jobs(jobs)).unwrap();
    m.load(plugin("job-runner")).unwrap();
    let completed = Arc::new(Completed::default());
    let seen = Arc::clone(&completed);
    m.bus()
        .subscribe_host(
            "job:completed",
            false,
            Arc::new(move |e: &plugin_host::BusEvent| {
                // The plugin's `ticker` schedule completes jobs too: count the no-op kind's.
                let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
                if v["kind"] == "noop" {
                    *seen.n.lock().unwrap() += 1;
                    seen.changed.notify_all();
                }
            }),
        )
        .unwrap();
    (m, completed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run(backend: &str, store: JobStoreConfig, a: &Args) {
    let (m, completed) = manager(store, a.workers);
    let m = Arc::new(m);
    // Throughput.
    let per = a.jobs / a.emitters;
    let total = per * a.emitters;
    let emitted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..a.emitters)
        .map(|_| {
            let m = Arc::clone(&m);
            let emitted = Arc::clone(&emitted);
            std::thread::spawn(move || {
                for _ in 0..per {
                    m.bus().emit_host("noop:go", b"{}").unwrap();
                    emitted.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let enqueued = start.elapsed();
    completed.wait_for(total, Duration::from_secs(600));
    let took = start.elapsed();
    println!(
        "{backend:<10} throughput: {total} no-op jobs, {} emitters, {} workers: enqueued in {enqueued:.2?} ({:.0} jobs/s), all completed in {took:.2?}: {:.0} jobs/s",
        a.emitters,
        a.workers,
        total as f64 / enqueued.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    // Idle latency, one job at a time.
    let mut queue_ms = Vec::new();
    let mut round_us = Vec::new();
    for i in 0..a.samples {
        let target = total + i + 1;
        let t0 = Instant::now();
        m.bus().emit_host("noop:one", b"{}").unwrap();
        completed.wait_for(target, Duration::from_secs(30));
        round_us.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let q = m.jobs().unwrap();
    let recent = q
        .list(&JobFilter {
            plugin: Some("job-runner".into()),
            kind: Some("noop".into()),
            limit: u32::try_from(a.samples).unwrap(),
            ..JobFilter::default()
        })
        .unwrap();
    for job in recent {
        let (_, attempts) = q.get(job.id).unwrap();
        queue_ms.push((attempts[0].started_at - job.created_at) as f64);
    }
    queue_ms.sort_by(f64::total_cmp);
    round_us.sort_by(f64::total_cmp);
    println!(
        "{backend:<10} idle latency over {} jobs: enqueue to start p50 {} ms, p95 {} ms (ms resolution); emit to job:completed p50 {:.0} µs, p95 {:.0} µs",
        a.samples,
        percentile(&queue_ms, 0.5),
        percentile(&queue_ms, 0.95),
        percentile(&round_us, 0.5),
        percentile(&round_us, 0.95)
    );
}

fn main() {
    let a = args();
    build();
    let dir = temp_dir();
    run(
        "sqlite",
        JobStoreConfig::Sqlite {
            path: dir.path().join("jobs.db"),
            synchronous_full: false,
        },
        &a,
    );
    let db = PgDatabase::create("bench_jobs");
    run(
        "postgres",
        JobStoreConfig::Postgres {
            url: db.url.clone(),
        },
        &a,
    );
}

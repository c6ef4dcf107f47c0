//! Counters and latency histograms, and their Prometheus text rendering. No I/O, no HTTP: the
//! admin API serves [`render`]'s output at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds: from 100 µs to 10 s.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A lock-free latency histogram with fixed buckets ([`BUCKETS`]).
///
/// An observation adds to one slot (the first bucket it fits, or the overflow slot past the
/// last bound) and to the sum: two atomic additions. The cumulative `le` counts, `+Inf` and
/// `_count` are computed from one read of every slot when the histogram is written, so a
/// scrape during observations still shows cumulative buckets and `+Inf` equal to `_count`.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket, the observations that fit it and no smaller one; the last slot: over 10 s.
    slots: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        self.slots[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// Writes the family's `# HELP` and `# TYPE` lines (then write each series with
    /// [`Histogram::write_series`]).
    pub fn write_header(out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    }

    /// Writes this histogram's samples (`{name}_bucket` for each bound and `+Inf`, `{name}_sum`,
    /// `{name}_count`) with `labels`, escaped as the text format requires.
    pub fn write_series(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let labels = label_list(labels);
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.slots[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.slots[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(&labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(&labels));
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        Self::write_header(out, name, help);
        self.write_series(out, name, &[]);
    }
}

/// `a="x",b="y"`: label pairs, values escaped (`\\`, `\"`, `\n`), no braces.
fn label_list(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let value = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{value}\"");
    }
    out
}

/// Lifecycle counters and latencies of one manager.
#[derive(Debug, Default)]
pub struct ManagerMetrics {
    /// Successful loads.
    pub loads: AtomicU64,
    /// Failed loads.
    pub load_failures: AtomicU64,
    /// Unloads.
    pub unloads: AtomicU64,
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Failed reloads (the old version kept running).
    pub reload_failures: AtomicU64,
    /// Load latency (file read to initialised).
    pub load_seconds: Histogram,
    /// Reload latency (file read to new instance serving).
    pub reload_seconds: Histogram,
}

/// A counter or gauge sample with labels.
#[derive(Debug)]
pub struct Sample<'a> {
    /// Label pairs.
    pub labels: Vec<(&'a str, String)>,
    /// Value.
    pub value: f64,
}

/// Writes one metric family in Prometheus text format.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[Sample<'_>]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for s in samples {
        if s.labels.is_empty() {
            let _ = writeln!(out, "{name} {}", s.value);
        } else {
            let labels: Vec<(&str, &str)> =
                s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let _ = writeln!(out, "{name}{{{}}} {}", label_list(&labels), s.value);
        }
    }
}

/// Renders the manager's counters and histograms.
pub fn render(out: &mut String, m: &ManagerMetrics) {
    let counters = [
        ("plugin_host_loads_total", "Plugins loaded.", &m.loads),
        (
            "plugin_host_load_failures_total",
            "Plugin loads that failed.",
            &m.load_failures,
        ),
        ("plugin_host_unloads_total", "Plugins unloaded.", &m.unloads),
        ("plugin_host_reloads_total", "Plugins reloaded.", &m.reloads),
        (
            "plugin_host_reload_failures_total",
            "Reloads that failed; the old version kept running.",
            &m.reload_failures,
        ),
    ];
    for (name, help, counter) in counters {
        let sample = Sample {
            labels: vec![],
            value: counter.load(Ordering::Relaxed) as f64,
        };
        family(out, name, "counter", help, &[sample]);
    }
    m.load_seconds.write(
        out,
        "plugin_host_load_seconds",
        "Time to load and initialise a plugin.",
    );
    m.reload_seconds.write(
        out,
        "plugin_host_reload_seconds",
        "Time to replace a plugin by a new instance.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        let mut out = String::new();
        h.write(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2"), "{out}");
        assert!(out.contains("x_count 2"));
    }

    #[test]
    fn labelled_histograms_count_overflow_in_inf_only() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(11));
        let mut out = String::new();
        h.write_series(&mut out, "x", &[("route", "GET /a/{id}")]);
        assert!(
            out.contains("x_bucket{route=\"GET /a/{id}\",le=\"0.25\"} 0"),
            "{out}"
        );
        assert!(out.contains("x_bucket{route=\"GET /a/{id}\",le=\"0.5\"} 1"));
        assert!(out.contains("x_bucket{route=\"GET /a/{id}\",le=\"10\"} 1"));
        assert!(out.contains("x_bucket{route=\"GET /a/{id}\",le=\"+Inf\"} 2"));
        assert!(out.contains("x_sum{route=\"GET /a/{id}\"} 11.3\n"), "{out}");
        assert!(out.contains("x_count{route=\"GET /a/{id}\"} 2\n"));
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn labels_are_escaped() {
        let mut out = String::new();
        family(
            &mut out,
            "m",
            "gauge",
            "h",
            &[Sample {
                labels: vec![("plugin", "a\"b".into())],
                value: 1.0,
            }],
        );
        assert!(out.contains("m{plugin=\"a\\\"b\"} 1"), "{out}");
    }
}

/// Counters and histograms of one job kind.
#[derive(Debug, Default)]
pub struct KindMetrics {
    /// Jobs enqueued.
    pub enqueued: AtomicU64,
    /// Enqueues skipped because a waiting job had the same dedupe key.
    pub deduplicated: AtomicU64,
    /// Attempts by how they ended: succeeded, failed, timed out, panicked, lost.
    pub attempts: [AtomicU64; 5],
    /// From due (`run_at`, or enqueue when later) to the start of an attempt.
    pub queue_latency: Histogram,
    /// Duration of attempts.
    pub run_seconds: Histogram,
}

/// The attempt statuses of [`KindMetrics::attempts`], in order.
pub const ATTEMPT_STATUSES: [&str; 5] = ["succeeded", "failed", "timed_out", "panicked", "lost"];

/// The job queue's counters and histograms, per (plugin, kind).
#[derive(Debug, Default)]
pub struct JobMetrics {
    kinds:
        std::sync::Mutex<std::collections::BTreeMap<(String, String), std::sync::Arc<KindMetrics>>>,
}

impl JobMetrics {
    /// The metrics of one kind (created on first use).
    pub fn kind(&self, plugin: &str, kind: &str) -> std::sync::Arc<KindMetrics> {
        let mut kinds = self
            .kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = kinds.get(&(plugin.to_owned(), kind.to_owned())) {
            return std::sync::Arc::clone(k);
        }
        let k = std::sync::Arc::new(KindMetrics::default());
        kinds.insert(
            (plugin.to_owned(), kind.to_owned()),
            std::sync::Arc::clone(&k),
        );
        k
    }

    pub(crate) fn enqueued(&self, plugin: &str, kind: &str) {
        self.kind(plugin, kind)
            .enqueued
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn deduplicated(&self, plugin: &str, kind: &str) {
        self.kind(plugin, kind)
            .deduplicated
            .fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt starts `latency_ms` after its job became due.
    pub(crate) fn started(&self, plugin: &str, kind: &str, latency_ms: i64) {
        let ms = u64::try_from(latency_ms).unwrap_or(0);
        self.kind(plugin, kind)
            .queue_latency
            .observe(Duration::from_millis(ms));
    }

    pub(crate) fn finished(
        &self,
        plugin: &str,
        kind: &str,
        status: crate::jobs::AttemptStatus,
        took: Duration,
    ) {
        let k = self.kind(plugin, kind);
        let i = ATTEMPT_STATUSES
            .iter()
            .position(|s| *s == status.as_str())
            .unwrap_or(1);
        k.attempts[i].fetch_add(1, Ordering::Relaxed);
        k.run_seconds.observe(took);
    }

    pub(crate) fn lost(&self, plugin: &str, kind: &str) {
        self.kind(plugin, kind).attempts[4].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<((String, String), std::sync::Arc<KindMetrics>)> {
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), std::sync::Arc::clone(v)))
            .collect()
    }
}

/// Renders the job queue's metrics: `counts` (jobs by plugin, kind and state, with the oldest
/// `run_at` of each group) and `now` (ms) come from the store at scrape time.
pub fn render_jobs(out: &mut String, m: &JobMetrics, counts: &[crate::jobs::StateCount], now: i64) {
    let jobs: Vec<Sample<'_>> = counts
        .iter()
        .map(|c| Sample {
            labels: vec![
                ("plugin", c.plugin.clone()),
                ("kind", c.kind.clone()),
                ("state", c.state.as_str().to_owned()),
            ],
            value: c.count as f64,
        })
        .collect();
    family(
        out,
        "plugin_host_jobs",
        "gauge",
        "Jobs by plugin, kind and state.",
        &jobs,
    );
    let mut oldest: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for c in counts.iter().filter(|c| {
        matches!(
            c.state,
            crate::jobs::JobState::Available | crate::jobs::JobState::Retryable
        )
    }) {
        let e = oldest
            .entry((c.plugin.clone(), c.kind.clone()))
            .or_insert(c.oldest_run_at);
        *e = (*e).min(c.oldest_run_at);
    }
    let oldest: Vec<Sample<'_>> = oldest
        .into_iter()
        .map(|((plugin, kind), at)| Sample {
            labels: vec![("plugin", plugin), ("kind", kind)],
            value: (now - at).max(0) as f64 / 1000.0,
        })
        .collect();
    family(
        out,
        "plugin_host_job_oldest_waiting_seconds",
        "gauge",
        "Age of the oldest due job waiting, by plugin and kind.",
        &oldest,
    );
    let kinds = m.snapshot();
    let counter = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&KindMetrics) -> u64| {
        let samples: Vec<Sample<'_>> = kinds
            .iter()
            .map(|((plugin, kind), k)| Sample {
                labels: vec![("plugin", plugin.clone()), ("kind", kind.clone())],
                value: f(k) as f64,
            })
            .collect();
        family(out, name, "counter", help, &samples);
    };
    counter(
        out,
        "plugin_host_jobs_enqueued_total",
        "Jobs enqueued.",
        &|k| k.enqueued.load(Ordering::Relaxed),
    );
    counter(
        out,
        "plugin_host_jobs_deduplicated_total",
        "Enqueues skipped: a waiting job had the same dedupe key.",
        &|k| k.deduplicated.load(Ordering::Relaxed),
    );
    let attempts: Vec<Sample<'_>> = kinds
        .iter()
        .flat_map(|((plugin, kind), k)| {
            ATTEMPT_STATUSES
                .iter()
                .enumerate()
                .map(move |(i, status)| Sample {
                    labels: vec![
                        ("plugin", plugin.clone()),
                        ("kind", kind.clone()),
                        ("status", (*status).to_owned()),
                    ],
                    value: k.attempts[i].load(Ordering::Relaxed) as f64,
                })
        })
        .collect();
    family(
        out,
        "plugin_host_job_attempts_total",
        "counter",
        "Job attempts by how they ended (failures: every status but succeeded).",
        &attempts,
    );
    for (name, help, pick) in [
        (
            "plugin_host_job_queue_latency_seconds",
            "From a job being due to its attempt starting.",
            (|k: &KindMetrics| &k.queue_latency) as fn(&KindMetrics) -> &Histogram,
        ),
        (
            "plugin_host_job_run_seconds",
            "Duration of job attempts.",
            |k: &KindMetrics| &k.run_seconds,
        ),
    ] {
        Histogram::write_header(out, name, help);
        for ((plugin, kind), k) in &kinds {
            pick(k).write_series(out, name, &[("plugin", plugin), ("kind", kind)]);
        }
    }
}

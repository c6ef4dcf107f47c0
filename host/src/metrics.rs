//! Counters and latency histograms, and their Prometheus text rendering. No I/O, no HTTP: the
//! admin API serves [`render`]'s output at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];

/// A lock-free latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
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
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}=\"{}\"",
                        v.replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n")
                    )
                })
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), s.value);
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

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

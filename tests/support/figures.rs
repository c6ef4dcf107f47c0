//! Figures of record of the bench binaries. Each bench prints its figures for a reader and, when
//! `PLUGIN_HOST_BENCH_RESULTS` names a file, appends one JSON line per figure to it: the samples'
//! median, spread and count, the unit, which way is better and the goal. `scripts/bench.sh`
//! collects them and `scripts/bench_report.py` writes `docs/benchmarks.md` from them.

use std::io::Write;

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Smaller is better (a latency, a ratio to a raw driver, memory growth).
    Lower,
    /// Larger is better (a throughput).
    Higher,
}

/// The environment variable naming the results file.
pub const RESULTS_ENV: &str = "PLUGIN_HOST_BENCH_RESULTS";

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Records one figure from its samples (one sample per repetition, or one per operation).
/// `unit` is the unit of the samples: `ns`, `/s`, `x` (a ratio) or `KiB`. `goal` is the target
/// the issue set, in the same unit, met when the median is on the `better` side of it.
///
/// # Panics
/// When the results file cannot be written (a bench run that loses its figures must fail).
pub fn record(
    id: &str,
    label: &str,
    unit: &str,
    better: Better,
    goal: Option<f64>,
    samples: &[f64],
) {
    let Some(path) = std::env::var_os(RESULTS_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "id": id,
        "label": label,
        "unit": unit,
        "better": match better { Better::Lower => "lower", Better::Higher => "higher" },
        "goal": goal,
        "n": sorted.len(),
        "median": quantile(&sorted, 0.5),
        "p10": quantile(&sorted, 0.1),
        "p90": quantile(&sorted, 0.9),
        "min": sorted.first().copied().unwrap_or(0.0),
        "max": sorted.last().copied().unwrap_or(0.0),
        "profile": super::profile(),
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.to_string_lossy()));
    writeln!(file, "{line}").unwrap_or_else(|e| panic!("cannot write the figures: {e}"));
}

/// Nanoseconds of a duration, as a sample.
pub fn ns(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

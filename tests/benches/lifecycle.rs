//! Lifecycle benchmarks on real plugins built with optimisations (run by `scripts/bench.sh`):
//! one load+unload cycle, an execute round trip, a dependency call, a directory load of a
//! 2,000-plugin dependency chain (and the graph work alone), and a soak of many load/unload
//! cycles with RSS growth and the unload outcome of every cycle.
//!
//! `cargo bench -p integration --bench lifecycle -- [--quick] [--soak N] [--chain N]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use integration::figures::{Better, ns, record};
use integration::*;
use plugin_host::{ManagerConfig, PluginManager, UnloadOutcome};
use serde_json::json;

struct Args {
    cycles: usize,
    calls: usize,
    chain: usize,
    chain_rounds: usize,
    soak: usize,
}

fn args() -> Args {
    let mut a = Args {
        cycles: 2_000,
        calls: 50_000,
        chain: 2_000,
        chain_rounds: 3,
        soak: 10_000,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = || {
            argv.get(i + 1)
                .and_then(|v| v.parse().ok())
                .expect("a number")
        };
        match argv[i].as_str() {
            "--quick" => {
                a = Args {
                    cycles: 200,
                    calls: 5_000,
                    chain: 200,
                    chain_rounds: 1,
                    soak: 500,
                }
            }
            "--soak" => {
                a.soak = next();
                i += 1;
            }
            "--chain" => {
                a.chain = next();
                i += 1;
            }
            _ => {} // cargo bench passes `--bench`
        }
        i += 1;
    }
    a
}

/// Rounds of the call figures.
const ROUNDS: usize = 5;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Vec<Duration> {
    samples.sort();
    let total: Duration = samples.iter().sum();
    println!(
        "{name:<34} n={:<7} median={:>9.1?} p99={:>9.1?} mean={:>9.1?} rate={:>10.0}/s",
        samples.len(),
        pct(&samples, 0.5),
        pct(&samples, 0.99),
        total / samples.len() as u32,
        samples.len() as f64 / total.as_secs_f64()
    );
    samples
}

fn nanos(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(|d| ns(*d)).collect()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn load_unload_cycles(m: &PluginManager, hello: &Path, n: usize) -> (Vec<Duration>, usize) {
    let mut samples = Vec::with_capacity(n);
    let mut not_unmapped = 0;
    for _ in 0..n {
        let t = Instant::now();
        m.load(hello).unwrap();
        let r = m.unload("hello", false).unwrap();
        samples.push(t.elapsed());
        if r.outcome["hello"] != UnloadOutcome::Unmapped {
            not_unmapped += 1;
        }
    }
    (samples, not_unmapped)
}

fn chain_dir(n: usize, dir: &Path) {
    let template = std::fs::read(plugin("chain-link")).unwrap();
    let find = |needle: &[u8]| {
        template
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let name_at = find(br#""name":"chain-link-00000""#) + 8;
    let dep_at = find(br#"[{"name":"chain-link-99999","version":"*"}]"#);
    let dep_len = br#"[{"name":"chain-link-99999","version":"*"}]"#.len();
    for i in 0..n {
        let mut bytes = template.clone();
        bytes[name_at..name_at + 16].copy_from_slice(format!("chain-link-{i:05}").as_bytes());
        if i == 0 {
            // `[ ... ]` of spaces: still valid JSON, an empty dependency list.
            bytes[dep_at + 1..dep_at + dep_len - 1].fill(b' ');
        } else {
            let dep_name = dep_at + 10;
            bytes[dep_name..dep_name + 16]
                .copy_from_slice(format!("chain-link-{:05}", i - 1).as_bytes());
        }
        std::fs::write(dir.join(format!("libchain_{i:05}.so")), bytes).unwrap();
    }
}

fn main() {
    let a = args();
    build();
    let hello = plugin("hello");
    let m = PluginManager::new(ManagerConfig::default()).unwrap();
    println!(
        "plugin-host lifecycle bench ({} build, {} cores)",
        integration::profile(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Warm up the page cache and the allocator.
    load_unload_cycles(&m, &hello, 50);
    let (samples, bad) = load_unload_cycles(&m, &hello, a.cycles);
    let samples = report("load+unload cycle (hello)", samples);
    assert_eq!(bad, 0, "every cycle must unmap");
    record(
        "lifecycle.load_unload",
        "load + unload of a plugin, new code each time (every cycle `unmapped`)",
        "ns",
        Better::Lower,
        Some(150e3),
        &nanos(&samples),
    );

    m.load(&hello).unwrap();
    m.load(plugin("greeter")).unwrap();
    let input = json!({"name": "bench"});
    let bytes = serde_json::to_vec(&input).unwrap();
    // Rounds of calls, the three kinds interleaved, so that a slow stretch of the machine shows
    // in the spread instead of moving one figure: a figure is the median of its rounds' medians.
    let time = |f: &dyn Fn()| {
        let mut samples = Vec::with_capacity(a.calls / ROUNDS);
        for _ in 0..a.calls / ROUNDS {
            let t = Instant::now();
            f();
            samples.push(t.elapsed());
        }
        samples.sort();
        samples
    };
    let (mut json_rounds, mut bytes_rounds, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let hello_json = time(&|| drop(m.execute("hello", &input).unwrap()));
        let hello_bytes = time(&|| drop(m.execute_bytes("hello", bytes.clone()).unwrap()));
        let greeter = time(&|| drop(m.execute("greeter", &input).unwrap()));
        let (j, b, g) = (
            pct(&hello_json, 0.5),
            pct(&hello_bytes, 0.5),
            pct(&greeter, 0.5),
        );
        // What the dependency call adds: greeter's execute (one call of `hello` inside) over
        // an execute of the same shape without it.
        println!(
            "round {round}: execute round trip median={j:.1?} p99={:.1?}; bytes median={b:.1?}; greeter execute + 1 dependency call median={g:.1?}; dependency call added={:.1?}",
            pct(&hello_json, 0.99),
            g.saturating_sub(j)
        );
        json_rounds.push(ns(j));
        bytes_rounds.push(ns(b));
        added.push(ns(g) - ns(j));
    }
    record(
        "lifecycle.execute",
        "execute round trip host → plugin → host (JSON in and out)",
        "ns",
        Better::Lower,
        Some(1e3),
        &json_rounds,
    );
    record(
        "lifecycle.execute_bytes",
        "execute round trip, input already encoded",
        "ns",
        Better::Lower,
        None,
        &bytes_rounds,
    );
    record(
        "lifecycle.dependency_call",
        "a dependency call (greeter → hello), added over an execute",
        "ns",
        Better::Lower,
        Some(100.0),
        &added,
    );
    m.unload("hello", true).unwrap();

    // Graph work alone for the chain, then a real directory load of the chain.
    let mut samples = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(plugin_host::__private::plan_chain(a.chain), a.chain);
        samples.push(t.elapsed());
    }
    report(&format!("graph plan, {}-plugin chain", a.chain), samples);
    let dir = temp_dir();
    chain_dir(a.chain, dir.path());
    let chain = PluginManager::new(ManagerConfig::default()).unwrap();
    let mut loads = Vec::new();
    for _ in 0..a.chain_rounds {
        let t = Instant::now();
        let r = chain.load_dir(dir.path()).unwrap();
        let load = t.elapsed();
        assert_eq!(r.loaded.len(), a.chain, "failed: {:?}", r.failed.first());
        assert_eq!(r.loaded[0], "chain-link-00000");
        let t = Instant::now();
        let out = chain.unload("chain-link-00000", true).unwrap();
        let unload = t.elapsed();
        assert_eq!(out.unloaded.len(), a.chain);
        println!(
            "directory load, {}-plugin chain        total={load:.2?} ({:.1?}/plugin); cascade unload total={unload:.2?}",
            a.chain,
            load / a.chain as u32
        );
        loads.push(load);
    }
    drop(chain);
    record(
        "lifecycle.chain",
        &format!("directory load of a {}-plugin dependency chain", a.chain),
        "ns",
        Better::Lower,
        (a.chain == 2_000).then_some(2e9),
        &nanos(&loads),
    );

    // Soak: RSS growth over many cycles, every one unmapped.
    load_unload_cycles(&m, &hello, 200);
    let before = rss_kib();
    let t = Instant::now();
    let (_, bad) = load_unload_cycles(&m, &hello, a.soak);
    let after = rss_kib();
    println!(
        "soak: {} load/unload cycles in {:.2?}; RSS {} KiB -> {} KiB (growth {} KiB); cycles not unmapped: {bad}",
        a.soak,
        t.elapsed(),
        before,
        after,
        after as i64 - before as i64
    );
    assert_eq!(bad, 0, "every soak cycle must unmap");
    record(
        "lifecycle.soak_rss",
        &format!("RSS growth over {} load/unload cycles (KiB)", a.soak),
        "KiB",
        Better::Lower,
        None,
        &[after as f64 - before as f64],
    );
}

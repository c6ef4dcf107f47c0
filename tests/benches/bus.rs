//! Event bus benchmark on real plugins (run by `scripts/bench.sh`): one emitter plugin, ten
//! subscriber plugins, small JSON payloads. Reports emits/s, deliveries/s and emit → handler
//! latency (p50, p99), saturated and paced. The throughput is measured in several rounds of
//! `--emits` events each (1,000,000 emits = 10,000,000 deliveries), for a median and a spread.
//!
//! `cargo bench -p integration --bench bus -- [--quick] [--emits N] [--rounds N]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::time::{Duration, Instant};

use integration::figures::{Better, ns, record};
use integration::*;
use plugin_host::{ManagerConfig, PluginManager};
use serde_json::{Value, json};

const SUBSCRIBERS: u8 = 10;

fn count(m: &PluginManager, name: &str) -> u64 {
    m.execute(name, &json!({"op": "count"})).unwrap()["count"]
        .as_u64()
        .unwrap()
}

fn wait_all(m: &PluginManager, target: u64) -> Duration {
    let start = Instant::now();
    for i in 1..=SUBSCRIBERS {
        let name = format!("events-{i:02}");
        while count(m, &name) < target && start.elapsed() < Duration::from_secs(300) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    start.elapsed()
}

fn nanos(sorted: &[u64]) -> Vec<f64> {
    sorted.iter().map(|&v| v as f64).collect()
}

fn pct(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_nanos(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

fn setup(mode: &str) -> (PluginManager, tempfile::TempDir) {
    let dir = temp_dir();
    let m = PluginManager::new(ManagerConfig::default()).unwrap();
    m.load(events_plugin(0, dir.path())).unwrap();
    for i in 1..=SUBSCRIBERS {
        let name = format!("events-{i:02}");
        m.load(events_plugin(i, dir.path())).unwrap();
        m.execute(
            &name,
            &json!({"op": "on", "pattern": "bench:tick", "mode": mode}),
        )
        .unwrap();
    }
    (m, dir)
}

fn latencies(m: &PluginManager) -> Vec<u64> {
    let mut all = Vec::new();
    for i in 1..=SUBSCRIBERS {
        let v: Value = m
            .execute(&format!("events-{i:02}"), &json!({"op": "latency"}))
            .unwrap();
        all.extend(
            v["latencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap()),
        );
    }
    all.sort_unstable();
    all
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let mut emits: u64 = if quick { 50_000 } else { 1_000_000 };
    if let Some(i) = argv.iter().position(|a| a == "--emits") {
        emits = argv[i + 1].parse().unwrap();
    }
    let mut rounds: u64 = if quick { 3 } else { 7 };
    if let Some(i) = argv.iter().position(|a| a == "--rounds") {
        rounds = argv[i + 1].parse().unwrap();
    }
    build();
    println!(
        "plugin-host bus bench: 1 emitter plugin, {SUBSCRIBERS} subscriber plugins, {emits} emits"
    );

    // Throughput: subscribers only count. Each round emits `emits` events and waits until every
    // subscriber has counted them all.
    let (m, _dir) = setup("count");
    let (mut delivery_rates, mut emit_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let before = m.bus().stats();
        let t = Instant::now();
        m.execute(
            "events-00",
            &json!({"op": "emit", "name": "bench:tick", "payload": {"k": "v", "n": 1}, "count": emits}),
        )
        .unwrap();
        let emit_time = t.elapsed();
        wait_all(&m, emits * round);
        let total = t.elapsed();
        let stats = m.bus().stats();
        let delivered = stats.delivered - before.delivered;
        if !quick {
            // The smoke run (debug build, busy CI cores) may drop; a figure of record may not.
            assert_eq!(stats.dropped, 0, "the bench must not drop events");
            assert_eq!(delivered, emits * u64::from(SUBSCRIBERS));
        }
        emit_rates.push(emits as f64 / emit_time.as_secs_f64());
        delivery_rates.push(delivered as f64 / total.as_secs_f64());
        println!(
            "throughput, round {round}: {emits} emits in {emit_time:.2?} = {:.0} emits/s; {delivered} deliveries in {total:.2?} = {:.0} deliveries/s",
            emits as f64 / emit_time.as_secs_f64(),
            delivered as f64 / total.as_secs_f64(),
        );
    }
    record(
        "bus.deliveries",
        &format!("bus: deliveries/s, 1 emitter × {SUBSCRIBERS} subscribers, counting handler"),
        "/s",
        Better::Higher,
        Some(60e6),
        &delivery_rates,
    );
    record(
        "bus.emits",
        "bus: emits/s of the emitting plugin",
        "/s",
        Better::Higher,
        None,
        &emit_rates,
    );
    drop(m);

    // Latency under saturation: the emitter goes as fast as the subscribers let it.
    let (m, _dir) = setup("latency");
    let n = emits / 10;
    m.execute(
        "events-00",
        &json!({"op": "emit", "name": "bench:tick", "latency": true, "count": n}),
    )
    .unwrap();
    wait_all(&m, n);
    let l = latencies(&m);
    println!(
        "latency, saturated ({n} emits x {SUBSCRIBERS}): p50={:.1?} p99={:.1?}",
        pct(&l, 0.5),
        pct(&l, 0.99)
    );
    record(
        "bus.latency.saturated",
        "bus: emit → handler latency, saturated (p50; p99 below)",
        "ns",
        Better::Lower,
        None,
        &nanos(&l),
    );
    record(
        "bus.latency.saturated.p99",
        "bus: emit → handler latency, saturated, p99",
        "ns",
        Better::Lower,
        None,
        &[ns(pct(&l, 0.99))],
    );

    // Latency paced: one emit at a time, with the subscribers idle in between.
    let paced = if quick { 500 } else { 5_000 };
    for _ in 0..paced {
        m.execute(
            "events-00",
            &json!({"op": "emit", "name": "bench:tick", "latency": true}),
        )
        .unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    wait_all(&m, n + paced);
    // `latency` hands over the samples and forgets them: these are the paced ones only.
    let l = latencies(&m);
    println!(
        "latency, paced ({paced} emits x {SUBSCRIBERS}): p50={:.1?} p99={:.1?}",
        pct(&l, 0.5),
        pct(&l, 0.99)
    );
    record(
        "bus.latency.paced",
        "bus: emit → handler latency, paced (p50; p99 below)",
        "ns",
        Better::Lower,
        None,
        &nanos(&l),
    );
    record(
        "bus.latency.paced.p99",
        "bus: emit → handler latency, paced, p99",
        "ns",
        Better::Lower,
        None,
        &[ns(pct(&l, 0.99))],
    );
}

//! Buckets repository benchmark (run by `scripts/bench.sh`): sequential puts then gets of
//! same-size objects through the repository, timed inside a real plugin (FFI, envelope, scoping,
//! key checks and the backend all counted), on both backends:
//! - the folder (embedded default): throughput;
//! - S3: against the same operations on raw aws-sdk-s3, same server, same client settings, each
//!   request awaited before the next as the repository's are. The server is s3s-fs in this
//!   process over loopback TCP, or `PLUGIN_HOST_TEST_S3_ENDPOINT`. Goal: repository throughput at
//!   least 0.9x raw's.
//!
//! `cargo bench -p integration --bench buckets -- [--quick]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use integration::*;
use plugin_host::{BucketsConfig, ManagerConfig, PluginManager};
use serde_json::json;

/// Object size.
const SIZE: usize = 4096;

/// (put, get) total nanoseconds through the repository.
fn repository(config: BucketsConfig, n: u64) -> (Duration, Duration) {
    let m = PluginManager::new(ManagerConfig::default().with_buckets(config)).unwrap();
    m.load(plugin("buckets-demo")).unwrap();
    // Warm up: connections, files, caches.
    m.execute(
        "buckets-demo",
        &json!({"op": "bench", "n": 20, "size": SIZE}),
    )
    .unwrap();
    let out = m
        .execute(
            "buckets-demo",
            &json!({"op": "bench", "n": n, "size": SIZE}),
        )
        .unwrap();
    (
        Duration::from_nanos(out["put_ns"].as_u64().unwrap()),
        Duration::from_nanos(out["get_ns"].as_u64().unwrap()),
    )
}

/// (put, get) through raw aws-sdk-s3: the same keys' shape, size and content type, on a
/// runtime of its own with as many workers as the host's S3 backend has (not the in-process
/// server's runtime, which would spare the raw client the thread hops the host's client makes).
fn raw_s3(rt: &tokio::runtime::Runtime, prefix: &str, n: u64) -> (Duration, Duration) {
    let raw = S3Raw::new();
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let put = |i: u64| {
        rt.block_on(
            raw.client
                .put_object()
                .bucket(&raw.bucket)
                .key(format!("{prefix}raw/bench/{i}"))
                .content_type("application/octet-stream")
                .body(ByteStream::from(body.clone()))
                .send(),
        )
        .unwrap();
    };
    let get = |i: u64| {
        let bytes = rt.block_on(async {
            let out = raw
                .client
                .get_object()
                .bucket(&raw.bucket)
                .key(format!("{prefix}raw/bench/{i}"))
                .send()
                .await
                .unwrap();
            out.body.collect().await.unwrap().to_vec()
        });
        assert_eq!(bytes.len(), SIZE);
    };
    (0..20).for_each(put);
    (0..20).for_each(get);
    let start = Instant::now();
    (0..n).for_each(put);
    let put_time = start.elapsed();
    let start = Instant::now();
    (0..n).for_each(get);
    (put_time, start.elapsed())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 500 } else { 5_000 };
    build();
    println!("plugin-host buckets bench: {n} puts then {n} gets of {SIZE}-byte objects");

    let tmp = temp_dir();
    let (put, get) = repository(
        BucketsConfig::Folder {
            dir: tmp.path().join("buckets"),
            public_url: None,
        },
        n,
    );
    println!(
        "folder: put {:.0} obj/s ({:.1?}/op), get {:.0} obj/s ({:.1?}/op)",
        rate(n, put),
        put / n as u32,
        rate(n, get),
        get / n as u32
    );

    let target = s3_target();
    let server = if target.in_process {
        "s3s-fs in-process"
    } else {
        target.endpoint.as_str()
    };
    // Alternate the two sides three times and keep each side's best, so that neither is
    // measured alone on a colder or busier machine (or disk: s3s-fs writes files).
    let prefix = s3_prefix("bench");
    let mut repo = (Duration::MAX, Duration::MAX);
    let mut raw = (Duration::MAX, Duration::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = repository(BucketsConfig::S3(s3_config(&prefix)), n);
        repo = (repo.0.min(r.0), repo.1.min(r.1));
        let w = raw_s3(&rt, &prefix, n);
        raw = (raw.0.min(w.0), raw.1.min(w.1));
    }
    println!(
        "s3 ({server}): put: repository {:.0} obj/s, raw {:.0} obj/s, ratio {:.2}x | get: repository {:.0} obj/s, raw {:.0} obj/s, ratio {:.2}x",
        rate(n, repo.0),
        rate(n, raw.0),
        rate(n, repo.0) / rate(n, raw.0),
        rate(n, repo.1),
        rate(n, raw.1),
        rate(n, repo.1) / rate(n, raw.1)
    );
}

//! Topics benchmark on the embedded in-process log (run by `scripts/bench.sh`): produce
//! throughput through the repository (a real plugin producing in a loop: FFI call, envelope,
//! scoping, append) and end-to-end consume throughput (the host's consumer handing each message
//! to the plugin's handler on its own thread and committing it).
//!
//! Kafka: produce throughput through the repository against raw rdkafka on the same broker
//! (librdkafka's mock cluster, or `PLUGIN_HOST_TEST_KAFKA`), like for like: the repository's
//! `produce` (one record, awaiting its offset) against raw sends awaited one by one, and the
//! repository's `produce_batch` (1,000 records a call, all in flight) against raw sends of the
//! same 1,000-record chunks joined. Goal: each at least 0.9x raw.
//!
//! `cargo bench -p integration --bench topics -- [--quick] [--kafka-only]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{ManagerConfig, PluginManager, TopicsConfig};
use serde_json::json;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let kafka_n = if quick { 2_000 } else { 20_000 };
    if std::env::args().any(|a| a == "--kafka-only") {
        build();
        kafka(kafka_n);
        return;
    }
    // At most the log's retention (100,000 per topic): the consumer starts after the producer.
    let n: u64 = if quick { 20_000 } else { 100_000 };
    build();
    let m = PluginManager::new(ManagerConfig::default().with_topics(TopicsConfig::Memory {
        prefix: "bench".into(),
    }))
    .unwrap();
    m.load(plugin("topics-demo")).unwrap();
    println!("plugin-host topics bench (in-process log): {n} messages");

    let t = Instant::now();
    m.execute(
        "topics-demo",
        &json!({"op": "produce", "topic": "orders", "count": n}),
    )
    .unwrap();
    let produce = t.elapsed();
    println!(
        "produce through the repository: {n} in {produce:.2?} = {:.0} msg/s ({:.2?}/msg)",
        n as f64 / produce.as_secs_f64(),
        produce / n as u32
    );

    let t = Instant::now();
    m.execute(
        "topics-demo",
        &json!({"op": "subscribe", "topic": "orders"}),
    )
    .unwrap();
    loop {
        let consumed = m.get("topics-demo").unwrap().stats.messages_consumed;
        if consumed >= n || t.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let consume = t.elapsed();
    let consumed = m.get("topics-demo").unwrap().stats.messages_consumed;
    assert_eq!(consumed, n, "every message handled");
    println!(
        "consume (deliver to the plugin's handler, commit): {n} in {consume:.2?} = {:.0} msg/s",
        n as f64 / consume.as_secs_f64()
    );
    drop(m);
    kafka(kafka_n);
}

/// Records per `produce_batch` call (and per joined chunk of raw sends).
const BATCH: u64 = 1000;

fn kafka(n: u64) {
    use rdkafka::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::util::Timeout;

    let mock;
    let brokers = match std::env::var("PLUGIN_HOST_TEST_KAFKA") {
        Ok(b) => b,
        Err(_) => {
            mock = rdkafka::mocking::MockCluster::new(1).unwrap();
            mock.bootstrap_servers()
        }
    };
    let m = PluginManager::new(ManagerConfig::default().with_topics(TopicsConfig::Kafka {
        brokers: brokers.clone(),
        prefix: "bench".into(),
    }))
    .unwrap();
    m.load(plugin("topics-demo")).unwrap();
    // Warm up: the topic is created on first use.
    m.execute(
        "topics-demo",
        &json!({"op": "produce", "topic": "orders", "key": "k", "count": 10}),
    )
    .unwrap();
    let produce = |count: u64, batch: Option<u64>| {
        let t = Instant::now();
        m.execute(
            "topics-demo",
            &json!({"op": "produce", "topic": "orders", "key": "k", "count": count, "batch": batch}),
        )
        .unwrap();
        t.elapsed()
    };
    let batch_n = n * 10;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let topic = "bench.raw.orders";
    // The same header the plugin sends with each record.
    let headers = || {
        OwnedHeaders::new().insert(Header {
            key: "source",
            value: Some("demo".as_bytes()),
        })
    };
    rt.block_on(producer.send(
        FutureRecord::to(topic).payload("warm").key("k"),
        Timeout::After(Duration::from_secs(10)),
    ))
    .unwrap();
    let raw_one_at_a_time = || {
        let t = Instant::now();
        for i in 0..n {
            let payload = json!({ "seq": i }).to_string();
            rt.block_on(
                producer.send(
                    FutureRecord::to(topic)
                        .payload(&payload)
                        .key("k")
                        .headers(headers()),
                    Timeout::After(Duration::from_secs(10)),
                ),
            )
            .unwrap();
        }
        t.elapsed()
    };
    let raw_batches = || {
        let t = Instant::now();
        let payloads: Vec<String> = (0..batch_n)
            .map(|i| json!({ "seq": i }).to_string())
            .collect();
        for chunk in payloads.chunks(BATCH as usize) {
            // Joined futures are polled together: every send is enqueued before any is awaited.
            let results = rt.block_on(futures_util::future::join_all(chunk.iter().map(|p| {
                producer.send(
                    FutureRecord::to(topic)
                        .payload(p)
                        .key("k")
                        .headers(headers()),
                    Timeout::After(Duration::from_secs(30)),
                )
            })));
            assert!(results.iter().all(Result::is_ok));
        }
        t.elapsed()
    };
    // The two sides alternate, three rounds, each side's best kept: neither is measured alone
    // on a colder broker or a busier machine.
    let (mut repo, mut raw_sync, mut repo_batch, mut raw_batch) =
        (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        repo = repo.min(produce(n, None));
        raw_sync = raw_sync.min(raw_one_at_a_time());
        repo_batch = repo_batch.min(produce(batch_n, Some(BATCH)));
        raw_batch = raw_batch.min(raw_batches());
    }
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "kafka produce, one at a time ({n}): repository {:.0} msg/s, raw {:.0} msg/s, ratio {:.2}x",
        rate(n, repo),
        rate(n, raw_sync),
        rate(n, repo) / rate(n, raw_sync),
    );
    println!(
        "kafka produce, batches of {BATCH} ({batch_n}): repository {:.0} msg/s, raw {:.0} msg/s, ratio {:.2}x",
        rate(batch_n, repo_batch),
        rate(batch_n, raw_batch),
        rate(batch_n, repo_batch) / rate(batch_n, raw_batch),
    );
}

//! The topics repository on Kafka, through real plugins, against a real Kafka-protocol broker
//! over TCP: librdkafka's mock cluster started by the test, or the broker named by
//! `PLUGIN_HOST_TEST_KAFKA` (`host:port`). Consumer-group joins take a few seconds on the mock,
//! so waits are generous.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use integration::*;
use plugin_host::{ManagerConfig, PluginManager, TopicsConfig};
use rdkafka::mocking::MockCluster;
use serde_json::json;

/// A broker for one test: the mock cluster (kept alive by the guard) or an external one.
struct Broker {
    brokers: String,
    _mock: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
}

fn broker() -> Broker {
    match std::env::var("PLUGIN_HOST_TEST_KAFKA") {
        Ok(brokers) => Broker {
            brokers,
            _mock: None,
        },
        Err(_) => {
            let mock = MockCluster::new(1).expect("librdkafka's mock cluster starts");
            Broker {
                brokers: mock.bootstrap_servers(),
                _mock: Some(mock),
            }
        }
    }
}

fn manager(b: &Broker, tag: &str) -> PluginManager {
    // A prefix per test and run, so tests sharing an external broker never meet.
    let prefix = format!("pht-{tag}-{}", std::process::id());
    PluginManager::new(ManagerConfig::default().with_topics(TopicsConfig::Kafka {
        brokers: b.brokers.clone(),
        prefix,
    }))
    .unwrap()
}

#[test]
fn produce_and_consume_round_trip_on_kafka() {
    let b = broker();
    let m = manager(&b, "rt");
    m.load(plugin("topics-demo")).unwrap();
    // CreateTopics against a real broker; the mock cluster does not serve it and creates
    // topics on first use instead.
    if b._mock.is_none() {
        exec(
            &m,
            "topics-demo",
            json!({"op": "create", "topic": "orders"}),
        );
    }
    exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "key": "k", "count": 20}),
    );
    // Then 30 more in batches of 8 (all in flight at once): offsets follow on, order is kept.
    let out = exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "key": "k", "count": 30, "batch": 8}),
    );
    assert_eq!(out["offset"], 49, "{out}");
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "orders"}),
    );
    let seen = wait_messages(&m, "topics-demo", 50, Duration::from_secs(40));
    assert_eq!(seen.len(), 50);
    let seqs: Vec<u64> = seen
        .iter()
        .map(|s| s["payload"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..20).chain(0..30).collect::<Vec<_>>(),
        "one key, one partition: in order"
    );
    assert_eq!(seen[49]["headers"]["source"], "demo");
    assert_eq!(m.get("topics-demo").unwrap().stats.messages_produced, 50);
    assert_eq!(seen[0]["key"], "k");
    assert_eq!(seen[0]["headers"]["source"], "demo");
    let physical = m.get("topics-demo").unwrap().physical.topics["orders"].clone();
    assert!(physical.ends_with(".topics-demo.orders"), "{physical}");
}

#[test]
fn consumer_groups_are_per_plugin_on_kafka() {
    let b = broker();
    let m = manager(&b, "groups");
    let dir = temp_dir();
    m.load(topics_copy("shop-a", dir.path())).unwrap();
    m.load(topics_copy("shop-b", dir.path())).unwrap();
    exec(
        &m,
        "shop-a",
        json!({"op": "produce", "topic": "orders", "key": "x", "payload": {"from": "a"}}),
    );
    exec(
        &m,
        "shop-b",
        json!({"op": "produce", "topic": "orders", "key": "x", "payload": {"from": "b"}}),
    );
    exec(&m, "shop-a", json!({"op": "subscribe", "topic": "orders"}));
    exec(&m, "shop-b", json!({"op": "subscribe", "topic": "orders"}));
    let a = wait_messages(&m, "shop-a", 1, Duration::from_secs(40));
    let bb = wait_messages(&m, "shop-b", 1, Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        exec(&m, "shop-a", json!({"op": "seen"}))["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(a[0]["payload"]["from"], "a");
    assert_eq!(bb[0]["payload"]["from"], "b");
}

#[test]
fn committed_offsets_survive_a_reload_on_kafka() {
    let b = broker();
    let m = manager(&b, "resume");
    m.load(plugin("topics-demo")).unwrap();
    exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "key": "k", "count": 5}),
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "orders"}),
    );
    assert_eq!(
        wait_messages(&m, "topics-demo", 5, Duration::from_secs(40)).len(),
        5
    );
    m.reload("topics-demo").unwrap();
    exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "key": "k", "payload": {"after": true}}),
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "orders"}),
    );
    let seen = wait_messages(&m, "topics-demo", 1, Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(1000));
    let now = exec(&m, "topics-demo", json!({"op": "seen"}))["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        now.len(),
        1,
        "committed messages are not delivered again: {now:?}"
    );
    assert_eq!(seen[0]["payload"]["after"], true);
}

#[test]
fn unload_stops_kafka_consumers_and_undeclared_topics_are_denied() {
    let b = broker();
    let m = manager(&b, "stop");
    let dir = temp_dir();
    m.load(topics_copy("kstop", dir.path())).unwrap();
    let e = m
        .execute(
            "kstop",
            &json!({"op": "produce", "topic": "secrets", "payload": 1}),
        )
        .unwrap_err();
    assert_eq!(e.details()["plugin_code"], "topic_access_denied");
    exec(&m, "kstop", json!({"op": "subscribe", "topic": "orders"}));
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|c| c.trim() == "topic-kstop")
            .count()
    };
    assert_eq!(threads(), 1);
    let report = m.unload("kstop", false).unwrap();
    assert_eq!(
        report.outcome["kstop"],
        plugin_host::UnloadOutcome::Unmapped
    );
    assert_eq!(threads(), 0);
}

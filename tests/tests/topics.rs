//! The topics repository through real plugins on the in-process log: produce/consume round
//! trip, consumer groups per plugin (isolation, resume from committed offsets), at-least-once
//! delivery with retries, undeclared topics denied, overrides, consumers stopped on unload.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{ManagerConfig, Overrides, PluginManager, PluginSettings, TopicsConfig};
use serde_json::json;

fn manager_with_topics() -> PluginManager {
    PluginManager::new(ManagerConfig::default().with_topics(TopicsConfig::Memory {
        prefix: "ph-test".into(),
    }))
    .unwrap()
}

#[test]
fn produce_and_consume_round_trip_in_order() {
    let m = manager_with_topics();
    m.load(plugin("topics-demo")).unwrap();
    exec(
        &m,
        "topics-demo",
        json!({"op": "create", "topic": "orders"}),
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "orders"}),
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "key": "k1", "count": 50}),
    );
    // Then 25 more through `produce_batch`, 10 per call.
    let out = exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "key": "k1", "count": 25, "batch": 10}),
    );
    assert_eq!(out["offset"], 74, "{out}");
    let seen = wait_messages(&m, "topics-demo", 75, Duration::from_secs(10));
    assert_eq!(seen.len(), 75);
    let seqs: Vec<u64> = seen
        .iter()
        .map(|s| s["payload"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..50).chain(0..25).collect::<Vec<_>>(),
        "one partition: in order"
    );
    assert_eq!(seen[74]["key"], "k1");
    assert_eq!(seen[0]["key"], "k1");
    assert_eq!(seen[0]["headers"]["source"], "demo");
    let info = m.get("topics-demo").unwrap();
    assert_eq!(info.physical.topics["orders"], "ph-test.topics-demo.orders");
    assert_eq!(info.stats.messages_consumed, 75);
    assert_eq!(info.stats.messages_produced, 75);
}

#[test]
fn consumer_groups_are_per_plugin_and_isolated() {
    let dir = temp_dir();
    let m = manager_with_topics();
    m.load(topics_copy("shop-a", dir.path())).unwrap();
    m.load(topics_copy("shop-b", dir.path())).unwrap();
    exec(&m, "shop-a", json!({"op": "subscribe", "topic": "orders"}));
    exec(&m, "shop-b", json!({"op": "subscribe", "topic": "orders"}));
    exec(
        &m,
        "shop-a",
        json!({"op": "produce", "topic": "orders", "payload": {"from": "a"}}),
    );
    exec(
        &m,
        "shop-b",
        json!({"op": "produce", "topic": "orders", "payload": {"from": "b"}}),
    );
    let a = wait_messages(&m, "shop-a", 1, Duration::from_secs(10));
    let b = wait_messages(&m, "shop-b", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        exec(&m, "shop-a", json!({"op": "seen"}))["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        a[0]["payload"]["from"], "a",
        "a plugin sees only its own topic"
    );
    assert_eq!(b[0]["payload"]["from"], "b");
    assert_ne!(
        m.get("shop-a").unwrap().physical.topics["orders"],
        m.get("shop-b").unwrap().physical.topics["orders"]
    );
}

#[test]
fn a_new_instance_resumes_from_the_committed_offset() {
    let m = manager_with_topics();
    m.load(plugin("topics-demo")).unwrap();
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "orders"}),
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "count": 5}),
    );
    assert_eq!(
        wait_messages(&m, "topics-demo", 5, Duration::from_secs(10)).len(),
        5
    );
    // Reload: the new instance subscribes again and gets only what came after.
    m.reload("topics-demo").unwrap();
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "orders"}),
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "orders", "payload": {"after": true}}),
    );
    let seen = wait_messages(&m, "topics-demo", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    let seen_now = exec(&m, "topics-demo", json!({"op": "seen"}))["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        seen_now.len(),
        1,
        "committed messages are not delivered again: {seen_now:?}"
    );
    assert_eq!(seen[0]["payload"]["after"], true);
}

#[test]
fn delivery_is_at_least_once_with_retries_then_skips() {
    let dir = temp_dir();
    let m = manager_with_topics();
    m.load(topics_copy("flaky", dir.path())).unwrap();
    exec(
        &m,
        "flaky",
        json!({"op": "subscribe", "topic": "orders", "mode": "fail_once"}),
    );
    exec(
        &m,
        "flaky",
        json!({"op": "produce", "topic": "orders", "count": 3}),
    );
    let seen = wait_messages(&m, "flaky", 3, Duration::from_secs(10));
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s["attempt"] == 2),
        "each message failed once, then was delivered again: {seen:?}"
    );

    // A handler that always fails: retried, then skipped and counted; the next messages flow.
    m.load(topics_copy("broken", dir.path())).unwrap();
    let id = exec(
        &m,
        "broken",
        json!({"op": "subscribe", "topic": "orders", "mode": "fail"}),
    )["id"]
        .clone();
    exec(
        &m,
        "broken",
        json!({"op": "produce", "topic": "orders", "count": 2}),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.get("broken").unwrap().stats.messages_failed < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(m.get("broken").unwrap().stats.messages_failed, 2);
    let attempts = exec(&m, "broken", json!({"op": "seen"}))["attempts"].clone();
    assert!(
        attempts.as_object().unwrap().values().all(|a| a == 3),
        "3 attempts each: {attempts}"
    );
    exec(&m, "broken", json!({"op": "unsubscribe", "id": id}));
}

#[test]
fn undeclared_topics_are_denied_and_nothing_is_sent() {
    let m = manager_with_topics();
    m.load(plugin("topics-demo")).unwrap();
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "orders"}),
    );
    for op in [
        json!({"op": "produce", "topic": "secrets", "payload": 1}),
        json!({"op": "subscribe", "topic": "secrets"}),
        json!({"op": "create", "topic": "secrets"}),
        json!({"op": "produce", "topic": "../orders", "payload": 1}),
        json!({"op": "produce", "topic": "ph-test.other.orders", "payload": 1}),
        json!({"op": "produce", "topic": "secrets", "count": 3, "batch": 3}),
    ] {
        let e = m.execute("topics-demo", &op).unwrap_err();
        assert_eq!(
            e.details()["plugin_code"],
            "topic_access_denied",
            "{op}: {e}"
        );
    }
    assert!(m.get("topics-demo").unwrap().stats.topics_denied >= 6);
    assert_eq!(m.get("topics-demo").unwrap().stats.messages_produced, 0);
    std::thread::sleep(Duration::from_millis(100));
    let seen = exec(&m, "topics-demo", json!({"op": "seen"}))["messages"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(seen, 0, "nothing reached the declared topic either");
}

#[test]
fn overrides_and_name_maps_apply() {
    let m = manager_with_topics();
    m.load(plugin("topics-demo")).unwrap();
    let o: Overrides =
        serde_json::from_value(json!({"topics": ["audit"], "topic_map": {"audit": "audit-v2"}}))
            .unwrap();
    m.set_settings("topics-demo", Some(PluginSettings::new(None, Some(o))))
        .unwrap();
    let info = m.get("topics-demo").unwrap();
    assert_eq!(
        info.physical.topics["audit"],
        "ph-test.topics-demo.audit-v2"
    );
    let e = m
        .execute(
            "topics-demo",
            &json!({"op": "produce", "topic": "orders", "payload": 1}),
        )
        .unwrap_err();
    assert_eq!(
        e.details()["plugin_code"],
        "topic_access_denied",
        "the declaration was replaced"
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "subscribe", "topic": "audit"}),
    );
    exec(
        &m,
        "topics-demo",
        json!({"op": "produce", "topic": "audit", "payload": {"x": 1}}),
    );
    assert_eq!(
        wait_messages(&m, "topics-demo", 1, Duration::from_secs(10))[0]["payload"]["x"],
        1
    );
}

#[test]
fn unload_stops_the_consumers() {
    let dir = temp_dir();
    let m = manager_with_topics();
    // A name no other test in this binary uses, so its consumer thread is recognisable.
    m.load(topics_copy("stopper", dir.path())).unwrap();
    exec(&m, "stopper", json!({"op": "subscribe", "topic": "orders"}));
    exec(&m, "stopper", json!({"op": "subscribe", "topic": "orders"}));
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|c| c.trim() == "topic-stopper")
            .count()
    };
    // A thread names itself once it runs, a moment after it was spawned: wait for both names.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while threads() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(threads(), 2);
    let report = m.unload("stopper", false).unwrap();
    assert_eq!(
        report.outcome["stopper"],
        plugin_host::UnloadOutcome::Unmapped
    );
    assert_eq!(threads(), 0, "consumers stopped and joined");
}

#[test]
fn no_backend_is_a_clear_error() {
    let m = manager();
    m.load(plugin("topics-demo")).unwrap();
    let e = m
        .execute(
            "topics-demo",
            &json!({"op": "produce", "topic": "orders", "payload": 1}),
        )
        .unwrap_err();
    assert_eq!(e.details()["plugin_code"], "backend_unavailable");
}

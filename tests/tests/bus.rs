//! The event bus through real plugins: exchange, wildcard rules, `off`, `once`, cleanup on
//! unload and reload, isolation from panicking subscribers, per-subscription order,
//! backpressure, self-delivery, host emitters and subscribers, lifecycle events.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{BusEvent, ManagerConfig, PluginManager, UnloadOutcome};
use serde_json::{Value, json};

fn exec(m: &PluginManager, name: &str, input: Value) -> Value {
    m.execute(name, &input)
        .unwrap_or_else(|e| panic!("{name} {input}: {}", e.chain()))
}

/// Waits until `name` has handled `n` events (deliveries are asynchronous).
fn wait_count(m: &PluginManager, name: &str, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = exec(m, name, json!({"op": "count"}))["count"]
            .as_u64()
            .unwrap();
        if c >= n || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn seen(m: &PluginManager, name: &str) -> Vec<Value> {
    exec(m, name, json!({"op": "seen"}))["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn seen_names(m: &PluginManager, name: &str) -> Vec<String> {
    seen(m, name)
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn host_recorder(m: &PluginManager, pattern: &str) -> Arc<Mutex<Vec<(String, Value)>>> {
    let rec = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&rec);
    m.bus()
        .subscribe_host(
            pattern,
            false,
            Arc::new(move |e: &BusEvent| {
                let v = serde_json::from_slice(&e.payload).unwrap_or(Value::Null);
                r.lock().unwrap().push((e.name.to_string(), v));
            }),
        )
        .unwrap();
    rec
}

#[test]
fn two_plugins_exchange_events() {
    let dir = temp_dir();
    let m = manager();
    m.load(events_plugin(1, dir.path())).unwrap();
    m.load(events_plugin(2, dir.path())).unwrap();
    // events-02 answers every ping with a pong; events-01 records pongs.
    exec(
        &m,
        "events-02",
        json!({"op": "on", "pattern": "ping", "reply": "pong"}),
    );
    exec(&m, "events-01", json!({"op": "on", "pattern": "pong"}));
    exec(
        &m,
        "events-01",
        json!({"op": "emit", "name": "ping", "payload": {"n": 7}}),
    );
    assert_eq!(wait_count(&m, "events-01", 1), 1);
    let got = seen(&m, "events-01");
    assert_eq!(got[0]["name"], "pong");
    assert_eq!(got[0]["payload"], json!({"n": 7}));
}

#[test]
fn wildcard_rules_through_plugins() {
    let dir = temp_dir();
    let m = manager();
    m.load(events_plugin(3, dir.path())).unwrap();
    for p in ["data:*", "*:created", "data:**", "data", "user:created"] {
        exec(&m, "events-03", json!({"op": "on", "pattern": p}));
    }
    for name in [
        "data",
        "data:processed",
        "data:x:y",
        "user:created",
        "created",
        "other:thing",
    ] {
        m.bus().emit_host(name, b"{}").unwrap();
    }
    // data:* → data:processed; *:created → user:created; data:** → data:processed, data:x:y;
    // data → data; user:created → user:created.  Total 6 deliveries.
    assert_eq!(wait_count(&m, "events-03", 6), 6);
    let mut names = seen_names(&m, "events-03");
    names.sort();
    assert_eq!(
        names,
        [
            "data",
            "data:processed",
            "data:processed",
            "data:x:y",
            "user:created",
            "user:created"
        ]
    );
    let e = m
        .execute("events-03", &json!({"op": "on", "pattern": "da*"}))
        .unwrap_err();
    assert_eq!(e.details()["plugin_code"], "invalid_pattern");
    let e = m
        .execute("events-03", &json!({"op": "emit", "name": "a::b"}))
        .unwrap_err();
    assert_eq!(e.details()["plugin_code"], "invalid_event_name");
}

#[test]
fn off_removes_exactly_one_subscription_and_only_ones_own() {
    let dir = temp_dir();
    let m = manager();
    m.load(events_plugin(4, dir.path())).unwrap();
    m.load(events_plugin(5, dir.path())).unwrap();
    let a = exec(&m, "events-04", json!({"op": "on", "pattern": "x"}))["id"]
        .as_u64()
        .unwrap();
    let b = exec(&m, "events-04", json!({"op": "on", "pattern": "x"}))["id"]
        .as_u64()
        .unwrap();
    exec(&m, "events-04", json!({"op": "off", "id": a}));
    m.bus().emit_host("x", b"1").unwrap();
    assert_eq!(wait_count(&m, "events-04", 1), 1);
    assert_eq!(
        seen(&m, "events-04")[0]["sub"],
        b,
        "the other handler for the same name still runs"
    );
    // events-05 cannot remove events-04's subscription.
    let e = m
        .execute("events-05", &json!({"op": "off", "id": b}))
        .unwrap_err();
    assert_eq!(e.details()["plugin_code"], "subscription_not_found");
    m.bus().emit_host("x", b"2").unwrap();
    assert_eq!(wait_count(&m, "events-04", 2), 2);
}

#[test]
fn once_fires_once_and_unload_removes_every_subscription() {
    let dir = temp_dir();
    let m = manager();
    let before = m.bus().subscription_count();
    m.load(events_plugin(6, dir.path())).unwrap();
    exec(&m, "events-06", json!({"op": "once", "pattern": "tick"}));
    for _ in 0..3 {
        m.bus().emit_host("tick", b"{}").unwrap();
    }
    assert_eq!(wait_count(&m, "events-06", 1), 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(exec(&m, "events-06", json!({"op": "count"}))["count"], 1);
    // A `once` that has not fired yet, and an ordinary one: both go with the plugin.
    exec(&m, "events-06", json!({"op": "once", "pattern": "never"}));
    exec(&m, "events-06", json!({"op": "on", "pattern": "tock"}));
    assert_eq!(
        m.subscription_count("events-06"),
        3,
        "probe:init, never, tock"
    );
    let report = m.unload("events-06", false).unwrap();
    assert_eq!(report.outcome["events-06"], UnloadOutcome::Unmapped);
    assert_eq!(m.bus().subscription_count(), before);
    assert_eq!(m.bus().emit_host("never", b"{}").unwrap(), 0);
    assert_eq!(m.bus().emit_host("tock", b"{}").unwrap(), 0);
}

#[test]
fn after_unload_no_handler_runs_and_the_library_is_unmapped() {
    let dir = temp_dir();
    let m = manager();
    m.load(events_plugin(7, dir.path())).unwrap();
    exec(
        &m,
        "events-07",
        json!({"op": "on", "pattern": "load:*", "mode": "slow", "ms": 2}),
    );
    // Queue a burst, then unload while deliveries are pending: the worker drops what it has
    // not delivered once cleanup ran, exits, and the library is closed.
    for i in 0..50 {
        m.bus()
            .emit_host("load:x", format!("{{\"i\":{i}}}").as_bytes())
            .unwrap();
    }
    let shadow = shadow_files(&m);
    let report = m.unload("events-07", false).unwrap();
    assert_eq!(report.outcome["events-07"], UnloadOutcome::Unmapped);
    assert!(!mapped(&shadow[0]));
    assert_eq!(m.bus().emit_host("load:x", b"{}").unwrap(), 0);
}

#[test]
fn cleanup_cannot_subscribe_but_can_emit() {
    let dir = temp_dir();
    let m = manager();
    let rec = host_recorder(&m, "events:cleanup");
    m.load(events_plugin(8, dir.path())).unwrap();
    m.unload("events-08", false).unwrap();
    let got = rec.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["subscribe_error"], "stale_context");
}

#[test]
fn a_panicking_subscriber_stops_nothing() {
    let dir = temp_dir();
    let m = manager();
    m.load(events_plugin(9, dir.path())).unwrap();
    m.load(events_plugin(10, dir.path())).unwrap();
    m.load(events_plugin(11, dir.path())).unwrap();
    exec(
        &m,
        "events-09",
        json!({"op": "on", "pattern": "boom", "mode": "panic"}),
    );
    exec(
        &m,
        "events-10",
        json!({"op": "on", "pattern": "boom", "mode": "fail"}),
    );
    exec(&m, "events-11", json!({"op": "on", "pattern": "boom"}));
    let out = exec(
        &m,
        "events-11",
        json!({"op": "emit", "name": "boom", "count": 3}),
    );
    assert_eq!(out["emitted"], 3, "the emitter is not affected");
    assert_eq!(
        wait_count(&m, "events-11", 3),
        3,
        "the healthy subscriber got everything"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.get("events-10").unwrap().stats.events_failed < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        m.get("events-09").unwrap().stats.events_failed,
        3,
        "panics counted per plugin"
    );
    assert_eq!(
        m.get("events-10").unwrap().stats.events_failed,
        3,
        "errors counted per plugin"
    );
    // The panicking plugin still works.
    assert_eq!(exec(&m, "events-09", json!({"op": "count"}))["count"], 0);
}

#[test]
fn deliveries_keep_emit_order_per_subscription() {
    let dir = temp_dir();
    let m = manager();
    m.load(events_plugin(12, dir.path())).unwrap();
    m.load(events_plugin(13, dir.path())).unwrap();
    exec(&m, "events-13", json!({"op": "on", "pattern": "seq:*"}));
    exec(
        &m,
        "events-12",
        json!({"op": "emit", "name": "seq:n", "count": 500, "seq": true}),
    );
    assert_eq!(wait_count(&m, "events-13", 500), 500);
    let seqs: Vec<u64> = seen(&m, "events-13")
        .iter()
        .map(|e| e["payload"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..500).collect::<Vec<_>>());
}

#[test]
fn a_burst_delivered_in_batches_keeps_order_and_contains_each_panic_to_its_event() {
    // The subscriber is held in a slow handler while 100 events queue behind it, so they reach
    // it in batches (one call into the plugin for many deliveries). In each batch every event
    // goes to a handler that panics, one that fails and one that records, in that order. The
    // mailbox holds all 300 deliveries, so none is dropped while the subscriber sleeps, and they
    // take more than one batch (256 at most).
    let dir = temp_dir();
    let m = PluginManager::new(ManagerConfig::default().with_mailbox_capacity(4096)).unwrap();
    m.load(events_plugin(30, dir.path())).unwrap();
    m.load(events_plugin(31, dir.path())).unwrap();
    exec(
        &m,
        "events-31",
        json!({"op": "on", "pattern": "gate", "mode": "slow", "ms": 200}),
    );
    exec(
        &m,
        "events-31",
        json!({"op": "on", "pattern": "burst:*", "mode": "panic"}),
    );
    exec(
        &m,
        "events-31",
        json!({"op": "on", "pattern": "burst:*", "mode": "fail"}),
    );
    let recorder = exec(&m, "events-31", json!({"op": "on", "pattern": "burst:*"}))["id"]
        .as_u64()
        .unwrap();
    exec(&m, "events-30", json!({"op": "emit", "name": "gate"}));
    exec(
        &m,
        "events-30",
        json!({"op": "emit", "name": "burst:n", "count": 100, "seq": true}),
    );
    assert_eq!(
        wait_count(&m, "events-31", 101),
        101,
        "the gate and every event recorded"
    );
    let seqs: Vec<u64> = seen(&m, "events-31")
        .iter()
        .filter(|e| e["sub"] == recorder)
        .map(|e| e["payload"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..100).collect::<Vec<_>>(),
        "emit order, nothing lost"
    );
    let stats = m.get("events-31").unwrap().stats;
    assert_eq!(
        stats.events_failed, 200,
        "each panic and each failure counted once"
    );
    assert_eq!(stats.events_delivered, 101);
    assert_eq!(stats.events_dropped, 0);
    // The plugin that panicked 100 times still serves calls and events.
    exec(&m, "events-30", json!({"op": "emit", "name": "gate"}));
    assert_eq!(wait_count(&m, "events-31", 102), 102);
}

#[test]
fn a_slow_subscriber_is_bounded_and_drops_are_counted() {
    let dir = temp_dir();
    let m = PluginManager::new(
        ManagerConfig::default()
            .with_mailbox_capacity(4)
            .with_emit_block(Duration::from_millis(5)),
    )
    .unwrap();
    m.load(events_plugin(14, dir.path())).unwrap();
    m.load(events_plugin(15, dir.path())).unwrap();
    exec(
        &m,
        "events-15",
        json!({"op": "on", "pattern": "flood", "mode": "slow", "ms": 20}),
    );
    let started = Instant::now();
    exec(
        &m,
        "events-14",
        json!({"op": "emit", "name": "flood", "count": 60}),
    );
    let emit_time = started.elapsed();
    // The emitter waited at most ~5 ms per event, never unboundedly.
    assert!(emit_time < Duration::from_secs(3), "{emit_time:?}");
    let dropped = m.get("events-15").unwrap().stats.events_dropped;
    assert!(dropped > 0, "a full mailbox drops");
    let handled = wait_count(&m, "events-15", 60 - dropped);
    assert_eq!(
        handled + dropped,
        60,
        "every event was either handled or counted as dropped"
    );
    assert_eq!(m.bus().stats().dropped, dropped);
}

#[test]
fn own_events_are_delivered_after_the_call_not_reentrantly() {
    let dir = temp_dir();
    let m = manager();
    m.load(events_plugin(16, dir.path())).unwrap();
    exec(&m, "events-16", json!({"op": "on", "pattern": "self:*"}));
    let out = exec(
        &m,
        "events-16",
        json!({"op": "emit", "name": "self:x", "count": 3}),
    );
    assert_eq!(out["handled_during_emit"], 0);
    assert_eq!(wait_count(&m, "events-16", 3), 3);
}

#[test]
fn host_and_plugins_emit_and_subscribe_both_ways() {
    let dir = temp_dir();
    let m = manager();
    let rec = host_recorder(&m, "from:plugin");
    m.load(events_plugin(17, dir.path())).unwrap();
    exec(
        &m,
        "events-17",
        json!({"op": "emit", "name": "from:plugin", "payload": {"a": 1}}),
    );
    assert_eq!(rec.lock().unwrap()[0].1, json!({"a": 1}));
    exec(&m, "events-17", json!({"op": "on", "pattern": "from:host"}));
    assert_eq!(m.bus().emit_host("from:host", br#"{"b":2}"#).unwrap(), 1);
    assert_eq!(wait_count(&m, "events-17", 1), 1);
    assert_eq!(seen(&m, "events-17")[0]["payload"], json!({"b": 2}));
    // Raw payloads pass through untouched.
    exec(&m, "events-17", json!({"op": "on", "pattern": "raw"}));
    exec(
        &m,
        "events-17",
        json!({"op": "emit", "name": "raw", "raw": true, "payload": "not json"}),
    );
    assert_eq!(wait_count(&m, "events-17", 2), 2);
    assert_eq!(seen(&m, "events-17")[1]["payload"], "not json");
}

#[test]
fn plugins_follow_lifecycle_events_and_resubscribe_after_reload() {
    let dir = temp_dir();
    let m = manager();
    let watcher = events_plugin(18, dir.path());
    m.load(&watcher).unwrap();
    exec(&m, "events-18", json!({"op": "on", "pattern": "plugin:*"}));
    m.load(events_plugin(19, dir.path())).unwrap();
    assert_eq!(wait_count(&m, "events-18", 1), 1);
    let ev = &seen(&m, "events-18")[0];
    assert_eq!(ev["name"], "plugin:loaded");
    assert_eq!(ev["payload"]["name"], "events-19");
    assert_eq!(ev["payload"]["version"], "0.1.0");

    // Reload: the old instance's subscriptions go; the new one subscribes in its initialize.
    assert_eq!(m.subscription_count("events-19"), 1);
    m.reload("events-19").unwrap();
    assert_eq!(m.subscription_count("events-19"), 1);
    assert_eq!(
        m.bus().emit_host("probe:init", b"{}").unwrap(),
        2,
        "events-18 and the new events-19"
    );
}

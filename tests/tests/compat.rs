//! The ABI promise of `docs/abi.md`: a plugin built against an earlier `plugin-api` of the same
//! ABI major keeps loading and working in the current host.
//!
//! `legacy-hello` is built against the frozen `plugin-api` 0.1.0 (ABI 1.1) kept in
//! `tests/compat/plugin-api-1.1`: its glue declares the function tables with safe `extern "C" fn`
//! fields and reads the context as a pointer, as plugins built then do. It is loaded beside
//! `hello` and `greeter`, built against the current `plugin-api`, and exercised through every
//! path of the boundary: `create`/`initialize`, `execute`, event delivery in both directions, a
//! dependency call into a current plugin, reloads, and an unload that must unmap it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{
    BucketsConfig, BusEvent, ErrorCode, ManagerConfig, PluginManager, TablesConfig, TopicsConfig,
    UnloadOutcome,
};
use serde_json::{Value, json};

/// The frozen copy of the previous `plugin-api`.
fn frozen_dir() -> PathBuf {
    workspace().join("tests/compat/plugin-api-1.1")
}

/// The API minor the frozen `plugin-api` declares, read from its source.
fn frozen_api_minor() -> u32 {
    let abi = std::fs::read_to_string(frozen_dir().join("src/abi.rs")).unwrap();
    let line = abi
        .lines()
        .find_map(|l| l.strip_prefix("pub const API_MINOR: u32 = "))
        .expect("the frozen abi.rs declares API_MINOR");
    line.trim_end_matches(';').parse().unwrap()
}

/// FNV-1a (64 bits) over the names and contents of the frozen `src/` files, in name order.
fn frozen_sources_hash() -> u64 {
    let mut files: Vec<PathBuf> = std::fs::read_dir(frozen_dir().join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        for b in name.bytes().chain([0]).chain(bytes).chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn exec(m: &PluginManager, name: &str, input: Value) -> Value {
    m.execute(name, &input)
        .unwrap_or_else(|e| panic!("{name} {input}: {}", e.chain()))
}

/// Waits (with a deadline) until `legacy-hello`'s handler has recorded `n` events; returns them.
fn legacy_seen(m: &PluginManager, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = exec(m, "legacy-hello", json!({"op": "seen"}))["events"]
            .as_array()
            .unwrap()
            .clone();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (with a deadline) until `rec` holds `n` events; returns them.
fn recorded(rec: &Mutex<Vec<(String, Value)>>, n: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = rec.lock().unwrap().clone();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The shadow copy `legacy-hello` runs from (the host names copies `lib<name>-<pid>-<n>.so`).
fn legacy_shadow(m: &PluginManager) -> PathBuf {
    let prefix = format!("{}legacy-hello-", std::env::consts::DLL_PREFIX);
    let copies: Vec<PathBuf> = shadow_files(m)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    assert_eq!(copies.len(), 1, "one live copy of legacy-hello: {copies:?}");
    copies.into_iter().next().unwrap()
}

/// Whether `needle` occurs in `bytes`.
fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn legacy_hello_is_built_against_the_unchanged_frozen_api() {
    // The baseline must stay what plugins were built against: an edit to the frozen copy would
    // make the test below prove nothing about old plugins.
    assert_eq!(
        frozen_sources_hash(),
        FROZEN_SOURCES_HASH,
        "tests/compat/plugin-api-1.1/src was edited; it is frozen (see its README)"
    );
    assert_eq!(frozen_api_minor(), 1);
    // And legacy-hello's glue is that copy's, not the current one (its symbols name the crate;
    // `_ZN10plugin_api` is how the current crate's symbols start, as hello's show).
    let legacy = std::fs::read(plugin("legacy-hello")).unwrap();
    assert!(contains(&legacy, b"_ZN21plugin_api_frozen_1_1"));
    assert!(!contains(&legacy, b"_ZN10plugin_api"));
    assert!(contains(
        &std::fs::read(plugin("hello")).unwrap(),
        b"_ZN10plugin_api"
    ));
}

/// FNV-1a of `tests/compat/plugin-api-1.1/src` as copied from commit c322f59.
const FROZEN_SOURCES_HASH: u64 = 0x7530_14f6_5748_729c;

#[test]
fn inspect_reports_the_older_api_minor() {
    let legacy = plugin_host::inspect(&plugin("legacy-hello")).unwrap();
    assert_eq!(legacy.manifest.name, "legacy-hello");
    assert_eq!(legacy.manifest.dependencies[0].name, "hello");
    assert_eq!(legacy.abi_major, plugin_api::ffi::ABI_MAJOR);
    assert_eq!(legacy.api_minor, frozen_api_minor());
    assert!(legacy.api_minor <= plugin_api::ffi::API_MINOR);
    let current = plugin_host::inspect(&plugin("hello")).unwrap();
    assert_eq!(current.abi_major, plugin_api::ffi::ABI_MAJOR);
    assert_eq!(current.api_minor, plugin_api::ffi::API_MINOR);

    // The CLI reports the same.
    let v = inspected(&plugin("legacy-hello"));
    assert_eq!(v["api_minor"], frozen_api_minor());
    assert_eq!(v["abi_major"], plugin_api::ffi::ABI_MAJOR);
}

#[test]
fn plugin_built_against_the_previous_api_loads_beside_current_ones() {
    let dir = temp_dir();
    let m = manager();
    m.load(plugin("hello")).unwrap();
    m.load(plugin("greeter")).unwrap();
    let events_path = events_plugin(7, dir.path());
    m.load(&events_path).unwrap();
    let info = m.load(plugin("legacy-hello")).unwrap();
    let shadow = legacy_shadow(&m);
    assert!(mapped(&shadow), "the old plugin's code is mapped");
    assert_eq!(info.state.as_str(), "active");
    assert_eq!(info.dependencies, ["hello"]);
    assert_eq!(
        info.api_version,
        format!("{}.{}", plugin_api::ffi::ABI_MAJOR, frozen_api_minor())
    );
    assert_eq!(
        m.get("hello").unwrap().api_version,
        format!(
            "{}.{}",
            plugin_api::ffi::ABI_MAJOR,
            plugin_api::ffi::API_MINOR
        )
    );

    // execute, with state kept between calls by the old glue's instance.
    let out = exec(&m, "legacy-hello", json!({"name": "ada"}));
    assert_eq!(out["greeting"], "hello from 1.1, ada");
    assert_eq!(out["calls"], 1);
    assert_eq!(exec(&m, "legacy-hello", json!({}))["calls"], 2);

    // A dependency call from the old plugin into a current one (the old `call_dependency`).
    let hello_calls = exec(&m, "hello", json!({"op": "count"}))["count"]
        .as_u64()
        .unwrap();
    let out = exec(&m, "legacy-hello", json!({"op": "greet", "name": "bob"}));
    assert_eq!(out["greeting"], "hello, bob (via 1.1)");
    assert_eq!(
        exec(&m, "hello", json!({"op": "count"}))["count"],
        hello_calls + 1,
        "the call reached hello"
    );
    // The current plugins beside it are unaffected.
    assert_eq!(
        exec(&m, "greeter", json!({"name": "ada"}))["greeting"],
        "hello, ada!"
    );

    // Events into the old plugin: from the host and from a current plugin (the old `deliver`).
    assert_eq!(m.subscription_count("legacy-hello"), 1);
    m.bus()
        .emit_host("legacy:ping", br#"{"n":1}"#)
        .expect("host emits");
    exec(
        &m,
        "events-07",
        json!({"op": "emit", "name": "legacy:from-new", "payload": {"n": 2}}),
    );
    let seen = legacy_seen(&m, 2);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.contains(&json!({"name": "legacy:ping", "payload": {"n": 1}})));
    assert!(seen.contains(&json!({"name": "legacy:from-new", "payload": {"n": 2}})));

    // Events out of the old plugin (the old `emit`), to the host and to a current plugin.
    let rec = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&rec);
    m.bus()
        .subscribe_host(
            "compat:*",
            false,
            Arc::new(move |e: &BusEvent| {
                let v = serde_json::from_slice(&e.payload).unwrap_or(Value::Null);
                r.lock().unwrap().push((e.name.to_string(), v));
            }),
        )
        .unwrap();
    exec(&m, "events-07", json!({"op": "on", "pattern": "compat:*"}));
    let out = exec(
        &m,
        "legacy-hello",
        json!({"op": "emit", "name": "compat:from-legacy", "payload": {"n": 3}}),
    );
    assert_eq!(out["emitted"], "compat:from-legacy");
    assert_eq!(
        recorded(&rec, 1),
        [("compat:from-legacy".to_owned(), json!({"n": 3}))]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let from_legacy = loop {
        let seen = exec(&m, "events-07", json!({"op": "seen"}))["events"].clone();
        if seen.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(from_legacy[0]["name"], "compat:from-legacy");
    assert_eq!(from_legacy[0]["payload"], json!({"n": 3}));

    // Reloading its dependency reloads it too (the old `destroy`, then `create` and
    // `initialize` again); it answers, with fresh state, and still reaches hello.
    let generation = m.get("legacy-hello").unwrap().generation;
    m.reload("hello").unwrap();
    let after = m.get("legacy-hello").unwrap();
    assert_eq!(after.state.as_str(), "active");
    assert_ne!(after.generation, generation, "legacy-hello was reloaded");
    let retired = shadow;
    let shadow = legacy_shadow(&m);
    assert_ne!(shadow, retired);
    assert!(!mapped(&retired), "the retired copy is unmapped");
    assert_eq!(exec(&m, "legacy-hello", json!({}))["calls"], 1);
    assert_eq!(
        exec(&m, "legacy-hello", json!({"op": "greet", "name": "cy"}))["greeting"],
        "hello, cy (via 1.1)"
    );

    // Its own reload: the retired copy is unmapped, the new instance subscribed again.
    let generation = m.get("legacy-hello").unwrap().generation;
    let reloaded = m.reload("legacy-hello").unwrap();
    assert_ne!(reloaded.generation, generation);
    assert_eq!(reloaded.api_version, info.api_version);
    let retired = shadow;
    let shadow = legacy_shadow(&m);
    assert_ne!(shadow, retired);
    assert!(!mapped(&retired), "the retired copy is unmapped");
    assert_eq!(m.subscription_count("legacy-hello"), 1);
    m.bus()
        .emit_host("legacy:ping", br#"{"n":4}"#)
        .expect("host emits");
    assert_eq!(
        legacy_seen(&m, 1),
        [json!({"name": "legacy:ping", "payload": {"n": 4}})],
        "the new instance's handler, with fresh state"
    );

    // Unload: the old glue's `cleanup` and `destroy`, then the library is closed for good.
    let report = m.unload("legacy-hello", false).unwrap();
    assert_eq!(report.unloaded, ["legacy-hello"]);
    assert_eq!(report.outcome["legacy-hello"], UnloadOutcome::Unmapped);
    assert!(!mapped(&shadow), "/proc/self/maps agrees: the code is gone");
    assert!(!shadow.exists(), "its shadow copy is deleted");
    assert_eq!(m.subscription_count("legacy-hello"), 0);
    assert_eq!(
        m.execute("legacy-hello", &json!({})).unwrap_err().code(),
        ErrorCode::NotFound
    );
    // The current plugins keep working.
    assert_eq!(
        exec(&m, "greeter", json!({"name": "ada"}))["greeting"],
        "hello, ada!"
    );
    assert!(
        !mapped(&plugin("legacy-hello")),
        "the original file is never mapped"
    );
}

/// The JSON a plugin built against plugin-api 0.1.0 sends to the tables, topics, buckets and
/// config services still means what it meant, and it reads the answers: the wire types the host
/// decodes into are shared with the current plugin-api, and must stay compatible with that
/// release. Every operation of every service is called once by `legacy-hello`'s `resources` op.
#[test]
fn plugin_built_against_the_previous_api_uses_every_host_service() {
    let dir = temp_dir();
    let m = PluginManager::new(
        ManagerConfig::default()
            .with_tables(TablesConfig::Sqlite {
                dir: dir.path().join("tables"),
            })
            .with_topics(TopicsConfig::Memory {
                prefix: "compat".into(),
            })
            .with_buckets(BucketsConfig::Folder {
                dir: dir.path().join("buckets"),
                public_url: Some("http://127.0.0.1:8700/".into()),
            }),
    )
    .unwrap();
    m.load(plugin("hello")).unwrap();
    m.load(plugin("legacy-hello")).unwrap();
    let out = exec(&m, "legacy-hello", json!({"op": "resources"}));
    assert_eq!(out["config"], Value::Null);

    let tables = &out["tables"];
    assert_eq!(tables["first"]["body"], "a");
    assert_eq!(tables["first"]["done"], false);
    assert_eq!(tables["first"]["score"], 1.5);
    let first_id = tables["first"]["id"].as_i64().unwrap();
    assert_eq!(
        tables["done"],
        json!([{"id": first_id + 2, "body": "c"}, {"id": first_id + 1, "body": "b"}])
    );
    assert_eq!(tables["updated"], 1);
    assert_eq!(tables["counted"], 2);
    assert_eq!(
        tables["deleted"], 1,
        "only `c` has no doc and a score over 2"
    );
    assert_eq!(tables["sql"]["rows"], json!([{"n": 2}]));
    let all = tables["all"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["doc"], json!({"k": [1]}));
    assert_eq!(all[1]["done"], true);
    assert_eq!(tables["denied"], "table_access_denied");

    let topics = &out["topics"];
    assert_eq!(topics["offsets"], json!([0, [1, 2]]));
    assert_eq!(topics["denied"], "topic_access_denied");
    assert_eq!(topics["unknown_subscription"], "subscription_not_found");
    let deadline = Instant::now() + Duration::from_secs(10);
    let messages = loop {
        let messages = exec(&m, "legacy-hello", json!({"op": "consumed"}))["messages"].clone();
        if messages.as_array().unwrap().len() >= 3 || Instant::now() > deadline {
            break messages;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(
        messages,
        json!([
            {"topic": "pings", "key": "k", "headers": {"h": "v"}, "offset": 0, "partition": 0, "payload": {"n": 1}},
            {"topic": "pings", "key": null, "headers": {}, "offset": 1, "partition": 0, "payload": {"n": 2}},
            {"topic": "pings", "key": "k3", "headers": {}, "offset": 2, "partition": 0, "payload": {"n": 3}},
        ])
    );

    let buckets = &out["buckets"];
    assert_eq!(buckets["bytes"], json!(b"hi\x00"));
    assert_eq!(buckets["content_type"], "text/plain");
    assert_eq!(buckets["untyped"], "application/octet-stream");
    assert_eq!(buckets["exists"], true);
    assert_eq!(buckets["pages"], json!([["a/b.txt"], ["a/c.bin"], null]));
    assert_eq!(buckets["presigned"], true);
    assert_eq!(buckets["deleted"], json!([true, false]));
    assert_eq!(buckets["gone"], true);
    assert_eq!(buckets["denied"], "bucket_access_denied");

    let report = m.unload("legacy-hello", false).unwrap();
    assert_eq!(report.outcome["legacy-hello"], UnloadOutcome::Unmapped);
}

//! Load → execute → unload, the unload protocol and its outcome, panics and hangs contained,
//! concurrent requests serialised, dependency handles and lifecycle events.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{
    BusEvent, ErrorCode, ManagerConfig, PluginManager, PluginSettings, PluginState, UnloadOutcome,
};
use serde_json::{Value, json};

#[test]
fn load_execute_unload_unmaps_the_library() {
    let m = manager();
    let info = m.load(plugin("hello")).unwrap();
    assert_eq!(info.state, PluginState::Active);
    assert_eq!(info.version, "1.0.0");
    let out = m.execute("hello", &json!({"name": "ada"})).unwrap();
    assert_eq!(out["greeting"], "hello, ada");
    // State survives between calls: the instance is a real object on its own thread.
    m.execute("hello", &json!({})).unwrap();
    assert_eq!(
        m.execute("hello", &json!({"op": "count"})).unwrap()["count"],
        2
    );

    let shadows = shadow_files(&m);
    assert_eq!(shadows.len(), 1);
    assert!(mapped(&shadows[0]), "the shadow copy is what is mapped");
    assert!(
        !mapped(&plugin("hello")),
        "the original file is never mapped"
    );

    let report = m.unload("hello", false).unwrap();
    assert_eq!(report.unloaded, ["hello"]);
    assert_eq!(report.outcome["hello"], UnloadOutcome::Unmapped);
    assert!(
        !mapped(&shadows[0]),
        "/proc/self/maps agrees: the code is gone"
    );
    assert!(shadow_files(&m).is_empty(), "the shadow copy is deleted");
    assert_eq!(
        m.execute("hello", &json!({})).unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        m.unload("hello", false).unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[test]
fn plugin_code_runs_only_on_its_own_thread() {
    // `versioned` is loaded by no other test of this binary, so its thread is unique here.
    let m = manager();
    m.load(plugin("versioned")).unwrap();
    // The worker thread is named after the plugin; every call crosses to it and back.
    let threads = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|c| c.trim() == &"plugin-versioned"[..15])
        .count();
    assert_eq!(threads, 1);
    m.unload("versioned", false).unwrap();
    let left = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|c| c.trim() == &"plugin-versioned"[..15])
        .count();
    assert_eq!(left, 0, "unload joins the plugin's thread");
}

#[test]
fn panicking_execute_is_an_error_and_everything_keeps_working() {
    let m = manager();
    m.load(plugin("panicker")).unwrap();
    m.load(plugin("hello")).unwrap();
    for _ in 0..3 {
        let e = m.execute("panicker", &json!({"panic": true})).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PluginFailed);
        assert_eq!(e.details()["panicked"], true);
        assert!(e.to_string().contains("asked to panic"), "{e}");
    }
    let e = m.execute("panicker", &json!({"fail": true})).unwrap_err();
    assert_eq!(e.details()["plugin_code"], "asked_to_fail");
    assert_eq!(e.details()["panicked"], false);
    // The panicking plugin itself and the others keep answering.
    assert_eq!(m.execute("panicker", &json!(5)).unwrap()["echo"], 5);
    assert_eq!(
        m.execute("hello", &json!({"name": "b"})).unwrap()["greeting"],
        "hello, b"
    );
    let stats = m.get("panicker").unwrap().stats;
    assert_eq!(stats.execute_errors, 4);
    assert_eq!(
        m.unload("panicker", false).unwrap().outcome["panicker"],
        UnloadOutcome::Unmapped
    );
}

#[test]
fn failing_initialize_rolls_back_everything() {
    let m = manager();
    let events = record_events(&m);
    let e = m.load(plugin("fail-init")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InitializeFailed);
    assert!(e.to_string().contains("refuses to start"), "{e}");
    assert!(
        m.list().is_empty(),
        "nothing of the plugin stays registered"
    );
    assert!(shadow_files(&m).is_empty(), "its shadow copy is gone");
    // It subscribed to `test:*` before failing: the subscription was rolled back.
    assert_eq!(m.bus().emit_host("test:x", b"{}").unwrap(), 0);
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|(n, p)| n == "plugin:failed" && p.contains("fail-init"))
    );
}

#[test]
fn hung_initialize_times_out_and_the_host_goes_on() {
    let m = PluginManager::new(
        ManagerConfig::default().with_initialize_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    m.load(plugin("hello")).unwrap();
    let started = Instant::now();
    let e = m.load(plugin("hang-init")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Timeout);
    assert_eq!(e.details()["operation"], "initialize");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Marked failed, shown with its error; its library is never closed (its code may run).
    let failed = m.get("hang-init").unwrap();
    assert_eq!(failed.state, PluginState::Failed);
    assert!(failed.error.unwrap().contains("did not finish initialize"));
    let hung_shadow = shadow_files(&m)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("hang-init"))
        .expect("shadow of the hung plugin kept");
    assert!(mapped(&hung_shadow));
    // Everything else keeps working, including more loads.
    assert_eq!(
        m.execute("hello", &json!({"name": "z"})).unwrap()["greeting"],
        "hello, z"
    );
    m.load(plugin("panicker")).unwrap();
    // Unloading the failed record forgets it; the library stays retained.
    let report = m.unload("hang-init", false).unwrap();
    assert_eq!(report.outcome["hang-init"], UnloadOutcome::Retained);
    assert!(m.get("hang-init").is_err());
}

#[test]
fn concurrent_loads_of_one_plugin_are_serialised() {
    let m = Arc::new(manager());
    let results: Vec<_> = (0..6)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.load(plugin("hello")).map(|_| ()))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one load wins");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), ErrorCode::AlreadyLoaded);
    }
    assert_eq!(shadow_files(&m).len(), 1, "no loser left a shadow copy");
}

#[test]
fn dependency_calls_go_through_declared_handles_only() {
    let m = manager();
    m.load(plugin("hello")).unwrap();
    m.load(plugin("panicker")).unwrap();
    m.load(plugin("greeter")).unwrap();
    let out = m.execute("greeter", &json!({"name": "ada"})).unwrap();
    assert_eq!(out["greeting"], "hello, ada!");
    assert_eq!(out["hello_generation"], m.get("hello").unwrap().generation);
    // greeter declared only hello; panicker is loaded but out of its reach.
    let e = m
        .execute(
            "greeter",
            &json!({"op": "undeclared", "target": "panicker"}),
        )
        .unwrap_err();
    assert_eq!(e.details()["plugin_code"], "dependency_not_declared");
    assert!(
        e.to_string().contains("greeter") && e.to_string().contains("panicker"),
        "{e}"
    );
    // hello's calls went through hello's own worker: its counter moved.
    assert_eq!(
        m.execute("hello", &json!({"op": "count"})).unwrap()["count"],
        1
    );
    let info = m.get("hello").unwrap();
    assert_eq!(info.dependents, ["greeter"]);
}

#[test]
fn disabled_plugins_refuse_execute_until_enabled() {
    let m = manager();
    m.load(plugin("hello")).unwrap();
    assert_eq!(m.disable("hello").unwrap().state, PluginState::Disabled);
    assert_eq!(
        m.execute("hello", &json!({})).unwrap_err().code(),
        ErrorCode::PluginDisabled
    );
    assert_eq!(m.enable("hello").unwrap().state, PluginState::Active);
    m.execute("hello", &json!({})).unwrap();
    assert_eq!(m.enable("ghost").unwrap_err().code(), ErrorCode::NotFound);
}

#[test]
fn unload_with_dependents_is_refused_unless_cascading_dependents_first() {
    let m = manager();
    m.load(plugin("hello")).unwrap();
    m.load(plugin("greeter")).unwrap();
    let e = m.unload("hello", false).unwrap_err();
    assert_eq!(e.code(), ErrorCode::HasDependents);
    assert_eq!(e.details()["dependents"], json!(["greeter"]));
    assert_eq!(m.list().len(), 2, "a refused unload changes nothing");
    let events = record_events(&m);
    let report = m.unload("hello", true).unwrap();
    assert_eq!(report.unloaded, ["greeter", "hello"], "dependents first");
    assert!(
        report
            .outcome
            .values()
            .all(|o| *o == UnloadOutcome::Unmapped),
        "{:?}",
        report.outcome
    );
    let names: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .map(|(n, p)| format!("{n} {p}"))
        .collect();
    assert!(
        names[0].starts_with("plugin:unloaded") && names[0].contains("greeter"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with("plugin:unloaded") && names[1].contains("\"hello\""),
        "{names:?}"
    );
}

#[test]
fn dependency_errors_on_single_load() {
    let m = manager();
    assert_eq!(
        m.load(plugin("greeter")).unwrap_err().code(),
        ErrorCode::DependencyNotFound
    );
    assert_eq!(
        m.load(plugin("self-dep")).unwrap_err().code(),
        ErrorCode::SelfDependency
    );
    m.load(plugin("hello")).unwrap();
    let e = m.load(plugin("needs-hello-2")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DependencyVersionMismatch);
    assert_eq!(e.details()["required"], "^2");
    assert_eq!(e.details()["found"], "1.0.0");
    // A disabled dependency does not satisfy a new load.
    m.disable("hello").unwrap();
    assert_eq!(
        m.load(plugin("greeter")).unwrap_err().code(),
        ErrorCode::DependencyNotFound
    );
}

#[test]
fn drop_unloads_everything() {
    let shadow;
    {
        let m = manager();
        m.load(plugin("hello")).unwrap();
        m.load(plugin("greeter")).unwrap();
        shadow = shadow_files(&m);
        assert_eq!(shadow.len(), 2);
    }
    for s in shadow {
        assert!(
            !mapped(&s),
            "{} still mapped after the manager was dropped",
            s.display()
        );
    }
}

/// Records lifecycle events seen on the bus.
fn record_events(m: &PluginManager) -> Arc<Mutex<Vec<(String, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    m.bus()
        .subscribe_host(
            "plugin:*",
            false,
            Arc::new(move |e: &BusEvent| {
                s.lock().unwrap().push((
                    e.name.to_string(),
                    String::from_utf8_lossy(&e.payload).into_owned(),
                ))
            }),
        )
        .unwrap();
    seen
}

/// Polls `ready` until it holds, failing the test after 20 s.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `lingering` plugin's settings: it records into `dir`.
fn lingering_in(dir: &Path) -> PluginSettings {
    PluginSettings::new(Some(json!({ "dir": dir.to_string_lossy() })), None)
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// Issue 11 §8: a handler that captured a clone of its context forms a cycle through the
/// glue's handler map. The glue drops every handler when the instance is destroyed, so the
/// handler's state is dropped at each of 100 reloads (its drop appends a line to a file the test
/// reads), and nothing is left holding the context: the library is unmapped.
#[test]
fn issue_11_handlers_holding_their_context_are_dropped_at_every_reload() {
    let dir = temp_dir();
    let drops = dir.path().join("drops");
    let m = manager();
    m.load_with(plugin("lingering"), lingering_in(dir.path()))
        .unwrap();
    // The handler is live and reaches the host through the context it captured.
    let pongs = Arc::new(Mutex::new(0));
    let p = Arc::clone(&pongs);
    m.bus()
        .subscribe_host(
            "lingering:pong",
            false,
            Arc::new(move |_: &BusEvent| *p.lock().unwrap() += 1),
        )
        .unwrap();
    m.bus().emit_host("lingering:ping", b"{}").unwrap();
    wait_until("the handler's answer", || *pongs.lock().unwrap() == 1);
    assert_eq!(line_count(&drops), 0, "nothing dropped yet");

    for i in 1..=100 {
        m.reload("lingering").unwrap();
        assert_eq!(
            line_count(&drops),
            i,
            "reload {i}: the retired instance's handler state was dropped"
        );
    }
    let shadow = shadow_files(&m);
    assert_eq!(
        shadow.len(),
        1,
        "every retired copy was unmapped and deleted"
    );
    let report = m.unload("lingering", false).unwrap();
    assert_eq!(line_count(&drops), 101);
    assert_eq!(
        report.outcome["lingering"],
        UnloadOutcome::Unmapped,
        "no context clone outlived the instance"
    );
    assert!(!mapped(&shadow[0]));
}

/// Issue 11 §8: a thread the plugin left running keeps calling through its context after the
/// unload. The plugin holds only a key to the host side of its context, which every call looks
/// up: after the instance is destroyed the calls get `stale_context`, also once the whole
/// manager is gone, and the library stays mapped (`retained`) because the glue reported a
/// context still alive, so the thread's code is never pulled from under it.
#[test]
fn issue_11_a_thread_left_running_gets_stale_context_and_keeps_its_code() {
    let dir = temp_dir();
    let m = manager();
    m.load_with(plugin("lingering"), lingering_in(dir.path()))
        .unwrap();
    let shadow = shadow_files(&m);
    assert_eq!(
        exec(&m, "lingering", json!({"op": "spawn"}))["spawned"],
        true
    );
    let report = m.unload("lingering", false).unwrap();
    assert_eq!(report.outcome["lingering"], UnloadOutcome::Retained);
    assert!(mapped(&shadow[0]), "the thread's code stays mapped");
    let first = dir.path().join("thread-first");
    wait_until("the thread's first failed call", || first.exists());
    assert_eq!(std::fs::read_to_string(&first).unwrap(), "stale_context");

    // Everything of the host's side is gone now; the thread still calls.
    drop(m);
    let state = dir.path().join("thread-state");
    let failed = |text: &str| -> u64 {
        text.split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = failed(&std::fs::read_to_string(&state).unwrap_or_default());
    wait_until("100 more calls after the manager was dropped", || {
        failed(&std::fs::read_to_string(&state).unwrap_or_default()) >= before + 100
    });
    std::fs::write(dir.path().join("stop"), "").unwrap();
    wait_until("the thread to stop", || {
        std::fs::read_to_string(&state).is_ok_and(|s| s.ends_with(" stopped"))
    });
    let text = std::fs::read_to_string(&state).unwrap();
    let codes = text.split(' ').next().unwrap();
    assert_eq!(
        codes, "stale_context",
        "every late call was refused: {text}"
    );
    assert!(mapped(&shadow[0]), "a retained library is never closed");
}

/// Issue 11 §8: settings change in one read-modify-write inside the plugin's transition. 16
/// threads each add their own key to `hello`'s config at once; none is lost.
#[test]
fn issue_11_concurrent_settings_updates_lose_none() {
    let m = Arc::new(manager());
    m.load(plugin("hello")).unwrap();
    let n = 16;
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (m, start) = (Arc::clone(&m), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                m.update_settings("hello", |stored| {
                    let mut s = stored.unwrap_or_default();
                    let mut config = s.config.take().unwrap_or_else(|| json!({}));
                    config[format!("k{i}")] = json!(i);
                    s.config = Some(config);
                    Ok(Some(s))
                })
                .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let expected: serde_json::Map<String, Value> =
        (0..n).map(|i| (format!("k{i}"), json!(i))).collect();
    assert_eq!(
        m.settings("hello").unwrap().config,
        Some(Value::Object(expected.clone()))
    );
    // The running instance got the final settings: the last update reloaded it with them.
    assert_eq!(
        m.get("hello").unwrap().config,
        Some(Value::Object(expected))
    );
    assert_eq!(m.get("hello").unwrap().state, PluginState::Active);
}

/// Issue 11 §8 over HTTP: `PUT .../config` and `PUT .../overrides` sent at the same moment both
/// take effect (before, each read the other's old value and wrote it back). Checked through the
/// API and in the state file on disk.
#[test]
fn issue_11_concurrent_puts_of_config_and_overrides_lose_no_update() {
    let s = Arc::new(Server::start(&[], &[]));
    let (st, body) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("hello").to_string_lossy()})),
    );
    assert_eq!(st, 201, "{body}");
    let rounds = 20;
    for round in 0..rounds {
        let start = Arc::new(Barrier::new(2));
        let puts: Vec<_> = [
            ("/api/v1/plugins/hello/config", json!({ "round": round })),
            ("/api/v1/plugins/hello/overrides", json!({ "tables": [] })),
        ]
        .into_iter()
        .map(|(path, body)| {
            let (s, start) = (Arc::clone(&s), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                s.call("PUT", path, Some(body))
            })
        })
        .collect();
        for put in puts {
            let (st, body) = put.join().unwrap();
            assert_eq!(st, 200, "{body}");
        }
        let (_, hello) = s.call("GET", "/api/v1/plugins/hello", None);
        assert_eq!(
            hello["config"],
            json!({ "round": round }),
            "round {round}: {hello}"
        );
        assert_eq!(
            hello["overrides"]["tables"],
            json!([]),
            "round {round}: {hello}"
        );
        if round + 1 < rounds {
            for path in [
                "/api/v1/plugins/hello/config",
                "/api/v1/plugins/hello/overrides",
            ] {
                assert_eq!(s.call("DELETE", path, None).0, 200);
            }
            let (_, hello) = s.call("GET", "/api/v1/plugins/hello", None);
            assert_eq!(
                (&hello["config"], &hello["overrides"]),
                (&Value::Null, &Value::Null)
            );
        }
    }
    let state: Value =
        serde_json::from_slice(&std::fs::read(s.data_dir.join("state.json")).unwrap()).unwrap();
    let saved = &state["settings"]["hello"];
    assert_eq!(saved["config"], json!({ "round": rounds - 1 }), "{state}");
    assert_eq!(saved["overrides"]["tables"], json!([]), "{state}");
}

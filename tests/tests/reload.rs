//! Atomic reload: new code really runs, failures keep the old version, dependents follow in
//! dependency order, and handles bound to a replaced instance are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::{Arc, Mutex};

use integration::*;
use plugin_host::{BusEvent, ErrorCode, PluginState};
use serde_json::json;

#[test]
fn reload_runs_the_new_code() {
    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let m = manager();
    let v1 = m.load(&file).unwrap();
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "1");
    let old_shadow = shadow_files(&m);

    install("versioned-v2", &file);
    let v2 = m.reload("versioned").unwrap();
    assert_eq!(v2.version, "2.0.0");
    assert!(v2.generation > v1.generation);
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "2");
    assert!(!mapped(&old_shadow[0]), "the old version is unmapped");
    assert_eq!(shadow_files(&m).len(), 1);
}

#[test]
fn reload_of_a_broken_file_keeps_the_old_version() {
    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let m = manager();
    let before = m.load(&file).unwrap();
    std::fs::write(&file, "truncated garbage").unwrap();
    assert_eq!(
        m.reload("versioned").unwrap_err().code(),
        ErrorCode::InvalidPlugin
    );
    let after = m.get("versioned").unwrap();
    assert_eq!(after.state, PluginState::Active);
    assert_eq!(after.generation, before.generation);
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "1");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        m.reload("versioned").unwrap_err().code(),
        ErrorCode::FileNotFound
    );
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "1");
}

#[test]
fn dependents_are_reloaded_after_their_dependency() {
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let greeter = copy_plugin("greeter", dir.path());
    let m = manager();
    m.load(&hello).unwrap();
    let g1 = m.load(&greeter).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    m.bus()
        .subscribe_host(
            "plugin:reloaded",
            false,
            Arc::new(move |e: &BusEvent| {
                let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
                s.lock()
                    .unwrap()
                    .push(v["name"].as_str().unwrap().to_owned());
            }),
        )
        .unwrap();
    let h2 = m.reload("hello").unwrap();
    assert_eq!(*seen.lock().unwrap(), ["hello", "greeter"]);
    let g2 = m.get("greeter").unwrap();
    assert!(g2.generation > g1.generation, "greeter got a new instance");
    let out = m.execute("greeter", &json!({"name": "e"})).unwrap();
    assert_eq!(out["greeting"], "hello, e!");
    assert_eq!(
        out["hello_generation"], h2.generation,
        "bound to the new hello"
    );
}

#[test]
fn handles_to_a_replaced_instance_are_stale() {
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let greeter = copy_plugin("greeter", dir.path());
    let m = manager();
    m.load(&hello).unwrap();
    m.load(&greeter).unwrap();
    // greeter's file is broken, so greeter cannot follow hello's reload and keeps its old
    // instance, whose handle is bound to the old hello.
    std::fs::write(&greeter, "broken").unwrap();
    m.reload("hello").unwrap();
    let e = m.execute("greeter", &json!({"name": "x"})).unwrap_err();
    assert_eq!(e.details()["plugin_code"], "stale_handle", "{e}");
    // A handle obtained now reaches the new instance.
    let out = m
        .execute("greeter", &json!({"op": "fresh", "name": "y"}))
        .unwrap();
    assert_eq!(out["greeting"], "hello, y");
}

#[test]
fn reload_refused_when_a_dependent_rejects_the_new_version() {
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let m = manager();
    let h1 = m.load(&hello).unwrap();
    m.load(plugin("greeter")).unwrap();
    // hello now says it is 2.0.0; greeter requires ^1.
    let n = patched_copy(
        &plugin("hello"),
        &hello,
        br#""version":"1.0.0""#,
        br#""version":"2.0.0""#,
    );
    assert_eq!(n, 1);
    let e = m.reload("hello").unwrap_err();
    assert_eq!(e.code(), ErrorCode::DependencyVersionMismatch);
    assert_eq!(e.details()["plugin"], "greeter");
    assert_eq!(
        m.get("hello").unwrap().generation,
        h1.generation,
        "old hello kept"
    );
    assert_eq!(
        m.execute("greeter", &json!({"name": "k"})).unwrap()["greeting"],
        "hello, k!"
    );
}

#[test]
fn reload_of_unknown_plugin_is_not_found() {
    assert_eq!(
        manager().reload("ghost").unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[test]
fn failed_initialize_of_the_new_version_keeps_the_old_one() {
    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let m = manager();
    let v1 = m.load(&file).unwrap();
    install("versioned-v2", &file);

    // The marker the `versioned` plugin's version 2 checks in initialize.
    let marker =
        std::env::temp_dir().join(format!("versioned-v2-fail-init-{}", std::process::id()));
    std::fs::write(&marker, "").unwrap();
    let e = m.reload("versioned").unwrap_err();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(e.code(), ErrorCode::InitializeFailed, "{e}");
    let still = m.get("versioned").unwrap();
    assert_eq!(still.state, PluginState::Active);
    assert_eq!(still.version, "1.0.0");
    assert_eq!(still.generation, v1.generation);
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "1");
    assert_eq!(
        shadow_files(&m).len(),
        1,
        "the failed version's shadow copy is gone"
    );

    m.reload("versioned").unwrap();
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "2");
}

#[test]
fn reloads_under_load_lose_no_calls() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let m = Arc::new(manager());
    m.load(&file).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (m, stop, ok, failed) = (
                Arc::clone(&m),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match m.execute("versioned", &json!({})) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("call failed during reload: {}", e.chain());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for i in 0..30 {
        install(
            if i % 2 == 0 {
                "versioned-v2"
            } else {
                "versioned"
            },
            &file,
        );
        m.reload("versioned").unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no call failed across 30 reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
}

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
fn handles_follow_their_dependency_to_the_new_instance() {
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let greeter = copy_plugin("greeter", dir.path());
    let m = manager();
    let h1 = m.load(&hello).unwrap();
    let g1 = m.load(&greeter).unwrap();
    // greeter's file is broken, so greeter cannot follow hello's reload and keeps its old
    // instance, whose handle was obtained from the old hello.
    std::fs::write(&greeter, "broken").unwrap();
    let h2 = m.reload("hello").unwrap();
    assert!(h2.generation > h1.generation);
    assert_eq!(m.get("greeter").unwrap().generation, g1.generation);
    let out = m.execute("greeter", &json!({"name": "x"})).unwrap();
    assert_eq!(out["greeting"], "hello, x!");
    assert_eq!(
        out["hello_generation"], h1.generation,
        "the handle kept since initialize"
    );
    // The call reached the new hello: it counts its own calls from zero.
    assert_eq!(exec(&m, "hello", json!({"op": "count"}))["count"], 1);
    // A handle obtained now reaches the new instance too.
    let out = m
        .execute("greeter", &json!({"op": "fresh", "name": "y"}))
        .unwrap();
    assert_eq!(out["greeting"], "hello, y");
    assert_eq!(exec(&m, "hello", json!({"op": "count"}))["count"], 2);
}

/// Calls `call` in a loop on `threads` threads until `stop`; returns (calls that succeeded,
/// failures as `code: message` lines).
fn clients(
    threads: usize,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    call: impl Fn(usize) -> Result<(), String> + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<(u64, Vec<String>)>> {
    let call = Arc::new(call);
    (0..threads)
        .map(|i| {
            let (stop, call) = (Arc::clone(stop), Arc::clone(&call));
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match call(i) {
                        Ok(()) => ok += 1,
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect()
}

/// Stops the clients and checks that each made calls and that none failed.
fn no_call_failed(
    what: &str,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
) -> u64 {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut failures = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let (ok, failed) = c.join().unwrap();
        assert!(ok > 0, "{what}: client {i} made no successful call");
        total += ok + failed.len() as u64;
        failures.extend(failed);
    }
    eprintln!("{what}: {total} calls, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{what}: {} of {total} calls failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    total
}

/// Issue 11 §6: while `hello` is reloaded 100 times, 4 clients calling `greeter` (which depends
/// on `hello`) and one calling `hello` itself see no failed call.
#[test]
fn issue_11_reloads_of_a_dependency_fail_no_call() {
    use std::sync::atomic::AtomicBool;
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let greeter = copy_plugin("greeter", dir.path());
    let m = Arc::new(manager());
    let h1 = m.load(&hello).unwrap();
    m.load(&greeter).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mm = Arc::clone(&m);
    let callers = clients(5, &stop, move |i| {
        let (plugin, expected) = if i < 4 {
            ("greeter", format!("hello, c{i}!"))
        } else {
            ("hello", format!("hello, c{i}"))
        };
        match mm.execute(plugin, &json!({"name": format!("c{i}")})) {
            Ok(out) if out["greeting"] == expected.as_str() => Ok(()),
            Ok(out) => Err(format!("{plugin}: unexpected answer {out}")),
            Err(e) => Err(format!("{plugin}: {}: {}", e.code(), e.chain())),
        }
    });
    for _ in 0..100 {
        m.reload("hello").unwrap();
    }
    let calls = no_call_failed("100 reloads of hello, in process", &stop, callers);
    assert!(calls > 100, "the clients kept calling: {calls}");
    let h = m.get("hello").unwrap();
    assert!(h.generation > h1.generation);
    assert_eq!(m.get("greeter").unwrap().state, PluginState::Active);
}

/// Issue 11 §6 over HTTP, against a real `plugin-host serve`: 100 reloads of `hello` through
/// `POST /plugins/hello/reload` while 4 clients execute `greeter` and one executes `hello`.
#[test]
fn issue_11_reloads_over_http_fail_no_call() {
    use std::sync::atomic::AtomicBool;
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let greeter = copy_plugin("greeter", dir.path());
    let s = Arc::new(Server::start(&[], &[]));
    for path in [&hello, &greeter] {
        let (st, body) = s.call(
            "POST",
            "/api/v1/plugins",
            Some(json!({"path": path.to_string_lossy()})),
        );
        assert_eq!(st, 201, "{body}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let server = Arc::clone(&s);
    let callers = clients(5, &stop, move |i| {
        let plugin = if i < 4 { "greeter" } else { "hello" };
        let (st, body) = server.call(
            "POST",
            &format!("/api/v1/plugins/{plugin}/execute"),
            Some(json!({"name": format!("c{i}")})),
        );
        let greeting = body["output"]["greeting"].as_str().unwrap_or_default();
        if st == 200 && greeting.starts_with(&format!("hello, c{i}")) {
            Ok(())
        } else {
            Err(format!("{plugin}: {st} {body}"))
        }
    });
    let mut generations = Vec::new();
    for _ in 0..100 {
        let (st, body) = s.call("POST", "/api/v1/plugins/hello/reload", None);
        assert_eq!(st, 200, "{body}");
        generations.push(body["generation"].as_u64().unwrap());
    }
    let calls = no_call_failed("100 reloads of hello over HTTP", &stop, callers);
    assert!(calls > 100, "the clients kept calling: {calls}");
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]),
        "every reload made a new instance"
    );
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

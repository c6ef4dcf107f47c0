//! Issue 11, section 5: loading files is bounded, non-blocking and typed. Attacks through the
//! real `plugin-host serve` binary over HTTP: files that are not plugins (devices, FIFOs,
//! folders, `/proc` pseudo-files, huge files), hostile paths, requests that time out. Each is
//! checked from outside: the server's memory, the plugin list, the state file, the time taken.
//! The tests at the end run a manager in-process, with a file read held by a test hook.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::__private::pause_read;
use plugin_host::{PluginManager, PluginSettings};
use serde_json::{Value, json};

fn code(r: &(u16, Value)) -> (u16, String) {
    (r.0, r.1["error"]["code"].as_str().unwrap_or("").to_owned())
}

fn load(s: &Server, path: &Path) -> (u16, Value) {
    s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path.to_string_lossy()})),
    )
}

/// Resident memory of a process, in KiB (from `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn plugin_names(s: &Server) -> Vec<String> {
    let (st, list) = s.call("GET", "/api/v1/plugins", None);
    assert_eq!(st, 200);
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls a Prometheus counter of the server until it reaches `at_least`, at most 20 s.
fn wait_counter(s: &Server, name: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = ureq::get(&format!("{}/metrics", s.addr))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if value >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {value}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn issue_11_what_is_not_a_regular_file_is_refused_at_once_and_typed() {
    let s = Server::start(&[], &[]);
    let dir = temp_dir();
    let fifo = dir.path().join(lib_file("fifo"));
    mkfifo(&fifo);
    let link_to_fifo = dir.path().join(lib_file("link"));
    std::os::unix::fs::symlink(&fifo, &link_to_fifo).unwrap();
    let empty = dir.path().join(lib_file("empty"));
    std::fs::write(&empty, b"").unwrap();
    let rss_before = rss_kib(s.pid());
    for path in [
        Path::new("/dev/zero"),
        Path::new("/dev/urandom"),
        Path::new("/dev/null"),
        Path::new("/"),
        dir.path(),
        fifo.as_path(),
        link_to_fifo.as_path(),
        Path::new("/proc/self/mem"),
        Path::new("/proc/self/status"),
        Path::new("/proc/self/environ"),
        empty.as_path(),
    ] {
        let started = Instant::now();
        let r = load(&s, path);
        assert_eq!(
            code(&r),
            (400, "invalid_path".to_owned()),
            "{}: {}",
            path.display(),
            r.1
        );
        assert!(r.1["error"]["message"].is_string(), "{}", r.1);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{} took {:?}",
            path.display(),
            started.elapsed()
        );
    }
    // Outside: nothing loaded, nothing persisted, no memory spent, and the FIFO never had a
    // reader waiting on it (a writer opening it now would block: open it non-blocking to see).
    assert!(plugin_names(&s).is_empty());
    let grown = rss_kib(s.pid()).saturating_sub(rss_before);
    assert!(grown < 50 * 1024, "server RSS grew by {grown} KiB");
    // Every other lifecycle operation still goes through.
    assert_eq!(load(&s, &plugin("hello")).0, 201);
    assert_eq!(plugin_names(&s), ["hello"]);
}

#[test]
fn issue_11_a_huge_file_is_refused_before_it_is_read() {
    let dir = temp_dir();
    // Sparse: 8 GiB announced, nothing on disk.
    let huge = dir.path().join(lib_file("huge"));
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let s = Server::start(&[], &[]);
    let rss_before = rss_kib(s.pid());
    let started = Instant::now();
    let r = load(&s, &huge);
    assert_eq!(code(&r), (400, "file_too_large".to_owned()), "{}", r.1);
    assert_eq!(r.1["error"]["details"]["limit"], 256 << 20, "{}", r.1);
    assert!(started.elapsed() < Duration::from_secs(2));
    let grown = rss_kib(s.pid()).saturating_sub(rss_before);
    assert!(grown < 50 * 1024, "server RSS grew by {grown} KiB");

    // The limit is configurable: a real plugin over a small limit is refused the same way.
    let small = Server::start(&[], &[("PLUGIN_HOST_MAX_PLUGIN_BYTES", "65536")]);
    let r = load(&small, &plugin("hello"));
    assert_eq!(code(&r), (400, "file_too_large".to_owned()), "{}", r.1);
    assert_eq!(r.1["error"]["details"]["limit"], 65536);
    assert!(plugin_names(&small).is_empty());
}

#[test]
fn issue_11_hostile_paths_are_400_with_a_code() {
    let s = Server::start(&[], &[]);
    let dir = temp_dir();
    let long_component = format!("/tmp/{}.so", "x".repeat(300));
    let long_path = format!("/tmp{}", "/d".repeat(2100));
    for (path, why) in [
        ("/tmp/a\u{0}b.so", "NUL byte"),
        (long_component.as_str(), "component over 255 bytes"),
        (long_path.as_str(), "path over 4095 bytes"),
        ("libhello.so", "relative path"),
        ("./x/../libhello.so", "relative path"),
        ("", "empty path"),
    ] {
        let r = s.call("POST", "/api/v1/plugins", Some(json!({ "path": path })));
        assert_eq!(code(&r), (400, "invalid_path".to_owned()), "{why}: {}", r.1);
        let r = s.call(
            "POST",
            "/api/v1/directory/load",
            Some(json!({ "path": path })),
        );
        assert_eq!(code(&r), (400, "invalid_path".to_owned()), "{why}: {}", r.1);
    }
    // A folder load on a regular file is a bad request, not a server error.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let r = s.call(
        "POST",
        "/api/v1/directory/load",
        Some(json!({ "path": file.to_string_lossy() })),
    );
    assert_eq!(code(&r), (400, "bad_request".to_owned()), "{}", r.1);
    assert!(plugin_names(&s).is_empty());
}

#[test]
fn issue_11_every_error_body_is_json() {
    let dir = temp_dir();
    let config = dir.path().join("plugin-host.toml");
    std::fs::write(&config, "[limits]\nbody_bytes = 2048\n").unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()], &[]);
    let raw = |method: &str, path: &str, body: Option<&str>| -> (u16, String) {
        let req = ureq::request(method, &format!("{}{path}", s.addr));
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match result {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(st, r)) => (st, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    };
    let json_error = |(status, text): (u16, String), want: u16, want_code: &str| {
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status}: not JSON: {text:?}"));
        assert_eq!(status, want, "{text}");
        assert_eq!(v["error"]["code"], want_code, "{text}");
        assert!(v["error"]["message"].is_string(), "{text}");
        v
    };
    // A path segment that is not UTF-8.
    json_error(
        raw("GET", "/api/v1/plugins/%FF%FE", None),
        400,
        "bad_request",
    );
    json_error(
        raw("POST", "/api/v1/plugins/%C3%28/reload", Some("{}")),
        400,
        "bad_request",
    );
    // A bad query string.
    json_error(
        raw("DELETE", "/api/v1/plugins/hello?cascade=maybe", None),
        400,
        "bad_request",
    );
    // Bodies: not JSON, wrong shape, over the limit (the message says the real limit).
    json_error(
        raw("POST", "/api/v1/plugins", Some("{not json")),
        400,
        "bad_request",
    );
    json_error(
        raw("POST", "/api/v1/plugins", Some(r#"{"path": 5}"#)),
        400,
        "bad_request",
    );
    let big = format!(r#"{{"path": "/{}"}}"#, "x".repeat(4096));
    let v = json_error(
        raw("POST", "/api/v1/plugins", Some(&big)),
        413,
        "payload_too_large",
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("2048"), "{message}");
    assert!(!message.contains("than 0 bytes"), "{message}");
    // A long name that the HTTP parser lets through is a JSON 404.
    let long = "n".repeat(60_000);
    json_error(
        raw("GET", &format!("/api/v1/plugins/{long}"), None),
        404,
        "not_found",
    );
    // Over 65,534 bytes of URI, hyper answers 414 itself, before the host's code runs (see
    // docs/error-codes.md): the status is right, the body cannot be the host's.
    let longer = "n".repeat(100_000);
    let (status, _) = raw("GET", &format!("/api/v1/plugins/{longer}"), None);
    assert_eq!(status, 414);
}

#[test]
fn issue_11_a_load_answered_504_never_takes_effect() {
    let s = Server::start(
        &[],
        &[
            ("PLUGIN_HOST_REQUEST_TIMEOUT_MS", "300"),
            ("PLUGIN_HOST_INITIALIZE_TIMEOUT_MS", "20000"),
        ],
    );
    let state = s.data_dir.join("state.json");
    // The load outlives the request: 504, and it must not take effect later.
    let r = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("slow-init").to_string_lossy(), "config": {"ms": 1500}})),
    );
    assert_eq!(code(&r), (504, "timeout".to_owned()), "{}", r.1);
    // The operation ends (it is counted as a failed load once its instance is retired) ...
    wait_counter(&s, "plugin_host_load_failures_total", 1.0);
    // ... and nothing of it stayed: not in the list, not persisted, no settings kept.
    assert_eq!(s.call("GET", "/api/v1/plugins/slow-init", None).0, 404);
    assert!(plugin_names(&s).is_empty());
    let persisted = std::fs::read_to_string(&state).unwrap_or_default();
    assert!(!persisted.contains("slow-init"), "{persisted}");
    assert_eq!(
        s.call("GET", "/api/v1/plugins/slow-init/config", None).0,
        404
    );

    // A load that fits in the request: loaded and persisted.
    let r = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("slow-init").to_string_lossy(), "config": {"ms": 0}})),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let generation = r.1["generation"].clone();

    // A settings change that reloads for longer than the request: 504, and the old instance
    // and the old settings stay.
    let r = s.call(
        "PUT",
        "/api/v1/plugins/slow-init/config",
        Some(json!({"ms": 1500})),
    );
    assert_eq!(code(&r), (504, "timeout".to_owned()), "{}", r.1);
    wait_counter(&s, "plugin_host_reload_failures_total", 1.0);
    let (_, info) = s.call("GET", "/api/v1/plugins/slow-init", None);
    assert_eq!(info["generation"], generation, "{info}");
    assert_eq!(info["state"], "active");
    let (_, config) = s.call("GET", "/api/v1/plugins/slow-init/config", None);
    assert_eq!(config, json!({"ms": 0}));
    let (_, out) = s.call("POST", "/api/v1/plugins/slow-init/execute", Some(json!({})));
    assert_eq!(out["output"]["slept_ms"], 0);
    let persisted: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        persisted["settings"]["slow-init"]["config"],
        json!({"ms": 0})
    );
}

#[test]
fn issue_11_a_change_that_took_effect_before_the_deadline_is_reported_not_504() {
    let s = Server::start(&[], &[("PLUGIN_HOST_REQUEST_TIMEOUT_MS", "300")]);
    let r = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({
            "path": plugin("slow-init").to_string_lossy(),
            "config": {"ms": 0, "cleanup_ms": 1200}
        })),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let generation = r.1["generation"].as_u64().unwrap();
    // A reload takes effect at the swap, then retires the old instance, whose cleanup takes
    // longer than the request may: the answer is the new plugin object, not 504.
    let started = Instant::now();
    let r = s.call("POST", "/api/v1/plugins/slow-init/reload", None);
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1["generation"].as_u64().unwrap() > generation, "{}", r.1);
    assert!(started.elapsed() >= Duration::from_millis(1200));
    // An unload takes effect when it starts: the answer is its report, not 504.
    let r = s.call("DELETE", "/api/v1/plugins/slow-init", None);
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["unloaded"], json!(["slow-init"]));
    assert!(plugin_names(&s).is_empty());
    let persisted: Value =
        serde_json::from_str(&std::fs::read_to_string(s.data_dir.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(persisted["plugins"], json!([]), "{persisted}");
}

#[test]
fn issue_11_inspect_follows_the_same_rules() {
    let dir = temp_dir();
    let fifo = dir.path().join(lib_file("fifo"));
    mkfifo(&fifo);
    for path in [
        Path::new("/dev/zero"),
        Path::new("/proc/self/mem"),
        fifo.as_path(),
    ] {
        let started = Instant::now();
        let out = Command::new(host_binary())
            .arg("inspect")
            .arg(path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", path.display());
        assert!(stderr.contains("invalid path"), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let out = Command::new(host_binary())
        .arg("inspect")
        .arg(plugin("hello"))
        .env("PLUGIN_HOST_MAX_PLUGIN_BYTES", "65536")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limits.max_plugin_bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(host_binary())
        .arg("inspect")
        .arg(plugin("hello"))
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn issue_11_a_fifo_in_the_watched_folder_does_not_hang_the_watcher() {
    let dir = temp_dir();
    // The folder's scan takes regular files and symbolic links: a link named like a plugin,
    // pointing at a FIFO, is read at the initial scan (and used to hang the start for good).
    let elsewhere = temp_dir();
    let fifo = elsewhere.path().join("fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(&fifo, dir.path().join(lib_file("trap"))).unwrap();
    install("hello", &dir.path().join(lib_file("hello")));
    let s = Server::start(
        &["--plugins-dir", dir.path().to_str().unwrap(), "--watch"],
        &[],
    );
    // The watcher reports the FIFO as failed and still loads the real plugin.
    let (_, watch) = s.call("GET", "/api/v1/watch", None);
    let files = watch["files"].as_array().cloned().unwrap_or_default();
    let trap = files
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&lib_file("trap")))
        })
        .unwrap_or_else(|| panic!("{watch}"));
    assert_eq!(trap["status"], "failed", "{watch}");
    assert_eq!(trap["code"], "invalid_path", "{watch}");
    assert_eq!(plugin_names(&s), ["hello"]);
    // And it keeps watching: a second plugin dropped in is loaded.
    install("greeter", &dir.path().join(lib_file("greeter")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !plugin_names(&s).contains(&"greeter".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "{}",
            s.call("GET", "/api/v1/watch", None).1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// In-process: a lifecycle operation held inside a file read (the `__private` hook holds the read
// at the moment a slow disk would block: after the checks, before the bytes) holds up no
// lifecycle operation of another plugin, and never puts bytes read before a newer change in.

/// Longest wait for something the test expects to happen.
const EXPECTED: Duration = Duration::from_secs(20);

/// Runs `f` on a new thread; its result arrives on the returned channel.
fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::sync::mpsc::Receiver<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Loads and unloads `versioned` (a plugin the operation in progress does not touch) on another
/// thread and asserts that it completes while the operation is held.
fn other_plugin_lifecycle_completes(m: &Arc<PluginManager>) {
    let other = Arc::clone(m);
    let done = on_thread(move || {
        let info = other.load(plugin("versioned"))?;
        let report = other.unload("versioned", false)?;
        Ok::<_, plugin_host::Error>((info, report))
    });
    let (info, report) = done
        .recv_timeout(EXPECTED)
        .expect("loading and unloading another plugin waited for a file read")
        .unwrap();
    assert_eq!(info.name, "versioned");
    assert_eq!(report.unloaded, ["versioned"]);
}

#[test]
fn issue_11_a_reload_reading_a_dependents_file_holds_up_no_other_plugin() {
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let greeter = copy_plugin("greeter", dir.path());
    let m = Arc::new(manager());
    let hello0 = m.load(&hello).unwrap().generation;
    let greeter0 = m.load(&greeter).unwrap().generation;

    // The reload of `hello` reads `greeter`'s file too (its dependent is reloaded after it).
    let pause = pause_read(&greeter, 0);
    let reloader = Arc::clone(&m);
    let reload = on_thread(move || reloader.reload("hello"));
    assert!(pause.wait_held(EXPECTED), "the reload never read greeter");
    other_plugin_lifecycle_completes(&m);
    // `hello` is swapped already; `greeter` is replaced only once its file is read, and keeps
    // answering meanwhile.
    let hello1 = m.get("hello").unwrap().generation;
    assert!(hello1 > hello0);
    assert_eq!(m.get("greeter").unwrap().generation, greeter0);
    assert_eq!(
        m.execute("greeter", &json!({"name": "al"})).unwrap()["greeting"],
        "hello, al!"
    );

    pause.release();
    let info = reload.recv_timeout(EXPECTED).unwrap().unwrap();
    assert_eq!(info.generation, hello1);
    assert!(m.get("greeter").unwrap().generation > greeter0);
    assert_eq!(
        m.execute("greeter", &json!({"name": "ada"})).unwrap()["greeting"],
        "hello, ada!"
    );
}

#[test]
fn issue_11_a_settings_change_reading_the_file_holds_up_no_other_plugin() {
    let dir = temp_dir();
    let hello = copy_plugin("hello", dir.path());
    let m = Arc::new(manager());
    let generation = m.load(&hello).unwrap().generation;

    let pause = pause_read(&hello, 0);
    let changer = Arc::clone(&m);
    let change = on_thread(move || {
        changer.update_settings("hello", |stored| {
            assert_eq!(stored, None);
            Ok(Some(PluginSettings::new(Some(json!({"x": 1})), None)))
        })
    });
    assert!(
        pause.wait_held(EXPECTED),
        "the settings change never read the file"
    );
    other_plugin_lifecycle_completes(&m);
    // The file is read before the read-modify-write of the settings starts.
    assert_eq!(m.settings("hello"), None);
    assert_eq!(m.get("hello").unwrap().generation, generation);

    pause.release();
    let stored = change.recv_timeout(EXPECTED).unwrap().unwrap();
    assert_eq!(stored.unwrap().config, Some(json!({"x": 1})));
    assert_eq!(m.settings("hello").unwrap().config, Some(json!({"x": 1})));
    assert!(m.get("hello").unwrap().generation > generation);
}

#[test]
fn issue_11_a_directory_load_reading_a_file_holds_up_no_other_plugin() {
    let dir = temp_dir();
    copy_plugin("hello", dir.path());
    let greeter = copy_plugin("greeter", dir.path());
    let m = Arc::new(manager());

    // A directory load reads each file twice: to plan, then (one file at a time, so a folder
    // of large files is never in memory at once) to load it. The second read is held.
    let pause = pause_read(&greeter, 1);
    let loader = Arc::clone(&m);
    let folder = dir.path().to_owned();
    let load = on_thread(move || loader.load_dir(&folder));
    assert!(
        pause.wait_held(EXPECTED),
        "the directory load never re-read greeter"
    );
    other_plugin_lifecycle_completes(&m);

    pause.release();
    let report = load.recv_timeout(EXPECTED).unwrap().unwrap();
    assert_eq!(report.loaded, ["hello", "greeter"], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        m.execute("greeter", &json!({"name": "bo"})).unwrap()["greeting"],
        "hello, bo!"
    );
}

/// Unloads `versioned` and loads it again from `file`: a change of the plugin that does not
/// wait for a reload of it in progress (a load reads its own file). Returns the new instance.
fn unload_and_load_again(m: &PluginManager, file: &Path) -> plugin_host::PluginInfo {
    m.unload("versioned", false).unwrap();
    m.load(file).unwrap()
}

#[test]
fn issue_11_bytes_read_before_a_newer_change_are_never_put_in() {
    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let m = Arc::new(manager());
    m.load(&file).unwrap();

    // A reload opens the file (version 1) and is held before reading it ...
    let pause = pause_read(&file, 0);
    let first = Arc::clone(&m);
    let reload = on_thread(move || first.reload("versioned"));
    assert!(pause.wait_held(EXPECTED), "the reload never read the file");
    // ... the file is replaced by version 2, which another operation puts in meanwhile.
    install("versioned-v2", &file);
    let v2 = unload_and_load_again(&m, &file);
    assert_eq!(v2.version, "2.0.0");

    // The held reload then reads version 1 from the file it opened: those bytes are older than
    // what runs, so it reads the file again instead of putting version 1 back.
    pause.release();
    let after = reload.recv_timeout(EXPECTED).unwrap().unwrap();
    assert_eq!(after.version, "2.0.0");
    assert!(after.generation > v2.generation);
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "2");
}

#[test]
fn issue_11_a_reload_that_only_ever_reads_stale_bytes_fails_typed_and_changes_nothing() {
    let dir = temp_dir();
    let file = dir.path().join(lib_file("versioned"));
    install("versioned", &file);
    let m = Arc::new(manager());
    m.load(&file).unwrap();

    // Reads of the file, in order: the held reload's first read (held by pause 0), the read of
    // a load that replaces the plugin meanwhile (let through by pause 1), the held reload's
    // second read (held by pause 1), and so on: every time, the plugin changed meanwhile.
    let mut pauses: std::collections::VecDeque<_> = (0..5)
        .map(|i| pause_read(&file, usize::from(i > 0)))
        .collect();
    let held = Arc::clone(&m);
    let reload = on_thread(move || held.reload("versioned"));
    let mut last = 0;
    while let Some(pause) = pauses.pop_front() {
        assert!(pause.wait_held(EXPECTED), "the reload did not read again");
        last = unload_and_load_again(&m, &file).generation;
        pause.release();
    }
    let e = reload.recv_timeout(EXPECTED).unwrap().unwrap_err();
    assert_eq!(e.code().as_str(), "concurrent_change", "{e}");
    assert_eq!(e.details()["attempts"], 5);
    // Nothing of it took effect: the last load's instance runs.
    assert_eq!(m.get("versioned").unwrap().generation, last);
    assert_eq!(m.execute("versioned", &json!({})).unwrap()["version"], "1");
}

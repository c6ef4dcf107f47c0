//! The watched plugins folder, with a real watcher on a temporary folder and real plugin builds:
//! drop, replace, break, fix, remove; bursts in dependency order; files written slowly in place;
//! identical rebuilds; removal of a plugin with dependents; and the server's `--watch`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{
    BusEvent, ErrorCode, FileStatus, FolderWatcher, PluginManager, PluginState, StateStore,
    WatchOptions, WatchedFile,
};
use serde_json::{Value, json};

/// How long a test waits for the watcher before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// A watcher on a fresh folder, with every `watch:*` and `plugin:*` event recorded.
struct Watched {
    dir: tempfile::TempDir,
    manager: Arc<PluginManager>,
    watcher: FolderWatcher,
    events: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Watched {
    fn start(options: WatchOptions) -> Self {
        Self::start_in(temp_dir(), options)
    }

    /// Starts on `dir` as it is (files already there are loaded by `start`).
    fn start_in(dir: tempfile::TempDir, options: WatchOptions) -> Self {
        let manager = Arc::new(manager());
        let events = Arc::new(Mutex::new(Vec::new()));
        for pattern in ["watch:*", "plugin:*"] {
            let seen = Arc::clone(&events);
            manager
                .bus()
                .subscribe_host(
                    pattern,
                    false,
                    Arc::new(move |e: &BusEvent| {
                        let v: Value = serde_json::from_slice(&e.payload).unwrap();
                        seen.lock().unwrap().push((e.name.to_string(), v));
                    }),
                )
                .unwrap();
        }
        let watcher = FolderWatcher::start(Arc::clone(&manager), dir.path(), options).unwrap();
        Self {
            dir,
            manager,
            watcher,
            events,
        }
    }

    fn path(&self, plugin: &str) -> PathBuf {
        self.dir.path().join(lib_file(plugin))
    }

    /// Events named `name`, payloads only.
    fn events(&self, name: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn file(&self, path: &Path) -> Option<WatchedFile> {
        self.watcher
            .status()
            .files
            .into_iter()
            .find(|f| f.path == path)
    }

    fn answer(&self, plugin: &str) -> Option<Value> {
        self.manager.execute(plugin, &json!({})).ok()
    }

    fn active(&self, plugin: &str) -> bool {
        self.manager
            .get(plugin)
            .is_ok_and(|p| p.state == PluginState::Active)
    }
}

fn options() -> WatchOptions {
    WatchOptions::default()
}

/// Polls `ready` until it holds, failing the test after [`PATIENCE`].
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Copies a plugin build to a hidden name in `dir` (ignored by the watcher), ready to be renamed
/// into place.
fn stage(plugin_name: &str, dir: &Path) -> PathBuf {
    let staged = dir.join(format!(".{}", lib_file(plugin_name)));
    std::fs::copy(plugin(plugin_name), &staged).unwrap();
    staged
}

/// Writes `bytes` to a temporary name beside `dest`, then renames it over `dest`.
fn install_bytes(bytes: &[u8], dest: &Path) {
    let tmp = dest.with_extension("part");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

#[test]
fn a_dropped_library_is_loaded_and_the_set_persisted() {
    let data = temp_dir();
    let store = Arc::new(StateStore::open(data.path()).unwrap());
    let w = Watched::start(options().with_store(Arc::clone(&store)));
    // Temporary files of common tools and foreign files are ignored.
    std::fs::write(w.dir.path().join("notes.txt"), "not a plugin").unwrap();
    std::fs::copy(
        plugin("hello"),
        w.dir.path().join(format!("{}.part", lib_file("hello"))),
    )
    .unwrap();
    std::fs::copy(
        plugin("hello"),
        w.dir.path().join(format!("{}~", lib_file("hello"))),
    )
    .unwrap();

    let path = w.path("hello");
    install("hello", &path);
    wait_for("hello loaded", || w.active("hello"));
    assert_eq!(w.manager.get("hello").unwrap().path, path);
    wait_for("watch:loaded", || !w.events("watch:loaded").is_empty());
    let loaded = &w.events("watch:loaded")[0];
    assert_eq!(loaded["plugin"], "hello");
    assert_eq!(loaded["path"], json!(path));

    let status = w.watcher.status();
    assert_eq!(status.dir, w.dir.path());
    assert_eq!(
        status.files.len(),
        1,
        "only the library: {:?}",
        status.files
    );
    let file = &status.files[0];
    assert_eq!(file.status, FileStatus::Loaded);
    assert_eq!(file.plugin.as_deref(), Some("hello"));
    assert_eq!(file.code, None);
    assert!(w.events("watch:failed").is_empty());

    let persisted = store.read().unwrap().unwrap();
    assert_eq!(persisted.plugins.len(), 1);
    assert_eq!(persisted.plugins[0].name, "hello");
}

#[test]
fn a_replaced_library_is_reloaded_with_the_new_code() {
    let w = Watched::start(options());
    let path = w.path("versioned");
    install("versioned", &path);
    wait_for("version 1", || {
        w.answer("versioned").is_some_and(|v| v["version"] == "1")
    });
    let before = w.manager.get("versioned").unwrap().generation;

    install("versioned-v2", &path);
    wait_for("version 2", || {
        w.answer("versioned").is_some_and(|v| v["version"] == "2")
    });
    let after = w.manager.get("versioned").unwrap();
    assert!(after.generation > before);
    assert_eq!(after.version, "2.0.0");
    wait_for("watch:reloaded", || !w.events("watch:reloaded").is_empty());
    assert_eq!(w.events("watch:reloaded")[0]["plugin"], "versioned");
    assert_eq!(w.file(&path).unwrap().status, FileStatus::Loaded);
}

#[test]
fn a_broken_replacement_keeps_the_old_version_and_is_reported_until_fixed() {
    let w = Watched::start(options());
    let path = w.path("versioned");
    install("versioned", &path);
    wait_for("version 1", || w.active("versioned"));
    let generation = w.manager.get("versioned").unwrap().generation;

    install_bytes(b"a truncated download, not a library", &path);
    wait_for("watch:failed", || !w.events("watch:failed").is_empty());
    let failed = &w.events("watch:failed")[0];
    assert_eq!(failed["code"], ErrorCode::InvalidPlugin.as_str());
    assert_eq!(failed["plugin"], "versioned");
    assert_eq!(failed["path"], json!(path));
    let file = w.file(&path).unwrap();
    assert_eq!(file.status, FileStatus::Failed);
    assert_eq!(file.code.map(ErrorCode::as_str), Some("invalid_plugin"));
    assert_eq!(file.plugin.as_deref(), Some("versioned"));
    assert!(file.error.is_some());
    // The running version is untouched.
    assert_eq!(w.answer("versioned").unwrap()["version"], "1");
    assert_eq!(w.manager.get("versioned").unwrap().generation, generation);

    // Fixing the file retries it.
    install("versioned-v2", &path);
    wait_for("version 2", || {
        w.answer("versioned").is_some_and(|v| v["version"] == "2")
    });
    wait_for("status loaded", || {
        w.file(&path).unwrap().status == FileStatus::Loaded
    });
    assert_eq!(w.file(&path).unwrap().code, None);
}

#[test]
fn a_plugin_that_fails_to_initialize_is_reported_and_retried_when_replaced() {
    let w = Watched::start(options());
    let path = w.dir.path().join(lib_file("slot"));
    install("fail-init", &path);
    wait_for("watch:failed", || !w.events("watch:failed").is_empty());
    let failed = &w.events("watch:failed")[0];
    assert_eq!(failed["code"], ErrorCode::InitializeFailed.as_str());
    assert_eq!(failed["plugin"], "fail-init");
    let file = w.file(&path).unwrap();
    assert_eq!(
        (file.status, file.code.map(ErrorCode::as_str)),
        (FileStatus::Failed, Some("initialize_failed"))
    );
    assert!(w.manager.get("fail-init").is_err(), "nothing of it stays");

    install("hello", &path);
    wait_for("hello loaded", || w.active("hello"));
    wait_for("status loaded", || {
        w.file(&path)
            .is_some_and(|f| f.status == FileStatus::Loaded && f.plugin.as_deref() == Some("hello"))
    });
}

#[test]
fn a_library_for_another_abi_is_reported() {
    let w = Watched::start(options());
    let path = w.path("hello");
    let staged = w.dir.path().join(format!("{}.tmp", lib_file("hello")));
    patched_header(&plugin("hello"), &staged, 0, 99); // ABI major 99
    std::fs::rename(&staged, &path).unwrap();
    wait_for("watch:failed", || !w.events("watch:failed").is_empty());
    assert_eq!(
        w.events("watch:failed")[0]["code"],
        ErrorCode::IncompatibleAbi.as_str()
    );
    let file = w.file(&path).unwrap();
    assert_eq!(
        (file.status, file.code.map(ErrorCode::as_str)),
        (FileStatus::Failed, Some("incompatible_abi"))
    );
    assert!(w.manager.get("hello").is_err());
}

#[test]
fn a_dependent_dropped_alone_waits_for_its_dependency() {
    let w = Watched::start(options());
    install("greeter", &w.path("greeter"));
    wait_for("watch:failed", || !w.events("watch:failed").is_empty());
    assert_eq!(
        w.events("watch:failed")[0]["code"],
        ErrorCode::DependencyNotFound.as_str()
    );
    assert_eq!(
        w.file(&w.path("greeter"))
            .unwrap()
            .code
            .map(ErrorCode::as_str),
        Some("dependency_not_found")
    );

    // Its dependency arrives later: the dependent is retried without touching its file.
    install("hello", &w.path("hello"));
    wait_for("both loaded", || w.active("hello") && w.active("greeter"));
    wait_for("greeter's status", || {
        w.file(&w.path("greeter"))
            .is_some_and(|f| f.status == FileStatus::Loaded)
    });
    assert_eq!(w.events("watch:failed").len(), 1, "no further failure");
}

#[test]
fn a_removed_library_is_unloaded() {
    let w = Watched::start(options());
    let path = w.path("hello");
    install("hello", &path);
    wait_for("hello loaded", || w.active("hello"));

    std::fs::remove_file(&path).unwrap();
    wait_for("hello unloaded", || {
        w.manager
            .get("hello")
            .is_err_and(|e| e.code() == ErrorCode::NotFound)
    });
    wait_for("watch:unloaded", || !w.events("watch:unloaded").is_empty());
    let unloaded = &w.events("watch:unloaded")[0];
    assert_eq!(unloaded["plugin"], "hello");
    assert_eq!(unloaded["unloaded"], json!(["hello"]));
    assert!(w.file(&path).is_none(), "a removed file leaves the status");
}

#[test]
fn a_burst_is_loaded_in_dependency_order_whatever_the_event_order() {
    // A long debounce: both renames are surely one burst on a busy machine.
    let w = Watched::start(options().with_debounce(Duration::from_millis(300)));
    let greeter = stage("greeter", w.dir.path());
    let hello = stage("hello", w.dir.path());
    // The dependent arrives first.
    std::fs::rename(&greeter, w.path("greeter")).unwrap();
    std::fs::rename(&hello, w.path("hello")).unwrap();
    wait_for("both loaded", || w.active("hello") && w.active("greeter"));
    let order: Vec<Value> = w
        .events("plugin:loaded")
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(order, [json!("hello"), json!("greeter")]);
    assert!(
        w.events("watch:failed").is_empty(),
        "{:?}",
        w.events("watch:failed")
    );
    let out = w
        .manager
        .execute("greeter", &json!({"name": "ada"}))
        .unwrap();
    assert!(out.is_object());
}

#[test]
fn a_file_written_slowly_in_place_is_loaded_only_once_complete() {
    let settle = Duration::from_millis(500);
    let w = Watched::start(options().with_settle(settle));
    let path = w.path("hello");
    let bytes = std::fs::read(plugin("hello")).unwrap();
    let chunks = 6;
    let pause = Duration::from_millis(80); // shorter than settle_ms
    let mut file = std::fs::File::create(&path).unwrap();
    let mut seen_pending = false;
    let mut last_write = Instant::now();
    for (i, chunk) in bytes.chunks(bytes.len().div_ceil(chunks)).enumerate() {
        use std::io::Write as _;
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        last_write = Instant::now();
        let until = Instant::now() + pause;
        while Instant::now() < until {
            seen_pending |= w
                .file(&path)
                .is_some_and(|f| f.status == FileStatus::Pending);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            w.manager.get("hello").is_err(),
            "loaded half-written, after chunk {i}"
        );
        assert!(
            w.events("watch:failed").is_empty(),
            "tried half-written, after chunk {i}: {:?}",
            w.events("watch:failed")
        );
    }
    drop(file);
    wait_for("hello loaded", || {
        seen_pending |= w
            .file(&path)
            .is_some_and(|f| f.status == FileStatus::Pending);
        w.active("hello")
    });
    assert!(
        last_write.elapsed() >= settle,
        "loaded before the file was unchanged for settle_ms"
    );
    assert!(seen_pending, "the status showed the file as pending");
    assert!(w.events("watch:failed").is_empty());
}

#[test]
fn an_identical_rebuild_is_not_a_reload() {
    let w = Watched::start(options());
    let path = w.path("versioned");
    install("versioned", &path);
    wait_for("loaded", || w.active("versioned"));
    let generation = w.manager.get("versioned").unwrap().generation;

    install("versioned", &path);
    wait_for("watch:unchanged", || {
        !w.events("watch:unchanged").is_empty()
    });
    assert_eq!(w.events("watch:unchanged")[0]["plugin"], "versioned");
    assert_eq!(w.manager.get("versioned").unwrap().generation, generation);
    assert!(w.events("watch:reloaded").is_empty());
    assert!(w.events("plugin:reloaded").is_empty());
    assert_eq!(w.file(&path).unwrap().status, FileStatus::Loaded);
}

/// A folder with `hello` and its dependent `greeter` in it.
fn folder_with_greeter() -> tempfile::TempDir {
    let dir = temp_dir();
    copy_plugin("greeter", dir.path());
    copy_plugin("hello", dir.path());
    dir
}

#[test]
fn removing_a_library_with_dependents_is_refused_and_reported() {
    let w = Watched::start_in(folder_with_greeter(), options());
    // `start` loaded what was there, in dependency order.
    assert!(w.active("hello") && w.active("greeter"));
    let hello = w.path("hello");

    std::fs::remove_file(&hello).unwrap();
    wait_for("watch:failed", || !w.events("watch:failed").is_empty());
    let failed = &w.events("watch:failed")[0];
    assert_eq!(failed["code"], ErrorCode::HasDependents.as_str());
    assert_eq!(failed["plugin"], "hello");
    let file = w.file(&hello).unwrap();
    assert_eq!(
        (file.status, file.code.map(ErrorCode::as_str)),
        (FileStatus::Failed, Some("has_dependents"))
    );
    assert!(
        w.active("hello") && w.active("greeter"),
        "both keep running"
    );
    w.manager
        .execute("greeter", &json!({"name": "ada"}))
        .unwrap();
    assert!(w.events("watch:unloaded").is_empty());
}

#[test]
fn removing_a_library_with_dependents_cascades_when_configured() {
    let w = Watched::start_in(
        folder_with_greeter(),
        options().with_cascade_on_remove(true),
    );
    assert!(w.active("hello") && w.active("greeter"));
    let hello = w.path("hello");

    std::fs::remove_file(&hello).unwrap();
    wait_for("watch:unloaded", || !w.events("watch:unloaded").is_empty());
    let unloaded = &w.events("watch:unloaded")[0];
    assert_eq!(unloaded["plugin"], "hello");
    assert_eq!(unloaded["unloaded"], json!(["greeter", "hello"]));
    assert!(w.manager.get("hello").is_err() && w.manager.get("greeter").is_err());
    let greeter = w.file(&w.path("greeter")).unwrap();
    assert_eq!(
        (greeter.status, greeter.code.map(ErrorCode::as_str)),
        (FileStatus::Failed, Some("dependency_not_found")),
        "the dependent's file waits for its dependency"
    );

    // The dependency comes back: the dependent follows.
    install("hello", &hello);
    wait_for("both loaded again", || {
        w.active("hello") && w.active("greeter")
    });
    wait_for("greeter's status", || {
        w.file(&w.path("greeter"))
            .is_some_and(|f| f.status == FileStatus::Loaded)
    });
}

#[test]
fn the_server_watches_its_plugins_folder() {
    let dir = temp_dir();
    let plugins = dir.path().to_string_lossy().into_owned();
    let mut s = Server::start(&["--plugins-dir", &plugins, "--watch"], &[]);
    let (st, status) = s.call("GET", "/api/v1/watch", None);
    assert_eq!((st, &status["files"]), (200, &json!([])));
    assert_eq!(status["dir"], json!(plugins));

    let path = dir.path().join(lib_file("hello"));
    install("hello", &path);
    wait_for("hello in the plugin list", || {
        let (_, list) = s.call("GET", "/api/v1/plugins", None);
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "hello" && p["state"] == "active")
    });
    wait_for("hello in the watch status", || {
        let (_, status) = s.call("GET", "/api/v1/watch", None);
        status["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["plugin"] == "hello" && f["status"] == "loaded")
    });
    let (_, status) = s.call("GET", "/api/v1/watch", None);
    assert_eq!(status["files"][0]["path"], json!(path));
    assert_eq!(status["files"][0]["code"], Value::Null);
    // A clean exit: the watcher stops before the plugins are unloaded.
    s.stop();
}

/// Issue 11 §6 through the watched folder: `hello`'s file is replaced 100 times (alternating two
/// builds that differ in their description, so each is a real reload) while 4 clients call
/// `greeter`, which depends on it, and one calls `hello`: no call fails.
#[test]
fn issue_11_replacing_a_dependency_100_times_fails_no_call() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let w = Watched::start_in(
        folder_with_greeter(),
        options().with_debounce(Duration::from_millis(10)),
    );
    wait_for("both loaded", || w.active("hello") && w.active("greeter"));
    let builds = [std::fs::read(plugin("hello")).unwrap(), {
        let patched = w.dir.path().join(".patched");
        let n = patched_copy(
            &plugin("hello"),
            &patched,
            b"answers greetings",
            b"answers greetingZ",
        );
        assert!(n >= 1, "the description is in the declaration");
        std::fs::read(&patched).unwrap()
    }];
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..5)
        .map(|i| {
            let (m, stop) = (Arc::clone(&w.manager), Arc::clone(&stop));
            std::thread::spawn(move || {
                let plugin = if i < 4 { "greeter" } else { "hello" };
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match m.execute(plugin, &json!({"name": "w"})) {
                        Ok(out) if out["greeting"].as_str().is_some() => ok += 1,
                        Ok(out) => failed.push(format!("{plugin}: unexpected answer {out}")),
                        Err(e) => failed.push(format!("{plugin}: {}: {}", e.code(), e.chain())),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let hello = w.path("hello");
    let mut generation = w.manager.get("hello").unwrap().generation;
    for i in 0..100 {
        install_bytes(&builds[(i + 1) % 2], &hello);
        wait_for("the replacement reloaded", || {
            w.manager
                .get("hello")
                .is_ok_and(|p| p.generation > generation && p.state == PluginState::Active)
        });
        generation = w.manager.get("hello").unwrap().generation;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut total, mut failures) = (0, Vec::new());
    for (i, c) in clients.into_iter().enumerate() {
        let (ok, failed) = c.join().unwrap();
        assert!(ok > 0, "client {i} made no successful call");
        total += ok + failed.len() as u64;
        failures.extend(failed);
    }
    eprintln!(
        "100 replacements through the watched folder: {total} calls, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} calls failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    wait_for("a reload event per replacement", || {
        w.events("watch:reloaded").len() >= 100
    });
    assert_eq!(w.events("watch:reloaded").len(), 100);
}

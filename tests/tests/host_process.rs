//! Issue 11, sections 5 and 7: the host process and its folders. A host killed with SIGKILL
//! leaves shadow copies that the next start removes; one data folder serves one host; a plugin
//! loaded through a relative path survives a restart from another working directory. Checked
//! from outside: the shadow folders in `/dev/shm`, `state.json`, the exit status and message of
//! a second `serve`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use integration::*;
use serde_json::{Value, json};

/// The shadow folders of process `pid` under the default shadow root.
fn shadow_dirs_of(pid: u32) -> Vec<PathBuf> {
    let root = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let prefix = format!("plugin-host-{pid}-");
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

fn files_in(dirs: &[PathBuf]) -> usize {
    dirs.iter()
        .map(|d| std::fs::read_dir(d).map_or(0, |r| r.count()))
        .sum()
}

#[test]
fn issue_11_shadow_copies_of_a_killed_host_are_removed_at_the_next_start() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let mut first = Server::start_with_data(&[], &[], &data, None);
    for p in ["hello", "greeter"] {
        let (st, body) = first.call(
            "POST",
            "/api/v1/plugins",
            Some(json!({"path": plugin(p).to_string_lossy()})),
        );
        assert_eq!(st, 201, "{body}");
    }
    let pid = first.pid();
    let left = shadow_dirs_of(pid);
    assert!(
        !left.is_empty(),
        "the host keeps its shadow copies in a folder of its own"
    );
    assert!(files_in(&left) >= 2, "{left:?}");
    first.kill();
    // SIGKILL: nothing ran, the copies are still there.
    assert!(left.iter().all(|d| d.exists()), "{left:?}");

    // The next start (any data folder) sweeps what dead hosts left ...
    let other = tmp.path().join("other-data");
    let second = Server::start_with_data(&[], &[], &other, None);
    assert!(
        left.iter().all(|d| !d.exists()),
        "a dead host's shadow copies are removed at the next start: {left:?}"
    );
    let lock_of = |d: &PathBuf| PathBuf::from(format!("{}.lock", d.display()));
    assert!(
        left.iter().all(|d| !lock_of(d).exists()),
        "and their lock files"
    );
    // ... and never what a live host holds.
    let live = shadow_dirs_of(second.pid());
    assert!(!live.is_empty());
    let third = Server::start_with_data(&[], &[], &tmp.path().join("third-data"), None);
    assert!(live.iter().all(|d| d.exists()), "{live:?}");
    drop(third);
    drop(second);
}

#[test]
fn issue_11_a_second_serve_on_one_data_folder_refuses_naming_the_holder() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let first = Server::start_with_data(&[], &[], &data, None);
    let (st, _) = first.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("hello").to_string_lossy()})),
    );
    assert_eq!(st, 201);
    let state = data.join("state.json");
    let before = std::fs::read(&state).unwrap();

    let started = Instant::now();
    let out = Command::new(host_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("PLUGIN_HOST_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the second serve must refuse: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.pid())),
        "the message names the holder: {stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it never listened"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Outside: the first host's state is untouched and it still serves.
    assert_eq!(std::fs::read(&state).unwrap(), before);
    assert_eq!(
        first.call("GET", "/api/v1/plugins/hello", None).0,
        200,
        "the first host runs on"
    );

    // Once the holder is gone (even killed), the folder is free again.
    let mut first = first;
    first.kill();
    let again = Server::start_with_data(&[], &[], &data, None);
    assert_eq!(again.call("GET", "/api/v1/plugins/hello", None).0, 200);
}

#[test]
fn issue_11_a_relative_path_survives_a_restart_from_another_directory() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let here = tmp.path().join("here");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let lib = here.join(lib_file("hello"));
    std::fs::copy(plugin("hello"), &lib).unwrap();

    let mut s = Server::start_in(Some(&here), &[], &[], &data, None);
    // The API refuses a relative path: the server's working directory is not the client's.
    let (st, body) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": lib_file("hello")})),
    );
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (400, json!("invalid_path"))
    );
    // The CLI makes it absolute against its own working directory.
    let out = Command::new(host_binary())
        .current_dir(&here)
        .args(["plugins", "load", &format!("./{}", lib_file("hello"))])
        .args(["--addr", &s.addr])
        .env_remove("PLUGIN_HOST_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop();
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("state.json")).unwrap()).unwrap();
    let persisted = PathBuf::from(state["plugins"][0]["path"].as_str().unwrap());
    assert!(persisted.is_absolute(), "{state}");
    assert_eq!(persisted, lib);

    // Restarted from another working directory: the plugin is back.
    let s = Server::start_in(Some(&elsewhere), &[], &[], &data, None);
    let (st, info) = s.call("GET", "/api/v1/plugins/hello", None);
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["state"], "active");
    assert_eq!(info["path"], lib.to_string_lossy().as_ref());
}

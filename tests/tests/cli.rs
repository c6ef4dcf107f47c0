//! Issue 11, section 9: the `plugin-host` command line and small API fixes, through the real
//! binary: a plugin's `--config` beside the client's config file, the bearer scheme in any case,
//! `run --once` failing when a plugin fails, and a connection-refused error that says where it
//! looked and how to point the CLI elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

use integration::*;
use serde_json::json;

#[test]
fn issue_11_plugins_load_takes_the_plugin_config() {
    let s = Server::start(&[], &[]);
    let (ok, out, err) = s.cli(&[
        "plugins",
        "load",
        plugin("configured").to_str().unwrap(),
        "--config",
        r#"{"greeting":"hi","times":2}"#,
    ]);
    assert!(ok, "stdout: {out}\nstderr: {err}");
    // Outside: the server holds the config and the plugin was initialised with it.
    let (st, config) = s.call("GET", "/api/v1/plugins/configured/config", None);
    assert_eq!(st, 200);
    assert_eq!(config, json!({"greeting": "hi", "times": 2}));
    let (_, out) = s.call(
        "POST",
        "/api/v1/plugins/configured/execute",
        Some(json!({})),
    );
    assert_eq!(out["output"]["said"], "hi hi");

    // The client's own config file still works, before the subcommand and as --config-file.
    let dir = temp_dir();
    let file = dir.path().join("client.toml");
    let listen = s.addr.trim_start_matches("http://");
    std::fs::write(&file, format!("listen = \"{listen}\"\n")).unwrap();
    for args in [
        vec!["plugins", "--config", file.to_str().unwrap(), "ls"],
        vec!["plugins", "ls", "--config-file", file.to_str().unwrap()],
    ] {
        let out = Command::new(host_binary())
            .args(&args)
            .env_remove("PLUGIN_HOST_ADDR")
            .env_remove("PLUGIN_HOST_ADMIN_TOKEN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("configured"), "{args:?}: {stdout}");
    }
}

#[test]
fn issue_11_bearer_scheme_is_case_insensitive() {
    let token = "lower-case-scheme-token-0123";
    let s = Server::start(&[], &[("PLUGIN_HOST_ADMIN_TOKEN", token)]);
    let get = |authorization: &str| -> u16 {
        match ureq::get(&format!("{}/api/v1/plugins", s.addr))
            .set("Authorization", authorization)
            .call()
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(st, _)) => st,
            Err(e) => panic!("{e}"),
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        assert_eq!(get(&format!("{scheme} {token}")), 200, "{scheme}");
    }
    assert_eq!(get(&format!("bearer {token}x")), 401);
    assert_eq!(get(&format!("Basic {token}")), 401);
    assert_eq!(get(token), 401);
}

#[test]
fn issue_11_run_once_exits_non_zero_when_a_plugin_failed() {
    let run = |dir: &std::path::Path| {
        Command::new(host_binary())
            .args(["run", "--once", "--init-timeout", "5", "--plugins-dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let good = temp_dir();
    copy_plugin("hello", good.path());
    let out = run(good.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = temp_dir();
    copy_plugin("hello", bad.path());
    copy_plugin("fail-init", bad.path());
    let out = run(bad.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a failed plugin fails the run: {stdout}"
    );
    assert!(stdout.contains("loaded   hello"), "{stdout}");
    assert!(stdout.contains("failed"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 plugin(s) failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A plugin skipped because its dependency is missing fails it too.
    let skipped = temp_dir();
    copy_plugin("greeter", skipped.path());
    let out = run(skipped.path());
    assert!(!out.status.success());
}

#[test]
fn issue_11_connection_refused_says_where_and_how_to_point_the_cli() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let addr = format!("http://127.0.0.1:{port}");
    let out = Command::new(host_binary())
        .args(["plugins", "ls", "--addr", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("from --addr"), "{stderr}");
    assert!(stderr.contains("--addr"), "{stderr}");
    assert!(stderr.contains("PLUGIN_HOST_ADDR"), "{stderr}");

    // Through the environment, it says so.
    let out = Command::new(host_binary())
        .args(["plugins", "ls"])
        .env("PLUGIN_HOST_ADDR", &addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{addr} (from PLUGIN_HOST_ADDR)")),
        "{stderr}"
    );
}

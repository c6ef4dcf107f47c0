//! The loader refuses every kind of bad file with a typed error and leaves the host as it was;
//! `plugin-host inspect` reads a manifest without running the plugin.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

use integration::*;
use plugin_host::ErrorCode;
use serde_json::json;

/// Loads `panicker`, loads `bad` into the same manager, and checks that the refusal has `code`
/// and that `panicker` still answers and is the only plugin loaded.
fn refused_and_nothing_changed(bad: &std::path::Path, code: ErrorCode) -> plugin_host::Error {
    let m = manager();
    m.load(plugin("panicker")).unwrap();
    let before: Vec<String> = m.list().into_iter().map(|p| p.name).collect();
    let shadows_before = shadow_files(&m).len();
    let err = m.load(bad).unwrap_err();
    assert_eq!(err.code(), code, "{}", err.chain());
    let after: Vec<String> = m.list().into_iter().map(|p| p.name).collect();
    assert_eq!(before, after, "the set of plugins is unchanged");
    assert_eq!(
        shadow_files(&m).len(),
        shadows_before,
        "no shadow copy left behind"
    );
    assert_eq!(m.execute("panicker", &json!(1)).unwrap()["echo"], 1);
    err
}

#[test]
fn missing_file_is_refused() {
    let dir = temp_dir();
    let e = refused_and_nothing_changed(&dir.path().join("libnothing.so"), ErrorCode::FileNotFound);
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn text_file_named_like_a_library_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join(lib_file("text"));
    std::fs::write(&path, "this is not a library\n").unwrap();
    let e = refused_and_nothing_changed(&path, ErrorCode::InvalidPlugin);
    assert!(matches!(e, plugin_host::Error::NotALibrary { .. }), "{e}");
}

#[test]
fn library_without_entry_symbol_is_refused() {
    let e = refused_and_nothing_changed(&plugin("no-entry"), ErrorCode::InvalidPlugin);
    assert!(matches!(e, plugin_host::Error::MissingSymbol { .. }), "{e}");
    assert!(e.to_string().contains("PLUGIN_HOST_DECLARATION"), "{e}");
}

#[test]
fn bad_magic_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join(lib_file("badmagic"));
    let n = patched_copy(&plugin("hello"), &path, b"PLGHOST\0", b"XLGHOST\0");
    assert!(n >= 1);
    // With the magic gone the declaration is still found by its symbol, and refused by magic.
    let e = refused_and_nothing_changed(&path, ErrorCode::InvalidPlugin);
    assert!(matches!(e, plugin_host::Error::BadMagic { .. }), "{e}");
}

#[test]
fn other_abi_major_is_refused_with_found_and_accepted() {
    let dir = temp_dir();
    let path = dir.path().join(lib_file("abi2"));
    patched_header(&plugin("hello"), &path, 0, plugin_api::ffi::ABI_MAJOR + 1);
    let e = refused_and_nothing_changed(&path, ErrorCode::IncompatibleAbi);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "ABI {}.{}",
            plugin_api::ffi::ABI_MAJOR + 1,
            plugin_api::ffi::API_MINOR
        )),
        "{msg}"
    );
    assert!(msg.contains("accepts"), "{msg}");
}

#[test]
fn newer_api_minor_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join(lib_file("minor"));
    patched_header(&plugin("hello"), &path, 1, plugin_api::ffi::API_MINOR + 1);
    refused_and_nothing_changed(&path, ErrorCode::IncompatibleAbi);
}

#[test]
fn panic_abort_build_is_refused() {
    let e = refused_and_nothing_changed(&panic_abort_plugin(), ErrorCode::UnsupportedPanicStrategy);
    assert!(e.to_string().contains("abort"), "{e}");
}

#[test]
fn invalid_plugin_name_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join(lib_file("badname"));
    // Same length, so the layout stays valid: only the manifest's name changes.
    let n = patched_copy(
        &plugin("hello"),
        &path,
        br#""name":"hello""#,
        br#""name":"He.lo""#,
    );
    assert_eq!(n, 1);
    let e = refused_and_nothing_changed(&path, ErrorCode::InvalidName);
    assert!(e.to_string().contains("He.lo"), "{e}");
}

#[test]
fn dlopen_failure_prints_the_loader_message() {
    let dir = temp_dir();
    let path = dir.path().join(lib_file("needs-missing"));
    // A valid plugin whose DT_NEEDED names a library that does not exist: it passes every check
    // made without running it, and the dynamic loader refuses it.
    let n = patched_copy(&plugin("hello"), &path, b"libc.so.6\0", b"libq.so.6\0");
    assert!(n >= 1, "hello links libc");
    let e = refused_and_nothing_changed(&path, ErrorCode::InvalidPlugin);
    let chain = e.chain();
    assert!(
        chain.contains("libq.so.6"),
        "the chain carries dlerror's text: {chain}"
    );
}

#[test]
fn loading_twice_is_refused() {
    let m = manager();
    m.load(plugin("hello")).unwrap();
    let e = m.load(plugin("hello")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyLoaded);
}

#[test]
fn inspect_reads_the_manifest_without_running_the_plugin() {
    let info = plugin_host::inspect(&plugin("greeter")).unwrap();
    assert_eq!(info.manifest.name, "greeter");
    assert_eq!(info.manifest.dependencies[0].name, "hello");
    // Inspecting a plugin whose initializers would hang returns at once: nothing ran.
    let hang = plugin_host::inspect(&plugin("hang-init")).unwrap();
    assert_eq!(hang.manifest.name, "hang-init");
    assert!(!mapped(&plugin("hang-init")), "inspect does not dlopen");
}

#[test]
fn inspect_command_prints_json_and_fails_clearly() {
    let out = Command::new(host_binary())
        .args(["inspect"])
        .arg(plugin("greeter"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["manifest"]["name"], "greeter");
    assert_eq!(v["manifest"]["dependencies"][0]["version"], "^1");

    let dir = temp_dir();
    let bad = dir.path().join(lib_file("text"));
    std::fs::write(&bad, "garbage").unwrap();
    let out = Command::new(host_binary())
        .arg("inspect")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loadable plugin library"), "{stderr}");
}

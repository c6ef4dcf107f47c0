//! Directory loads: dependency order whatever the file order, a per-plugin report (loaded /
//! failed with reason / skipped because a dependency failed), duplicates, cycles.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

use integration::*;
use plugin_host::ErrorCode;
use serde_json::json;

fn code_of(report: &plugin_host::DirectoryReport, name: &str) -> &'static str {
    report
        .failed
        .iter()
        .find(|f| f.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in failed: {:?}", report.failed))
        .code
        .as_str()
}

#[test]
fn directory_report_covers_every_outcome() {
    let dir = temp_dir();
    for p in [
        "greeter",
        "hello",
        "fail-init",
        "after-fail-init",
        "cycle-a",
        "cycle-b",
        "self-dep",
    ] {
        copy_plugin(p, dir.path());
    }
    std::fs::write(dir.path().join(lib_file("garbage")), "not a library").unwrap();
    std::fs::write(dir.path().join("README.txt"), "ignored: not a library name").unwrap();

    let m = manager();
    let report = m.load_dir(dir.path()).unwrap();
    assert_eq!(
        report.loaded,
        ["hello", "greeter"],
        "dependency order, whatever the file order"
    );
    assert_eq!(code_of(&report, "fail-init"), "initialize_failed");
    assert_eq!(code_of(&report, "self-dep"), "self_dependency");
    assert_eq!(code_of(&report, "cycle-a"), "circular_dependency");
    assert_eq!(code_of(&report, "cycle-b"), "circular_dependency");
    let cycle = report
        .failed
        .iter()
        .find(|f| f.name.as_deref() == Some("cycle-a"))
        .unwrap();
    assert!(
        cycle.error.contains("cycle-a -> cycle-b -> cycle-a"),
        "{}",
        cycle.error
    );
    let garbage = report.failed.iter().find(|f| f.name.is_none()).unwrap();
    assert_eq!(garbage.code, ErrorCode::InvalidPlugin);
    assert!(garbage.path.ends_with(lib_file("garbage")));
    assert_eq!(report.failed.len(), 5, "{:?}", report.failed);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].name, "after-fail-init");
    assert_eq!(report.skipped[0].because, "fail-init");
    // What loaded works, including the dependency call.
    assert_eq!(
        m.execute("greeter", &json!({"name": "d"})).unwrap()["greeting"],
        "hello, d!"
    );
    let names: Vec<String> = m.list().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["hello", "greeter"]);
}

#[test]
fn two_files_with_one_name_are_both_refused_and_named() {
    let dir = temp_dir();
    copy_plugin("hello", dir.path());
    std::fs::copy(plugin("hello"), dir.path().join(lib_file("hello-copy"))).unwrap();
    copy_plugin("greeter", dir.path());
    let m = manager();
    let report = m.load_dir(dir.path()).unwrap();
    assert!(report.loaded.is_empty());
    let dups: Vec<_> = report
        .failed
        .iter()
        .filter(|f| f.code == ErrorCode::DuplicatePlugin)
        .collect();
    assert_eq!(dups.len(), 2);
    assert!(
        dups[0].error.contains(&lib_file("hello"))
            && dups[0].error.contains(&lib_file("hello-copy"))
    );
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].because, "hello");
    assert!(m.list().is_empty());
}

#[test]
fn plugins_already_loaded_satisfy_dependencies() {
    let dir = temp_dir();
    copy_plugin("greeter", dir.path());
    let m = manager();
    m.load(plugin("hello")).unwrap();
    let report = m.load_dir(dir.path()).unwrap();
    assert_eq!(report.loaded, ["greeter"]);
    // Loading the same folder again: everything is already loaded, nothing changes.
    let again = m.load_dir(dir.path()).unwrap();
    assert!(again.loaded.is_empty());
    assert_eq!(again.failed[0].code, ErrorCode::AlreadyLoaded);
}

#[test]
fn missing_directory_is_a_bad_request() {
    let m = manager();
    let e = m.load_dir("/nonexistent/plugins").unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadRequest);
}

#[test]
fn run_command_prints_the_report() {
    let dir = temp_dir();
    copy_plugin("hello", dir.path());
    copy_plugin("greeter", dir.path());
    copy_plugin("fail-init", dir.path());
    let out = Command::new(host_binary())
        .args(["run", "--once", "--json", "--plugins-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    // The report is printed, and a plugin that failed makes the run fail (issue 11).
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["loaded"], json!(["hello", "greeter"]));
    assert_eq!(report["failed"][0]["code"], "initialize_failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hello is ready"),
        "plugin logs carry through: {stderr}"
    );
}

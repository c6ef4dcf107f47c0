//! The buckets repository through a real plugin, on both backends: the folder (embedded
//! default) and S3 (a real S3-protocol server over TCP: s3s-fs in this process, or the endpoint
//! named by `PLUGIN_HOST_TEST_S3_ENDPOINT`; see `support/s3.rs`). The same tests run on each: the
//! typed API end to end, denials, every key escape we know of (each refused, nothing stored
//! outside the bucket), overrides, two plugins with the same bucket name. Then what is each
//! backend's own: planted symbolic links and presigned links served by a real
//! `plugin-host serve` (folder); S3's presigned links, key length, start-up checks and the
//! server configured by environment (S3).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration::*;
use plugin_host::{
    BucketsConfig, ManagerConfig, Overrides, PluginManager, PluginSettings, S3Credentials,
};
use serde_json::{Value, json};

const PUBLIC_URL: &str = "http://files.example:9000";

/// A buckets backend under test, with a way to see what it stored behind the host's back.
trait Store {
    fn manager(&self) -> &PluginManager;
    /// The bytes stored for the object path `<plugin>/<bucket>/<key>`, read from the backend
    /// directly.
    fn stored(&self, path: &str) -> Option<Vec<u8>>;
    /// Every stored object path (`<plugin>/<bucket>/<key>`).
    fn objects(&self) -> BTreeSet<String>;
}

/// A manager on a folder backend in a fresh folder (`<tmp>/buckets`); the folder is kept for
/// inspection if the test fails.
struct Folder {
    manager: PluginManager,
    /// The temporary folder holding `buckets/` (and anything a test plants beside it).
    tmp: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        let tmp = temp_dir();
        let manager = PluginManager::new(ManagerConfig::default().with_buckets(
            BucketsConfig::Folder {
                dir: tmp.path().join("buckets"),
                public_url: Some(PUBLIC_URL.into()),
            },
        ))
        .unwrap();
        Self { manager, tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("buckets")
    }
}

impl Store for Folder {
    fn manager(&self) -> &PluginManager {
        &self.manager
    }

    fn stored(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir().join(path)).ok()
    }

    fn objects(&self) -> BTreeSet<String> {
        // Folders and the backend's own files (staging, content types, presign key: all
        // named `.*`, which no plugin name is) are not objects.
        let dir = self.dir();
        tree(&dir)
            .into_iter()
            .filter(|p| dir.join(p).is_file() && !p.to_string_lossy().starts_with('.'))
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }
}

/// A manager on the S3 backend, under a fresh key prefix of the tests' bucket.
struct S3 {
    manager: PluginManager,
    prefix: String,
    raw: S3Raw,
}

impl S3 {
    fn new(tag: &str) -> Self {
        let prefix = s3_prefix(tag);
        let manager = PluginManager::new(
            ManagerConfig::default().with_buckets(BucketsConfig::S3(s3_config(&prefix))),
        )
        .unwrap();
        Self {
            manager,
            prefix,
            raw: S3Raw::new(),
        }
    }
}

impl Store for S3 {
    fn manager(&self) -> &PluginManager {
        &self.manager
    }

    fn stored(&self, path: &str) -> Option<Vec<u8>> {
        self.raw.get(&format!("{}{path}", self.prefix))
    }

    fn objects(&self) -> BTreeSet<String> {
        self.raw
            .keys(&self.prefix)
            .into_iter()
            .map(|k| k[self.prefix.len()..].to_owned())
            .collect()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = std::mem::replace(&mut self.tmp, temp_dir()).keep();
            eprintln!("kept the buckets folder {} for inspection", kept.display());
        }
    }
}

fn call(m: &PluginManager, plugin: &str, input: Value) -> Result<Value, plugin_host::Error> {
    m.execute(plugin, &input)
}

/// The code the host gave the plugin, which the plugin returned from `execute`.
fn plugin_code(e: &plugin_host::Error) -> String {
    assert_eq!(e.code().as_str(), "plugin_failed", "{e}");
    e.details()["plugin_code"].as_str().unwrap().to_owned()
}

fn put(m: &PluginManager, plugin: &str, bucket: &str, key: &str, text: &str) -> Value {
    call(
        m,
        plugin,
        json!({"op": "put", "bucket": bucket, "key": key, "text": text, "content_type": "text/plain"}),
    )
    .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e}"))
}

fn get(m: &PluginManager, plugin: &str, bucket: &str, key: &str) -> Value {
    call(
        m,
        plugin,
        json!({"op": "get", "bucket": bucket, "key": key}),
    )
    .unwrap()
}

/// Every file and link under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.insert(path.strip_prefix(root).unwrap().to_owned());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// A copy of `buckets-demo` renamed `name` (at most 12 characters): the manifest JSON is
/// rewritten in place and padded with spaces, which JSON allows, so the declaration keeps its
/// length.
fn renamed_demo(name: &str, dir: &Path) -> PathBuf {
    rewritten_plugin("buckets-demo", dir, name, |m| m["name"] = json!(name))
}

fn typed_api_round_trips(store: &dyn Store) {
    let m = store.manager();
    let info = m.load(plugin("buckets-demo")).unwrap();
    assert!(
        info.physical.buckets["files"].ends_with("/buckets-demo/files/"),
        "{:?}",
        info.physical
    );

    put(m, "buckets-demo", "files", "docs/readme.txt", "hello");
    let got = get(m, "buckets-demo", "files", "docs/readme.txt");
    assert_eq!(
        (&got["found"], &got["text"], &got["content_type"]),
        (&json!(true), &json!("hello"), &json!("text/plain")),
        "{got}"
    );
    assert_eq!(
        store
            .stored("buckets-demo/files/docs/readme.txt")
            .as_deref(),
        Some(&b"hello"[..]),
        "stored at <plugin>/<bucket>/<key>"
    );

    // Binary bytes, no content type.
    let bytes: Vec<u8> = (0..=255).collect();
    call(
        m,
        "buckets-demo",
        json!({"op": "put", "key": "bin/all-bytes", "bytes": bytes}),
    )
    .unwrap();
    let got = get(m, "buckets-demo", "files", "bin/all-bytes");
    assert_eq!(got["bytes"], json!(bytes));
    assert_eq!(got["content_type"], "application/octet-stream");

    // Replacing an object replaces its content type too.
    put(m, "buckets-demo", "files", "docs/readme.txt", "hello again");
    call(
        m,
        "buckets-demo",
        json!({"op": "put", "key": "docs/readme.txt", "text": "<p>hi</p>", "content_type": "text/html"}),
    )
    .unwrap();
    let got = get(m, "buckets-demo", "files", "docs/readme.txt");
    assert_eq!(
        (&got["text"], &got["content_type"]),
        (&json!("<p>hi</p>"), &json!("text/html"))
    );

    // exists
    let exists = |key: &str| {
        call(m, "buckets-demo", json!({"op": "exists", "key": key})).unwrap()["exists"].clone()
    };
    assert_eq!(exists("docs/readme.txt"), true);
    assert_eq!(exists("nothing"), false);
    assert_eq!(get(m, "buckets-demo", "files", "nothing")["found"], false);

    // list: sorted, relative to the bucket, with prefix and pages.
    for i in 0..7 {
        put(m, "buckets-demo", "files", &format!("page/{i:02}"), "x");
    }
    let list = |prefix: &str, token: Option<&str>, limit: u64| {
        call(
            m,
            "buckets-demo",
            json!({"op": "list", "prefix": prefix, "page_token": token, "limit": limit}),
        )
        .unwrap()
    };
    let all = list("", None, 100);
    assert_eq!(
        all["keys"],
        json!([
            "bin/all-bytes",
            "docs/readme.txt",
            "page/00",
            "page/01",
            "page/02",
            "page/03",
            "page/04",
            "page/05",
            "page/06"
        ])
    );
    assert_eq!(all["next_page_token"], Value::Null);
    assert_eq!(list("docs/", None, 100)["keys"], json!(["docs/readme.txt"]));
    assert_eq!(list("do", None, 100)["keys"], json!(["docs/readme.txt"]));
    assert_eq!(
        list("page/0", None, 100)["keys"].as_array().unwrap().len(),
        7
    );
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = list("page/", token.as_deref(), 3);
        pages += 1;
        seen.extend(page["keys"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (0..7)
            .map(|i| json!(format!("page/{i:02}")))
            .collect::<Vec<_>>()
    );

    // delete
    let delete = |key: &str| {
        call(m, "buckets-demo", json!({"op": "delete", "key": key})).unwrap()["deleted"].clone()
    };
    assert_eq!(delete("docs/readme.txt"), true);
    assert_eq!(delete("docs/readme.txt"), false);
    assert_eq!(
        get(m, "buckets-demo", "files", "docs/readme.txt")["found"],
        false
    );
    assert_eq!(list("docs/", None, 100)["keys"], json!([]));
    assert_eq!(store.stored("buckets-demo/files/docs/readme.txt"), None);
    assert_eq!(m.get("buckets-demo").unwrap().stats.buckets_denied, 0);
}

#[test]
fn typed_api_round_trips_on_a_folder() {
    let f = Folder::new();
    typed_api_round_trips(&f);
    // (Not asked of s3s-fs, which keeps objects as files too and answers such a HEAD with a
    // 500: the folder `docs` is a directory on its disk.)
    put(&f.manager, "buckets-demo", "files", "docs/readme.txt", "x");
    assert_eq!(
        call(
            &f.manager,
            "buckets-demo",
            json!({"op": "exists", "key": "docs"})
        )
        .unwrap()["exists"],
        false,
        "a folder of keys is not an object"
    );
    assert!(
        f.dir().join("buckets-demo/files/page/00").is_file(),
        "stored as a plain file at <dir>/<plugin>/<bucket>/<key>"
    );
    call(
        &f.manager,
        "buckets-demo",
        json!({"op": "delete", "key": "docs/readme.txt"}),
    )
    .unwrap();
    assert!(
        !f.dir().join("buckets-demo/files/docs").exists(),
        "empty folders are pruned"
    );
}

#[test]
fn typed_api_round_trips_on_s3() {
    typed_api_round_trips(&S3::new("api"));
}

fn an_undeclared_bucket_is_denied_and_nothing_is_stored(store: &dyn Store) {
    let m = store.manager();
    m.load(plugin("buckets-demo")).unwrap();
    put(m, "buckets-demo", "files", "a", "x");
    let before = store.objects();
    for op in ["put", "get", "delete", "exists", "list", "presign"] {
        let e = call(
            m,
            "buckets-demo",
            json!({"op": op, "bucket": "secrets", "key": "a", "text": "x"}),
        )
        .unwrap_err();
        assert_eq!(plugin_code(&e), "bucket_access_denied", "{op}");
    }
    assert_eq!(store.objects(), before, "nothing stored or removed");
    assert_eq!(store.stored("buckets-demo/secrets/a"), None);
    assert_eq!(m.get("buckets-demo").unwrap().stats.buckets_denied, 6);
}

#[test]
fn an_undeclared_bucket_is_denied_on_a_folder() {
    let f = Folder::new();
    an_undeclared_bucket_is_denied_and_nothing_is_stored(&f);
    assert!(!f.dir().join("buckets-demo/secrets").exists());
}

#[test]
fn an_undeclared_bucket_is_denied_on_s3() {
    an_undeclared_bucket_is_denied_and_nothing_is_stored(&S3::new("deny"));
}

/// Every key escape we know of, through every keyed operation: each refused with
/// `invalid_key` before the backend sees it.
fn keys_never_escape_their_bucket(store: &dyn Store) {
    let m = store.manager();
    let long = "k".repeat(1025);
    let attacks = [
        "../x",
        "../../x",
        "/etc/passwd",
        "/tmp/escape",
        "a/../../b",
        "a/../../../x",
        "..",
        ".",
        "./seed",
        "a/./b",
        "a\0b",
        "\0",
        "seed\0.txt",
        "a\\..\\..\\x",
        "..\\x",
        "a//b",
        "//etc/passwd",
        "a/",
        "",
        "new\nline",
        long.as_str(),
    ];
    for key in attacks {
        for op in ["put", "get", "delete", "exists", "presign"] {
            let e = call(
                m,
                "buckets-demo",
                json!({"op": op, "key": key, "text": "pwned"}),
            )
            .unwrap_err();
            assert_eq!(plugin_code(&e), "invalid_key", "{op} {key:?}");
        }
    }
    for prefix in ["../", "/etc/", "a/../../", "a//"] {
        let e = call(m, "buckets-demo", json!({"op": "list", "prefix": prefix})).unwrap_err();
        assert_eq!(plugin_code(&e), "invalid_key", "list {prefix:?}");
    }
    assert_eq!(
        call(m, "buckets-demo", json!({"op": "list"})).unwrap()["keys"],
        json!(["seed"])
    );
}

#[test]
fn keys_never_escape_a_folder() {
    let f = Folder::new();
    let m = &f.manager;
    m.load(plugin("buckets-demo")).unwrap();
    put(m, "buckets-demo", "files", "seed", "x");
    // Canaries where an escape would land.
    std::fs::write(f.tmp.path().join("x"), b"canary").unwrap();
    std::fs::write(f.dir().join("buckets-demo/b"), b"canary").unwrap();
    let before = tree(f.tmp.path());
    keys_never_escape_their_bucket(&f);
    assert_eq!(tree(f.tmp.path()), before, "nothing was written anywhere");
    assert_eq!(std::fs::read(f.tmp.path().join("x")).unwrap(), b"canary");
}

#[test]
fn keys_never_escape_on_s3() {
    let s = S3::new("escape");
    let m = &s.manager;
    m.load(plugin("buckets-demo")).unwrap();
    put(m, "buckets-demo", "files", "seed", "x");
    keys_never_escape_their_bucket(&s);
    assert_eq!(
        s.objects(),
        BTreeSet::from(["buckets-demo/files/seed".to_owned()]),
        "nothing else stored under the test's prefix"
    );
    // Nothing landed outside any test's prefix either (tests share the bucket, each under
    // its own `t-` prefix; an external bucket may hold other data, so only ours is checked).
    if s3_target().in_process {
        let stray: Vec<String> = s
            .raw
            .keys("")
            .into_iter()
            .filter(|k| !k.starts_with("t-"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }
    // A key within the key rules whose full S3 key (prefix, plugin, bucket, key) would pass
    // S3's 1024-byte limit: refused by the host, not by the store.
    let key = "k".repeat(1024 - "buckets-demo/files/".len());
    for op in ["put", "get", "exists", "delete", "presign"] {
        let e = call(
            m,
            "buckets-demo",
            json!({"op": op, "key": key, "text": "x"}),
        )
        .unwrap_err();
        assert_eq!(plugin_code(&e), "invalid_key", "{op}");
    }
}

#[cfg(unix)]
#[test]
fn planted_symlinks_are_never_followed() {
    let f = Folder::new();
    let m = &f.manager;
    m.load(plugin("buckets-demo")).unwrap();
    put(m, "buckets-demo", "files", "seed", "x");
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = outside.join("target.txt");
    std::fs::write(&target, b"untouched").unwrap();
    let bucket = f.dir().join("buckets-demo/files");
    std::os::unix::fs::symlink(&target, bucket.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, bucket.join("evil")).unwrap();
    std::fs::create_dir(bucket.join("deep")).unwrap();
    std::os::unix::fs::symlink("../../../../outside", bucket.join("deep/rel")).unwrap();
    let before = tree(f.tmp.path());

    for key in [
        "link.txt",
        "evil/target.txt",
        "evil/new.txt",
        "deep/rel/target.txt",
        "deep/rel/new.txt",
    ] {
        // Write through it: refused.
        let e = call(
            m,
            "buckets-demo",
            json!({"op": "put", "key": key, "text": "pwned"}),
        )
        .unwrap_err();
        assert_eq!(plugin_code(&e), "invalid_key", "put {key}");
        // Read through it: refused, not "not found" and not the target's bytes.
        for op in ["get", "exists", "delete"] {
            let e = call(m, "buckets-demo", json!({"op": op, "key": key})).unwrap_err();
            assert_eq!(plugin_code(&e), "invalid_key", "{op} {key}");
        }
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
    assert_eq!(tree(f.tmp.path()), before, "nothing written or removed");
    // Listing neither follows nor shows links.
    assert_eq!(
        call(m, "buckets-demo", json!({"op": "list"})).unwrap()["keys"],
        json!(["seed"])
    );
    assert_eq!(
        call(m, "buckets-demo", json!({"op": "list", "prefix": "evil/"})).unwrap()["keys"],
        json!([])
    );
}

fn overrides_map_and_replace_buckets(store: &dyn Store) {
    let m = store.manager();
    m.load(plugin("buckets-demo")).unwrap();
    put(m, "buckets-demo", "files", "a", "original");

    // `files` now lives where the logical bucket `archive` would.
    let o: Overrides = serde_json::from_value(json!({"bucket_map": {"files": "archive"}})).unwrap();
    m.set_settings("buckets-demo", Some(PluginSettings::new(None, Some(o))))
        .unwrap();
    let info = m.get("buckets-demo").unwrap();
    assert!(
        info.physical.buckets["files"].ends_with("/buckets-demo/archive/"),
        "{:?}",
        info.physical
    );
    assert_eq!(
        get(m, "buckets-demo", "files", "a")["found"],
        false,
        "a new location"
    );
    put(m, "buckets-demo", "files", "b", "mapped");
    assert_eq!(
        store.stored("buckets-demo/archive/b").as_deref(),
        Some(&b"mapped"[..])
    );
    assert_eq!(
        store.stored("buckets-demo/files/a").as_deref(),
        Some(&b"original"[..]),
        "the old data stays"
    );

    // The allowed list replaced: `media` instead of `files`.
    let o: Overrides = serde_json::from_value(json!({"buckets": ["media"]})).unwrap();
    m.set_settings("buckets-demo", Some(PluginSettings::new(None, Some(o))))
        .unwrap();
    let e = call(
        m,
        "buckets-demo",
        json!({"op": "get", "bucket": "files", "key": "a"}),
    )
    .unwrap_err();
    assert_eq!(plugin_code(&e), "bucket_access_denied");
    put(m, "buckets-demo", "media", "c", "media");
    assert_eq!(
        store.stored("buckets-demo/media/c").as_deref(),
        Some(&b"media"[..])
    );
    assert_eq!(m.get("buckets-demo").unwrap().stats.buckets_denied, 1);
}

#[test]
fn overrides_map_and_replace_buckets_on_a_folder() {
    overrides_map_and_replace_buckets(&Folder::new());
}

#[test]
fn overrides_map_and_replace_buckets_on_s3() {
    overrides_map_and_replace_buckets(&S3::new("overrides"));
}

fn two_plugins_with_the_same_bucket_name_are_kept_apart(store: &dyn Store) {
    let m = store.manager();
    let libs = temp_dir();
    m.load(plugin("buckets-demo")).unwrap();
    m.load(renamed_demo("buckets-copy", libs.path())).unwrap();
    put(m, "buckets-demo", "files", "same/key", "demo's");
    put(m, "buckets-copy", "files", "same/key", "copy's");
    put(m, "buckets-demo", "files", "only-demo", "x");
    assert_eq!(
        get(m, "buckets-demo", "files", "same/key")["text"],
        "demo's"
    );
    assert_eq!(
        get(m, "buckets-copy", "files", "same/key")["text"],
        "copy's"
    );
    assert_eq!(get(m, "buckets-copy", "files", "only-demo")["found"], false);
    assert_eq!(
        call(m, "buckets-copy", json!({"op": "list"})).unwrap()["keys"],
        json!(["same/key"])
    );
    assert_eq!(
        call(
            m,
            "buckets-copy",
            json!({"op": "delete", "key": "only-demo"})
        )
        .unwrap()["deleted"],
        false
    );
    assert_eq!(get(m, "buckets-demo", "files", "only-demo")["found"], true);
    assert_eq!(
        store.objects(),
        BTreeSet::from(
            [
                "buckets-copy/files/same/key",
                "buckets-demo/files/only-demo",
                "buckets-demo/files/same/key"
            ]
            .map(str::to_owned)
        )
    );
}

#[test]
fn two_plugins_are_kept_apart_on_a_folder() {
    two_plugins_with_the_same_bucket_name_are_kept_apart(&Folder::new());
}

#[test]
fn two_plugins_are_kept_apart_on_s3() {
    two_plugins_with_the_same_bucket_name_are_kept_apart(&S3::new("apart"));
}

#[test]
fn without_a_backend_calls_fail_with_backend_unavailable() {
    let m = manager();
    m.load(plugin("buckets-demo")).unwrap();
    let e = call(
        &m,
        "buckets-demo",
        json!({"op": "put", "key": "a", "text": "x"}),
    )
    .unwrap_err();
    assert_eq!(plugin_code(&e), "backend_unavailable");
}

#[test]
fn presigned_links_in_process() {
    let f = Folder::new();
    let m = &f.manager;
    m.load(plugin("buckets-demo")).unwrap();
    put(m, "buckets-demo", "files", "report.txt", "numbers");
    let url = call(
        m,
        "buckets-demo",
        json!({"op": "presign", "key": "report.txt", "expires_secs": 600}),
    )
    .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = url
        .strip_prefix(&format!("{PUBLIC_URL}/presigned/"))
        .unwrap_or_else(|| panic!("{url} is not under the public URL"));
    let (content_type, bytes) = m.presigned_get(token).unwrap();
    assert_eq!(
        (content_type.as_str(), bytes.as_slice()),
        ("text/plain", &b"numbers"[..])
    );
    for secs in [0, 7 * 24 * 3600 + 1] {
        let e = call(
            m,
            "buckets-demo",
            json!({"op": "presign", "key": "report.txt", "expires_secs": secs}),
        )
        .unwrap_err();
        assert_eq!(plugin_code(&e), "bad_request", "{secs}");
    }
    call(
        m,
        "buckets-demo",
        json!({"op": "presign", "key": "report.txt", "expires_secs": 7 * 24 * 3600}),
    )
    .unwrap();
    let e = m.presigned_get("v1.bogus.token").unwrap_err();
    assert_eq!(e.code().as_str(), "presigned_url_invalid");
}

/// GET `<server>/presigned/<token>` with no credential: (status, content type, body).
fn fetch(s: &Server, token: &str) -> (u16, String, Vec<u8>) {
    fetch_url(&format!("{}/presigned/{token}", s.addr))
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn presigned_links_are_served_by_the_server() {
    let admin = "buckets-test-admin-token-0123456789";
    let s = Server::start(&[], &[("PLUGIN_HOST_ADMIN_TOKEN", admin)]);
    let (st, p) = s.call_with(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("buckets-demo").to_string_lossy()})),
        Some(admin),
    );
    assert_eq!(st, 201, "{p}");
    let execute = |input: Value| {
        s.call_with(
            "POST",
            "/api/v1/plugins/buckets-demo/execute",
            Some(input),
            Some(admin),
        )
    };
    let (st, out) = execute(
        json!({"op": "put", "key": "site/index.html", "text": "<h1>hi</h1>", "content_type": "text/html"}),
    );
    assert_eq!(st, 200, "{out}");
    let presign = |secs: u64| {
        let (st, out) =
            execute(json!({"op": "presign", "key": "site/index.html", "expires_secs": secs}));
        assert_eq!(st, 200, "{out}");
        let url = out["output"]["url"].as_str().unwrap().to_owned();
        // The server's public URL is `http://<listen>`; the test listens on port 0, so take the
        // token and ask the real address.
        let (base, token) = url.split_once("/presigned/").unwrap();
        assert!(base.starts_with("http://127.0.0.1:"), "{url}");
        token.to_owned()
    };
    let token = presign(600);

    // No bearer token: the link is the credential.
    let (st, content_type, body) = fetch(&s, &token);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "text/html");
    assert_eq!(body, b"<h1>hi</h1>");

    // Tampered: another key in the claim, or one character changed anywhere.
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let (st, _, body) = fetch(&s, &String::from_utf8(tampered).unwrap());
    assert_eq!(
        (st, error_code(&body)),
        (403, "presigned_url_invalid".into())
    );
    let (st, _, body) = fetch(&s, "not-a-token");
    assert_eq!(
        (st, error_code(&body)),
        (403, "presigned_url_invalid".into())
    );

    // Expired: a 1-second link, after 2 seconds.
    let short = presign(1);
    std::thread::sleep(Duration::from_millis(2100));
    let (st, _, body) = fetch(&s, &short);
    assert_eq!(
        (st, error_code(&body)),
        (403, "presigned_url_invalid".into())
    );

    // A valid link to an object deleted since.
    let (st, _) = execute(json!({"op": "delete", "key": "site/index.html"}));
    assert_eq!(st, 200);
    let (st, _, body) = fetch(&s, &token);
    assert_eq!((st, error_code(&body)), (404, "not_found".into()));

    // A denial shows in the metrics.
    let (st, _) = execute(json!({"op": "get", "bucket": "secrets", "key": "a"}));
    assert_eq!(st, 422);
    let metrics = ureq::get(&format!("{}/metrics", s.addr))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains(
            r#"plugin_host_resource_denials_total{plugin="buckets-demo",kind="bucket"} 1"#
        ),
        "{metrics}"
    );
}

#[test]
fn presigned_links_survive_a_restart() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let token = {
        let mut s = Server::start_with_data(&[], &[], &data, None);
        let (st, p) = s.call(
            "POST",
            "/api/v1/plugins",
            Some(json!({"path": plugin("buckets-demo").to_string_lossy()})),
        );
        assert_eq!(st, 201, "{p}");
        let (_, out) = s.call(
            "POST",
            "/api/v1/plugins/buckets-demo/execute",
            Some(json!({"op": "put", "key": "k", "text": "kept"})),
        );
        assert!(out["output"].is_object(), "{out}");
        let (_, out) = s.call(
            "POST",
            "/api/v1/plugins/buckets-demo/execute",
            Some(json!({"op": "presign", "key": "k", "expires_secs": 600})),
        );
        let url = out["output"]["url"].as_str().unwrap().to_owned();
        s.stop();
        url.split_once("/presigned/").unwrap().1.to_owned()
    };
    let s = Server::start_with_data(&[], &[], &data, None);
    let (st, _, body) = fetch(&s, &token);
    assert_eq!((st, body.as_slice()), (200, &b"kept"[..]));
}

/// GET a URL with no credential: (status, content type, body).
fn fetch_url(url: &str) -> (u16, String, Vec<u8>) {
    let resp = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = resp.status();
    let content_type = resp.header("content-type").unwrap_or_default().to_owned();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    (status, content_type, body)
}

#[test]
fn s3_presigned_links_are_signed_by_s3_and_checked_by_the_store() {
    let s = S3::new("presign");
    let m = &s.manager;
    m.load(plugin("buckets-demo")).unwrap();
    put(m, "buckets-demo", "files", "report.txt", "numbers");
    let presign = |secs: u64| {
        call(
            m,
            "buckets-demo",
            json!({"op": "presign", "key": "report.txt", "expires_secs": secs}),
        )
        .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let url = presign(600);
    let target = s3_target();
    assert!(
        url.starts_with(&format!(
            "{}/{}/{}",
            target.endpoint, target.bucket, s.prefix
        )),
        "points at the object in the store: {url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(
        !url.contains(&target.credentials.secret_access_key),
        "the secret never appears in a link"
    );
    // The store serves it with no other credential.
    let (st, content_type, body) = fetch_url(&url);
    assert_eq!(
        (st, content_type.as_str(), body.as_slice()),
        (200, "text/plain", &b"numbers"[..])
    );
    // Tampered (another object, same signature): refused by the store.
    let (st, _, _) = fetch_url(&url.replace("report.txt", "other.txt"));
    assert_eq!(st, 403);
    // Expired: a 1-second link, after 2 seconds.
    let short = presign(1);
    std::thread::sleep(Duration::from_millis(2100));
    let (st, _, _) = fetch_url(&short);
    assert_eq!(st, 403);
    // Bounds and access are the host's, as on every backend.
    for secs in [0, 7 * 24 * 3600 + 1] {
        let e = call(
            m,
            "buckets-demo",
            json!({"op": "presign", "key": "report.txt", "expires_secs": secs}),
        )
        .unwrap_err();
        assert_eq!(plugin_code(&e), "bad_request", "{secs}");
    }
    presign(7 * 24 * 3600);
    // The host's own `/presigned/` route serves folder links only.
    let e = m.presigned_get("v1.anything").unwrap_err();
    assert_eq!(e.code().as_str(), "presigned_url_invalid");
}

#[test]
fn s3_start_up_checks_the_bucket_and_the_credentials() {
    let t = s3_target();
    let prefix = s3_prefix("startup");
    let new = |config: plugin_host::S3Config| {
        PluginManager::new(ManagerConfig::default().with_buckets(BucketsConfig::S3(config)))
    };
    let config = || s3_config(&prefix);

    // A bucket that does not exist: a configuration error naming the fix.
    let missing = format!("pht-missing-{}", std::process::id());
    let mut c = config();
    c.bucket = missing.clone();
    let e = new(c.clone()).unwrap_err();
    assert_eq!(e.code().as_str(), "invalid_config", "{e}");
    assert!(e.to_string().contains("create_bucket"), "{e}");
    // ... unless the host may create it.
    if t.in_process {
        let m = new(c.with_create_bucket(true)).unwrap();
        m.load(plugin("buckets-demo")).unwrap();
        put(&m, "buckets-demo", "files", "k", "in a new bucket");
        let created = S3Raw {
            client: raw_client(t),
            bucket: missing.clone(),
        };
        assert_eq!(
            created.get(&format!("{prefix}buckets-demo/files/k")),
            Some(b"in a new bucket".to_vec())
        );
        // A host that may create its bucket starts on one that exists.
        new(config().with_create_bucket(true)).unwrap();
    }

    // Wrong credentials: refused by the store, reported as unavailable, secret not echoed.
    let mut c = config();
    c.credentials = S3Credentials::new(&t.credentials.access_key_id, "wrong-secret-value");
    let e = new(c).unwrap_err();
    assert_eq!(e.code().as_str(), "backend_unavailable", "{e}");
    assert!(!e.to_string().contains("wrong-secret-value"), "{e}");

    // Nothing listening: unavailable, quickly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut c = config();
    c.endpoint = Some(format!("http://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let e = new(c).unwrap_err();
    assert_eq!(e.code().as_str(), "backend_unavailable", "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Settings S3 or the host would refuse: before any request.
    for (bucket, prefix, key) in [
        ("Bad_Bucket", "", "backends.buckets.bucket"),
        ("192.168.0.1", "", "backends.buckets.bucket"),
        ("ok-bucket", "no-slash", "backends.buckets.prefix"),
        ("ok-bucket", "../", "backends.buckets.prefix"),
    ] {
        let mut c = config().with_prefix(prefix);
        c.bucket = bucket.into();
        let e = new(c).unwrap_err();
        assert!(
            matches!(e, plugin_host::Error::InvalidConfig { key: ref k, .. } if k == key),
            "{bucket} {prefix}: {e}"
        );
    }
}

#[test]
fn serve_on_s3_configured_by_environment() {
    let t = s3_target();
    let prefix = s3_prefix("serve");
    let path_style = "true";
    let s = Server::start(
        &[],
        &[
            ("PLUGIN_HOST_BUCKETS_BACKEND", "s3"),
            ("PLUGIN_HOST_BUCKETS_ENDPOINT", &t.endpoint),
            ("PLUGIN_HOST_BUCKETS_BUCKET", &t.bucket),
            ("PLUGIN_HOST_BUCKETS_REGION", &t.region),
            ("PLUGIN_HOST_BUCKETS_PREFIX", &prefix),
            ("PLUGIN_HOST_BUCKETS_PATH_STYLE", path_style),
            ("AWS_ACCESS_KEY_ID", &t.credentials.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &t.credentials.secret_access_key),
        ],
    );
    let (st, p) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("buckets-demo").to_string_lossy()})),
    );
    assert_eq!(st, 201, "{p}");
    assert!(
        p["physical"]["buckets"]["files"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}/{prefix}buckets-demo/files/", t.bucket)),
        "{p}"
    );
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/buckets-demo/execute",
        Some(json!({"op": "put", "key": "via/serve", "text": "served"})),
    );
    assert_eq!(st, 200, "{out}");
    assert_eq!(
        S3Raw::new().get(&format!("{prefix}buckets-demo/files/via/serve")),
        Some(b"served".to_vec())
    );
    let (st, health) = s.call("GET", "/health", None);
    assert_eq!(
        (st, &health["backends"]["buckets"]),
        (200, &json!("ok")),
        "{health}"
    );
}

//! Support for the end-to-end tests: builds the real plugins from `plugins/*` once per test
//! binary, finds their artifacts, makes private copies, and checks mappings independently of the
//! host (through `/proc/self/maps`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    reason = "test support: a failure here is a test failure"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use plugin_host::{ManagerConfig, PluginManager};

pub mod figures;
mod s3;
pub use s3::{S3Raw, S3Target, raw_client, s3_config, s3_prefix, s3_runtime, s3_target};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// `release` for benches run by `cargo bench` (built with optimisations), `debug` for tests and
/// for the benches' smoke run under `cargo test`.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(args)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo {args:?} failed");
}

/// Builds every plugin crate of the workspace (and the host binary) once per process.
///
/// It builds the whole workspace with all features, as `scripts/test.sh` and `.ci/run` do, so
/// that cargo unifies the dependencies' features the same way in both invocations and reuses
/// what the test build compiled instead of building the dependency tree a second time.
pub fn build() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut args = vec!["build", "--quiet", "--workspace", "--all-features"];
        if profile() == "release" {
            args.push("--release");
        }
        cargo(&args);
    });
}

/// Builds the `panic-abort` plugin with the `abort` profile (`panic = "abort"`), once.
pub fn panic_abort_plugin() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo(&[
            "build",
            "--quiet",
            "-p",
            "plugin-panic-abort",
            "--profile",
            "abort",
        ])
    });
    target_dir().join("abort").join(lib_file("panic-abort"))
}

/// The library file name of a plugin crate: `libplugin_hello.so` on Linux.
pub fn lib_file(plugin: &str) -> String {
    format!(
        "{}plugin_{}{}",
        std::env::consts::DLL_PREFIX,
        plugin.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// The built artifact of a plugin crate (built on first use).
pub fn plugin(name: &str) -> PathBuf {
    build();
    let path = target_dir().join(profile()).join(lib_file(name));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The `plugin-host` binary.
pub fn host_binary() -> PathBuf {
    build();
    target_dir()
        .join(profile())
        .join(format!("plugin-host{}", std::env::consts::EXE_SUFFIX))
}

/// What `plugin-host inspect FILE` prints, as JSON; fails the test when it does not succeed.
pub fn inspected(file: &Path) -> serde_json::Value {
    let out = Command::new(host_binary())
        .arg("inspect")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A fresh private folder for one test (removed when dropped, kept on panic for inspection).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("plugin-host-test-")
        .tempdir()
        .unwrap()
}

/// Copies a plugin's artifact into `dir` under its usual file name; returns the copy's path.
pub fn copy_plugin(name: &str, dir: &Path) -> PathBuf {
    let dest = dir.join(lib_file(name));
    std::fs::copy(plugin(name), &dest).unwrap();
    dest
}

/// Copies a plugin's artifact to an explicit destination (atomically: temp file + rename, as an
/// operator should).
pub fn install(name: &str, dest: &Path) {
    let tmp = dest.with_extension("tmp");
    std::fs::copy(plugin(name), &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// A manager with test-friendly timeouts.
pub fn manager() -> PluginManager {
    PluginManager::new(
        ManagerConfig::default()
            .with_initialize_timeout(Duration::from_secs(10))
            .with_cleanup_timeout(Duration::from_secs(10)),
    )
    .unwrap()
}

/// Whether `path` appears in this process's memory map (independent of the host's own check).
pub fn mapped(path: &Path) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let needle = path.to_string_lossy();
    maps.lines().any(|l| l.contains(needle.as_ref()))
}

/// Shadow copies currently in the manager's shadow folder.
pub fn shadow_files(manager: &PluginManager) -> Vec<PathBuf> {
    std::fs::read_dir(manager.shadow_dir())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Replaces every occurrence of `from` by `to` (same length) in a copy of `src` written to `dest`.
pub fn patched_copy(src: &Path, dest: &Path, from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len(), "a patch keeps the layout");
    let mut bytes = std::fs::read(src).unwrap();
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(dest, bytes).unwrap();
    count
}

/// Patches one little-endian `u32` field of the declaration header in a copy of `src`.
/// `field` counts 32-bit words after the 8-byte magic (0 = abi_major, 1 = api_minor, 3 = panic).
pub fn patched_header(src: &Path, dest: &Path, field: usize, value: u32) {
    let mut bytes = std::fs::read(src).unwrap();
    let magic = plugin_api::ffi::MAGIC;
    let at = bytes
        .windows(magic.len())
        .position(|w| w == magic)
        .expect("declaration magic present");
    let offset = at + 8 + 4 * field;
    bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    std::fs::write(dest, bytes).unwrap();
}

/// A copy of the `events` test plugin renamed `events-NN` (the name is patched in place, so every
/// copy is a distinct plugin built from one crate). Returns its path in `dir`.
pub fn events_plugin(n: u8, dir: &Path) -> PathBuf {
    let dest = dir.join(format!("libevents_{n:02}.so"));
    let to = format!(r#""name":"events-{n:02}""#);
    let count = patched_copy(
        &plugin("events"),
        &dest,
        br#""name":"events-00""#,
        to.as_bytes(),
    );
    assert_eq!(count, 1, "the events template declares its name once");
    dest
}

/// A `plugin-host serve` process on an ephemeral loopback port, with its own data folder.
/// Stopped with SIGTERM (graceful) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<std::process::Child>,
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    /// The application listener's `http://127.0.0.1:PORT`, when started with `--app-listen`.
    pub app: Option<String>,
    /// The data folder.
    pub data_dir: PathBuf,
    /// Where stderr (the log) goes.
    pub log: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with extra arguments and environment; waits for its address line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let tmp = temp_dir();
        let data = tmp.path().join("data");
        Self::start_with_data(args, env, &data, Some(tmp))
    }

    /// Starts a server on an existing data folder (to test restarts).
    pub fn start_with_data(
        args: &[&str],
        env: &[(&str, &str)],
        data: &Path,
        tmp: Option<tempfile::TempDir>,
    ) -> Self {
        Self::start_in(None, args, env, data, tmp)
    }

    /// Starts a server on a data folder, in the working directory `cwd` (default: the test's).
    pub fn start_in(
        cwd: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
        data: &Path,
        tmp: Option<tempfile::TempDir>,
    ) -> Self {
        use std::io::BufRead as _;
        let log = data.with_extension(format!("log-{}", std::process::id()));
        let mut cmd = Command::new(host_binary());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .env_remove("PLUGIN_HOST_ADMIN_TOKEN")
            .env("PLUGIN_HOST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("plugin-host serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        let mut stdout = std::io::BufReader::new(stdout);
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {first:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        let app = args.contains(&"--app-listen").then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("app listening on ")
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .to_owned()
        });
        Self {
            child: Some(child),
            addr,
            app,
            data_dir: data.to_owned(),
            log,
            _tmp: tmp,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(std::process::Child::id)
            .unwrap_or(0)
    }

    /// Kills the server with SIGKILL (no clean-up of any kind) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the log.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "server exited with {status}; log: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST /api/v1/plugins {"path": file}`: status and JSON body.
    pub fn load(&self, file: &Path) -> (u16, serde_json::Value) {
        self.call(
            "POST",
            "/api/v1/plugins",
            Some(serde_json::json!({ "path": file.to_string_lossy() })),
        )
    }

    /// A request; returns the status and the JSON body (`null` when not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.call_with(method, path, body, None)
    }

    /// A request with a bearer token.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = ureq::request(method, &format!("{}{path}", self.addr));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let (status, resp) = match result {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(s, r)) => (s, r),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let text = resp.into_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Runs the `plugin-host` CLI against this server; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(host_binary())
            .args(args)
            .args(["--addr", &self.addr])
            .env_remove("PLUGIN_HOST_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

/// A copy of the `tables-demo` plugin renamed `name`, declaring only the table `table`.
pub fn tables_plugin(name: &str, table: &str, dir: &Path) -> PathBuf {
    rewritten_plugin("tables-demo", dir, &format!("tables-{name}"), |m| {
        m["name"] = serde_json::json!(name);
        m["tables"] = serde_json::json!([table]);
    })
}

/// The machine's PostgreSQL for the backend tests: started if it is down (with the command this
/// machine kind uses), and a fresh database per test, dropped when the test passes and kept (its
/// name printed) when it fails. A server that cannot be reached fails the test; it never skips.
#[derive(Debug)]
pub struct PgDatabase {
    /// `postgres://postgres@127.0.0.1:5432/NAME`
    pub url: String,
    /// Database name.
    pub name: String,
    admin: String,
}

fn psql(admin: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([admin, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl PgDatabase {
    /// A new database on `PLUGIN_HOST_TEST_POSTGRES_URL` (default
    /// `postgres://postgres@127.0.0.1:5432/postgres`, the admin connection).
    pub fn create(tag: &str) -> Self {
        let admin = std::env::var("PLUGIN_HOST_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        if psql(&admin, "SELECT 1").is_err() {
            let start = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
            let _ = Command::new("sh").args(["-c", start]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while psql(&admin, "SELECT 1").is_err() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            if let Err(e) = psql(&admin, "SELECT 1") {
                panic!(
                    "PostgreSQL is not reachable at {admin}: {e}\nstart it with: {start}\n(or set PLUGIN_HOST_TEST_POSTGRES_URL)"
                );
            }
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ph_{tag}_{}_{n}", std::process::id());
        psql(&admin, &format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        psql(&admin, &format!("CREATE DATABASE {name}")).unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_owned();
        Self {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }

    /// Runs SQL in this database as the admin user; returns psql's unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The database (and login role) of `plugin` on a host whose admin URL is this database's.
    pub fn plugin_db(&self, plugin: &str) -> String {
        format!("{}.{plugin}", self.name)
    }

    /// Runs SQL as the admin (a superuser) in `plugin`'s own database.
    pub fn plugin_sql(&self, plugin: &str, sql: &str) -> String {
        let base = self.url.rsplit_once('/').map_or("", |(b, _)| b);
        psql(&format!("{base}/{}", self.plugin_db(plugin)), sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept PostgreSQL database {} for inspection", self.name);
            return;
        }
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        // The plugins' own databases and roles, named `<this database>.<plugin>`.
        let plugins = psql(
            &self.admin,
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{}.%' UNION SELECT rolname FROM pg_roles WHERE rolname LIKE '{}.%'",
                self.name, self.name
            ),
        )
        .unwrap_or_default();
        for name in plugins.lines().filter(|l| !l.is_empty()) {
            let _ = psql(
                &self.admin,
                &format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#),
            );
            let _ = psql(&self.admin, &format!(r#"DROP ROLE IF EXISTS "{name}""#));
        }
    }
}

/// A copy of plugin `template` whose manifest is rewritten by `edit` (in place, padded with
/// trailing spaces, which JSON allows, so the declaration keeps its length). Returns its path.
pub fn rewritten_plugin(
    template: &str,
    dir: &Path,
    file: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let dest = dir.join(lib_file(file));
    let mut bytes = std::fs::read(plugin(template)).unwrap();
    let opening = format!(r#"{{"name":"{template}""#);
    let start = bytes
        .windows(opening.len())
        .position(|w| w == opening.as_bytes())
        .expect("manifest present");
    // The manifest is one JSON object; the stream deserializer says where it ends.
    let mut stream =
        serde_json::Deserializer::from_slice(&bytes[start..]).into_iter::<serde_json::Value>();
    let mut manifest = stream.next().expect("manifest present").unwrap();
    let end = start + stream.byte_offset();
    edit(&mut manifest);
    let mut text = manifest.to_string().into_bytes();
    assert!(text.len() <= end - start, "the new manifest must fit");
    text.resize(end - start, b' ');
    bytes[start..end].copy_from_slice(&text);
    std::fs::write(&dest, bytes).unwrap();
    dest
}

/// Calls a plugin and panics with the full error chain if it fails.
pub fn exec(m: &PluginManager, plugin: &str, input: serde_json::Value) -> serde_json::Value {
    m.execute(plugin, &input)
        .unwrap_or_else(|e| panic!("{plugin} {input}: {}", e.chain()))
}

/// Waits (at most `within`) until the `topics-demo` plugin `plugin` recorded `n` messages;
/// returns what it recorded.
pub fn wait_messages(
    m: &PluginManager,
    plugin: &str,
    n: usize,
    within: Duration,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let seen = exec(m, plugin, serde_json::json!({"op": "seen"}))["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if seen.len() >= n || std::time::Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A copy of `topics-demo` renamed `name`.
pub fn topics_copy(name: &str, dir: &Path) -> PathBuf {
    rewritten_plugin("topics-demo", dir, &format!("topics-{name}"), |m| {
        m["name"] = serde_json::json!(name)
    })
}

//! `plugin-host.toml`, then `PLUGIN_HOST_*` environment variables, then command-line flags (each
//! layer overrides the one before). Unknown keys are errors; every error names the key or the
//! variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    BucketsConfig, JobStoreConfig, JobsConfig, ManagerConfig, S3Config, S3Credentials,
    TablesConfig, TopicsConfig,
};
use crate::error::{Error, Result};
use crate::resources::Overrides;

/// The host's configuration file (`plugin-host.toml`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HostConfig {
    /// Address of the admin API. Default `127.0.0.1:8700`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Bearer token required by every `/api/v1` route. Without one the server only listens on
    /// loopback addresses.
    pub admin_token: Option<String>,
    /// Folder for the embedded backends' data and the persisted plugin set.
    pub data_dir: PathBuf,
    /// The application listener, where plugins serve their HTTP routes.
    pub app: AppSection,
    /// The plugins folder.
    pub plugins: PluginsSection,
    /// Time limits.
    pub timeouts: TimeoutsSection,
    /// Size limits.
    pub limits: LimitsSection,
    /// Logging.
    pub log: LogSection,
    /// Where tables, topics and buckets live.
    pub backends: BackendsSection,
    /// The durable job queue.
    pub jobs: JobsSection,
    /// Per-plugin config and overrides, by plugin name: `[plugin.greeter]`.
    pub plugin: BTreeMap<String, PluginSection>,
}

/// `[plugins]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PluginsSection {
    /// Folder loaded at start.
    pub dir: Option<PathBuf>,
    /// Keep watching `dir` for added, replaced and removed libraries.
    pub watch: bool,
    /// When a watched library is removed while other plugins depend on it, unload them too.
    pub cascade_on_remove: bool,
    /// Quiet time after the last file event before acting, in ms (default 50).
    pub debounce_ms: Option<u64>,
    /// A file is complete once its size and mtime were stable this long, in ms (default 100).
    pub settle_ms: Option<u64>,
}

/// `[backends]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BackendsSection {
    /// `[backends.tables]`
    pub tables: TablesSection,
    /// `[backends.topics]`
    pub topics: TopicsSection,
    /// `[backends.buckets]`
    pub buckets: BucketsSection,
}

/// `[backends.topics]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TopicsSection {
    /// `memory` (default: the in-process log), `kafka` or `none`.
    pub backend: String,
    /// Prefix of physical topic names (`<prefix>.<plugin>.<topic>`).
    pub prefix: String,
    /// Kafka bootstrap servers (`host:port[,host:port]`), for `backend = "kafka"`.
    pub brokers: Option<String>,
}

impl Default for TopicsSection {
    fn default() -> Self {
        Self {
            backend: "memory".into(),
            prefix: "plugin-host".into(),
            brokers: None,
        }
    }
}

/// `[backends.buckets]` (`Debug` never shows the secret or the session token).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BucketsSection {
    /// `folder` (default: `DATA_DIR/buckets`), `s3` or `none`.
    pub backend: String,
    /// Base URL of the folder backend's presigned links (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// S3 endpoint URL (`http://127.0.0.1:9000`); unset: AWS.
    pub endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// The one S3 bucket every plugin bucket lives in, as key prefixes.
    pub bucket: Option<String>,
    /// Prefix of every S3 key the host writes (empty, or ending in `/`).
    pub prefix: String,
    /// Path-style S3 addressing (default: on when `endpoint` is set, off for AWS).
    pub path_style: Option<bool>,
    /// Create the S3 bucket at start when it does not exist.
    pub create_bucket: bool,
    /// S3 access key id (default: `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3 secret access key (default: `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// S3 session token (default: `AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
}

impl Default for BucketsSection {
    fn default() -> Self {
        Self {
            backend: "folder".into(),
            public_url: None,
            endpoint: None,
            region: None,
            bucket: None,
            prefix: String::new(),
            path_style: None,
            create_bucket: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        }
    }
}

impl std::fmt::Debug for BucketsSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "(redacted)");
        f.debug_struct("BucketsSection")
            .field("backend", &self.backend)
            .field("public_url", &self.public_url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("create_bucket", &self.create_bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .finish()
    }
}

impl BucketsSection {
    /// The S3 settings this section implies (`backend = "s3"`; checked by `validate`).
    fn s3(&self) -> S3Config {
        let credentials = S3Credentials::new(
            self.access_key_id.as_deref().unwrap_or_default(),
            self.secret_access_key.as_deref().unwrap_or_default(),
        );
        let credentials = match &self.session_token {
            Some(token) => credentials.with_session_token(token),
            None => credentials,
        };
        S3Config::new(
            self.endpoint.clone(),
            self.bucket.as_deref().unwrap_or_default(),
            credentials,
        )
        .with_region(self.region.as_deref().unwrap_or("us-east-1"))
        .with_prefix(&self.prefix)
        .with_path_style(self.path_style.unwrap_or(self.endpoint.is_some()))
        .with_create_bucket(self.create_bucket)
    }
}

/// `[jobs]`: the durable job queue. It lives in the tables backend: the file `DATA_DIR/jobs.db`
/// with `sqlite`, the `plugin_host` schema of the admin database with `postgres`; with `none`
/// there is no queue.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct JobsSection {
    /// Run the queue (default true).
    pub enabled: bool,
    /// This host's name in leases and the execution log (`PLUGIN_HOST_JOBS_HOST_ID`; default
    /// the machine's host name and the process id).
    pub host_id: Option<String>,
    /// Job attempts run at once on this host (`PLUGIN_HOST_JOBS_WORKERS`, default 8).
    pub workers: usize,
    /// How long a claim holds a job without a heartbeat, in ms (default 30000): a host that
    /// dies has its jobs run again this long after its last heartbeat.
    pub lease_ms: u64,
    /// How often idle workers look for jobs due later (retries, `run_at`) and schedules are
    /// checked, in ms (default 1000). New jobs wake the workers at once.
    pub poll_ms: u64,
    /// Bytes of input and output kept in each execution log row (default 4096).
    pub log_bytes: usize,
    /// Finished jobs are pruned after this many hours (default 168, a week).
    pub retention_hours: u64,
    /// At most this many finished jobs are kept, the newest (default 100000).
    pub retention_count: u64,
    /// SQLite only: sync every commit to disk (default false: a commit survives the process
    /// being killed, not necessarily a power loss).
    pub sqlite_synchronous_full: bool,
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            host_id: None,
            workers: 8,
            lease_ms: 30_000,
            poll_ms: 1000,
            log_bytes: 4096,
            retention_hours: 168,
            retention_count: 100_000,
            sqlite_synchronous_full: false,
        }
    }
}

/// `[backends.tables]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TablesSection {
    /// `sqlite` (default: one file per plugin under `DATA_DIR/tables`), `postgres` or `none`.
    pub backend: String,
    /// PostgreSQL admin URL (`postgres://postgres@127.0.0.1:5432/plugin_host`).
    pub url: Option<String>,
    /// Connections per plugin pool (PostgreSQL).
    pub max_connections: u32,
}

impl Default for TablesSection {
    fn default() -> Self {
        Self {
            backend: "sqlite".into(),
            url: None,
            max_connections: 4,
        }
    }
}

/// `[timeouts]`, in milliseconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TimeoutsSection {
    /// Library initialisers plus `initialize`.
    pub initialize_ms: u64,
    /// `cleanup` plus the instance's drop and thread join.
    pub cleanup_ms: u64,
    /// One `execute` call.
    pub execute_ms: u64,
    /// One admin API request.
    pub request_ms: u64,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LimitsSection {
    /// Largest request body the admin API accepts.
    pub body_bytes: usize,
    /// Jobs a plugin's mailbox holds.
    pub mailbox_capacity: usize,
    /// How long an emitter waits on a full mailbox before the event is dropped, in ms.
    pub emit_block_ms: u64,
    /// Largest plugin file the host reads, in bytes (env `PLUGIN_HOST_MAX_PLUGIN_BYTES`);
    /// larger files are refused with `file_too_large` before they are read.
    pub max_plugin_bytes: u64,
    /// Rows one tables statement may return (`PLUGIN_HOST_TABLES_MAX_ROWS`).
    pub tables_max_rows: u64,
    /// Bytes (JSON-encoded) one tables statement may return (`PLUGIN_HOST_TABLES_MAX_BYTES`).
    pub tables_max_bytes: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogSection {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A level (`error`, `warn`, `info`, `debug` or `trace`), optionally followed by
    /// comma-separated `target=level` directives (levels also `off`): `info,access=off` logs at
    /// `info` but turns the application listener's access log off.
    pub level: String,
}

/// `[app]`: the application listener, where plugins serve their HTTP routes under
/// `/plugins/{name}/`. Off unless `listen` is set. It may bind any address (it faces users);
/// routes declared `token` need `token`, and answer 401 on a host without one.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AppSection {
    /// Address of the application listener (port 0 picks a free port); none: no listener.
    pub listen: Option<SocketAddr>,
    /// Bearer token of the routes declared `token` (at least 16 characters, not the admin
    /// token).
    pub token: Option<String>,
    /// Time a client has to send a request's head, in milliseconds (default 10000); a client
    /// that takes longer is disconnected (slow-loris).
    pub header_timeout_ms: u64,
    /// Time a request's body has to arrive once its head has, in milliseconds (default
    /// 10000); a slower body is answered 408 `body_timeout` and the connection closed.
    pub body_timeout_ms: u64,
    /// Time a write to a client may wait for it to read, in milliseconds (default 30000); a
    /// client that reads nothing for longer (an event stream's that stopped reading, say) is
    /// disconnected.
    pub write_timeout_ms: u64,
    /// Connections open at once (default 4096); further clients wait in the kernel's backlog
    /// until one closes.
    pub max_connections: usize,
    /// Most Server-Sent Event streams open at once per plugin (default 64); one more is
    /// answered 503 `too_many_streams`.
    pub max_streams: usize,
    /// Silence after which an event stream sends a `: keep-alive` comment, in milliseconds
    /// (default 15000).
    pub keep_alive_ms: u64,
}

impl Default for AppSection {
    fn default() -> Self {
        Self {
            listen: None,
            token: None,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
            max_connections: 4096,
            max_streams: 64,
            keep_alive_ms: 15_000,
        }
    }
}

impl std::fmt::Debug for AppSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSection")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "(redacted)"))
            .field("header_timeout_ms", &self.header_timeout_ms)
            .field("body_timeout_ms", &self.body_timeout_ms)
            .field("write_timeout_ms", &self.write_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field("max_streams", &self.max_streams)
            .field("keep_alive_ms", &self.keep_alive_ms)
            .finish()
    }
}

/// `[plugin.NAME]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PluginSection {
    /// The plugin's configuration, validated against its manifest's JSON Schema.
    pub config: Option<serde_json::Value>,
    /// Operator overrides of its allowed resources.
    pub overrides: Option<Overrides>,
    /// Threads of its pool when it is a concurrent plugin (1 to 64, default 4).
    pub threads: Option<usize>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            admin_token: None,
            data_dir: PathBuf::from("plugin-host-data"),
            app: AppSection::default(),
            plugins: PluginsSection::default(),
            timeouts: TimeoutsSection::default(),
            limits: LimitsSection::default(),
            log: LogSection::default(),
            backends: BackendsSection::default(),
            jobs: JobsSection::default(),
            plugin: BTreeMap::new(),
        }
    }
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        let m = ManagerConfig::default();
        Self {
            initialize_ms: m.initialize_timeout.as_millis() as u64,
            cleanup_ms: m.cleanup_timeout.as_millis() as u64,
            execute_ms: m.execute_timeout.as_millis() as u64,
            request_ms: 60_000,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        let m = ManagerConfig::default();
        Self {
            body_bytes: 1 << 20,
            mailbox_capacity: m.mailbox_capacity,
            emit_block_ms: m.emit_block.as_millis() as u64,
            max_plugin_bytes: m.max_plugin_bytes,
            tables_max_rows: m.tables_max_rows,
            tables_max_bytes: m.tables_max_bytes,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

fn invalid(key: &str, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        key: key.to_owned(),
        message: message.into(),
    }
}

impl HostConfig {
    /// Parses TOML text (`origin` names it in errors).
    ///
    /// # Errors
    /// `invalid_config`, naming the key.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config = Self::parse_toml(text, origin)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses without checking values: [`HostConfig::load`] checks once the environment has
    /// been applied, so that a variable can complete the file (`PLUGIN_HOST_TOPICS_BROKERS`).
    fn parse_toml(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            let key = e
                .message()
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_else(|| origin.to_owned());
            invalid(&key, format!("{origin}: {e}"))
        })
    }

    /// Reads the config: `path` if given (it must exist), else `plugin-host.toml` in the current
    /// folder if present, else the defaults; then applies `PLUGIN_HOST_*` variables.
    ///
    /// # Errors
    /// `invalid_config` for a missing explicit file, bad TOML, an unknown key or a bad value.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    invalid("--config", format!("cannot read {}: {e}", p.display()))
                })?;
                Self::parse_toml(&text, &p.display().to_string())?
            }
            None => match std::fs::read_to_string("plugin-host.toml") {
                Ok(text) => Self::parse_toml(&text, "plugin-host.toml")?,
                Err(_) => Self::default(),
            },
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Applies `PLUGIN_HOST_*` variables read through `get`.
    ///
    /// # Errors
    /// `invalid_config` naming the variable.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        self.apply_env_server(&get)?;
        self.apply_env_backends(&get)?;
        self.apply_env_limits(&get)
    }

    /// The server's own variables: address, token, folders, watching and logging.
    fn apply_env_server(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("PLUGIN_HOST_LISTEN") {
            self.listen = parse_var("PLUGIN_HOST_LISTEN", &v)?;
        }
        if let Some(v) = get("PLUGIN_HOST_ADMIN_TOKEN") {
            self.admin_token = Some(v);
        }
        if let Some(v) = get("PLUGIN_HOST_APP_LISTEN") {
            self.app.listen = Some(parse_var("PLUGIN_HOST_APP_LISTEN", &v)?);
        }
        if let Some(v) = get("PLUGIN_HOST_APP_TOKEN") {
            self.app.token = Some(v);
        }
        if let Some(v) = get("PLUGIN_HOST_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("PLUGIN_HOST_PLUGINS_DIR") {
            self.plugins.dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("PLUGIN_HOST_WATCH") {
            self.plugins.watch = parse_bool("PLUGIN_HOST_WATCH", &v)?;
        }
        if let Some(v) = get("PLUGIN_HOST_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    return Err(invalid(
                        "PLUGIN_HOST_LOG_FORMAT",
                        format!("{v:?}: use pretty or json"),
                    ));
                }
            };
        }
        if let Some(v) = get("PLUGIN_HOST_LOG").or_else(|| get("PLUGIN_HOST_LOG_LEVEL")) {
            self.log.level = v;
        }
        Ok(())
    }

    /// The backends: tables, topics, and buckets (with the standard AWS variables).
    fn apply_env_backends(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("PLUGIN_HOST_JOBS_HOST_ID") {
            self.jobs.host_id = Some(v);
        }
        if let Some(v) = get("PLUGIN_HOST_JOBS_WORKERS") {
            self.jobs.workers = parse_var("PLUGIN_HOST_JOBS_WORKERS", &v)?;
        }
        if let Some(v) = get("PLUGIN_HOST_JOBS_LEASE_MS") {
            self.jobs.lease_ms = parse_var("PLUGIN_HOST_JOBS_LEASE_MS", &v)?;
        }
        if let Some(v) = get("PLUGIN_HOST_JOBS_POLL_MS") {
            self.jobs.poll_ms = parse_var("PLUGIN_HOST_JOBS_POLL_MS", &v)?;
        }
        if let Some(v) = get("PLUGIN_HOST_TABLES_BACKEND") {
            self.backends.tables.backend = v;
        }
        if let Some(v) = get("PLUGIN_HOST_TABLES_URL") {
            self.backends.tables.url = Some(v);
        }
        if let Some(v) = get("PLUGIN_HOST_TOPICS_BACKEND") {
            self.backends.topics.backend = v;
        }
        if let Some(v) = get("PLUGIN_HOST_TOPICS_BROKERS") {
            self.backends.topics.brokers = Some(v);
        }
        let buckets = &mut self.backends.buckets;
        for (var, field) in [
            ("PLUGIN_HOST_BUCKETS_BACKEND", &mut buckets.backend),
            ("PLUGIN_HOST_BUCKETS_PREFIX", &mut buckets.prefix),
        ] {
            if let Some(v) = get(var) {
                *field = v;
            }
        }
        for (var, field) in [
            ("PLUGIN_HOST_BUCKETS_ENDPOINT", &mut buckets.endpoint),
            ("PLUGIN_HOST_BUCKETS_REGION", &mut buckets.region),
            ("PLUGIN_HOST_BUCKETS_BUCKET", &mut buckets.bucket),
        ] {
            if let Some(v) = get(var) {
                *field = Some(v);
            }
        }
        if let Some(v) = get("PLUGIN_HOST_BUCKETS_PATH_STYLE") {
            buckets.path_style = Some(parse_bool("PLUGIN_HOST_BUCKETS_PATH_STYLE", &v)?);
        }
        if let Some(v) = get("PLUGIN_HOST_BUCKETS_CREATE_BUCKET") {
            buckets.create_bucket = parse_bool("PLUGIN_HOST_BUCKETS_CREATE_BUCKET", &v)?;
        }
        // The standard AWS variables fill what the file leaves unset (they never override it);
        // empty ones count as unset. Credentials come as a whole, from one place: a session
        // token from the environment never joins keys from the file.
        let aws = |var: &str| get(var).filter(|v| !v.is_empty());
        if buckets.region.is_none() {
            buckets.region = aws("AWS_REGION").or_else(|| aws("AWS_DEFAULT_REGION"));
        }
        if buckets.access_key_id.is_none() && buckets.secret_access_key.is_none() {
            buckets.access_key_id = aws("AWS_ACCESS_KEY_ID");
            buckets.secret_access_key = aws("AWS_SECRET_ACCESS_KEY");
            buckets.session_token = buckets
                .session_token
                .take()
                .or_else(|| aws("AWS_SESSION_TOKEN"));
        }
        Ok(())
    }

    /// The numeric limits and timeouts.
    fn apply_env_limits(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<()> {
        for (var, field) in [
            (
                "PLUGIN_HOST_TABLES_MAX_ROWS",
                &mut self.limits.tables_max_rows,
            ),
            (
                "PLUGIN_HOST_TABLES_MAX_BYTES",
                &mut self.limits.tables_max_bytes,
            ),
            (
                "PLUGIN_HOST_INITIALIZE_TIMEOUT_MS",
                &mut self.timeouts.initialize_ms,
            ),
            (
                "PLUGIN_HOST_CLEANUP_TIMEOUT_MS",
                &mut self.timeouts.cleanup_ms,
            ),
            (
                "PLUGIN_HOST_EXECUTE_TIMEOUT_MS",
                &mut self.timeouts.execute_ms,
            ),
            (
                "PLUGIN_HOST_REQUEST_TIMEOUT_MS",
                &mut self.timeouts.request_ms,
            ),
            (
                "PLUGIN_HOST_MAX_PLUGIN_BYTES",
                &mut self.limits.max_plugin_bytes,
            ),
        ] {
            if let Some(v) = get(var) {
                *field = parse_var(var, &v)?;
            }
        }
        Ok(())
    }

    /// Checks values that parse but make no sense.
    ///
    /// # Errors
    /// `invalid_config` naming the key.
    pub fn validate(&self) -> Result<()> {
        self.validate_log_and_timeouts()?;
        self.validate_tables()?;
        self.validate_topics()?;
        self.validate_buckets()?;
        self.validate_limits()?;
        self.validate_jobs()?;
        self.validate_plugins()
    }

    fn validate_jobs(&self) -> Result<()> {
        let j = &self.jobs;
        if !(1..=256).contains(&j.workers) {
            return Err(invalid("jobs.workers", "must be 1 to 256"));
        }
        if j.lease_ms < 100 {
            return Err(invalid("jobs.lease_ms", "must be at least 100"));
        }
        if j.poll_ms < 10 || j.poll_ms > 3_600_000 {
            return Err(invalid("jobs.poll_ms", "must be 10 to 3600000"));
        }
        if j.log_bytes > 1 << 20 {
            return Err(invalid("jobs.log_bytes", "must be at most 1048576"));
        }
        if j.retention_hours == 0 || j.retention_count == 0 {
            return Err(invalid(
                "jobs.retention_hours",
                "retention_hours and retention_count must be greater than 0",
            ));
        }
        if let Some(id) = &j.host_id
            && (id.is_empty() || id.len() > 200 || id.chars().any(char::is_control))
        {
            return Err(invalid(
                "jobs.host_id",
                "must be 1 to 200 printable characters",
            ));
        }
        Ok(())
    }

    fn validate_log_and_timeouts(&self) -> Result<()> {
        if !valid_log_filter(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?}: use error, warn, info, debug or trace, optionally followed by \
                     `,target=level` directives (levels also off)",
                    self.log.level
                ),
            ));
        }
        for (key, v) in [
            ("timeouts.initialize_ms", self.timeouts.initialize_ms),
            ("timeouts.cleanup_ms", self.timeouts.cleanup_ms),
            ("timeouts.execute_ms", self.timeouts.execute_ms),
            ("timeouts.request_ms", self.timeouts.request_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }

    fn validate_tables(&self) -> Result<()> {
        match (
            self.backends.tables.backend.as_str(),
            &self.backends.tables.url,
        ) {
            ("sqlite" | "none", _) => {}
            ("postgres", Some(url))
                if url.starts_with("postgres://") || url.starts_with("postgresql://") => {}
            ("postgres", _) => {
                return Err(invalid(
                    "backends.tables.url",
                    "the postgres backend needs url = \"postgres://USER@HOST:PORT/DATABASE\" (or PLUGIN_HOST_TABLES_URL)",
                ));
            }
            (other, _) => {
                return Err(invalid(
                    "backends.tables.backend",
                    format!("{other:?}: use sqlite, postgres or none"),
                ));
            }
        }
        Ok(())
    }

    fn validate_topics(&self) -> Result<()> {
        match (
            self.backends.topics.backend.as_str(),
            &self.backends.topics.brokers,
        ) {
            ("memory" | "none", _) | ("kafka", Some(_)) => {}
            ("kafka", None) => {
                return Err(invalid(
                    "backends.topics.brokers",
                    "the kafka backend needs brokers = \"HOST:PORT[,HOST:PORT]\" (or PLUGIN_HOST_TOPICS_BROKERS)",
                ));
            }
            (other, _) => {
                return Err(invalid(
                    "backends.topics.backend",
                    format!("{other:?}: use memory, kafka or none"),
                ));
            }
        }
        let prefix = &self.backends.topics.prefix;
        if prefix.is_empty()
            || prefix.len() > 100
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "backends.topics.prefix",
                "1 to 100 characters of A-Z a-z 0-9 - _ (no '.', which separates plugin and topic)",
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<()> {
        if self.limits.mailbox_capacity == 0 {
            return Err(invalid("limits.mailbox_capacity", "must be greater than 0"));
        }
        if self.limits.tables_max_rows == 0 {
            return Err(invalid("limits.tables_max_rows", "must be greater than 0"));
        }
        if self.limits.tables_max_bytes < 1024 {
            return Err(invalid("limits.tables_max_bytes", "must be at least 1024"));
        }
        if self.limits.body_bytes < 1024 {
            return Err(invalid("limits.body_bytes", "must be at least 1024"));
        }
        if self.limits.max_plugin_bytes < 4096 {
            return Err(invalid(
                "limits.max_plugin_bytes",
                "must be at least 4096 (the default is 268435456, 256 MiB)",
            ));
        }
        if let Some(token) = &self.admin_token
            && token.trim().len() < 16
        {
            return Err(invalid("admin_token", "must be at least 16 characters"));
        }
        if self.app.header_timeout_ms == 0 {
            return Err(invalid("app.header_timeout_ms", "must be greater than 0"));
        }
        if self.app.body_timeout_ms == 0 {
            return Err(invalid("app.body_timeout_ms", "must be greater than 0"));
        }
        if self.app.write_timeout_ms == 0 {
            return Err(invalid("app.write_timeout_ms", "must be greater than 0"));
        }
        if self.app.max_connections == 0 {
            return Err(invalid("app.max_connections", "must be greater than 0"));
        }
        if self.app.max_streams == 0 {
            return Err(invalid("app.max_streams", "must be greater than 0"));
        }
        if self.app.keep_alive_ms == 0 {
            return Err(invalid("app.keep_alive_ms", "must be greater than 0"));
        }
        if let Some(token) = &self.app.token {
            if token.trim().len() < 16 {
                return Err(invalid("app.token", "must be at least 16 characters"));
            }
            if self.admin_token.as_ref() == Some(token) {
                return Err(invalid(
                    "app.token",
                    "must differ from admin_token: the application token is given to users",
                ));
            }
        }
        Ok(())
    }

    fn validate_plugins(&self) -> Result<()> {
        for (name, section) in &self.plugin {
            crate::manifest::validate_name(name)
                .map_err(|e| invalid(&format!("plugin.{name}"), e.to_string()))?;
            if let Some(o) = &section.overrides {
                o.validate()
                    .map_err(|e| invalid(&format!("plugin.{name}.overrides"), e.to_string()))?;
            }
            crate::manager::PluginSettings::default()
                .with_threads(section.threads)
                .pool_threads()
                .map_err(|e| invalid(&format!("plugin.{name}.threads"), e.to_string()))?;
        }
        Ok(())
    }

    fn validate_buckets(&self) -> Result<()> {
        let b = &self.backends.buckets;
        match b.backend.as_str() {
            "folder" | "none" => Ok(()),
            "s3" => {
                let bucket = b.bucket.as_deref().ok_or_else(|| {
                    invalid(
                        "backends.buckets.bucket",
                        "the s3 backend needs bucket = \"NAME\" (or PLUGIN_HOST_BUCKETS_BUCKET)",
                    )
                })?;
                crate::resources::naming::validate_s3_bucket(bucket)?;
                crate::resources::naming::validate_s3_prefix(&b.prefix)?;
                if b.region.as_deref().is_some_and(str::is_empty) {
                    return Err(invalid(
                        "backends.buckets.region",
                        "a region may not be empty (us-east-1 suits most S3-compatible stores)",
                    ));
                }
                if b.access_key_id.as_deref().is_none_or(str::is_empty)
                    || b.secret_access_key.as_deref().is_none_or(str::is_empty)
                {
                    return Err(invalid(
                        "backends.buckets.access_key_id",
                        "the s3 backend needs credentials: access_key_id and secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                    ));
                }
                if let Some(endpoint) = &b.endpoint
                    && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                {
                    return Err(invalid(
                        "backends.buckets.endpoint",
                        format!("{endpoint:?}: use an http:// or https:// URL"),
                    ));
                }
                Ok(())
            }
            other => Err(invalid(
                "backends.buckets.backend",
                format!("{other:?}: use folder, s3 or none"),
            )),
        }
    }

    /// The manager settings this config implies.
    pub fn manager_config(&self) -> ManagerConfig {
        ManagerConfig::default()
            .with_initialize_timeout(Duration::from_millis(self.timeouts.initialize_ms))
            .with_cleanup_timeout(Duration::from_millis(self.timeouts.cleanup_ms))
            .with_execute_timeout(Duration::from_millis(self.timeouts.execute_ms))
            .with_mailbox_capacity(self.limits.mailbox_capacity)
            .with_emit_block(Duration::from_millis(self.limits.emit_block_ms))
            .with_max_plugin_bytes(self.limits.max_plugin_bytes)
            .with_table_result_limits(self.limits.tables_max_rows, self.limits.tables_max_bytes)
            .with_jobs(self.jobs_config())
            .with_tables(match self.backends.tables.backend.as_str() {
                "postgres" => TablesConfig::Postgres {
                    url: self.backends.tables.url.clone().unwrap_or_default(),
                    max_connections: self.backends.tables.max_connections,
                },
                "none" => TablesConfig::None,
                _ => TablesConfig::Sqlite {
                    dir: self.data_dir.join("tables"),
                },
            })
            .with_topics(match self.backends.topics.backend.as_str() {
                "none" => TopicsConfig::None,
                "kafka" => TopicsConfig::Kafka {
                    brokers: self.backends.topics.brokers.clone().unwrap_or_default(),
                    prefix: self.backends.topics.prefix.clone(),
                },
                _ => TopicsConfig::Memory {
                    prefix: self.backends.topics.prefix.clone(),
                },
            })
            .with_buckets(match self.backends.buckets.backend.as_str() {
                "none" => BucketsConfig::None,
                "s3" => BucketsConfig::S3(self.backends.buckets.s3()),
                _ => BucketsConfig::Folder {
                    dir: self.data_dir.join("buckets"),
                    public_url: Some(
                        self.backends
                            .buckets
                            .public_url
                            .clone()
                            .unwrap_or_else(|| format!("http://{}", self.listen)),
                    ),
                },
            })
    }

    /// The job queue's settings this config implies: its store follows the tables backend.
    pub fn jobs_config(&self) -> JobsConfig {
        let j = &self.jobs;
        let store = match (j.enabled, self.backends.tables.backend.as_str()) {
            (false, _) | (_, "none") => JobStoreConfig::None,
            (true, "postgres") => JobStoreConfig::Postgres {
                url: self.backends.tables.url.clone().unwrap_or_default(),
            },
            (true, _) => JobStoreConfig::Sqlite {
                path: self.data_dir.join("jobs.db"),
                synchronous_full: j.sqlite_synchronous_full,
            },
        };
        let defaults = JobsConfig::default();
        JobsConfig {
            store,
            host_id: j.host_id.clone().unwrap_or(defaults.host_id),
            workers: j.workers,
            lease: Duration::from_millis(j.lease_ms),
            poll: Duration::from_millis(j.poll_ms),
            log_bytes: j.log_bytes,
            retention_age: Duration::from_secs(j.retention_hours.saturating_mul(3600)),
            retention_count: j.retention_count,
        }
    }

    /// Whether the server may listen on `listen` (loopback, or a token is set).
    ///
    /// # Errors
    /// `invalid_config` explaining how to fix it.
    pub fn check_listen(&self) -> Result<()> {
        if self.admin_token.is_none() && !self.listen.ip().is_loopback() {
            return Err(invalid(
                "listen",
                format!(
                    "refusing to listen on {} without an admin token: set PLUGIN_HOST_ADMIN_TOKEN (or admin_token in the config file), or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

/// Parses the value of the environment variable `var`.
fn parse_var<T: std::str::FromStr>(var: &str, v: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| invalid(var, format!("{v:?}: {e}")))
}

fn parse_bool(var: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, format!("{v:?}: use true or false"))),
    }
}

/// Whether `filter` is a log filter: comma-separated directives, each a level or
/// `target=level`, where a target is a module path (`access`, `plugin_host::manager`) and a
/// level `error`, `warn`, `info`, `debug`, `trace` or `off`. The first directive must be a
/// bare level other than `off` (what the rest of the log is kept at).
fn valid_log_filter(filter: &str) -> bool {
    let mut directives = filter.split(',');
    let default_level = directives.next().unwrap_or_default();
    let level = |s: &str| s.parse::<tracing::level_filters::LevelFilter>().is_ok();
    default_level.parse::<tracing::Level>().is_ok()
        && directives.all(|d| {
            d.split_once('=').is_some_and(|(target, l)| {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
                    && level(l)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(text: &str) -> String {
        match HostConfig::from_toml(text, "test.toml").unwrap_err() {
            Error::InvalidConfig { key, .. } => key,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn defaults_and_full_file() {
        let c = HostConfig::from_toml("", "empty").unwrap();
        assert_eq!(c.listen.port(), 8700);
        let c = HostConfig::from_toml(
            r#"
            listen = "127.0.0.1:0"
            admin_token = "0123456789abcdef"
            data_dir = "/tmp/x"
            [plugins]
            dir = "plugins"
            watch = true
            [timeouts]
            initialize_ms = 500
            [log]
            format = "json"
            level = "debug"
            [plugin.greeter]
            config = { greeting = "hi" }
            overrides = { tables = ["users"] }
            "#,
            "full",
        )
        .unwrap();
        assert!(c.plugins.watch);
        assert_eq!(c.timeouts.initialize_ms, 500);
        assert_eq!(c.timeouts.cleanup_ms, TimeoutsSection::default().cleanup_ms);
        assert_eq!(
            c.plugin["greeter"].config.as_ref().unwrap()["greeting"],
            "hi"
        );
    }

    #[test]
    fn log_levels_take_target_directives() {
        for ok in [
            "info",
            "debug",
            "info,access=off",
            "warn,plugin_host::manager=debug,access=info",
        ] {
            assert!(valid_log_filter(ok), "{ok}");
        }
        for bad in [
            "",
            "off",
            "loud",
            "info,",
            "info,access",
            "info,access=loud",
            "info,a b=off",
        ] {
            assert!(!valid_log_filter(bad), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(key_of("lisen = \"127.0.0.1:1\""), "lisen");
        assert_eq!(
            key_of("[timeouts]\ninitialize_ms = 0"),
            "timeouts.initialize_ms"
        );
        assert_eq!(key_of("[log]\nlevel = \"loud\""), "log.level");
        assert_eq!(key_of("[log]\nlevel = \"info,access\""), "log.level");
        assert_eq!(key_of("[log]\nlevel = \"info,=off\""), "log.level");
        assert_eq!(key_of("[log]\nlevel = \"access=off\""), "log.level");
        assert_eq!(key_of("[plugin.\"Bad.Name\"]"), "plugin.Bad.Name");
        assert_eq!(key_of("admin_token = \"short\""), "admin_token");
        assert_eq!(
            key_of("[plugin.parallel]\nthreads = 65"),
            "plugin.parallel.threads"
        );
        assert!(HostConfig::from_toml("[plugin.parallel]\nthreads = 8", "t").is_ok());
        assert_eq!(
            key_of("[limits]\nmailbox_capacity = 0"),
            "limits.mailbox_capacity"
        );
        let e = HostConfig::from_toml("listen = \"nowhere\"", "t").unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
    }

    #[test]
    fn environment_overrides_and_names_bad_variables() {
        let mut c = HostConfig::default();
        let env = |k: &str| match k {
            "PLUGIN_HOST_LISTEN" => Some("127.0.0.1:9".to_owned()),
            "PLUGIN_HOST_WATCH" => Some("true".to_owned()),
            "PLUGIN_HOST_EXECUTE_TIMEOUT_MS" => Some("1234".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.listen.port(), 9);
        assert!(c.plugins.watch);
        assert_eq!(c.timeouts.execute_ms, 1234);
        let e = c
            .apply_env(|k| (k == "PLUGIN_HOST_WATCH").then(|| "maybe".to_owned()))
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidConfig { ref key, .. } if key == "PLUGIN_HOST_WATCH"),
            "{e}"
        );
    }

    #[test]
    fn s3_section_from_file_and_environment() {
        let text = "[backends.buckets]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"plugin-data\"\nprefix = \"host-1/\"";
        // Credentials missing: named, with the variables that can give them.
        let e = HostConfig::from_toml(text, "t").unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        let mut c = HostConfig::parse_toml(text, "t").unwrap();
        c.apply_env(|k| match k {
            "AWS_ACCESS_KEY_ID" => Some("AK".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("SK".into()),
            "AWS_REGION" => Some("eu-west-3".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        let BucketsConfig::S3(s3) = c.manager_config().buckets else {
            panic!("not s3")
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("plugin-data", "host-1/")
        );
        assert_eq!(s3.region, "eu-west-3");
        assert!(s3.path_style, "an endpoint implies path style");
        assert_eq!(s3.credentials, S3Credentials::new("AK", "SK"));
        assert!(!format!("{s3:?}").contains("SK\""), "{s3:?}");
        // Only whole credentials come from AWS_*: with a key id in the file, none are taken.
        let mut c =
            HostConfig::parse_toml(&format!("{text}\naccess_key_id = \"FILE\""), "t").unwrap();
        c.apply_env(|k| match k {
            "AWS_SECRET_ACCESS_KEY" => Some("ENV-SECRET".into()),
            "AWS_SESSION_TOKEN" => Some("ENV-TOKEN".into()),
            "AWS_REGION" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.backends.buckets.secret_access_key, None);
        assert_eq!(c.backends.buckets.session_token, None);
        assert_eq!(
            c.backends.buckets.region, None,
            "an empty variable is unset"
        );
        assert!(c.validate().is_err(), "half a credential is refused");
        let shown = format!(
            "{:?}",
            HostConfig::parse_toml(
                &format!("{text}\naccess_key_id = \"AK\"\nsecret_access_key = \"TOP-SECRET\""),
                "t"
            )
            .unwrap()
        );
        assert!(!shown.contains("TOP-SECRET"), "{shown}");
        // The file's credentials win over AWS_*; PLUGIN_HOST_* wins over the file.
        let mut c = HostConfig::parse_toml(
            &format!("{text}\naccess_key_id = \"FILE\"\nsecret_access_key = \"S\""),
            "t",
        )
        .unwrap();
        c.apply_env(|k| match k {
            "AWS_ACCESS_KEY_ID" => Some("ENV".into()),
            "PLUGIN_HOST_BUCKETS_BUCKET" => Some("other-bucket".into()),
            "PLUGIN_HOST_BUCKETS_PATH_STYLE" => Some("false".into()),
            _ => None,
        })
        .unwrap();
        let BucketsConfig::S3(s3) = c.manager_config().buckets else {
            panic!("not s3")
        };
        assert_eq!(s3.credentials.access_key_id, "FILE");
        assert_eq!(s3.bucket, "other-bucket");
        assert!(!s3.path_style);
        // Names S3 would refuse are refused here, before anything connects.
        for bad in ["ab", "Plugin_Data", "192.168.1.1", "xn--abc", "a..b"] {
            let e = HostConfig::from_toml(
                &format!("[backends.buckets]\nbackend = \"s3\"\nbucket = \"{bad}\"\naccess_key_id = \"a\"\nsecret_access_key = \"b\""),
                "t",
            )
            .unwrap_err();
            assert!(
                matches!(e, Error::InvalidConfig { ref key, .. } if key == "backends.buckets.bucket"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            key_of("[backends.buckets]\nbackend = \"s3\""),
            "backends.buckets.bucket"
        );
        let creds = "access_key_id = \"a\"\nsecret_access_key = \"b\"";
        assert_eq!(
            key_of(&format!(
                "[backends.buckets]\nbackend = \"s3\"\nbucket = \"data\"\n{creds}\nprefix = \"../\""
            )),
            "backends.buckets.prefix"
        );
        assert_eq!(
            key_of(&format!(
                "[backends.buckets]\nbackend = \"s3\"\nbucket = \"data\"\n{creds}\nregion = \"\""
            )),
            "backends.buckets.region"
        );
        assert_eq!(
            key_of("[backends.buckets]\nbackend = \"gcs\""),
            "backends.buckets.backend"
        );
    }

    #[test]
    fn app_section_from_file_and_env_with_a_distinct_token() {
        let c = HostConfig::from_toml(
            "[app]\nlisten = \"0.0.0.0:8080\"\ntoken = \"app-token-0123456789\"",
            "t",
        )
        .unwrap();
        assert_eq!(c.app.listen.map(|a| a.port()), Some(8080));
        assert!(!format!("{c:?}").contains("app-token-0123456789"));
        assert!(HostConfig::default().app.listen.is_none());
        let mut c = HostConfig::default();
        c.apply_env(|k| match k {
            "PLUGIN_HOST_APP_LISTEN" => Some("127.0.0.1:0".to_owned()),
            "PLUGIN_HOST_APP_TOKEN" => Some("0123456789abcdef".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.app.listen.map(|a| a.port()), Some(0));
        c.validate().unwrap();
        c.admin_token = Some("0123456789abcdef".to_owned());
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("app.token"), "{e}");
        c.app.token = Some("short".to_owned());
        assert!(c.validate().unwrap_err().to_string().contains("16"));
        assert_eq!(HostConfig::default().app.header_timeout_ms, 10_000);
        assert_eq!(HostConfig::default().app.body_timeout_ms, 10_000);
        for zero in ["write_timeout_ms", "max_connections"] {
            let e = HostConfig::from_toml(&format!("[app]\n{zero} = 0"), "t").unwrap_err();
            assert!(e.to_string().contains(&format!("app.{zero}")), "{e}");
        }
        let e = HostConfig::from_toml("[app]\nbody_timeout_ms = 0", "t").unwrap_err();
        assert!(e.to_string().contains("app.body_timeout_ms"), "{e}");
        let e = HostConfig::from_toml("[app]\nheader_timeout_ms = 0", "t").unwrap_err();
        assert!(e.to_string().contains("app.header_timeout_ms"), "{e}");
        assert_eq!(HostConfig::default().app.max_streams, 64);
        for key in ["max_streams", "keep_alive_ms"] {
            let e = HostConfig::from_toml(&format!("[app]\n{key} = 0"), "t").unwrap_err();
            assert!(e.to_string().contains(&format!("app.{key}")), "{e}");
        }
        let bad = HostConfig::from_toml("[app]\nlisten = \"x\"", "t").unwrap_err();
        assert!(bad.to_string().contains("listen = \"x\""), "{bad}");
    }

    #[test]
    fn non_loopback_needs_a_token() {
        let mut c = HostConfig {
            listen: "0.0.0.0:8700".parse().unwrap(),
            ..HostConfig::default()
        };
        let e = c.check_listen().unwrap_err();
        assert!(e.to_string().contains("PLUGIN_HOST_ADMIN_TOKEN"), "{e}");
        c.admin_token = Some("0123456789abcdef".into());
        c.check_listen().unwrap();
        HostConfig::default().check_listen().unwrap();
    }
}

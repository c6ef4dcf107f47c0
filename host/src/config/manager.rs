//! Settings of the plugin manager, validated once. (The config file and environment layer of
//! the server build on this.)

use std::path::PathBuf;
use std::time::Duration;

/// How the plugin manager runs plugins.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// Where shadow copies are written; default: a fresh folder under `/dev/shm` when it
    /// exists (memory-backed, so a load costs no disk write), else the system temp folder.
    pub shadow_dir: Option<PathBuf>,
    /// Limit for a plugin's library initialisers plus `initialize`.
    pub initialize_timeout: Duration,
    /// Limit for `cleanup` plus dropping the instance and joining its thread.
    pub cleanup_timeout: Duration,
    /// Limit for one `execute` call (mailbox wait included), also for dependency calls.
    pub execute_timeout: Duration,
    /// Jobs a plugin's mailbox holds (execute calls and event deliveries).
    pub mailbox_capacity: usize,
    /// How long an emitter waits on a full mailbox before the event is dropped for that
    /// subscriber.
    pub emit_block: Duration,
    /// Largest plugin file read, in bytes (default
    /// [`DEFAULT_MAX_PLUGIN_BYTES`](crate::DEFAULT_MAX_PLUGIN_BYTES), 256 MiB); larger files are
    /// refused with `file_too_large` before they are read.
    pub max_plugin_bytes: u64,
    /// Where plugins' tables live.
    pub tables: TablesConfig,
    /// Rows one tables statement may return; more is `result_too_large` (checked while rows
    /// stream in).
    pub tables_max_rows: u64,
    /// Bytes (of its JSON encoding) one tables statement may return; more is
    /// `result_too_large` (checked while rows stream in).
    pub tables_max_bytes: u64,
    /// Where plugins' topics live.
    pub topics: TopicsConfig,
    /// Where plugins' buckets live.
    pub buckets: BucketsConfig,
    /// The durable job queue.
    pub jobs: JobsConfig,
}

/// Where the job queue lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobStoreConfig {
    /// No queue: declared jobs never run, triggers enqueue nothing, and the jobs API answers
    /// `backend_unavailable`.
    #[default]
    None,
    /// A SQLite file (WAL), opened by this host only.
    Sqlite {
        /// The file, for example `<data_dir>/jobs.db`.
        path: PathBuf,
        /// Sync every commit to disk (`synchronous = FULL`); otherwise a commit survives the
        /// process being killed but maybe not the machine losing power.
        synchronous_full: bool,
    },
    /// The `plugin_host` schema of a PostgreSQL database, shareable by several hosts.
    Postgres {
        /// `postgres://user@host:port/database`
        url: String,
    },
}

/// The durable job queue's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobsConfig {
    /// Where the queue lives.
    pub store: JobStoreConfig,
    /// This host's name in leases and the execution log (default: the machine's host name
    /// and the process id).
    pub host_id: String,
    /// Job attempts run at once on this host (worker threads).
    pub workers: usize,
    /// How long a claim holds a job without a heartbeat; a host that stops heartbeating
    /// loses its jobs to the rescuer after this.
    pub lease: Duration,
    /// How often idle workers look for due jobs without a wake-up (jobs due later, retries,
    /// schedules); also the maintenance tick.
    pub poll: Duration,
    /// Bytes of input and output kept in each execution log row.
    pub log_bytes: usize,
    /// Finished jobs older than this are pruned.
    pub retention_age: Duration,
    /// At most this many finished jobs are kept (the newest).
    pub retention_count: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            store: JobStoreConfig::None,
            host_id: default_host_id(),
            workers: 8,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            log_bytes: 4096,
            retention_age: Duration::from_secs(7 * 24 * 3600),
            retention_count: 100_000,
        }
    }
}

/// `<host name>-<pid>`: unique among the processes sharing a queue.
pub(crate) fn default_host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{name}-{}", std::process::id())
}

/// The topics backend of a manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicsConfig {
    /// No topics backend: topic calls fail with `backend_unavailable`.
    #[default]
    None,
    /// The in-process log (embedded default): ordered, retained in memory, consumer groups with
    /// committed offsets. Physical topics are `<prefix>.<plugin>.<topic>`.
    Memory {
        /// Prefix of physical topic names.
        prefix: String,
    },
    /// Kafka (any Kafka-protocol broker). Physical topics are `<prefix>.<plugin>.<topic>`,
    /// consumer groups `<prefix>.<plugin>`.
    Kafka {
        /// Bootstrap servers, `host:port[,host:port]`.
        brokers: String,
        /// Prefix of physical topic names and groups.
        prefix: String,
    },
}

/// The buckets backend of a manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BucketsConfig {
    /// No buckets backend: bucket calls fail with `backend_unavailable`.
    #[default]
    None,
    /// A local folder (embedded default): objects under `<dir>/<plugin>/<bucket>/<key>`.
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Base URL presigned links point at (the admin API's address), e.g.
        /// `http://127.0.0.1:8700`; without it, presigning is refused.
        public_url: Option<String>,
    },
    /// S3 or an S3-compatible store (MinIO, s3s-fs, ...): every plugin bucket is the key prefix
    /// `<prefix><plugin>/<bucket>/` inside one configured bucket.
    S3(S3Config),
}

/// Where the S3 buckets backend stores objects, and how it signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// Endpoint URL (`http://127.0.0.1:9000`); `None`: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    /// Region requests are signed for (`us-east-1`).
    pub region: String,
    /// The one physical bucket (checked against S3's bucket naming rules).
    pub bucket: String,
    /// Prefix of every key the host writes (empty, or ending in `/`), to share a bucket.
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), which MinIO and s3s-fs need, instead of
    /// virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Static credentials.
    pub credentials: S3Credentials,
    /// Create the bucket at start when it does not exist (otherwise a missing bucket is a
    /// configuration error).
    pub create_bucket: bool,
}

impl S3Config {
    /// A config for `bucket` at `endpoint` (`None`: AWS) with path-style addressing when an
    /// endpoint is given, region `us-east-1`, no key prefix, and no bucket creation.
    pub fn new(endpoint: Option<String>, bucket: &str, credentials: S3Credentials) -> Self {
        Self {
            path_style: endpoint.is_some(),
            endpoint,
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: String::new(),
            credentials,
            create_bucket: false,
        }
    }

    /// Sets [`S3Config::region`].
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }

    /// Sets [`S3Config::prefix`].
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`S3Config::path_style`].
    pub fn with_path_style(mut self, path_style: bool) -> Self {
        self.path_style = path_style;
        self
    }

    /// Sets [`S3Config::create_bucket`].
    pub fn with_create_bucket(mut self, create_bucket: bool) -> Self {
        self.create_bucket = create_bucket;
        self
    }
}

/// Static S3 credentials. `Debug` never shows the secret or the session token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl S3Credentials {
    /// Long-term credentials (no session token).
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// Sets [`S3Credentials::session_token`].
    pub fn with_session_token(mut self, token: &str) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"(redacted)")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "(redacted)"),
            )
            .finish()
    }
}

/// The tables backend of a manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TablesConfig {
    /// No tables backend: plugins load, table calls fail with `backend_unavailable`.
    #[default]
    None,
    /// SQLite, one database file per plugin in this folder.
    Sqlite {
        /// The folder.
        dir: PathBuf,
    },
    /// PostgreSQL through an admin connection that may create roles and schemas.
    Postgres {
        /// `postgres://user@host:port/database`
        url: String,
        /// Connections per plugin pool.
        max_connections: u32,
    },
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            shadow_dir: None,
            initialize_timeout: Duration::from_secs(10),
            cleanup_timeout: Duration::from_secs(10),
            execute_timeout: Duration::from_secs(30),
            mailbox_capacity: 1024,
            emit_block: Duration::from_millis(50),
            max_plugin_bytes: crate::loader::DEFAULT_MAX_PLUGIN_BYTES,
            tables: TablesConfig::None,
            tables_max_rows: 10_000,
            tables_max_bytes: 16 << 20,
            topics: TopicsConfig::None,
            buckets: BucketsConfig::None,
            jobs: JobsConfig::default(),
        }
    }
}

impl ManagerConfig {
    /// Sets [`ManagerConfig::shadow_dir`].
    pub fn with_shadow_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shadow_dir = Some(dir.into());
        self
    }

    /// Sets [`ManagerConfig::initialize_timeout`].
    pub fn with_initialize_timeout(mut self, t: Duration) -> Self {
        self.initialize_timeout = t;
        self
    }

    /// Sets [`ManagerConfig::cleanup_timeout`].
    pub fn with_cleanup_timeout(mut self, t: Duration) -> Self {
        self.cleanup_timeout = t;
        self
    }

    /// Sets [`ManagerConfig::execute_timeout`].
    pub fn with_execute_timeout(mut self, t: Duration) -> Self {
        self.execute_timeout = t;
        self
    }

    /// Sets [`ManagerConfig::mailbox_capacity`].
    pub fn with_mailbox_capacity(mut self, n: usize) -> Self {
        self.mailbox_capacity = n;
        self
    }

    /// Sets [`ManagerConfig::tables_max_rows`] and [`ManagerConfig::tables_max_bytes`].
    pub fn with_table_result_limits(mut self, max_rows: u64, max_bytes: u64) -> Self {
        self.tables_max_rows = max_rows;
        self.tables_max_bytes = max_bytes;
        self
    }

    /// Sets [`ManagerConfig::tables`].
    pub fn with_tables(mut self, tables: TablesConfig) -> Self {
        self.tables = tables;
        self
    }

    /// Sets [`ManagerConfig::topics`].
    pub fn with_topics(mut self, topics: TopicsConfig) -> Self {
        self.topics = topics;
        self
    }

    /// Sets [`ManagerConfig::buckets`].
    pub fn with_buckets(mut self, buckets: BucketsConfig) -> Self {
        self.buckets = buckets;
        self
    }

    /// Sets [`ManagerConfig::max_plugin_bytes`].
    pub fn with_max_plugin_bytes(mut self, bytes: u64) -> Self {
        self.max_plugin_bytes = bytes;
        self
    }

    /// Sets [`ManagerConfig::jobs`].
    pub fn with_jobs(mut self, jobs: JobsConfig) -> Self {
        self.jobs = jobs;
        self
    }

    /// Sets [`ManagerConfig::emit_block`].
    pub fn with_emit_block(mut self, t: Duration) -> Self {
        self.emit_block = t;
        self
    }
}

//! The [`Error`] enum: every failure of the host library, its code and its structured details.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::codes::ErrorCode;
use super::kinds::{BackendKind, Change, Operation, ResultLimit};
use crate::manager::PluginState;

/// `Result` with the host's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the host library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plugin file does not exist.
    #[error("plugin file `{}` does not exist", path.display())]
    FileNotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// The file is not a shared library this host can load.
    #[error("`{}` is not a loadable plugin library: {reason}", path.display())]
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The library does not export a symbol every plugin exports.
    #[error("`{}` exports no `{symbol}` symbol: it was not built with plugin-api's export_plugin!", path.display())]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The missing symbol.
        symbol: &'static str,
    },
    /// The declaration does not start with the plugin-api magic value.
    #[error("`{}` has a bad declaration magic {found:?}, expected {expected:?}", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Bytes found.
        found: String,
        /// Bytes expected.
        expected: String,
    },
    /// The plugin targets an ABI or API version outside what this host accepts.
    #[error("`{}` targets plugin ABI {found}; this host accepts {accepted}", path.display())]
    IncompatibleAbi {
        /// The file.
        path: PathBuf,
        /// Version found, `major.minor`.
        found: String,
        /// Versions accepted, for example `1.0..=1.0`.
        accepted: String,
    },
    /// The plugin was built with `panic = "abort"`; a panic in it would kill the host.
    #[error("`{}` was built with panic = \"abort\"; the host needs panic = \"unwind\" so that a panic cannot kill it", path.display())]
    PanicAbort {
        /// The file.
        path: PathBuf,
    },
    /// The manifest could not be read or is invalid.
    #[error("`{}` has an invalid manifest: {reason}", path.display())]
    InvalidManifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A plugin name breaks the naming rule.
    #[error("invalid plugin name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The dynamic loader refused the library.
    #[error("cannot open `{}`", path.display())]
    LibraryOpen {
        /// The file (the original, not the shadow copy).
        path: PathBuf,
        /// The loader's error; its message holds dlerror's text.
        #[source]
        source: libloading::Error,
    },
    /// A plugin with this name is already loaded.
    #[error("plugin `{name}` is already loaded (from `{}`)", path.display())]
    AlreadyLoaded {
        /// The plugin name.
        name: String,
        /// Where the loaded one came from.
        path: PathBuf,
    },
    /// No plugin with this name is loaded.
    #[error("plugin `{name}` is not loaded")]
    NotFound {
        /// The plugin name.
        name: String,
    },
    /// A required dependency is not loaded and active.
    #[error("plugin `{plugin}` requires `{dependency}`, which is not loaded")]
    DependencyNotFound {
        /// The plugin being loaded.
        plugin: String,
        /// The missing dependency.
        dependency: String,
    },
    /// A dependency is loaded but its version does not meet the requirement.
    #[error("plugin `{plugin}` requires `{dependency}` {required}, but {found} is loaded")]
    DependencyVersion {
        /// The plugin that has the requirement.
        plugin: String,
        /// The dependency.
        dependency: String,
        /// The semver requirement.
        required: String,
        /// The version present.
        found: String,
    },
    /// A plugin lists itself as a dependency.
    #[error("plugin `{plugin}` depends on itself")]
    SelfDependency {
        /// The plugin.
        plugin: String,
    },
    /// The dependencies form a cycle.
    #[error("circular dependency: {}", cycle.join(" -> "))]
    CircularDependency {
        /// The cycle, first name repeated at the end: `["a", "b", "a"]`.
        cycle: Vec<String>,
    },
    /// Several files in one directory declare the same plugin name.
    #[error("plugin name `{name}` is declared by several files: {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    DuplicateName {
        /// The name.
        name: String,
        /// Every file declaring it.
        paths: Vec<PathBuf>,
    },
    /// Unloading was refused because active plugins depend on this one.
    #[error("plugin `{name}` has active dependents: {}", dependents.join(", "))]
    HasDependents {
        /// The plugin asked to unload.
        name: String,
        /// Its active dependents, in the order a cascade would unload them.
        dependents: Vec<String>,
    },
    /// The plugin's `initialize` returned an error or panicked.
    #[error("plugin `{plugin}` failed to initialize: {message}")]
    InitializeFailed {
        /// The plugin.
        plugin: String,
        /// The plugin's error code (`panicked` for a panic).
        plugin_code: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin's `execute` (or another hook) returned an error or panicked.
    #[error("plugin `{plugin}` failed: {message}")]
    PluginFailed {
        /// The plugin.
        plugin: String,
        /// The plugin's error code (`panicked` for a panic).
        plugin_code: String,
        /// The plugin's message.
        message: String,
        /// Whether it was a panic.
        panicked: bool,
    },
    /// The plugin declares no function of that name.
    #[error("plugin `{plugin}` has no function `{function}`")]
    FunctionNotFound {
        /// The plugin.
        plugin: String,
        /// The function asked for.
        function: String,
    },
    /// No job has that id.
    #[error("no job has id {id}")]
    JobNotFound {
        /// The id asked for.
        id: i64,
    },
    /// The job's state does not allow the operation.
    #[error("job {id} is {state}: it cannot be {operation}{}", if operation == "retry" { "d (only a discarded, completed or retryable job can)" } else { "led (only a waiting job can)" })]
    JobStateConflict {
        /// The job.
        id: i64,
        /// Its state.
        state: String,
        /// `retry` or `cancel`.
        operation: String,
    },
    /// The plugin declares no job kind of that name.
    #[error("plugin `{plugin}` declares no job kind `{kind}`")]
    JobKindNotFound {
        /// The plugin.
        plugin: String,
        /// The kind asked for.
        kind: String,
    },
    /// The plugin declares no schedule of that name.
    #[error("plugin `{plugin}` declares no schedule `{schedule}`")]
    ScheduleNotFound {
        /// The plugin.
        plugin: String,
        /// The schedule asked for.
        schedule: String,
    },
    /// A call's input does not satisfy the function's declared input schema.
    #[error("input of `{plugin}`'s function `{function}` is invalid: {}", errors.join("; "))]
    InvalidInput {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// What the schema rejected, one entry per error (`/path: message`).
        errors: Vec<String>,
    },
    /// A declared route is invalid.
    #[error("`{plugin}` declares an invalid route {method} {path}: {reason}")]
    InvalidRoute {
        /// The plugin.
        plugin: String,
        /// The method, as declared.
        method: String,
        /// The path template, as declared.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A declared job kind is invalid.
    #[error("`{plugin}` declares an invalid job kind `{job}`: {reason}")]
    InvalidJob {
        /// The plugin.
        plugin: String,
        /// The job kind's name, as declared.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// A declared schedule is invalid.
    #[error("`{plugin}` declares an invalid schedule `{schedule}`: {reason}")]
    InvalidSchedule {
        /// The plugin.
        plugin: String,
        /// The schedule's name, as declared.
        schedule: String,
        /// What is wrong.
        reason: String,
    },
    /// Two declared routes answer the same requests.
    #[error("`{plugin}` declares {method} routes of the same shape twice: {}", paths.join(" and "))]
    RouteConflict {
        /// The plugin.
        plugin: String,
        /// The method.
        method: String,
        /// The two templates.
        paths: Vec<String>,
    },
    /// The functions a plugin registers differ from those its manifest declares.
    #[error("plugin `{plugin}` does not register the functions it declares: {message}")]
    FunctionMismatch {
        /// The plugin.
        plugin: String,
        /// Which function and how (declared but not registered, or the reverse, or twice).
        message: String,
    },
    /// A plugin did not answer within the configured time.
    #[error("plugin `{plugin}` did not finish {operation} within {after:?}")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// What it was doing.
        operation: Operation,
        /// The limit.
        after: Duration,
    },
    /// The plugin is disabled; enable it first.
    #[error("plugin `{name}` is disabled")]
    Disabled {
        /// The plugin.
        name: String,
    },
    /// The plugin is in a state that does not allow the operation.
    #[error("plugin `{name}` is {state}, not active")]
    NotActive {
        /// The plugin.
        name: String,
        /// Its state.
        state: PluginState,
    },
    /// A plugin asked for a plugin it did not declare as a dependency.
    #[error("plugin `{plugin}` did not declare a dependency on `{dependency}`")]
    DependencyNotDeclared {
        /// The caller.
        plugin: String,
        /// What it asked for.
        dependency: String,
    },
    /// A dependency handle outlived its dependency (unloaded since; a reload does not end it).
    #[error(
        "plugin `{plugin}` used a stale handle to `{target}` (generation {generation}); that plugin was unloaded since"
    )]
    Stale {
        /// The caller.
        plugin: String,
        /// What the handle pointed at.
        target: String,
        /// The generation the handle was bound to.
        generation: u64,
    },
    /// A reload found a different plugin name in the file.
    #[error("`{}` now declares plugin `{found}`, not `{expected}`", path.display())]
    NameChanged {
        /// The file.
        path: PathBuf,
        /// The loaded plugin's name.
        expected: String,
        /// The name in the file.
        found: String,
    },
    /// An event name breaks the naming rule.
    #[error("invalid event name `{name}`: {reason}")]
    InvalidEventName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A subscription pattern breaks the pattern rules.
    #[error("invalid pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// No live subscription with this id belongs to the caller.
    #[error("no subscription {id} of this owner")]
    SubscriptionNotFound {
        /// The id asked for.
        id: u64,
    },
    /// The host's configuration is invalid.
    #[error("invalid configuration `{key}`: {message}")]
    InvalidConfig {
        /// The key (or environment variable, or flag) at fault.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A plugin's configuration does not match the JSON Schema in its manifest.
    #[error("configuration of plugin `{plugin}` does not match its schema: {}", errors.join("; "))]
    PluginConfigRejected {
        /// The plugin.
        plugin: String,
        /// Every schema error, with the JSON pointer of the value at fault.
        errors: Vec<String>,
    },
    /// Operator overrides are invalid.
    #[error("invalid overrides: {message}")]
    InvalidOverrides {
        /// What is wrong.
        message: String,
    },
    /// A plugin asked for a table it may not use.
    #[error("plugin `{plugin}` may not access {table} (allowed: {})", allowed.join(", "))]
    TableAccessDenied {
        /// The plugin.
        plugin: String,
        /// What it asked for: a table by name (a logical name, or the database's refusal),
        /// or a statement whose tables were not determined.
        table: crate::resources::DeniedTable,
        /// Logical tables it may use.
        allowed: Vec<String>,
    },
    /// A plugin asked for a topic it may not use.
    #[error("plugin `{plugin}` may not access topic `{topic}` (allowed: {})", allowed.join(", "))]
    TopicAccessDenied {
        /// The plugin.
        plugin: String,
        /// What it asked for.
        topic: String,
        /// Logical topics it may use.
        allowed: Vec<String>,
    },
    /// A plugin asked for a bucket it may not use.
    #[error("plugin `{plugin}` may not access bucket `{bucket}` (allowed: {})", allowed.join(", "))]
    BucketAccessDenied {
        /// The plugin.
        plugin: String,
        /// What it asked for.
        bucket: String,
        /// Logical buckets it may use.
        allowed: Vec<String>,
    },
    /// An object key breaks the key rules (it could escape its bucket, or is malformed).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given (lossy).
        key: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A presigned link is malformed, was tampered with, or has expired.
    #[error("presigned link refused: {reason}")]
    PresignedUrlInvalid {
        /// Why (malformed, bad signature, expired); never the token itself.
        reason: String,
    },
    /// No object has this key (a presigned link to an object deleted since).
    #[error("no object `{key}` in bucket `{bucket}`")]
    ObjectNotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The database refused a plugin's statement on an object it may not use: a function, a
    /// schema, a language, a catalog view, temporary objects, ... (tables the host maps are
    /// refused with `table_access_denied`).
    #[error("plugin `{plugin}` may not use {kind}{}", name.as_ref().map(|n| format!(" `{n}`")).unwrap_or_default())]
    SqlAccessDenied {
        /// The plugin.
        plugin: String,
        /// What kind of object: `table`, `view`, `function`, `schema`, `language`,
        /// `database`, `large object`, ...
        kind: String,
        /// The object's name as the database gave it; `None` when the database refused the
        /// statement without naming the object.
        name: Option<String>,
    },
    /// A statement's result went over a configured limit while it streamed in; the rest was
    /// not read.
    #[error(
        "plugin `{plugin}`: the result is larger than {limit} = {max}; narrow the query (WHERE, LIMIT) or raise the limit"
    )]
    ResultTooLarge {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit: ResultLimit,
        /// Its value.
        max: u64,
    },
    /// The database refused a statement for another reason than access.
    #[error("plugin `{plugin}`: SQL error{}: {message}", sqlstate.as_ref().map(|s| format!(" {s}")).unwrap_or_default())]
    Sql {
        /// The plugin.
        plugin: String,
        /// The database's message.
        message: String,
        /// SQLSTATE, when the database gave one.
        sqlstate: Option<String>,
    },
    /// A backend (database, broker, object store) cannot be reached or is not configured.
    #[error("{kind} backend unavailable: {message}")]
    BackendUnavailable {
        /// Which backend.
        kind: BackendKind,
        /// What went wrong.
        message: String,
    },
    /// A request was malformed.
    #[error("bad request: {message}")]
    BadRequest {
        /// What is wrong.
        message: String,
    },
    /// An I/O error on a host-owned file.
    #[error("i/o error on `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A lifecycle change was not made because its requester gave up waiting (see
    /// `CommitGate`): nothing of it took effect.
    #[error("{operation} not done: its request timed out before it took effect; nothing changed")]
    Abandoned {
        /// What was asked.
        operation: Change,
    },
    /// A path that cannot name a plugin file or folder: a NUL byte, a component or the whole
    /// path too long, relative where an absolute path is required, or not a regular file (a
    /// directory, FIFO, device, socket, or a pseudo-file such as those under `/proc`).
    #[error("invalid path `{}`: {reason}", path.display())]
    InvalidPath {
        /// The path as given (cut to its first 200 characters when longer).
        path: PathBuf,
        /// Which rule it breaks.
        reason: String,
    },
    /// A plugin file is larger than the configured limit (`limits.max_plugin_bytes`).
    #[error("`{}` is {size} bytes; plugin files are limited to {limit} bytes (limits.max_plugin_bytes)", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A plugin was loaded, reloaded or unloaded by another operation each time this one read
    /// its file (before taking the transition lock): the bytes read were never used, nothing of
    /// this operation took effect.
    #[error(
        "plugin `{plugin}` changed while its file was read, {attempts} times in a row; nothing was changed, try again"
    )]
    ConcurrentChange {
        /// The plugin.
        plugin: String,
        /// How many times its file was read.
        attempts: usize,
    },
    /// Another host process holds the data folder's lock.
    #[error("data folder `{}` is in use by another plugin-host process{}; stop it or use another --data-dir", path.display(), holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    DataDirInUse {
        /// The data folder.
        path: PathBuf,
        /// The pid written in the lock file by its holder, when readable.
        holder: Option<u32>,
    },
    /// A bug or an unexpected condition inside the host.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

impl Error {
    /// Machine-readable code; stable across releases. See docs/error-codes.md.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::FileNotFound { .. } => ErrorCode::FileNotFound,
            Self::NotALibrary { .. }
            | Self::MissingSymbol { .. }
            | Self::BadMagic { .. }
            | Self::InvalidManifest { .. }
            | Self::LibraryOpen { .. }
            | Self::NameChanged { .. } => ErrorCode::InvalidPlugin,
            Self::IncompatibleAbi { .. } => ErrorCode::IncompatibleAbi,
            Self::PanicAbort { .. } => ErrorCode::UnsupportedPanicStrategy,
            Self::InvalidName { .. } => ErrorCode::InvalidName,
            Self::AlreadyLoaded { .. } => ErrorCode::AlreadyLoaded,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::DependencyNotFound { .. } => ErrorCode::DependencyNotFound,
            Self::DependencyVersion { .. } => ErrorCode::DependencyVersionMismatch,
            Self::SelfDependency { .. } => ErrorCode::SelfDependency,
            Self::CircularDependency { .. } => ErrorCode::CircularDependency,
            Self::DuplicateName { .. } => ErrorCode::DuplicatePlugin,
            Self::HasDependents { .. } => ErrorCode::HasDependents,
            Self::InitializeFailed { .. } => ErrorCode::InitializeFailed,
            Self::PluginFailed { .. } => ErrorCode::PluginFailed,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::FunctionNotFound { .. } => ErrorCode::FunctionNotFound,
            Self::InvalidInput { .. } => ErrorCode::InvalidInput,
            Self::JobNotFound { .. } => ErrorCode::JobNotFound,
            Self::JobStateConflict { .. } => ErrorCode::JobStateConflict,
            Self::JobKindNotFound { .. } => ErrorCode::JobKindNotFound,
            Self::ScheduleNotFound { .. } => ErrorCode::ScheduleNotFound,
            Self::FunctionMismatch { .. } => ErrorCode::FunctionMismatch,
            Self::InvalidRoute { .. } => ErrorCode::InvalidRoute,
            Self::RouteConflict { .. } => ErrorCode::RouteConflict,
            Self::InvalidJob { .. } => ErrorCode::InvalidJob,
            Self::InvalidSchedule { .. } => ErrorCode::InvalidSchedule,
            Self::Disabled { .. } => ErrorCode::PluginDisabled,
            Self::NotActive { .. } => ErrorCode::PluginNotActive,
            Self::DependencyNotDeclared { .. } => ErrorCode::DependencyNotDeclared,
            Self::Stale { .. } => ErrorCode::StaleHandle,
            Self::InvalidEventName { .. } => ErrorCode::InvalidEventName,
            Self::InvalidPattern { .. } => ErrorCode::InvalidPattern,
            Self::SubscriptionNotFound { .. } => ErrorCode::SubscriptionNotFound,
            Self::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            Self::PluginConfigRejected { .. } => ErrorCode::InvalidPluginConfig,
            Self::InvalidOverrides { .. } => ErrorCode::InvalidOverrides,
            Self::TableAccessDenied { .. } => ErrorCode::TableAccessDenied,
            Self::Sql { .. } => ErrorCode::SqlError,
            Self::SqlAccessDenied { .. } => ErrorCode::SqlAccessDenied,
            Self::ResultTooLarge { .. } => ErrorCode::ResultTooLarge,
            Self::BackendUnavailable { .. } => ErrorCode::BackendUnavailable,
            Self::TopicAccessDenied { .. } => ErrorCode::TopicAccessDenied,
            Self::BucketAccessDenied { .. } => ErrorCode::BucketAccessDenied,
            Self::InvalidKey { .. } => ErrorCode::InvalidKey,
            Self::PresignedUrlInvalid { .. } => ErrorCode::PresignedUrlInvalid,
            Self::ObjectNotFound { .. } => ErrorCode::NotFound,
            Self::Abandoned { .. } => ErrorCode::Timeout,
            Self::BadRequest { .. } => ErrorCode::BadRequest,
            Self::InvalidPath { .. } => ErrorCode::InvalidPath,
            Self::FileTooLarge { .. } => ErrorCode::FileTooLarge,
            Self::DataDirInUse { .. } => ErrorCode::DataDirInUse,
            Self::ConcurrentChange { .. } => ErrorCode::ConcurrentChange,
            Self::Io { .. } | Self::Internal { .. } => ErrorCode::Internal,
        }
    }

    /// Structured details for API clients (`{}` when there are none). Their fields, per code,
    /// are listed in `docs/error-codes.md` ([`ErrorCode::details_fields`]).
    pub fn details(&self) -> Value {
        // No wildcard: a new variant must say what details it gives.
        match self {
            Self::CircularDependency { cycle } => json!({ "cycle": cycle }),
            Self::HasDependents { dependents, .. } => json!({ "dependents": dependents }),
            Self::DuplicateName { paths, .. } => json!({ "paths": paths }),
            Self::DependencyVersion {
                plugin,
                dependency,
                required,
                found,
            } => {
                json!({ "plugin": plugin, "dependency": dependency, "required": required, "found": found })
            }
            Self::DependencyNotFound { plugin, dependency }
            | Self::DependencyNotDeclared { plugin, dependency } => {
                json!({ "plugin": plugin, "dependency": dependency })
            }
            Self::InitializeFailed {
                plugin,
                plugin_code,
                ..
            } => {
                json!({ "plugin": plugin, "plugin_code": plugin_code })
            }
            Self::PluginFailed {
                plugin,
                plugin_code,
                panicked,
                ..
            } => {
                json!({ "plugin": plugin, "plugin_code": plugin_code, "panicked": panicked })
            }
            Self::IncompatibleAbi {
                found, accepted, ..
            } => json!({ "found": found, "accepted": accepted }),
            Self::Timeout {
                plugin,
                operation,
                after,
            } => {
                json!({ "plugin": plugin, "operation": operation, "after_ms": after.as_millis() })
            }
            Self::InvalidConfig { key, .. } => json!({ "key": key }),
            Self::FunctionNotFound { plugin, function } => {
                json!({ "plugin": plugin, "function": function })
            }
            Self::JobNotFound { id } => json!({ "id": id }),
            Self::JobStateConflict {
                id,
                state,
                operation,
            } => json!({ "id": id, "state": state, "operation": operation }),
            Self::JobKindNotFound { plugin, kind } => json!({ "plugin": plugin, "kind": kind }),
            Self::ScheduleNotFound { plugin, schedule } => {
                json!({ "plugin": plugin, "schedule": schedule })
            }
            Self::InvalidInput {
                plugin,
                function,
                errors,
            } => json!({ "plugin": plugin, "function": function, "errors": errors }),
            Self::FunctionMismatch { plugin, .. } => json!({ "plugin": plugin }),
            Self::InvalidRoute {
                plugin,
                method,
                path,
                ..
            } => json!({ "plugin": plugin, "method": method, "path": path }),
            Self::RouteConflict {
                plugin,
                method,
                paths,
            } => json!({ "plugin": plugin, "method": method, "paths": paths }),
            Self::InvalidJob { plugin, job, .. } => json!({ "plugin": plugin, "job": job }),
            Self::InvalidSchedule {
                plugin, schedule, ..
            } => json!({ "plugin": plugin, "schedule": schedule }),
            Self::TableAccessDenied {
                plugin,
                table,
                allowed,
            } => json!({ "plugin": plugin, "table": table, "allowed": allowed }),
            Self::Sql { sqlstate, .. } => json!({ "sqlstate": sqlstate }),
            Self::SqlAccessDenied { plugin, kind, name } => {
                json!({ "plugin": plugin, "kind": kind, "name": name })
            }
            Self::ResultTooLarge { plugin, limit, max } => {
                json!({ "plugin": plugin, "limit": limit, "max": max })
            }
            Self::TopicAccessDenied {
                plugin,
                topic,
                allowed,
            } => json!({ "plugin": plugin, "topic": topic, "allowed": allowed }),
            Self::BucketAccessDenied {
                plugin,
                bucket,
                allowed,
            } => json!({ "plugin": plugin, "bucket": bucket, "allowed": allowed }),
            Self::PluginConfigRejected { plugin, errors } => {
                json!({ "plugin": plugin, "errors": errors })
            }
            Self::InvalidPath { path, .. } => json!({ "path": path }),
            Self::FileTooLarge { size, limit, .. } => json!({ "size": size, "limit": limit }),
            Self::ConcurrentChange { plugin, attempts } => {
                json!({ "plugin": plugin, "attempts": attempts })
            }
            Self::FileNotFound { .. }
            | Self::NotALibrary { .. }
            | Self::MissingSymbol { .. }
            | Self::BadMagic { .. }
            | Self::PanicAbort { .. }
            | Self::InvalidManifest { .. }
            | Self::InvalidName { .. }
            | Self::LibraryOpen { .. }
            | Self::AlreadyLoaded { .. }
            | Self::NotFound { .. }
            | Self::SelfDependency { .. }
            | Self::Disabled { .. }
            | Self::NotActive { .. }
            | Self::Stale { .. }
            | Self::NameChanged { .. }
            | Self::InvalidEventName { .. }
            | Self::InvalidPattern { .. }
            | Self::SubscriptionNotFound { .. }
            | Self::InvalidOverrides { .. }
            | Self::InvalidKey { .. }
            | Self::PresignedUrlInvalid { .. }
            | Self::ObjectNotFound { .. }
            | Self::BackendUnavailable { .. }
            | Self::BadRequest { .. }
            | Self::Io { .. }
            | Self::Abandoned { .. }
            | Self::DataDirInUse { .. }
            | Self::Internal { .. } => json!({}),
        }
    }

    /// The message and its whole chain of causes, joined by `: ` (libloading's source holds
    /// dlerror's text, which is what an operator needs to see).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_message_names_the_cycle() {
        let e = Error::CircularDependency {
            cycle: vec!["a".into(), "b".into(), "a".into()],
        };
        assert_eq!(e.to_string(), "circular dependency: a -> b -> a");
        assert_eq!(e.details()["cycle"][2], "a");
    }
}

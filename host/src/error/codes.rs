//! The host's error codes, each defined once: its string, its HTTP status, its meaning and its
//! details fields. `docs/error-codes.md` is generated from this table (a test of the admin API
//! checks it is current). Adding a code: one row below, then the arms the compiler asks for
//! (`Error::code`, `Error::details`, `ErrorCode::example`).

use serde::{Serialize, Serializer};

crate::error_codes! {
    /// A stable, machine-readable error code (the snake_case strings of shared/API.md).
    pub enum ErrorCode {
        /// The request itself is malformed. Typical cause: a directory that does not exist, a
        /// body that is not JSON, a bus or bucket request a plugin built by hand.
        BadRequest = "bad_request", 400, {};
        /// No plugin with that name is loaded (or no route has that path, or no object has that
        /// key). Typical cause: unload or execute of an unknown name; a valid presigned link to
        /// an object deleted since.
        NotFound = "not_found", 404, {};
        /// The plugin file does not exist. Typical cause: a typo in a path.
        FileNotFound = "file_not_found", 400, {};
        /// A plugin with that name is already loaded. Typical cause: loading the same plugin
        /// twice.
        AlreadyLoaded = "already_loaded", 409, {};
        /// The file is not a loadable plugin: a text file named `.so`, a library without
        /// `PLUGIN_HOST_DECLARATION` / `plugin_host_entry`, a bad magic, an invalid manifest,
        /// a library dlopen refused (the message carries dlerror's text), or a reload whose file
        /// now declares another name.
        InvalidPlugin = "invalid_plugin", 400, {};
        /// Built against another plugin ABI: ABI major not the host's, or API minor newer than
        /// the host's; the message says what was found and what is accepted.
        IncompatibleAbi = "incompatible_abi", 400, {
            found: "the plugin's ABI version, `major.minor`",
            accepted: "the versions this host accepts, for example `1.0..=1.1`",
        };
        /// Built with `panic = "abort"`: a panic in it would abort the host, so it is refused.
        UnsupportedPanicStrategy = "unsupported_panic_strategy", 400, {};
        /// A name breaks its rule (a plugin name is 1 to 64 of `a-z 0-9 - _`, starting with a
        /// letter). Typical cause: `My.Plugin`.
        InvalidName = "invalid_name", 400, {};
        /// A declared dependency is not loaded and active. Typical cause: loading `greeter`
        /// before `hello`.
        DependencyNotFound = "dependency_not_found", 409, {
            plugin: "the plugin being loaded",
            dependency: "the missing dependency",
        };
        /// A dependency's version does not meet the requirement. Typical cause: `hello ^2`
        /// required, `1.0.0` loaded; or a reload to a version a dependent refuses.
        DependencyVersionMismatch = "dependency_version_mismatch", 409, {
            plugin: "the plugin that has the requirement",
            dependency: "the dependency",
            required: "the semver requirement",
            found: "the version present",
        };
        /// A plugin depends on itself.
        SelfDependency = "self_dependency", 400, {};
        /// The dependencies form a cycle.
        CircularDependency = "circular_dependency", 409, {
            cycle: "the cycle, first name repeated at the end: `[\"a\",\"b\",\"a\"]`",
        };
        /// Several files in one folder declare the same plugin name; all are refused.
        DuplicatePlugin = "duplicate_plugin", 409, {
            paths: "every file declaring the name",
        };
        /// Unload refused because active plugins depend on this one. Typical cause: unload
        /// `hello` while `greeter` runs, without cascade.
        HasDependents = "has_dependents", 409, {
            dependents: "the active dependents, in the order a cascade would unload them",
        };
        /// The plugin's `initialize` returned an error or panicked; nothing of it stays loaded.
        InitializeFailed = "initialize_failed", 422, {
            plugin: "the plugin",
            plugin_code: "the plugin's own error code (`panicked` for a panic)",
        };
        /// `execute` (or another hook) returned an error or panicked.
        PluginFailed = "plugin_failed", 422, {
            plugin: "the plugin",
            plugin_code: "the plugin's own error code (`panicked` for a panic)",
            panicked: "whether it was a panic",
        };
        /// Something did not finish in time: a plugin call (the plugin is marked failed when it
        /// hung in `initialize` or `cleanup`, and its library is then never closed), an admin
        /// request (`timeouts.request_ms`), or a lifecycle change whose requester gave up before
        /// it took effect (nothing changed). The details are those of a plugin call.
        Timeout = "timeout", 504, {
            plugin: "the plugin",
            operation: "what it was doing: `open`, `create`, `initialize`, `execute`, `call`, `enable`, `disable` or `cleanup`",
            after_ms: "the limit, in milliseconds",
        };
        /// The plugin declares no function of that name. Typical cause: a typo in
        /// `/call/{function}`, or a plugin built before the function was added.
        FunctionNotFound = "function_not_found", 404, {
            plugin: "the plugin",
            function: "the name asked for",
        };
        /// No job has that id (it never existed, or finished and was pruned).
        JobNotFound = "job_not_found", 404, {
            id: "the job id asked for",
        };
        /// The job's state does not allow the operation: retry of a job that is waiting or
        /// running, cancel of one that is running or finished.
        JobStateConflict = "job_state_conflict", 409, {
            id: "the job",
            state: "its state",
            operation: "`retry` or `cancel`",
        };
        /// The loaded plugin declares no job kind of that name. Typical cause: a typo, or a
        /// plugin version without the kind.
        JobKindNotFound = "job_kind_not_found", 404, {
            plugin: "the plugin",
            kind: "the kind asked for",
        };
        /// The loaded plugin declares no schedule of that name.
        ScheduleNotFound = "schedule_not_found", 404, {
            plugin: "the plugin",
            schedule: "the schedule asked for",
        };
        /// A call's input does not satisfy the function's declared input schema; the plugin
        /// never saw it.
        InvalidInput = "invalid_input", 400, {
            plugin: "the plugin",
            function: "the function",
            errors: "what the schema rejected, one entry per error (`/path: message`)",
        };
        /// The functions a plugin registers differ from those its manifest declares (declared
        /// but not registered, registered but not declared, or registered twice): the load is
        /// refused.
        FunctionMismatch = "function_mismatch", 422, {
            plugin: "the plugin",
        };
        /// A route the manifest declares is invalid: a method other than GET, POST, PUT, PATCH
        /// or DELETE, a template not starting with `/`, an empty segment, a parameter not
        /// written `{name}` or named twice, a handler function the manifest does not declare, an
        /// unknown auth policy, an auth plugin (`plugin:<name>`) that is not a declared
        /// dependency, a schema that does not compile, or a stream pattern that is not a bus
        /// pattern. The load is refused.
        InvalidRoute = "invalid_route", 400, {
            plugin: "the plugin",
            method: "the route's method, as declared",
            path: "the route's path template, as declared",
        };
        /// Two routes of a manifest have the same method and path shape (`/a/{x}` and `/a/{y}`
        /// are one shape): the load is refused.
        RouteConflict = "route_conflict", 400, {
            plugin: "the plugin",
            method: "the method",
            paths: "the two conflicting templates",
        };
        /// A job kind the manifest declares is invalid: a name that breaks the name rule or is
        /// declared twice, a handler function the manifest does not declare, a trigger that is
        /// not a valid bus pattern (or is listed twice), `max_attempts` 0, a backoff base of 0
        /// or a cap below the base, or a dedupe template that does not parse. The load (and
        /// `inspect`) is refused.
        InvalidJob = "invalid_job", 400, {
            plugin: "the plugin",
            job: "the job kind's name, as declared",
        };
        /// A schedule the manifest declares is invalid: a name that breaks the name rule or is
        /// declared twice, a job kind the manifest does not declare, a cron expression that
        /// does not parse, an unknown time zone, an interval of 0, or both or neither of a cron
        /// expression and an interval. The load (and `inspect`) is refused.
        InvalidSchedule = "invalid_schedule", 400, {
            plugin: "the plugin",
            schedule: "the schedule's name, as declared",
        };
        /// The plugin is disabled. Typical cause: execute after disable.
        PluginDisabled = "plugin_disabled", 409, {};
        /// The plugin is loading, stopping or failed. Typical cause: a call racing an unload.
        PluginNotActive = "plugin_not_active", 409, {};
        /// A plugin asked for a plugin it did not declare as a dependency: the host's wall
        /// between plugins.
        DependencyNotDeclared = "dependency_not_declared", 422, {
            plugin: "the caller",
            dependency: "what it asked for",
        };
        /// A dependency handle outlived its dependency: the dependency was unloaded (and maybe
        /// loaded again) since the handle was obtained. A reload does not end a handle: it
        /// follows its dependency to the new instance.
        StaleHandle = "stale_handle", 409, {};
        /// An event name breaks the bus rules (docs in `host/src/bus.rs`). Typical cause: `a::b`.
        InvalidEventName = "invalid_event_name", 400, {};
        /// A subscription pattern breaks the bus rules. Typical cause: `da*`, `**:x`.
        InvalidPattern = "invalid_pattern", 400, {};
        /// `off` of an id that is not a live subscription of this plugin. Typical cause:
        /// removing another plugin's subscription.
        SubscriptionNotFound = "subscription_not_found", 404, {};
        /// The host's configuration is invalid.
        InvalidConfig = "invalid_config", 400, {
            key: "the key, environment variable or flag at fault",
        };
        /// A plugin's configuration does not match the JSON Schema in its manifest.
        InvalidPluginConfig = "invalid_plugin_config", 422, {
            plugin: "the plugin",
            errors: "every schema error, with the JSON pointer of the value at fault",
        };
        /// Operator overrides are malformed or name resources the plugin may not map.
        InvalidOverrides = "invalid_overrides", 400, {};
        /// A plugin used a table it may not use. Counted per plugin.
        TableAccessDenied = "table_access_denied", 422, {
            plugin: "the plugin",
            table: "its logical name, or the name the database refused",
            allowed: "the plugin's logical tables",
        };
        /// The database refused a statement for another reason than access (a statement
        /// cancelled because the call into the plugin timed out has SQLSTATE `57014`, on both
        /// backends).
        SqlError = "sql_error", 422, {
            sqlstate: "PostgreSQL's SQLSTATE, or `null`",
        };
        /// The database refused a plugin's statement on another object it may not use (a
        /// function such as `lo_create` or `pg_notify`, a catalog view, a schema, a language, a
        /// superuser-only setting, temporary objects, the schema tables of SQLite). Counted per
        /// plugin.
        SqlAccessDenied = "sql_access_denied", 422, {
            plugin: "the plugin",
            kind: "what kind of object: `function`, `schema`, `view`, `language`, ...",
            name: "the object's name as the database gave it (`null` when it named none)",
        };
        /// A statement's result went over `limits.tables_max_rows` or
        /// `limits.tables_max_bytes` while it streamed in (the rest is not read), or, on SQLite,
        /// one value (string, blob, row) of a statement went over `limits.tables_max_bytes`,
        /// even one never returned.
        ResultTooLarge = "result_too_large", 422, {
            plugin: "the plugin",
            limit: "the limit's key: `limits.tables_max_rows` or `limits.tables_max_bytes`",
            max: "its value",
        };
        /// A tables, topics or buckets backend is not configured or does not answer.
        BackendUnavailable = "backend_unavailable", 503, {};
        /// A plugin used a topic it may not use. Counted per plugin.
        TopicAccessDenied = "topic_access_denied", 422, {
            plugin: "the plugin",
            topic: "what it asked for",
            allowed: "the plugin's logical topics",
        };
        /// A plugin used a bucket it may not use. Counted per plugin.
        BucketAccessDenied = "bucket_access_denied", 422, {
            plugin: "the plugin",
            bucket: "what it asked for",
            allowed: "the plugin's logical buckets",
        };
        /// An object key breaks the key rules (`..`, absolute, NUL, backslash, empty segment,
        /// over 1024 bytes).
        InvalidKey = "invalid_key", 400, {};
        /// A presigned bucket link (`GET /presigned/{token}`) is malformed, its signature does
        /// not match (tampered, or signed with another host's key), or it has expired. A valid
        /// link to an object deleted since answers `not_found`.
        PresignedUrlInvalid = "presigned_url_invalid", 403, {};
        /// A path the host refuses before reading anything: a NUL byte, a component over 255
        /// bytes or a path over 4095 bytes, a relative path sent to the admin API, a directory,
        /// FIFO, device or socket, a file whose size is 0 or does not match its content
        /// (`/proc`, `/sys` pseudo-files).
        InvalidPath = "invalid_path", 400, {
            path: "the path as given (cut to its first 200 characters when longer)",
        };
        /// A plugin file is over `limits.max_plugin_bytes` (default 256 MiB); refused before it
        /// is read. Typical cause: `/dev/zero` copied to a huge file.
        FileTooLarge = "file_too_large", 400, {
            size: "the file's size in bytes",
            limit: "the limit in bytes",
        };
        /// `serve` refused to start: another `plugin-host` process holds the data folder's lock
        /// (`DATA_DIR/.lock`); the message names its pid.
        DataDirInUse = "data_dir_in_use", 409, {};
        /// A reload or settings change read the plugin's file before taking the transition lock,
        /// and each time (5 attempts) another operation had loaded, reloaded or unloaded the
        /// plugin meanwhile; the bytes read were not used and nothing changed. Typical cause: a
        /// client reloading the same plugin in a tight loop beside another.
        ConcurrentChange = "concurrent_change", 409, {
            plugin: "the plugin",
            attempts: "how many times its file was read",
        };
        /// A host-side I/O error or a bug.
        Internal = "internal", 500, {};
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_with_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!((400..=599).contains(&code.http_status()), "{s}");
            assert!(!code.meaning().trim().is_empty(), "{s}");
        }
        assert_eq!(ErrorCode::CircularDependency.http_status(), 409);
        assert_eq!(ErrorCode::Internal.to_string(), "internal");
        assert_eq!(
            serde_json::to_value(ErrorCode::PluginFailed).unwrap(),
            "plugin_failed"
        );
    }
}

//! What a plugin declares: name, version, dependencies, the typed functions it offers, the HTTP
//! routes it serves, the job kinds and schedules it declares, and the tables, topics and buckets
//! it may touch.
//!
//! A plugin writes its [`Manifest`] as an associated constant of its [`Plugin`](crate::Plugin)
//! impl. `export_plugin!` encodes it as JSON *at compile time* into the exported declaration, so
//! the host can read and validate it from the file before any plugin code runs. The encoder is a
//! `const fn`; an invalid name is a compile error, not a runtime surprise.

use crate::http::{Auth, Route};
use crate::jobs::{Job, Schedule};

/// A dependency on another plugin: its name and a semver requirement (`"^1.2"`, `"*"`).
#[derive(Debug, Clone, Copy)]
pub struct Dependency {
    /// Name of the plugin depended on.
    pub name: &'static str,
    /// Semver requirement its version must meet.
    pub version: &'static str,
}

/// A named function a plugin offers, as declared in its [`Manifest`]: the host reads these from
/// the file before opening it, lists them (`inspect`, the admin API) and validates a call's input
/// against `input_schema` before the plugin sees it. The implementation is registered in
/// [`Plugin::functions`](crate::Plugin::functions); the glue refuses to load a plugin whose
/// registered set differs from the declared one.
///
/// ```
/// use plugin_api::Function;
/// const GREET: Function = Function::new("greet")
///     .summary("greets someone by name")
///     .input_schema(r#"{"type":"object","properties":{"name":{"type":"string"}}}"#);
/// assert_eq!(GREET.name, "greet");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Function {
    /// Function name: the plugin-name rule (1 to 64 characters of `a-z 0-9 - _`, starting
    /// with a letter).
    pub name: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// JSON Schema of the input, as JSON text (empty: any input).
    pub input_schema: &'static str,
    /// JSON Schema of the output, as JSON text (empty: not described).
    pub output_schema: &'static str,
}

impl Function {
    /// A function with a name and nothing else declared.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            summary: "",
            input_schema: "",
            output_schema: "",
        }
    }

    /// Sets the one-line summary.
    pub const fn summary(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }

    /// Sets the JSON Schema of the input (JSON text); the host validates every call against it.
    pub const fn input_schema(mut self, schema: &'static str) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the JSON Schema of the output (JSON text), for documentation.
    pub const fn output_schema(mut self, schema: &'static str) -> Self {
        self.output_schema = schema;
        self
    }
}

/// A plugin's declaration, built with `const fn`s.
///
/// ```
/// use plugin_api::Manifest;
/// const M: Manifest = Manifest::new("greeter", "1.0.0")
///     .description("says hello through the hello plugin")
///     .depends_on(&[("hello", "^1")])
///     .tables(&["users"]);
/// assert_eq!(M.name, "greeter");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Manifest {
    /// Plugin name: 1 to 64 characters of `a-z 0-9 - _`, starting with a letter.
    pub name: &'static str,
    /// Semver version of the plugin.
    pub version: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Plugins this one calls, with version requirements.
    pub dependencies: &'static [(&'static str, &'static str)],
    /// Logical table names the plugin may use.
    pub tables: &'static [&'static str],
    /// Logical topic names the plugin may use.
    pub topics: &'static [&'static str],
    /// Logical bucket names the plugin may use.
    pub buckets: &'static [&'static str],
    /// JSON Schema of the plugin's configuration, as JSON text (empty: none).
    pub config_schema: &'static str,
    /// The typed functions the plugin offers.
    pub functions: &'static [Function],
    /// The HTTP routes the plugin serves on the application listener, each handled by one of
    /// its functions.
    pub routes: &'static [Route],
    /// The job kinds the plugin handles, each run by one of its functions (declarations only:
    /// the queue is not built yet).
    pub jobs: &'static [Job],
    /// The schedules that enqueue its job kinds.
    pub schedules: &'static [Schedule],
}

impl Manifest {
    /// A manifest with a name and a version and nothing else declared.
    pub const fn new(name: &'static str, version: &'static str) -> Self {
        Self {
            name,
            version,
            description: "",
            dependencies: &[],
            tables: &[],
            topics: &[],
            buckets: &[],
            config_schema: "",
            functions: &[],
            routes: &[],
            jobs: &[],
            schedules: &[],
        }
    }

    /// Sets the description.
    pub const fn description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// Declares dependencies as `(name, semver requirement)` pairs.
    pub const fn depends_on(mut self, deps: &'static [(&'static str, &'static str)]) -> Self {
        self.dependencies = deps;
        self
    }

    /// Declares the tables the plugin may use.
    pub const fn tables(mut self, tables: &'static [&'static str]) -> Self {
        self.tables = tables;
        self
    }

    /// Declares the topics the plugin may use.
    pub const fn topics(mut self, topics: &'static [&'static str]) -> Self {
        self.topics = topics;
        self
    }

    /// Declares the buckets the plugin may use.
    pub const fn buckets(mut self, buckets: &'static [&'static str]) -> Self {
        self.buckets = buckets;
        self
    }

    /// Sets the JSON Schema of the plugin's configuration (JSON text).
    pub const fn config_schema(mut self, schema: &'static str) -> Self {
        self.config_schema = schema;
        self
    }

    /// Declares the typed functions the plugin offers (see [`Function`]).
    pub const fn functions(mut self, functions: &'static [Function]) -> Self {
        self.functions = functions;
        self
    }

    /// Declares the HTTP routes the plugin serves (see [`Route`]); each route's function must
    /// be declared in [`Manifest::functions`] too.
    pub const fn routes(mut self, routes: &'static [Route]) -> Self {
        self.routes = routes;
        self
    }

    /// Declares the job kinds the plugin handles (see [`Job`]); each kind's function must be
    /// declared in [`Manifest::functions`] too.
    pub const fn jobs(mut self, jobs: &'static [Job]) -> Self {
        self.jobs = jobs;
        self
    }

    /// Declares the schedules that enqueue the plugin's job kinds (see [`Schedule`]).
    pub const fn schedules(mut self, schedules: &'static [Schedule]) -> Self {
        self.schedules = schedules;
        self
    }

    /// Whether a function called `name` is declared.
    pub fn declares_function(&self, name: &str) -> bool {
        self.functions.iter().any(|f| f.name == name)
    }

    /// Number of bytes [`Manifest::encode`] writes.
    pub const fn encoded_len(&self) -> usize {
        let mut sink = Sink {
            buf: &mut [],
            len: 0,
        };
        self.write(&mut sink);
        sink.len
    }

    /// Encodes the manifest as JSON into a fixed-size array. `N` must be
    /// [`Manifest::encoded_len`]; anything else fails to compile in a `const` context.
    ///
    /// # Panics
    /// When `N` is wrong or the name is invalid (a compile error when evaluated in a `const`).
    pub const fn encode<const N: usize>(&self) -> [u8; N] {
        assert!(
            valid_name(self.name),
            "plugin name must be 1-64 chars of a-z 0-9 - _, starting with a letter"
        );
        let mut out = [0u8; N];
        let mut sink = Sink {
            buf: &mut out,
            len: 0,
        };
        let mut i = 0;
        while i < self.functions.len() {
            assert!(
                valid_name(self.functions[i].name),
                "function name must be 1-64 chars of a-z 0-9 - _, starting with a letter"
            );
            i += 1;
        }
        let mut i = 0;
        while i < self.jobs.len() {
            assert!(
                valid_name(self.jobs[i].name),
                "job name must be 1-64 chars of a-z 0-9 - _, starting with a letter"
            );
            i += 1;
        }
        let mut i = 0;
        while i < self.schedules.len() {
            assert!(
                valid_name(self.schedules[i].name),
                "schedule name must be 1-64 chars of a-z 0-9 - _, starting with a letter"
            );
            i += 1;
        }
        self.write(&mut sink);
        assert!(sink.len == N, "manifest length mismatch");
        out
    }

    const fn write(&self, s: &mut Sink<'_>) {
        s.raw(b"{\"name\":");
        s.string(self.name);
        s.raw(b",\"version\":");
        s.string(self.version);
        s.raw(b",\"description\":");
        s.string(self.description);
        s.raw(b",\"dependencies\":[");
        let mut i = 0;
        while i < self.dependencies.len() {
            if i > 0 {
                s.raw(b",");
            }
            s.raw(b"{\"name\":");
            s.string(self.dependencies[i].0);
            s.raw(b",\"version\":");
            s.string(self.dependencies[i].1);
            s.raw(b"}");
            i += 1;
        }
        s.raw(b"],\"tables\":");
        s.list(self.tables);
        s.raw(b",\"topics\":");
        s.list(self.topics);
        s.raw(b",\"buckets\":");
        s.list(self.buckets);
        s.raw(b",\"config_schema\":");
        s.string(self.config_schema);
        s.raw(b",\"functions\":[");
        let mut i = 0;
        while i < self.functions.len() {
            if i > 0 {
                s.raw(b",");
            }
            let f = &self.functions[i];
            s.raw(b"{\"name\":");
            s.string(f.name);
            s.raw(b",\"summary\":");
            s.string(f.summary);
            s.raw(b",\"input_schema\":");
            s.string(f.input_schema);
            s.raw(b",\"output_schema\":");
            s.string(f.output_schema);
            s.raw(b"}");
            i += 1;
        }
        s.raw(b"]");
        // Written only when there are routes, so a plugin without any encodes as before.
        Self::write_routes(self.routes, s);
        // Likewise for jobs and schedules.
        Self::write_jobs(self.jobs, s);
        Self::write_schedules(self.schedules, s);
        s.raw(b"}");
    }

    const fn write_routes(routes: &[Route], s: &mut Sink<'_>) {
        if !routes.is_empty() {
            s.raw(b",\"routes\":[");
            let mut i = 0;
            while i < routes.len() {
                if i > 0 {
                    s.raw(b",");
                }
                let r = &routes[i];
                s.raw(b"{\"method\":");
                s.string(r.method);
                s.raw(b",\"path\":");
                s.string(r.path);
                s.raw(b",\"function\":");
                s.string(r.function);
                s.raw(b",\"summary\":");
                s.string(r.summary);
                s.raw(b",\"auth\":");
                match r.auth {
                    Auth::Plugin(name) => s.string_prefixed(b"plugin:", name),
                    other => s.string(other.as_str()),
                }
                s.raw(b",\"body_schema\":");
                s.string(r.body_schema);
                s.raw(b",\"response_schema\":");
                s.string(r.response_schema);
                s.raw(b",\"body_limit\":");
                s.number(r.body_limit);
                s.raw(b",\"timeout_ms\":");
                s.number(r.timeout_ms);
                // Written only when declared, so a route without streams encodes as before.
                if !r.streams.is_empty() {
                    s.raw(b",\"streams\":");
                    s.list(r.streams);
                }
                s.raw(b"}");
                i += 1;
            }
            s.raw(b"]");
        }
    }

    const fn write_jobs(jobs: &[Job], s: &mut Sink<'_>) {
        if jobs.is_empty() {
            return;
        }
        s.raw(b",\"jobs\":[");
        let mut i = 0;
        while i < jobs.len() {
            if i > 0 {
                s.raw(b",");
            }
            let j = &jobs[i];
            s.raw(b"{\"name\":");
            s.string(j.name);
            s.raw(b",\"function\":");
            s.string(j.function);
            s.raw(b",\"triggers\":");
            s.list(j.triggers);
            s.raw(b",\"max_attempts\":");
            s.number(j.max_attempts as u64);
            s.raw(b",\"backoff\":{\"base_ms\":");
            s.number(j.backoff.base_ms);
            s.raw(b",\"cap_ms\":");
            s.number(j.backoff.cap_ms);
            s.raw(b"},\"timeout_ms\":");
            s.number(j.timeout_ms);
            s.raw(b",\"dedupe\":");
            s.string(j.dedupe);
            s.raw(b",\"priority\":");
            if j.priority < 0 {
                s.byte(b'-');
            }
            s.number(j.priority.unsigned_abs() as u64);
            s.raw(b"}");
            i += 1;
        }
        s.raw(b"]");
    }

    const fn write_schedules(schedules: &[Schedule], s: &mut Sink<'_>) {
        if schedules.is_empty() {
            return;
        }
        s.raw(b",\"schedules\":[");
        let mut i = 0;
        while i < schedules.len() {
            if i > 0 {
                s.raw(b",");
            }
            let c = &schedules[i];
            s.raw(b"{\"name\":");
            s.string(c.name);
            s.raw(b",\"cron\":");
            s.string(c.cron);
            s.raw(b",\"time_zone\":");
            s.string(c.time_zone);
            s.raw(b",\"every_ms\":");
            s.number(c.every_ms);
            s.raw(b",\"job\":");
            s.string(c.job);
            s.raw(b"}");
            i += 1;
        }
        s.raw(b"]");
    }
}

/// Whether `name` is a valid plugin name: 1 to 64 bytes of `a-z 0-9 - _`, starting with `a-z`.
/// The host applies the same rule (and reports which character is wrong).
pub const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 64 || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// A `const`-usable writer that counts when `buf` is empty and writes otherwise.
struct Sink<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Sink<'_> {
    const fn byte(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
        }
        self.len += 1;
    }

    const fn raw(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    const fn string(&mut self, s: &str) {
        self.string_prefixed(b"", s);
    }

    /// A JSON string of `prefix` (written as is) followed by `s` (escaped).
    const fn string_prefixed(&mut self, prefix: &[u8], s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let b = s.as_bytes();
        self.byte(b'"');
        self.raw(prefix);
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'"' => self.raw(b"\\\""),
                b'\\' => self.raw(b"\\\\"),
                0..0x20 => {
                    self.raw(b"\\u00");
                    self.byte(HEX[(c >> 4) as usize]);
                    self.byte(HEX[(c & 0xf) as usize]);
                }
                _ => self.byte(c),
            }
            i += 1;
        }
        self.byte(b'"');
    }

    const fn number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut len = 0;
        let mut n = n;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while len > 0 {
            len -= 1;
            self.byte(digits[len]);
        }
    }

    const fn list(&mut self, items: &[&str]) {
        self.byte(b'[');
        let mut i = 0;
        while i < items.len() {
            if i > 0 {
                self.byte(b',');
            }
            self.string(items[i]);
            i += 1;
        }
        self.byte(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Manifest = Manifest::new("greeter", "1.2.3")
        .description("says \"hi\"\n\\ok")
        .depends_on(&[("hello", "^1"), ("other", "*")])
        .tables(&["users"])
        .topics(&["events", "audit"])
        .config_schema(r#"{"type":"object"}"#)
        .functions(&[
            Function::new("greet").summary("says hi"),
            Function::new("count").input_schema(r#"{"type":"null"}"#),
        ]);

    #[test]
    fn encodes_valid_json_with_escapes() {
        const LEN: usize = M.encoded_len();
        const BYTES: [u8; LEN] = M.encode::<LEN>();
        let v: serde_json::Value = serde_json::from_slice(&BYTES).unwrap();
        assert_eq!(v["name"], "greeter");
        assert_eq!(v["description"], "says \"hi\"\n\\ok");
        assert_eq!(v["dependencies"][1]["name"], "other");
        assert_eq!(v["topics"][1], "audit");
        assert_eq!(v["buckets"].as_array().unwrap().len(), 0);
        assert_eq!(v["config_schema"], r#"{"type":"object"}"#);
        assert_eq!(v["functions"][0]["name"], "greet");
        assert_eq!(v["functions"][0]["summary"], "says hi");
        assert_eq!(v["functions"][1]["input_schema"], r#"{"type":"null"}"#);
    }

    #[test]
    fn routes_are_encoded_only_when_declared() {
        const R: Manifest = Manifest::new("r", "1.0.0")
            .functions(&[Function::new("get")])
            .routes(&[
                Route::get("/items/{id}", "get").summary("one"),
                Route::post("/items", "get")
                    .auth(Auth::Token)
                    .body_limit(18_446_744_073_709_551_615)
                    .timeout_ms(250),
                Route::delete("/items/{id}", "get").auth(Auth::Plugin("auth")),
                Route::get("/events", "get").streams(&["a:*", "b:**"]),
            ]);
        let bytes = R.encode::<{ R.encoded_len() }>();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["routes"][0]["method"], "GET");
        assert_eq!(v["routes"][0]["path"], "/items/{id}");
        assert_eq!(v["routes"][0]["auth"], "public");
        assert_eq!(v["routes"][0]["body_limit"], 0);
        assert_eq!(v["routes"][1]["auth"], "token");
        assert_eq!(v["routes"][1]["body_limit"], u64::MAX);
        assert_eq!(v["routes"][1]["timeout_ms"], 250);
        assert_eq!(v["routes"][2]["auth"], "plugin:auth");
        assert!(v["routes"][2].get("streams").is_none());
        assert_eq!(
            v["routes"][3]["streams"],
            serde_json::json!(["a:*", "b:**"])
        );
        let plain = M.encode::<{ M.encoded_len() }>();
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert!(v.get("routes").is_none());
    }

    #[test]
    fn jobs_and_schedules_are_encoded_only_when_declared() {
        use crate::jobs::Backoff;
        const J: Manifest = Manifest::new("j", "1.0.0")
            .functions(&[Function::new("run")])
            .jobs(&[
                Job::new("send", "run")
                    .triggers(&["form:submitted", "user:*"])
                    .max_attempts(3)
                    .backoff(Backoff::exponential(250, 8_000))
                    .timeout_ms(5_000)
                    .dedupe("{event.id}")
                    .priority(i16::MIN),
                Job::new("plain", "run").priority(7),
            ])
            .schedules(&[
                Schedule::cron("nightly", "0 3 * * *", "Europe/Paris", "send"),
                Schedule::every("poll", 30_000, "plain"),
            ]);
        let bytes = J.encode::<{ J.encoded_len() }>();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let send = &v["jobs"][0];
        assert_eq!(send["name"], "send");
        assert_eq!(send["function"], "run");
        assert_eq!(send["triggers"][1], "user:*");
        assert_eq!(send["max_attempts"], 3);
        assert_eq!(send["backoff"]["base_ms"], 250);
        assert_eq!(send["backoff"]["cap_ms"], 8_000);
        assert_eq!(send["timeout_ms"], 5_000);
        assert_eq!(send["dedupe"], "{event.id}");
        assert_eq!(send["priority"], -32768);
        let plain = &v["jobs"][1];
        assert_eq!(plain["max_attempts"], Job::DEFAULT_MAX_ATTEMPTS);
        assert_eq!(plain["backoff"]["base_ms"], Backoff::DEFAULT.base_ms);
        assert_eq!(plain["backoff"]["cap_ms"], Backoff::DEFAULT.cap_ms);
        assert_eq!(plain["priority"], 7);
        assert_eq!(plain["triggers"].as_array().unwrap().len(), 0);
        assert_eq!(v["schedules"][0]["cron"], "0 3 * * *");
        assert_eq!(v["schedules"][0]["time_zone"], "Europe/Paris");
        assert_eq!(v["schedules"][0]["every_ms"], 0);
        assert_eq!(v["schedules"][1]["every_ms"], 30_000);
        assert_eq!(v["schedules"][1]["job"], "plain");
        let plain = M.encode::<{ M.encoded_len() }>();
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert!(v.get("jobs").is_none());
        assert!(v.get("schedules").is_none());
    }

    #[test]
    fn control_characters_are_escaped() {
        const C: Manifest = Manifest::new("c", "1.0.0").description("\u{1}\t");
        let bytes = C.encode::<{ C.encoded_len() }>();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["description"], "\u{1}\t");
    }

    #[test]
    fn name_rule() {
        assert!(valid_name("a"));
        assert!(valid_name("hello-world_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("Hello"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(valid_name(&"a".repeat(64)));
    }
}

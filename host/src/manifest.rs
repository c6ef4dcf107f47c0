//! A plugin's manifest as the host sees it: parsed from the JSON in the plugin's declaration and
//! validated (name rule, semver version and requirements, no duplicates, function schemas that
//! are JSON Schemas, routes: see [`crate::routes`], jobs and schedules: see [`crate::jobs`]).
//! Pure but for reading the time zone database when a schedule names a time zone.

use std::path::Path;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::jobs::{JobSpec, RawJob, RawSchedule, ScheduleSpec};
use crate::routes::{RawRoute, RouteSpec};

/// A dependency as declared: a plugin name and the versions accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencySpec {
    /// The plugin depended on.
    pub name: String,
    /// The versions accepted.
    pub version: VersionReq,
}

/// A typed function a plugin declares: its name, summary and JSON Schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FunctionSpec {
    /// Function name (the plugin-name rule).
    pub name: String,
    /// One-line summary (empty when none was given).
    pub summary: String,
    /// JSON Schema of the input; a call's input is validated against it before the plugin
    /// sees it.
    pub input_schema: Option<serde_json::Value>,
    /// JSON Schema of the output, for documentation.
    pub output_schema: Option<serde_json::Value>,
}

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PluginManifest {
    /// Plugin name (see [`validate_name`]).
    pub name: String,
    /// Plugin version.
    pub version: Version,
    /// One-line description.
    pub description: String,
    /// Declared dependencies.
    pub dependencies: Vec<DependencySpec>,
    /// Declared logical table names.
    pub tables: Vec<String>,
    /// Declared logical topic names.
    pub topics: Vec<String>,
    /// Declared logical bucket names.
    pub buckets: Vec<String>,
    /// JSON Schema of the plugin's config, if it declares one.
    pub config_schema: Option<serde_json::Value>,
    /// The typed functions the plugin offers (none for plugins of API minor 0 and 1).
    pub functions: Vec<FunctionSpec>,
    /// The HTTP routes it serves on the application listener.
    pub routes: Vec<RouteSpec>,
    /// The job kinds it handles (declarations only: the queue is not built yet).
    pub jobs: Vec<JobSpec>,
    /// The schedules that enqueue its job kinds.
    pub schedules: Vec<ScheduleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDependency {
    name: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    dependencies: Vec<RawDependency>,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    buckets: Vec<String>,
    #[serde(default)]
    config_schema: String,
    #[serde(default)]
    functions: Vec<RawFunction>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    jobs: Vec<RawJob>,
    #[serde(default)]
    schedules: Vec<RawSchedule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    name: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    input_schema: String,
    #[serde(default)]
    output_schema: String,
}

/// What `validator` rejects in `value`, one entry per error, as `/path: message`.
pub(crate) fn schema_errors(
    validator: &jsonschema::Validator,
    value: &serde_json::Value,
) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("{}: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect()
}

/// Parses an optional schema (empty text: none) and checks it is a JSON Schema.
pub(crate) fn schema(
    text: &str,
    what: &str,
) -> std::result::Result<Option<serde_json::Value>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let schema: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{what} is not JSON: {e}"))?;
    jsonschema::validator_for(&schema)
        .map_err(|e| format!("{what} is not a valid JSON Schema: {e}"))?;
    Ok(Some(schema))
}

/// Checks a plugin name: 1 to 64 bytes of `a-z 0-9 - _`, starting with `a-z`.
///
/// # Errors
/// `invalid_name`, saying which rule the name breaks.
pub fn validate_name(name: &str) -> Result<()> {
    let fail = |reason: String| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("it is empty".into());
    }
    if name.len() > 64 {
        return fail(format!("it is {} bytes long; the limit is 64", name.len()));
    }
    if let Some(first) = name.chars().next()
        && !first.is_ascii_lowercase()
    {
        return fail(format!(
            "it starts with {first:?}; a name starts with a letter a-z"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return fail(format!("{bad:?} is not allowed; use a-z, 0-9, '-' and '_'"));
    }
    Ok(())
}

impl PluginManifest {
    /// Parses and validates the manifest JSON of the plugin file at `path`.
    ///
    /// # Errors
    /// `invalid_plugin` for malformed JSON, versions or requirements; `invalid_name` for a bad
    /// plugin or dependency name; `invalid_route` or `route_conflict` for a bad route;
    /// `invalid_job` for a bad job kind; `invalid_schedule` for a bad schedule.
    pub fn parse(path: &Path, json: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidManifest {
            path: path.to_owned(),
            reason,
        };
        let raw: RawManifest = serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
        validate_name(&raw.name)?;
        let version = Version::parse(&raw.version)
            .map_err(|e| invalid(format!("version {:?} is not semver: {e}", raw.version)))?;
        let mut dependencies = Vec::with_capacity(raw.dependencies.len());
        for dep in raw.dependencies {
            validate_name(&dep.name)?;
            if dependencies
                .iter()
                .any(|d: &DependencySpec| d.name == dep.name)
            {
                return Err(invalid(format!(
                    "dependency `{}` is listed twice",
                    dep.name
                )));
            }
            let version = VersionReq::parse(&dep.version).map_err(|e| {
                invalid(format!(
                    "requirement {:?} on `{}` is not semver: {e}",
                    dep.version, dep.name
                ))
            })?;
            dependencies.push(DependencySpec {
                name: dep.name,
                version,
            });
        }
        for (kind, list) in [
            ("table", &raw.tables),
            ("topic", &raw.topics),
            ("bucket", &raw.buckets),
        ] {
            let mut seen = std::collections::HashSet::new();
            for item in list {
                if item.is_empty() {
                    return Err(invalid(format!("an empty {kind} name is declared")));
                }
                if !seen.insert(item) {
                    return Err(invalid(format!("{kind} `{item}` is declared twice")));
                }
            }
        }
        let config_schema = if raw.config_schema.is_empty() {
            None
        } else {
            let schema: serde_json::Value = serde_json::from_str(&raw.config_schema)
                .map_err(|e| invalid(format!("config schema is not JSON: {e}")))?;
            Some(schema)
        };
        let mut functions: Vec<FunctionSpec> = Vec::with_capacity(raw.functions.len());
        for f in raw.functions {
            validate_name(&f.name).map_err(|e| invalid(format!("function {e}")))?;
            if functions.iter().any(|g| g.name == f.name) {
                return Err(invalid(format!("function `{}` is declared twice", f.name)));
            }
            let what = |kind: &str| format!("the {kind} schema of function `{}`", f.name);
            functions.push(FunctionSpec {
                input_schema: schema(&f.input_schema, &what("input")).map_err(invalid)?,
                output_schema: schema(&f.output_schema, &what("output")).map_err(invalid)?,
                name: f.name,
                summary: f.summary,
            });
        }
        let names: Vec<&str> = dependencies.iter().map(|d| d.name.as_str()).collect();
        let routes = RouteSpec::parse_all(&raw.name, raw.routes, &functions, &names)?;
        let jobs = JobSpec::parse_all(&raw.name, raw.jobs, &functions)?;
        let schedules = ScheduleSpec::parse_all(&raw.name, raw.schedules, &jobs)?;
        Ok(Self {
            routes,
            jobs,
            schedules,
            name: raw.name,
            version,
            description: raw.description,
            dependencies,
            tables: raw.tables,
            topics: raw.topics,
            buckets: raw.buckets,
            config_schema,
            functions,
        })
    }

    /// The declared function called `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionSpec> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Whether this plugin declares `name` as a dependency.
    pub fn depends_on(&self, name: &str) -> bool {
        self.dependencies.iter().any(|d| d.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PluginManifest> {
        PluginManifest::parse(Path::new("x.so"), json.as_bytes())
    }

    #[test]
    fn parses_a_full_manifest() {
        let m = parse(
            r#"{"name":"greeter","version":"1.2.0","description":"d",
                "dependencies":[{"name":"hello","version":"^1"}],
                "tables":["users"],"topics":[],"buckets":["b"],"config_schema":"{\"type\":\"object\"}"}"#,
        )
        .unwrap();
        assert_eq!(m.name, "greeter");
        assert!(m.depends_on("hello"));
        assert!(m.dependencies[0].version.matches(&Version::new(1, 9, 0)));
        assert_eq!(m.config_schema.unwrap()["type"], "object");
        assert!(m.functions.is_empty());
    }

    #[test]
    fn parses_functions_with_schemas() {
        let m = parse(
            r#"{"name":"hello","version":"1.0.0","functions":[
                {"name":"greet","summary":"s","input_schema":"{\"type\":\"object\"}","output_schema":""}]}"#,
        )
        .unwrap();
        let f = m.function("greet").unwrap();
        assert_eq!(f.summary, "s");
        assert_eq!(f.input_schema.as_ref().unwrap()["type"], "object");
        assert!(f.output_schema.is_none());
        assert!(m.function("other").is_none());
    }

    #[test]
    fn rejects_bad_input_with_codes() {
        use crate::error::ErrorCode::*;
        let cases = [
            (r#"{"name":"Bad","version":"1.0.0"}"#, InvalidName),
            (r#"{"name":"ok","version":"one"}"#, InvalidPlugin),
            (
                r#"{"name":"ok","version":"1.0.0","dependencies":[{"name":"a","version":"~~"}]}"#,
                InvalidPlugin,
            ),
            (
                r#"{"name":"ok","version":"1.0.0","dependencies":[{"name":"a","version":"*"},{"name":"a","version":"*"}]}"#,
                InvalidPlugin,
            ),
            (
                r#"{"name":"ok","version":"1.0.0","tables":["t","t"]}"#,
                InvalidPlugin,
            ),
            (
                r#"{"name":"ok","version":"1.0.0","surprise":1}"#,
                InvalidPlugin,
            ),
            (r#"not json"#, InvalidPlugin),
            (
                r#"{"name":"ok","version":"1.0.0","functions":[{"name":"Bad"}]}"#,
                InvalidPlugin,
            ),
            (
                r#"{"name":"ok","version":"1.0.0","functions":[{"name":"f"},{"name":"f"}]}"#,
                InvalidPlugin,
            ),
            (
                r#"{"name":"ok","version":"1.0.0","functions":[{"name":"f","input_schema":"{"}]}"#,
                InvalidPlugin,
            ),
            (
                r#"{"name":"ok","version":"1.0.0","functions":[{"name":"f","output_schema":"{\"type\":12}"}]}"#,
                InvalidPlugin,
            ),
        ];
        for (json, code) in cases {
            assert_eq!(parse(json).unwrap_err().code(), code, "{json}");
        }
    }

    #[test]
    fn name_rule_messages_say_what_is_wrong() {
        let e = validate_name("a.b").unwrap_err();
        assert!(e.to_string().contains("'.'"), "{e}");
        assert!(validate_name("").unwrap_err().to_string().contains("empty"));
        assert!(
            validate_name(&"a".repeat(65))
                .unwrap_err()
                .to_string()
                .contains("65")
        );
        validate_name("my-plugin_2").unwrap();
    }
}

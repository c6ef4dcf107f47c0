//! The job queue's routes of the admin API: list, show, enqueue, retry and cancel jobs, pause
//! and resume a plugin's job kind, run a schedule now. Every call reaches the core's
//! `JobQueue` (through `PluginManager::jobs`, `backend_unavailable` when the server has no
//! queue) on the blocking pool, as the other handlers do; this module only parses requests and
//! shapes answers. Called by the route table (`super::openapi::ROUTES`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::routes::{ApiJson, ApiPath, ApiQuery, AppState, blocking};
use plugin_host::Error;
use plugin_host::jobs::{EnqueueOptions, JobFilter, JobRecord, JobState};

type ApiResult<T> = Result<T, ApiError>;

/// Jobs listed when the query names no `limit`.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` of a list.
pub(crate) const MAX_LIMIT: u32 = 1000;
/// The longest dedupe key, in bytes.
pub(crate) const MAX_DEDUPE_KEY: usize = 256;

/// The query parameters of `GET /api/v1/jobs`, as the route table documents them.
pub(crate) const LIST_QUERY: &[(&str, &str, &str)] = &[
    ("plugin", "string", "Only this plugin's jobs"),
    ("kind", "string", "Only jobs of this kind"),
    (
        "state",
        r#"{"type":"string","enum":["available","scheduled","retryable","running","completed","discarded","cancelled"]}"#,
        "Only jobs in this state",
    ),
    (
        "before",
        r#"{"type":"integer","minimum":-9223372036854775808,"maximum":9223372036854775807}"#,
        "Only jobs with an id below this one (the next page: the last id of the previous one)",
    ),
    (
        "limit",
        r#"{"type":"integer","minimum":1,"maximum":1000,"default":100}"#,
        "At most this many jobs (default 100)",
    ),
];

/// The schemas of the job routes' requests and answers (every field the server always sends
/// is required; times are RFC 3339).
pub(crate) fn schemas() -> serde_json::Map<String, Value> {
    let time = json!({ "type": "string", "format": "date-time" });
    let opt_time = json!({ "type": ["string", "null"], "format": "date-time" });
    let opt_text = json!({ "type": ["string", "null"] });
    let text = json!({ "type": "string" });
    let counter = json!({ "type": "integer", "minimum": 0 });
    let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    let job_ref = json!({ "$ref": "#/components/schemas/JobRecord" });
    let priority = json!({ "type": "integer", "minimum": i16::MIN, "maximum": i16::MAX });
    let schemas = json!({
        "JobRecord": { "type": "object",
            "required": ["id", "plugin", "kind", "state", "priority", "input", "attempt",
                         "max_attempts", "run_at", "created_at", "finished_at", "dedupe_key",
                         "source", "event_id", "last_error", "lease_host", "lease_until"],
            "properties": {
                "id": { "type": "integer" }, "plugin": text, "kind": text,
                "state": { "type": "string", "enum": states },
                "priority": priority, "input": {},
                "attempt": counter, "max_attempts": counter,
                "run_at": time, "created_at": time, "finished_at": opt_time,
                "dedupe_key": opt_text, "source": text, "event_id": opt_text,
                "last_error": opt_text, "lease_host": opt_text, "lease_until": opt_time } },
        "Attempt": { "type": "object",
            "required": ["job_id", "attempt", "plugin", "version", "kind", "host", "started_at",
                         "duration_ms", "status", "error", "input", "output"],
            "properties": {
                "job_id": { "type": "integer" }, "attempt": counter, "plugin": text,
                "version": text, "kind": text, "host": text, "started_at": time,
                "duration_ms": { "type": "integer" },
                "status": { "type": "string",
                            "enum": ["succeeded", "failed", "timed_out", "panicked", "lost"] },
                "error": opt_text, "input": {}, "output": {} } },
        "JobList": { "type": "object", "required": ["jobs"],
            "properties": { "jobs": { "type": "array", "items": job_ref } } },
        "JobDetail": { "type": "object", "required": ["job", "attempts"],
            "properties": { "job": job_ref, "attempts": { "type": "array",
                "items": { "$ref": "#/components/schemas/Attempt" } } } },
        "JobAnswer": { "type": "object", "required": ["job"],
            "properties": { "job": job_ref, "deduplicated": { "const": false } } },
        "Deduplicated": { "type": "object", "required": ["job", "deduplicated"],
            "properties": { "job": { "type": "null" }, "deduplicated": { "const": true } } },
        "PausedList": { "type": "object", "required": ["paused"],
            "properties": { "paused": { "type": "array", "items": { "type": "object",
                "required": ["plugin", "kind"],
                "properties": { "plugin": text, "kind": text } } } } },
        "PauseState": { "type": "object", "required": ["plugin", "kind", "paused"],
            "properties": { "plugin": text, "kind": text, "paused": { "type": "boolean" } } },
        // A field and its first name are not both given (the server would see the same field
        // twice). A dedupe key is limited in bytes, which JSON Schema cannot count: 64
        // characters always fit in 256 bytes.
        "EnqueueRequest": { "type": "object", "required": ["plugin", "kind"],
            "additionalProperties": false,
            "not": { "anyOf": [ { "required": ["input", "payload"] },
                                { "required": ["dedupe_key", "key"] } ] },
            "properties": {
                "plugin": text, "kind": text, "input": {},
                "payload": { "description": "`input`, by its first name", "deprecated": true },
                "key": { "type": ["string", "null"], "maxLength": MAX_DEDUPE_KEY / 4,
                         "description": "`dedupe_key`, by its first name",
                         "deprecated": true },
                "run_at": opt_time,
                "priority": { "type": ["integer", "null"], "minimum": i16::MIN,
                              "maximum": i16::MAX },
                "dedupe_key": { "type": ["string", "null"], "maxLength": MAX_DEDUPE_KEY / 4,
                                "description": "At most 256 bytes of UTF-8" } } }
    });
    match schemas {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::Host(Error::BadRequest { message })
}

/// The query of `GET /api/v1/jobs`, as text: each parameter is parsed here so that the error
/// names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    plugin: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

impl ListQuery {
    /// The filter the query asks for.
    fn filter(self) -> ApiResult<JobFilter> {
        let state = match self.state.as_deref() {
            None => None,
            Some(text) => Some(JobState::parse(text).ok_or_else(|| {
                let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                bad_request(format!(
                    "query parameter `state`: `{text}` is not a job state (one of {})",
                    states.join(", ")
                ))
            })?),
        };
        let before = match self.before.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                bad_request(format!(
                    "query parameter `before`: `{text}` is not a job id (an integer)"
                ))
            })?),
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    bad_request(format!(
                        "query parameter `limit`: `{text}` is not an integer from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        Ok(JobFilter {
            plugin: self.plugin,
            kind: self.kind,
            state,
            before,
            limit,
        })
    }
}

/// A job id of a path: an integer, else `400 bad_request`.
fn job_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>().map_err(|_| {
        bad_request(format!(
            "path parameter `id`: `{text}` is not a job id (an integer)"
        ))
    })
}

/// `{"job": <job>}` with `status`.
fn job_answer(status: StatusCode, job: &JobRecord) -> Response {
    (status, Json(json!({ "job": job }))).into_response()
}

/// The answer of an enqueue: `201 {"job", "deduplicated": false}`, or
/// `200 {"job": null, "deduplicated": true}` when a waiting job had the same dedupe key.
fn enqueued(job: Option<JobRecord>) -> Response {
    match job {
        Some(job) => (
            StatusCode::CREATED,
            Json(json!({ "job": job, "deduplicated": false })),
        )
            .into_response(),
        None => Json(json!({ "job": null, "deduplicated": true })).into_response(),
    }
}

/// `GET /api/v1/jobs`: jobs, newest first; `before` (an id) pages.
pub(crate) async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let filter = q.filter()?;
    let jobs = blocking(&st, move |m| m.jobs()?.list(&filter)).await?;
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

/// The body of `POST /api/v1/jobs`. `payload` and `key` are the names of shared/API.md's first
/// form, kept working.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnqueueBody {
    plugin: String,
    kind: String,
    #[serde(default, alias = "payload")]
    input: Value,
    #[serde(default)]
    run_at: Option<String>,
    /// A JSON number: `5.0` is the integer 5, as JSON Schema counts integers.
    #[serde(default)]
    priority: Option<serde_json::Number>,
    #[serde(default, alias = "key")]
    dedupe_key: Option<String>,
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
fn parse_time(field: &str, text: &str) -> ApiResult<i64> {
    let at: jiff::Timestamp = text.parse().map_err(|e| {
        bad_request(format!(
            "`{field}`: `{text}` is not an RFC 3339 time (2026-12-01T10:00:00Z): {e}"
        ))
    })?;
    Ok(at.as_millisecond())
}

/// A priority: an integer (maybe written `5.0`) from -32768 to 32767.
fn priority(n: &serde_json::Number) -> ApiResult<i16> {
    let whole = n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 1e6)
            .map(|f| f as i64)
    });
    whole.and_then(|w| i16::try_from(w).ok()).ok_or_else(|| {
        bad_request(format!(
            "`priority`: {n} is not an integer from {} to {}",
            i16::MIN,
            i16::MAX
        ))
    })
}

impl EnqueueBody {
    fn options(&self) -> ApiResult<EnqueueOptions> {
        if let Some(key) = &self.dedupe_key
            && key.len() > MAX_DEDUPE_KEY
        {
            return Err(bad_request(format!(
                "`dedupe_key` is {} bytes long; the most is {MAX_DEDUPE_KEY}",
                key.len()
            )));
        }
        Ok(EnqueueOptions {
            run_at: match self.run_at.as_deref() {
                Some(text) => Some(parse_time("run_at", text)?),
                None => None,
            },
            priority: match &self.priority {
                Some(n) => Some(priority(n)?),
                None => None,
            },
            dedupe_key: self.dedupe_key.clone(),
        })
    }
}

/// `POST /api/v1/jobs`: enqueue as the operator.
pub(crate) async fn enqueue(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<EnqueueBody>,
) -> ApiResult<Response> {
    let options = body.options()?;
    let job = blocking(&st, move |m| {
        m.jobs()?
            .enqueue(&body.plugin, &body.kind, &body.input, options)
    })
    .await?;
    Ok(enqueued(job))
}

/// `GET /api/v1/jobs/{id}`: the job and its attempts (the execution log).
pub(crate) async fn show(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let (job, attempts) = blocking(&st, move |m| m.jobs()?.get(id)).await?;
    Ok(Json(json!({ "job": job, "attempts": attempts })).into_response())
}

/// `POST /api/v1/jobs/{id}/retry`: a discarded or completed job waits again; a retryable one
/// is due now.
pub(crate) async fn retry(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let job = blocking(&st, move |m| m.jobs()?.retry(id)).await?;
    Ok(job_answer(StatusCode::OK, &job))
}

/// `POST /api/v1/jobs/{id}/cancel`: a waiting job is cancelled.
pub(crate) async fn cancel(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let job = blocking(&st, move |m| m.jobs()?.cancel(id)).await?;
    Ok(job_answer(StatusCode::OK, &job))
}

/// `GET /api/v1/jobs/paused`: the paused job kinds.
pub(crate) async fn paused(State(st): State<AppState>) -> ApiResult<Response> {
    let paused = blocking(&st, |m| m.jobs()?.paused()).await?;
    let paused: Vec<Value> = paused
        .into_iter()
        .map(|(plugin, kind)| json!({ "plugin": plugin, "kind": kind }))
        .collect();
    Ok(Json(json!({ "paused": paused })).into_response())
}

async fn set_paused(
    st: &AppState,
    plugin: String,
    kind: String,
    paused: bool,
) -> ApiResult<Response> {
    let (p, k) = (plugin.clone(), kind.clone());
    blocking(st, move |m| m.jobs()?.set_paused(&p, &k, paused)).await?;
    Ok(Json(json!({ "plugin": plugin, "kind": kind, "paused": paused })).into_response())
}

/// `POST /api/v1/plugins/{name}/jobs/{kind}/pause`: no job of the kind starts (on any host
/// sharing the store) until it is resumed; running attempts finish.
pub(crate) async fn pause(
    State(st): State<AppState>,
    ApiPath((plugin, kind)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    set_paused(&st, plugin, kind, true).await
}

/// `POST /api/v1/plugins/{name}/jobs/{kind}/resume`.
pub(crate) async fn resume(
    State(st): State<AppState>,
    ApiPath((plugin, kind)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    set_paused(&st, plugin, kind, false).await
}

/// `POST /api/v1/plugins/{name}/schedules/{schedule}/run`: the schedule's job, enqueued now.
pub(crate) async fn run_schedule(
    State(st): State<AppState>,
    ApiPath((plugin, schedule)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let job = blocking(&st, move |m| m.jobs()?.run_schedule(&plugin, &schedule)).await?;
    Ok(enqueued(job))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(state: Option<&str>, before: Option<&str>, limit: Option<&str>) -> ListQuery {
        ListQuery {
            plugin: None,
            kind: None,
            state: state.map(str::to_owned),
            before: before.map(str::to_owned),
            limit: limit.map(str::to_owned),
        }
    }

    fn message(e: ApiError) -> String {
        e.message()
    }

    #[test]
    fn list_query_defaults_and_bounds() {
        let f = query(None, None, None).filter().ok().unwrap();
        assert_eq!((f.limit, f.state, f.before), (DEFAULT_LIMIT, None, None));
        let f = query(Some("scheduled"), Some("42"), Some("1000"))
            .filter()
            .ok()
            .unwrap();
        assert_eq!(
            (f.limit, f.state, f.before),
            (1000, Some(JobState::Scheduled), Some(42))
        );
        for (q, names) in [
            (query(None, None, Some("0")), "`limit`"),
            (query(None, None, Some("1001")), "`limit`"),
            (query(None, None, Some("ten")), "`limit`"),
            (query(Some("done"), None, None), "`state`"),
            (query(None, Some("x"), None), "`before`"),
        ] {
            let e = q.filter().err().unwrap();
            assert_eq!(e.code().as_str(), "bad_request");
            assert!(message(e).contains(names));
        }
    }

    #[test]
    fn job_ids_are_integers() {
        assert_eq!(job_id("17").ok(), Some(17));
        assert!(job_id("seventeen").is_err());
        assert!(job_id("1.5").is_err());
    }

    #[test]
    fn priorities_are_integers_in_range() {
        let p = |v: Value| match v {
            Value::Number(n) => priority(&n).ok(),
            _ => None,
        };
        assert_eq!(p(json!(-3)), Some(-3));
        assert_eq!(p(json!(16001.0)), Some(16001));
        assert_eq!(p(json!(32767)), Some(32767));
        assert_eq!(p(json!(32768)), None);
        assert_eq!(p(json!(1.5)), None);
        assert_eq!(p(json!(1e300)), None);
    }

    #[test]
    fn run_at_is_rfc_3339() {
        assert_eq!(
            parse_time("run_at", "2026-01-01T00:00:01Z").ok(),
            Some(1_767_225_601_000)
        );
        assert!(parse_time("run_at", "tomorrow").is_err());
    }
}

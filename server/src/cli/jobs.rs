//! `plugin-host jobs ...`: the job queue of a running server through its admin API (the
//! `/api/v1/jobs` routes), printed as tables (or the server's JSON with `--json`). Errors are
//! the other client commands' (the server's code and message, exit status 1).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::client::{Client, ClientError, enc, output, read_input, table};
use super::{JobsArgs, JobsCommand};

/// The longest last error shown in a row of `jobs ls`, in characters.
const ERROR_WIDTH: usize = 60;

/// Runs a `jobs` command; returns what to print.
pub(super) fn run(args: &JobsArgs) -> Result<String, ClientError> {
    let c = Client::new(&args.client)?;
    let (value, human) = match &args.command {
        JobsCommand::Ls {
            plugin,
            kind,
            state,
            before,
            limit,
        } => {
            let mut query = Vec::new();
            for (k, v) in [("plugin", plugin), ("kind", kind), ("state", state)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", enc(v)));
                }
            }
            if let Some(b) = before {
                query.push(format!("before={b}"));
            }
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            let path = if query.is_empty() {
                "/api/v1/jobs".to_owned()
            } else {
                format!("/api/v1/jobs?{}", query.join("&"))
            };
            let v = c.send("GET", &path, None)?;
            let human = job_table(&v["jobs"]);
            (v, human)
        }
        JobsCommand::Show { id } => {
            let v = c.send("GET", &format!("/api/v1/jobs/{id}"), None)?;
            let human = job_details(&v["job"], &v["attempts"]);
            (v, human)
        }
        JobsCommand::Retry { id } => job_action(&c, *id, "retry", "retried")?,
        JobsCommand::Cancel { id } => job_action(&c, *id, "cancel", "cancelled")?,
        JobsCommand::Enqueue {
            plugin,
            kind,
            input,
            run_at,
            dedupe_key,
            priority,
        } => {
            let mut body = json!({
                "plugin": plugin,
                "kind": kind,
                "input": read_input(input.as_deref())?,
            });
            if let Some(t) = run_at {
                body["run_at"] = json!(t);
            }
            if let Some(k) = dedupe_key {
                body["dedupe_key"] = json!(k);
            }
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            let v = c.send("POST", "/api/v1/jobs", Some(&body))?;
            let human = enqueued(&v);
            (v, human)
        }
        JobsCommand::Run { plugin, schedule } => {
            let path = format!(
                "/api/v1/plugins/{}/schedules/{}/run",
                enc(plugin),
                enc(schedule)
            );
            let v = c.send("POST", &path, Some(&json!({})))?;
            let human = enqueued(&v);
            (v, human)
        }
        JobsCommand::Pause { plugin, kind } => pause(&c, plugin, kind, "pause")?,
        JobsCommand::Resume { plugin, kind } => pause(&c, plugin, kind, "resume")?,
        JobsCommand::Paused => {
            let v = c.send("GET", "/api/v1/jobs/paused", None)?;
            let mut rows = vec![vec!["PLUGIN".to_owned(), "KIND".to_owned()]];
            for p in v["paused"].as_array().into_iter().flatten() {
                rows.push(vec![text(&p["plugin"]), text(&p["kind"])]);
            }
            let human = table(&rows);
            (v, human)
        }
    };
    Ok(output(args.client.json, &value, human))
}

/// A string field, or `-` when it is null or absent.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `text` on one line, cut to `max` characters (`…` marks the cut).
fn cut(text: &str, max: usize) -> String {
    let line = text.replace(['\n', '\r'], " ");
    if line.chars().count() <= max {
        return line;
    }
    let kept: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// One line about a job: `#ID PLUGIN/KIND (STATE, run at T)`.
fn job_summary(job: &Value) -> String {
    format!(
        "job {} {}/{} ({}, run at {})",
        job["id"],
        text(&job["plugin"]),
        text(&job["kind"]),
        text(&job["state"]),
        text(&job["run_at"])
    )
}

/// The table of `jobs ls`.
fn job_table(jobs: &Value) -> String {
    let mut rows = vec![
        [
            "ID",
            "PLUGIN",
            "KIND",
            "STATE",
            "ATTEMPT",
            "RUN AT",
            "LAST ERROR",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for j in jobs.as_array().into_iter().flatten() {
        rows.push(vec![
            j["id"].to_string(),
            text(&j["plugin"]),
            text(&j["kind"]),
            text(&j["state"]),
            format!("{}/{}", j["attempt"], j["max_attempts"]),
            text(&j["run_at"]),
            cut(&text(&j["last_error"]), ERROR_WIDTH),
        ]);
    }
    table(&rows)
}

/// What `jobs show` prints: the job's fields, then its attempts.
fn job_details(job: &Value, attempts: &Value) -> String {
    let mut out = String::new();
    for (k, v) in [
        ("id", job["id"].to_string()),
        ("plugin", text(&job["plugin"])),
        ("kind", text(&job["kind"])),
        ("state", text(&job["state"])),
        (
            "attempt",
            format!("{}/{}", job["attempt"], job["max_attempts"]),
        ),
        ("priority", job["priority"].to_string()),
        ("run at", text(&job["run_at"])),
        ("created at", text(&job["created_at"])),
        ("finished at", text(&job["finished_at"])),
        ("source", text(&job["source"])),
        ("dedupe key", text(&job["dedupe_key"])),
        ("input", job["input"].to_string()),
        ("last error", text(&job["last_error"])),
    ] {
        let _ = writeln!(out, "{k:<12} {v}");
    }
    if let Some(host) = job["lease_host"].as_str() {
        let _ = writeln!(
            out,
            "{:<12} {host} until {}",
            "lease",
            text(&job["lease_until"])
        );
    }
    let list = attempts.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        out.push_str("no attempts yet\n");
        return out;
    }
    let mut rows = vec![
        [
            "ATTEMPT",
            "STARTED AT",
            "MS",
            "STATUS",
            "HOST",
            "VERSION",
            "ERROR",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for a in list {
        rows.push(vec![
            a["attempt"].to_string(),
            text(&a["started_at"]),
            a["duration_ms"].to_string(),
            text(&a["status"]),
            text(&a["host"]),
            text(&a["version"]),
            cut(&text(&a["error"]), ERROR_WIDTH),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));
    out
}

/// What an enqueue printed: the new job, or that a waiting job had the dedupe key.
fn enqueued(v: &Value) -> String {
    if v["deduplicated"] == json!(true) {
        "not enqueued: a waiting job has the same dedupe key\n".to_owned()
    } else {
        format!("enqueued {}\n", job_summary(&v["job"]))
    }
}

/// `POST /api/v1/jobs/ID/VERB`.
fn job_action(c: &Client, id: i64, verb: &str, done: &str) -> Result<(Value, String), ClientError> {
    let v = c.send(
        "POST",
        &format!("/api/v1/jobs/{id}/{verb}"),
        Some(&json!({})),
    )?;
    let human = format!("{done} {}\n", job_summary(&v["job"]));
    Ok((v, human))
}

/// `POST /api/v1/plugins/PLUGIN/jobs/KIND/{pause,resume}`.
fn pause(c: &Client, plugin: &str, kind: &str, verb: &str) -> Result<(Value, String), ClientError> {
    let path = format!("/api/v1/plugins/{}/jobs/{}/{verb}", enc(plugin), enc(kind));
    let v = c.send("POST", &path, Some(&json!({})))?;
    let state = if v["paused"] == json!(true) {
        "paused"
    } else {
        "resumed"
    };
    Ok((v, format!("{state} {plugin}/{kind}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_one_line() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("a\nb", 10), "a b");
        let long = "é".repeat(100);
        let shown = cut(&long, 10);
        assert_eq!(shown.chars().count(), 10);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn the_table_shows_attempts_and_dashes_for_nulls() {
        let jobs = json!([{ "id": 7, "plugin": "p", "kind": "k", "state": "scheduled",
            "attempt": 0, "max_attempts": 5, "run_at": "2026-12-01T10:00:00Z",
            "last_error": null }]);
        let t = job_table(&jobs);
        let row = t.lines().nth(1).unwrap();
        assert!(row.starts_with("7 "), "{t}");
        assert!(row.contains("0/5") && row.ends_with('-'), "{t}");
    }
}

//! Renders `docs/error-codes.md` from the two code tables ([`ErrorCode`] of the library and
//! [`ApiCode`] of this API), and checks the committed file is current. The text above the
//! marker line is kept as written; everything below it is generated.
//!
//! Regenerate with `UPDATE_DOCS=1 cargo test --workspace --all-features --lib error_codes_doc`.

use std::fmt::Write as _;
use std::path::PathBuf;

use plugin_host::ErrorCode;
use serde_json::json;

use super::error::{ApiCode, ApiError, Code};

/// The line after which the file is generated.
const MARKER: &str =
    "<!-- Generated from the code tables below this line: do not edit by hand (see above). -->";

/// One code as the page shows it.
struct Row {
    code: Code,
    owner: String,
    meaning: &'static str,
    fields: &'static [(&'static str, &'static str)],
    example: ApiError,
}

/// An example of each API-layer code; no wildcard, so a new code needs one.
fn api_example(code: ApiCode) -> ApiError {
    match code {
        ApiCode::Unauthorized => ApiError::Unauthorized {
            message: "missing bearer token".into(),
        },
        ApiCode::PayloadTooLarge => ApiError::PayloadTooLarge { limit: 1 << 20 },
        ApiCode::MethodNotAllowed => ApiError::MethodNotAllowed {
            method: "PATCH".into(),
            path: "/api/v1/plugins".into(),
        },
        ApiCode::AuthUnavailable => ApiError::AuthUnavailable {
            plugin: "auth".into(),
            message: "plugin `auth` is disabled".into(),
        },
        ApiCode::BodyTimeout => ApiError::BodyTimeout {
            after: std::time::Duration::from_secs(10),
        },
        ApiCode::TooManyStreams => ApiError::TooManyStreams {
            plugin: "todo".into(),
            limit: 64,
        },
    }
}

fn rows() -> Vec<Row> {
    let host = ErrorCode::ALL.iter().map(|c| Row {
        code: Code::Host(*c),
        owner: format!("library (`plugin_host::ErrorCode::{c:?}`)"),
        meaning: c.meaning(),
        fields: c.details_fields(),
        example: ApiError::Host(c.example()),
    });
    let api = ApiCode::ALL.iter().map(|c| Row {
        code: Code::Api(*c),
        owner: format!("HTTP layer only (`plugin_host_server::ApiCode::{c:?}`)"),
        meaning: c.meaning(),
        fields: c.details_fields(),
        example: api_example(*c),
    });
    host.chain(api).collect()
}

fn render_row(out: &mut String, row: &Row) {
    let code = row.code.as_str();
    let status = row.code.status();
    let _ = writeln!(out, "### `{code}`\n");
    let _ = writeln!(out, "HTTP {} · {}\n", status.as_u16(), row.owner);
    let _ = writeln!(out, "{}\n", row.meaning.trim());
    if row.fields.is_empty() {
        let _ = writeln!(out, "Details: none (`{{}}`).\n");
    } else {
        let _ = writeln!(out, "| details field | holds |\n|---|---|");
        for (field, holds) in row.fields {
            let _ = writeln!(out, "| `{field}` | {holds} |");
        }
        out.push('\n');
    }
    let body = json!({
        "error": {
            "code": code,
            "message": row.example.message(),
            "details": row.example.details(),
        }
    });
    let body = serde_json::to_string_pretty(&body).unwrap_or_default();
    let _ = writeln!(out, "Example response body:\n\n```json\n{body}\n```\n");
}

/// The generated part: a summary table, then one section per code.
fn render() -> String {
    let rows = rows();
    let mut out = String::new();
    let _ = writeln!(out, "| code | HTTP | details |\n|---|---|---|");
    for row in &rows {
        let code = row.code.as_str();
        let fields: Vec<String> = row.fields.iter().map(|f| format!("`{}`", f.0)).collect();
        let _ = writeln!(
            out,
            "| [`{code}`](#{code}) | {} | {} |",
            row.code.status().as_u16(),
            if fields.is_empty() {
                "none".to_owned()
            } else {
                fields.join(", ")
            }
        );
    }
    out.push('\n');
    for row in &rows {
        render_row(&mut out, row);
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[test]
fn error_codes_doc_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/error-codes.md");
    let committed = std::fs::read_to_string(&path).unwrap();
    let Some(at) = committed.find(MARKER) else {
        panic!("{} lost its marker line:\n{MARKER}", path.display());
    };
    let head = &committed[..at + MARKER.len()];
    let expected = format!("{head}\n\n{}", render());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    } else {
        assert!(
            committed == expected,
            "docs/error-codes.md is not current with the code tables; regenerate it with\n  \
             UPDATE_DOCS=1 cargo test --workspace --all-features --lib error_codes_doc\n\
             and commit the result"
        );
    }
}

#[test]
fn every_api_example_has_its_code_and_exactly_its_declared_details() {
    for code in ApiCode::ALL {
        let e = api_example(*code);
        assert_eq!(e.code(), Code::Api(*code));
        let details = e.details();
        let fields = code.details_fields();
        assert_eq!(details.as_object().map(|o| o.len()), Some(fields.len()));
        assert!(
            fields.iter().all(|(f, _)| details.get(f).is_some()),
            "{code}"
        );
    }
    // The library's own examples are checked by the library; here, that they reach the body.
    let e = ApiError::Host(ErrorCode::CircularDependency.example());
    assert_eq!(e.details()["cycle"], json!(["a", "b", "a"]));
}

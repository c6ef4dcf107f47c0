//! Example plugin `todo`: per-user todos in its table `todos`, served on the application
//! listener under `/plugins/todo/` behind the `auth` plugin's API keys (`Auth::Plugin("auth")`,
//! so it depends on `auth`):
//!
//! - `GET /todos` → the caller's todos, oldest first;
//! - `POST /todos` (body `{"title": string}`, checked by the host) → 201 with the stored todo,
//!   and the bus event `todo:<user>:created` with the todo as payload;
//! - `GET /events` → a Server-Sent Events stream of the caller's `todo:<user>:created` events
//!   (the route declares `todo:*:created`; the handler chooses the caller's own pattern, so a
//!   user never sees another's todos).
//!
//! The caller is the `user` of the identity the host passes in [`HttpRequest::identity`]. In an
//! event name, `<user>` is the user name itself when it is a valid bus segment (1 to 64 of
//! `A-Z a-z 0-9 _ - .`) not starting with `x-`, else `x-` and its UTF-8 bytes in hex: one
//! segment per user, never shared (a name too long for a segment, 64 characters, gets no
//! events: the todo is stored all the same, and its stream answers 400).
#![forbid(unsafe_code)]

use plugin_api::http::{Auth, HttpRequest, HttpResponse, Route};
use plugin_api::serde_json::{Value, json};
use plugin_api::{
    Column, Context, Error, Filter, Function, Functions, Manifest, Plugin, Query, Result,
};

/// Stateless: the todos are in the table.
#[derive(Debug)]
pub struct Todo;

const TABLE: &str = "todos";

const TODO: &str = r#"{"type":"object","required":["id","user","title"],"properties":{"id":{"type":"integer"},"user":{},"title":{"type":"string"}}}"#;

impl Plugin for Todo {
    const MANIFEST: Manifest = Manifest::new("todo", env!("CARGO_PKG_VERSION"))
        .description("per-user todos behind the auth plugin's API keys")
        .depends_on(&[("auth", "^1")])
        .tables(&[TABLE])
        .functions(&[
            Function::new("list_todos").summary("the caller's todos"),
            Function::new("add_todo").summary("stores a todo for the caller"),
            Function::new("watch_todos").summary("streams the caller's new todos"),
        ])
        .routes(&[
            Route::get("/todos", "list_todos")
                .summary("the caller's todos, oldest first")
                .auth(Auth::Plugin("auth"))
                .response_schema(r#"{"type":"array"}"#),
            Route::post("/todos", "add_todo")
                .summary("stores a todo for the caller")
                .auth(Auth::Plugin("auth"))
                .body_schema(
                    r#"{"type":"object","required":["title"],"properties":{"title":{"type":"string","minLength":1}}}"#,
                )
                .response_schema(TODO)
                .body_limit(4096),
            Route::get("/events", "watch_todos")
                .summary("Server-Sent Events of the caller's new todos (`todo:<user>:created`)")
                .auth(Auth::Plugin("auth"))
                .streams(&["todo:*:created"]),
        ]);

    fn new(ctx: &Context) -> Result<Self> {
        ctx.tables().create(
            TABLE,
            &[
                Column::integer("id").primary_key(),
                Column::text("user").not_null(),
                Column::text("title").not_null(),
            ],
        )?;
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("list_todos", Self::list_todos)
            .add_shared("add_todo", Self::add_todo)
            .add_shared("watch_todos", Self::watch_todos);
    }
}

/// The caller's user name, from the identity the auth plugin gave.
fn user(req: &HttpRequest) -> Result<String> {
    req.identity
        .as_ref()
        .and_then(|i| i.get("user"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::new("unauthorized", "the request carries no user identity"))
}

/// The event-name segment of a user (see the crate docs): the name itself when it is a valid
/// segment not starting with `x-`, else `x-` and the name's bytes in hex.
fn segment(user: &str) -> String {
    let plain = (1..=64).contains(&user.len())
        && !user.starts_with("x-")
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        return user.to_owned();
    }
    let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect();
    format!("x-{hex}")
}

/// The event announcing a new todo of `user`.
fn created_event(user: &str) -> String {
    format!("todo:{}:created", segment(user))
}

impl Todo {
    fn list_todos(&self, ctx: &Context, req: HttpRequest) -> Result<HttpResponse> {
        let user = user(&req)?;
        let rows = ctx.tables().select(
            TABLE,
            Query::new().filter(Filter::eq("user", user)).order_by("id"),
        )?;
        HttpResponse::ok(&rows)
    }

    fn add_todo(&self, ctx: &Context, req: HttpRequest) -> Result<HttpResponse> {
        let user = user(&req)?;
        let title = req.body["title"].as_str().unwrap_or_default().to_owned();
        let row = ctx
            .tables()
            .insert(TABLE, json!({"user": user, "title": title}))?;
        // The todo is stored whatever happens to its event: a user name too long to encode in a
        // bus segment (over 31 bytes outside the plain characters) gets no events.
        if let Err(e) = ctx.emit(&created_event(&user), &row) {
            ctx.warn(&format!("no todo:<user>:created event for this todo: {e}"));
        }
        HttpResponse::created(&row)
    }

    fn watch_todos(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        let user = user(&req)?;
        if segment(&user).len() > 64 {
            return Ok(HttpResponse::error(
                400,
                "bad_request",
                "this user name is too long for event names",
            ));
        }
        Ok(HttpResponse::events(&[&created_event(&user)]))
    }
}

plugin_api::export_plugin!(Todo);

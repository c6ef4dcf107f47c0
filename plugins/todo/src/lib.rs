//! Example plugin `todo`: per-user todos in its table `todos`, served on the application
//! listener under `/plugins/todo/` behind the `auth` plugin's API keys (`Auth::Plugin("auth")`,
//! so it depends on `auth`):
//!
//! - `GET /todos` → the caller's todos, oldest first;
//! - `POST /todos` (body `{"title": string}`, checked by the host) → 201 with the stored todo.
//!
//! The caller is the `user` of the identity the host passes in [`HttpRequest::identity`].
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
            .add_shared("add_todo", Self::add_todo);
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
        HttpResponse::created(&row)
    }
}

plugin_api::export_plugin!(Todo);

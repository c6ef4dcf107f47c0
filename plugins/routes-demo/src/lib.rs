//! Example plugin `routes-demo`: an in-memory item store served as HTTP routes on the host's
//! application listener, under `/plugins/routes-demo/`:
//!
//! - `GET /items` (public, `?prefix=` filters by name) → the items;
//! - `GET /items/{id}` (public) → the item, or 404;
//! - `POST /items` (token, body `{"name": string}` checked by the host) → 201 with the item;
//! - `DELETE /items/{id}` (token) → 204, or 404;
//! - `GET /slow?ms=N` (public, 300 ms timeout) sleeps N milliseconds;
//! - `GET /wait?ms=N` (public, 5 s timeout) the same, for requests that should finish;
//! - `GET /panic` (public) panics (the host answers 500 and the plugin keeps serving);
//! - `GET /echo/{a}/{b}` (public) → the whole request it received;
//! - `GET /events?patterns=a,b` (public, declares the stream patterns `demo:*`) → a Server-Sent
//!   Events stream of the bus events matching the chosen patterns (default `demo:*`) that the
//!   route declares;
//! - `GET /undeclared-stream` (public) answers an event stream on a route that declares none
//!   (the host answers 500).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use plugin_api::http::{Auth, HttpRequest, HttpResponse, Route};
use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result};
use serde::Serialize;

/// A stored item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Its id, given by the store.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// The store.
#[derive(Debug, Default)]
pub struct RoutesDemo {
    items: BTreeMap<u64, Item>,
    next: u64,
}

const ITEM: &str = r#"{"type":"object","required":["id","name"],"properties":{"id":{"type":"integer"},"name":{"type":"string"}}}"#;

impl Plugin for RoutesDemo {
    const MANIFEST: Manifest = Manifest::new("routes-demo", env!("CARGO_PKG_VERSION"))
        .description("an in-memory item store served as HTTP routes")
        .functions(&[
            Function::new("list_items").summary("the items, filtered by name prefix"),
            Function::new("get_item").summary("one item"),
            Function::new("add_item").summary("stores an item"),
            Function::new("delete_item").summary("deletes an item"),
            Function::new("slow").summary("sleeps ?ms= milliseconds"),
            Function::new("panic").summary("panics"),
            Function::new("echo").summary("answers the request it received"),
            Function::new("watch").summary("streams the chosen bus events"),
            Function::new("undeclared").summary("streams without declaring it"),
        ])
        .routes(&[
            Route::get("/items", "list_items")
                .summary("the items (`?prefix=` filters by name)")
                .response_schema(r#"{"type":"array"}"#),
            Route::get("/items/{id}", "get_item")
                .summary("one item")
                .response_schema(ITEM),
            Route::post("/items", "add_item")
                .summary("stores an item")
                .auth(Auth::Token)
                .body_schema(
                    r#"{"type":"object","required":["name"],"properties":{"name":{"type":"string","minLength":1}}}"#,
                )
                .response_schema(ITEM)
                .body_limit(1024),
            Route::delete("/items/{id}", "delete_item")
                .summary("deletes an item")
                .auth(Auth::Token),
            Route::get("/slow", "slow")
                .summary("sleeps ?ms= milliseconds")
                .timeout_ms(300),
            Route::get("/wait", "slow")
                .summary("sleeps ?ms= milliseconds, within 5 s")
                .timeout_ms(5000),
            Route::get("/panic", "panic").summary("panics"),
            Route::get("/echo/{a}/{b}", "echo").summary("answers the request it received"),
            Route::get("/events", "watch")
                .summary("Server-Sent Events of `demo:*` (`?patterns=` chooses among them)")
                .streams(&["demo:*"]),
            Route::get("/undeclared-stream", "undeclared")
                .summary("answers a stream on a route that declares none"),
        ]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self::default())
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("list_items", Self::list_items)
            .add_shared("get_item", Self::get_item)
            .add("add_item", Self::add_item)
            .add("delete_item", Self::delete_item)
            .add_shared("slow", Self::slow)
            .add_shared("panic", Self::panic)
            .add_shared("echo", Self::echo)
            .add_shared("watch", Self::watch)
            .add_shared("undeclared", Self::undeclared);
    }
}

fn id_of(req: &HttpRequest) -> Option<u64> {
    req.params.get("id")?.parse().ok()
}

impl RoutesDemo {
    fn list_items(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        let prefix = req.query.get("prefix").map_or("", String::as_str);
        let items: Vec<&Item> = self
            .items
            .values()
            .filter(|i| i.name.starts_with(prefix))
            .collect();
        HttpResponse::ok(&items)
    }

    fn get_item(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        match id_of(&req).and_then(|id| self.items.get(&id)) {
            Some(item) => HttpResponse::ok(item),
            None => Ok(HttpResponse::not_found()),
        }
    }

    fn add_item(&mut self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        // The host checked the body against the route's schema.
        let name = req.body["name"].as_str().unwrap_or_default().to_owned();
        self.next += 1;
        let item = Item {
            id: self.next,
            name,
        };
        self.items.insert(item.id, item.clone());
        Ok(HttpResponse::created(&item)?.header("location", format!("items/{}", item.id)))
    }

    fn delete_item(&mut self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        match id_of(&req).and_then(|id| self.items.remove(&id)) {
            Some(_) => Ok(HttpResponse::no_content()),
            None => Ok(HttpResponse::not_found()),
        }
    }

    fn slow(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        let ms: u64 = req
            .query
            .get("ms")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        HttpResponse::ok(&ms)
    }

    fn panic(&self, _: &Context, _: HttpRequest) -> Result<HttpResponse> {
        panic!("the panic route panicked, as asked")
    }

    fn echo(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        Ok(HttpResponse::ok(&req)?.header("x-echo", "1"))
    }

    fn watch(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        let chosen = req.query.get("patterns").map_or("demo:*", String::as_str);
        let patterns: Vec<&str> = chosen.split(',').collect();
        Ok(HttpResponse::events(&patterns).header("x-stream", "demo"))
    }

    fn undeclared(&self, _: &Context, _: HttpRequest) -> Result<HttpResponse> {
        Ok(HttpResponse::events(&["demo:*"]))
    }
}

plugin_api::export_plugin!(RoutesDemo);

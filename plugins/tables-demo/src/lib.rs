//! Test plugin `tables-demo`: declares only the table `users`, and offers typed functions:
//! `demo` runs the typed API end to end; `request` `{"request": {...}}` passes a tables request
//! through as given (tests use it to attack the repository with any SQL); `sql` `{"sql",
//! "params"}` runs raw SQL; `repeat` `{"sql", "times"}` runs it again and again until an error;
//! `bench` `{"n"}` times the repository from inside the plugin. `execute` takes the same inputs
//! with the function's name in `op`, for untyped callers. Tests make renamed copies (the name and
//! table are patched in place).
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{
    Column, Context, Error, Filter, Function, Functions, Manifest, Plugin, Query, Result,
};
use serde::Deserialize;

/// Stateless.
#[derive(Debug)]
pub struct TablesDemo;

/// Input of `request`: a raw request of the tables service.
#[derive(Debug, Deserialize)]
pub struct RawRequest {
    /// The request, as the service takes it.
    #[serde(default)]
    pub request: Value,
}

/// Input of `sql` and `repeat`.
#[derive(Debug, Deserialize)]
pub struct Sql {
    /// The statement.
    #[serde(default)]
    pub sql: String,
    /// Its parameters (`sql` only).
    #[serde(default)]
    pub params: Vec<Value>,
    /// How many times to run it at most (`repeat` only; default 1).
    #[serde(default)]
    pub times: Option<u64>,
}

/// Input of `bench`.
#[derive(Debug, Deserialize)]
pub struct Bench {
    /// How many rows (default 1000).
    #[serde(default)]
    pub n: Option<u64>,
}

impl Plugin for TablesDemo {
    const MANIFEST: Manifest = Manifest::new("tables-demo", env!("CARGO_PKG_VERSION"))
        .tables(&["users"])
        .functions(&[
            Function::new("demo").summary("runs the typed tables API end to end"),
            Function::new("request").summary("passes a tables request through as given"),
            Function::new("sql").summary("runs raw SQL with parameters"),
            Function::new("repeat").summary("runs SQL until it fails, at most `times` times"),
            Function::new("bench").summary("times n inserts and n selects by key"),
        ]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("demo", Self::demo)
            .add_shared("request", Self::request)
            .add_shared("sql", Self::sql)
            .add_shared("repeat", Self::repeat)
            .add_shared("bench", Self::bench);
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        fn typed<T: serde::de::DeserializeOwned>(input: Value) -> Result<T> {
            plugin_api::serde_json::from_value(input)
                .map_err(|e| Error::new("bad_request", e.to_string()))
        }
        match input["op"].as_str().unwrap_or_default() {
            "demo" => self.demo(ctx, ()),
            "request" => self.request(ctx, typed(input)?),
            "sql" => self.sql(ctx, typed(input)?),
            "repeat" => self.repeat(ctx, typed(input)?),
            "bench" => self.bench(ctx, typed(input)?),
            other => Err(Error::new("bad_request", format!("unknown op {other:?}"))),
        }
    }
}

impl TablesDemo {
    fn demo(&self, ctx: &Context, _: ()) -> Result<Value> {
        let t = ctx.tables();
        t.create(
            "users",
            &[
                Column::integer("id").primary_key(),
                Column::text("email").not_null().unique(),
                Column::integer("age"),
                Column::boolean("active"),
                Column::json("meta"),
            ],
        )?;
        let ada = t.insert(
            "users",
            json!({"email": "ada@example.com", "age": 36, "active": true, "meta": {"lang": "en"}}),
        )?;
        t.insert(
            "users",
            json!({"email": "grace@example.com", "age": 45, "active": false}),
        )?;
        t.insert("users", json!({"email": "linus@example.com", "age": null}))?;
        let adults = t.select(
            "users",
            Query::new()
                .columns(&["email", "age"])
                .filter(Filter::gt("age", 40))
                .order_by_desc("age")
                .limit(10),
        )?;
        let updated = t.update(
            "users",
            &[Filter::eq("email", "grace@example.com")],
            json!({"age": 46}),
        )?;
        let nulls = t.count("users", &[Filter::is_null("age")])?;
        let like = t.count("users", &[Filter::like("email", "%@example.com")])?;
        let listed = t.count(
            "users",
            &[Filter::is_in(
                "email",
                vec![json!("ada@example.com"), json!("nobody")],
            )],
        )?;
        let raw = t.sql(
            "SELECT email FROM users WHERE age >= $1 ORDER BY email",
            &[json!(36)],
        )?;
        let deleted = t.delete("users", &[Filter::eq("email", "linus@example.com")])?;
        let total = t.count("users", &[])?;
        Ok(json!({
            "inserted": ada, "adults": adults, "updated": updated, "nulls": nulls,
            "like": like, "listed": listed, "raw": raw.rows, "deleted": deleted, "total": total
        }))
    }

    fn request(&self, ctx: &Context, input: RawRequest) -> Result<Value> {
        ctx.call_service("tables", &input.request)
    }

    fn sql(&self, ctx: &Context, input: Sql) -> Result<Value> {
        let out = ctx.tables().sql(&input.sql, &input.params)?;
        Ok(json!({ "rows": out.rows, "rows_affected": out.rows_affected }))
    }

    /// Runs `sql` up to `times` times and stops at the first error: a call that keeps working
    /// after its deadline, for the cancellation tests.
    fn repeat(&self, ctx: &Context, input: Sql) -> Result<Value> {
        let t = ctx.tables();
        let mut done = 0u64;
        for _ in 0..input.times.unwrap_or(1) {
            if let Err(e) = t.sql(&input.sql, &[]) {
                return Ok(json!({ "done": done, "error": e.code }));
            }
            done += 1;
        }
        Ok(json!({ "done": done }))
    }

    /// Times the repository from inside the plugin: `n` typed inserts, then `n` typed selects
    /// by primary key.
    fn bench(&self, ctx: &Context, input: Bench) -> Result<Value> {
        let t = ctx.tables();
        let n = input.n.unwrap_or(1000);
        t.create(
            "users",
            &[
                Column::integer("id").primary_key(),
                Column::text("email").not_null(),
            ],
        )?;
        let start = std::time::Instant::now();
        let mut ids = Vec::with_capacity(n as usize);
        for i in 0..n {
            let row = t.insert("users", json!({ "email": format!("user{i}@example.com") }))?;
            ids.push(row["id"].clone());
        }
        let insert_ns = start.elapsed().as_nanos() as u64;
        let start = std::time::Instant::now();
        for id in &ids {
            let rows = t.select("users", Query::new().filter(Filter::eq("id", id.clone())))?;
            if rows.len() != 1 {
                return Err(plugin_api::Error::msg("select by id did not find the row"));
            }
        }
        let select_ns = start.elapsed().as_nanos() as u64;
        Ok(json!({ "insert_ns": insert_ns, "select_ns": select_ns }))
    }
}

plugin_api::export_plugin!(TablesDemo);

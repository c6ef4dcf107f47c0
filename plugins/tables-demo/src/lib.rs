//! Test plugin `tables-demo`: declares only the table `users`. `{"op": "demo"}` runs the typed
//! API end to end; `{"op": "request", "request": {...}}` passes a tables request through as
//! given (tests use it to attack the repository with any SQL); `{"op": "sql", "sql", "params"}`
//! runs raw SQL; `{"op": "repeat", "sql", "times"}` runs it again and again until an error.
//! Tests make renamed copies (the name and table are patched in place).
#![forbid(unsafe_code)]

use plugin_api::serde_json::{Value, json};
use plugin_api::{Column, Context, Filter, Manifest, Plugin, Query, Result};

/// Stateless.
#[derive(Debug)]
pub struct TablesDemo;

impl Plugin for TablesDemo {
    const MANIFEST: Manifest =
        Manifest::new("tables-demo", env!("CARGO_PKG_VERSION")).tables(&["users"]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        let t = ctx.tables();
        match input["op"].as_str().unwrap_or_default() {
            "demo" => {
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
                let ada = t.insert("users", json!({"email": "ada@example.com", "age": 36, "active": true, "meta": {"lang": "en"}}))?;
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
            "bench" => {
                // Times the repository from inside the plugin: `n` typed inserts, then `n`
                // typed selects by primary key.
                let n = input["n"].as_u64().unwrap_or(1000);
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
                    let row =
                        t.insert("users", json!({ "email": format!("user{i}@example.com") }))?;
                    ids.push(row["id"].clone());
                }
                let insert_ns = start.elapsed().as_nanos() as u64;
                let start = std::time::Instant::now();
                for id in &ids {
                    let rows =
                        t.select("users", Query::new().filter(Filter::eq("id", id.clone())))?;
                    if rows.len() != 1 {
                        return Err(plugin_api::Error::msg("select by id did not find the row"));
                    }
                }
                let select_ns = start.elapsed().as_nanos() as u64;
                Ok(json!({ "insert_ns": insert_ns, "select_ns": select_ns }))
            }
            "request" => ctx.call_service("tables", &input["request"]),
            "repeat" => {
                // Runs `sql` up to `times` times and stops at the first error: a call that
                // keeps working after its deadline, for the cancellation tests.
                let sql = input["sql"].as_str().unwrap_or_default();
                let times = input["times"].as_u64().unwrap_or(1);
                let mut done = 0u64;
                for _ in 0..times {
                    if let Err(e) = t.sql(sql, &[]) {
                        return Ok(json!({ "done": done, "error": e.code }));
                    }
                    done += 1;
                }
                Ok(json!({ "done": done }))
            }
            "sql" => {
                let params = input["params"].as_array().cloned().unwrap_or_default();
                let out = t.sql(input["sql"].as_str().unwrap_or_default(), &params)?;
                Ok(json!({ "rows": out.rows, "rows_affected": out.rows_affected }))
            }
            other => Err(plugin_api::Error::new(
                "bad_request",
                format!("unknown op {other:?}"),
            )),
        }
    }
}

plugin_api::export_plugin!(TablesDemo);

//! The `resources` and `consumed` ops: every call of the tables, topics, buckets and config
//! services, written as a plugin was written against plugin-api 0.1.0, so that the host is
//! checked to understand the requests that release sends and to answer in the shapes it reads.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use plugin_api::serde_json::{Value, json};
use plugin_api::{Column, Context, Filter, OutgoingRecord, Query, Result};

/// The error code of a call that must fail.
fn code<T>(result: Result<T>) -> Value {
    match result {
        Ok(_) => Value::Null,
        Err(e) => json!(e.code),
    }
}

fn tables(ctx: &Context) -> Result<Value> {
    let t = ctx.tables();
    t.create(
        "notes",
        &[
            Column::integer("id").primary_key(),
            Column::text("body").not_null().unique(),
            Column::boolean("done"),
            Column::real("score"),
            Column::json("doc"),
        ],
    )?;
    let first = t.insert("notes", json!({ "body": "a", "done": false, "score": 1.5 }))?;
    t.insert(
        "notes",
        json!({ "body": "b", "done": true, "doc": { "k": [1] } }),
    )?;
    t.insert("notes", json!({ "body": "c", "done": true }))?;
    let done = t.select(
        "notes",
        Query::new()
            .columns(&["id", "body"])
            .filter(Filter::eq("done", true))
            .filter(Filter::like("body", "%"))
            .order_by_desc("id")
            .limit(10)
            .offset(0),
    )?;
    let updated = t.update("notes", &[Filter::eq("body", "c")], json!({ "score": 3 }))?;
    let counted = t.count(
        "notes",
        &[Filter::is_in("body", vec![json!("a"), json!("c")])],
    )?;
    let deleted = t.delete("notes", &[Filter::is_null("doc"), Filter::gt("score", 2)])?;
    let sql = t.sql(
        "SELECT count(*) AS n FROM notes WHERE body <> $1",
        &[json!("zzz")],
    )?;
    Ok(json!({
        "first": first,
        "done": done,
        "updated": updated,
        "counted": counted,
        "deleted": deleted,
        "sql": { "rows": sql.rows, "rows_affected": sql.rows_affected },
        "all": t.select("notes", Query::new().order_by("id"))?,
        "denied": code(t.count("secrets", &[])),
    }))
}

fn topics(ctx: &Context, consumed: &Arc<Mutex<Vec<Value>>>) -> Result<Value> {
    let topics = ctx.topics();
    topics.create("pings")?;
    let seen = Arc::clone(consumed);
    let id = topics.subscribe("pings", move |m| {
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(json!({
                "topic": m.topic(),
                "key": m.key(),
                "headers": m.headers(),
                "offset": m.offset(),
                "partition": m.partition(),
                "payload": m.json::<Value>()?,
            }));
        Ok(())
    })?;
    let one = topics.produce_with_headers("pings", Some("k"), b"{\"n\":1}", &[("h", "v")])?;
    let batch = topics.produce_batch(
        "pings",
        &[
            OutgoingRecord::new(b"{\"n\":2}"),
            OutgoingRecord::new(b"{\"n\":3}").with_key("k3"),
        ],
    )?;
    Ok(json!({
        "subscription": id.0,
        "offsets": [one, batch],
        "denied": code(topics.produce("secrets", None, b"x")),
        "unknown_subscription": code(topics.unsubscribe(plugin_api::SubscriptionId(u64::MAX))),
    }))
}

fn buckets(ctx: &Context) -> Result<Value> {
    let b = ctx.buckets();
    b.put("files", "a/b.txt", b"hi\x00", Some("text/plain"))?;
    b.put("files", "a/c.bin", b"", None)?;
    let object = b.get("files", "a/b.txt")?.ok_or("a/b.txt is missing")?;
    let untyped = b.get("files", "a/c.bin")?.ok_or("a/c.bin is missing")?;
    let first = b.list("files", "a/", None, 1)?;
    let second = b.list("files", "a/", first.next_page_token.as_deref(), 1000)?;
    let url = b.presign_get("files", "a/b.txt", Duration::from_secs(60))?;
    Ok(json!({
        "bytes": object.bytes,
        "content_type": object.content_type,
        "untyped": untyped.content_type,
        "exists": b.exists("files", "a/b.txt")?,
        "pages": [first.keys, second.keys, second.next_page_token],
        "presigned": url.contains("/presigned/"),
        "deleted": [b.delete("files", "a/b.txt")?, b.delete("files", "a/b.txt")?],
        "gone": b.get("files", "a/b.txt")?.is_none(),
        "denied": code(b.get("secrets", "a")),
    }))
}

/// Runs every service call once; answers what each returned.
pub(crate) fn resources(ctx: &Context, consumed: &Arc<Mutex<Vec<Value>>>) -> Result<Value> {
    Ok(json!({
        "config": ctx.config()?,
        "tables": tables(ctx)?,
        "topics": topics(ctx, consumed)?,
        "buckets": buckets(ctx)?,
    }))
}

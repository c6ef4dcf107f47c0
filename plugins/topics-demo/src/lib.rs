//! Test plugin `topics-demo`: declares the topic `orders`, and offers typed functions (every
//! input may name its `topic`, default `orders`): `produce {key, payload, count, batch}` (with
//! `count`, payloads are `{"seq": i}`; with `batch` too, sent that many per `produce_batch`
//! call), `create`, `subscribe {mode}` (`record`, `fail` always, `fail_once` per offset),
//! `unsubscribe {id}`, `seen` (the messages its handlers recorded, with how often each was
//! attempted). `execute` takes the same inputs with the function's name in `op`. Tests make
//! renamed copies.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use plugin_api::serde_json::{Value, json};
use plugin_api::{
    Context, Error, Function, Functions, Manifest, OutgoingRecord, Plugin, Result, SubscriptionId,
};
use serde::Deserialize;

#[derive(Debug, Default)]
struct Seen {
    messages: Vec<Value>,
    attempts: HashMap<String, u64>,
}

/// Shared with the handlers.
#[derive(Debug, Default)]
pub struct TopicsDemo {
    seen: Arc<Mutex<Seen>>,
}

fn orders() -> String {
    "orders".to_owned()
}

fn record() -> String {
    "record".to_owned()
}

/// The input of every function; each reads the fields it needs.
#[derive(Debug, Deserialize)]
pub struct Input {
    /// The topic (default `orders`).
    #[serde(default = "orders")]
    pub topic: String,
    /// `produce`: the key.
    #[serde(default)]
    pub key: Option<String>,
    /// `produce`: the payload (without `count`).
    #[serde(default)]
    pub payload: Value,
    /// `produce`: how many `{"seq": i}` payloads.
    #[serde(default)]
    pub count: Option<u64>,
    /// `produce`: records per `produce_batch` call.
    #[serde(default)]
    pub batch: Option<u64>,
    /// `subscribe`: `record`, `fail` or `fail_once`.
    #[serde(default = "record")]
    pub mode: String,
    /// `unsubscribe`: the subscription.
    #[serde(default)]
    pub id: u64,
}

impl Plugin for TopicsDemo {
    const MANIFEST: Manifest = Manifest::new("topics-demo", env!("CARGO_PKG_VERSION"))
        .topics(&["orders"])
        .functions(&[
            Function::new("create").summary("creates the topic"),
            Function::new("produce").summary("produces one message, or count of them"),
            Function::new("subscribe").summary("subscribes a recording handler"),
            Function::new("unsubscribe").summary("removes a subscription"),
            Function::new("seen").summary("what the handlers recorded"),
        ]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self::default())
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("create", Self::create)
            .add_shared("produce", Self::produce)
            .add_shared("subscribe", Self::subscribe)
            .add_shared("unsubscribe", Self::unsubscribe)
            .add_shared("seen", Self::seen);
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        let op = input["op"].as_str().unwrap_or_default().to_owned();
        let input: Input = plugin_api::serde_json::from_value(input)
            .map_err(|e| Error::new("bad_request", e.to_string()))?;
        match op.as_str() {
            "create" => self.create(ctx, input),
            "produce" => self.produce(ctx, input),
            "subscribe" => self.subscribe(ctx, input),
            "unsubscribe" => self.unsubscribe(ctx, input),
            "seen" => self.seen(ctx, ()),
            other => Err(Error::new("bad_request", format!("unknown op {other:?}"))),
        }
    }
}

impl TopicsDemo {
    fn create(&self, ctx: &Context, input: Input) -> Result<Value> {
        ctx.topics().create(&input.topic).map(|()| json!({}))
    }

    fn produce(&self, ctx: &Context, input: Input) -> Result<Value> {
        let topics = ctx.topics();
        let topic = input.topic.as_str();
        let key = input.key.as_deref();
        let mut last = 0;
        match (input.count, input.batch) {
            // `batch` records per `produce_batch` call.
            (Some(n), Some(batch)) => {
                let payloads: Vec<String> =
                    (0..n).map(|i| json!({ "seq": i }).to_string()).collect();
                let headers = [("source", "demo")];
                for chunk in payloads.chunks(batch.max(1) as usize) {
                    let records: Vec<OutgoingRecord<'_>> = chunk
                        .iter()
                        .map(|p| {
                            let r = OutgoingRecord::new(p.as_bytes()).with_headers(&headers);
                            match key {
                                Some(k) => r.with_key(k),
                                None => r,
                            }
                        })
                        .collect();
                    let offsets = topics.produce_batch(topic, &records)?;
                    if offsets.len() != records.len() {
                        return Err(Error::msg("produce_batch lost offsets"));
                    }
                    last = offsets.last().copied().unwrap_or(last);
                }
            }
            (Some(n), None) => {
                for i in 0..n {
                    last = topics.produce_with_headers(
                        topic,
                        key,
                        json!({ "seq": i }).to_string().as_bytes(),
                        &[("source", "demo")],
                    )?;
                }
            }
            (None, _) => last = topics.produce_json(topic, key, &input.payload)?,
        }
        Ok(json!({ "offset": last }))
    }

    fn subscribe(&self, ctx: &Context, input: Input) -> Result<Value> {
        let mode = input.mode;
        let seen = Arc::clone(&self.seen);
        let id = ctx.topics().subscribe(&input.topic, move |m| {
            let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let tag = format!("{}:{}", m.topic(), m.offset());
            let attempt = {
                let a = s.attempts.entry(tag).or_insert(0);
                *a += 1;
                *a
            };
            if mode == "fail" || (mode == "fail_once" && attempt == 1) {
                return Err(Error::new("handler_failed", "asked to fail"));
            }
            let payload: Value = m.json().unwrap_or(Value::Null);
            s.messages.push(json!({
                "topic": m.topic(), "key": m.key(), "offset": m.offset(),
                "payload": payload, "headers": m.headers(), "attempt": attempt
            }));
            Ok(())
        })?;
        Ok(json!({ "id": id.0 }))
    }

    fn unsubscribe(&self, ctx: &Context, input: Input) -> Result<Value> {
        ctx.topics().unsubscribe(SubscriptionId(input.id))?;
        Ok(json!({}))
    }

    fn seen(&self, _ctx: &Context, _: ()) -> Result<Value> {
        let s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(json!({ "messages": s.messages, "attempts": s.attempts }))
    }
}

plugin_api::export_plugin!(TopicsDemo);

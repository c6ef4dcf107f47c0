//! Test plugin `topics-demo`: declares the topic `orders`. Ops: `produce {topic, key, payload,
//! count, batch}` (with `count`, payloads are `{"seq": i}`; with `batch` too, sent that many per
//! `produce_batch` call), `create {topic}`, `subscribe {topic,
//! mode}` (`record`, `fail` always, `fail_once` per offset), `unsubscribe {id}`, `seen` (the
//! messages its handlers recorded, with how often each was attempted). Tests make renamed copies.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Error, Manifest, OutgoingRecord, Plugin, Result, SubscriptionId};

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

impl Plugin for TopicsDemo {
    const MANIFEST: Manifest =
        Manifest::new("topics-demo", env!("CARGO_PKG_VERSION")).topics(&["orders"]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self::default())
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        let topics = ctx.topics();
        let topic = input["topic"].as_str().unwrap_or("orders");
        match input["op"].as_str().unwrap_or_default() {
            "create" => topics.create(topic).map(|()| json!({})),
            "produce" => {
                let key = input["key"].as_str();
                let mut last = 0;
                match (input["count"].as_u64(), input["batch"].as_u64()) {
                    // `batch` records per `produce_batch` call.
                    (Some(n), Some(batch)) => {
                        let payloads: Vec<String> =
                            (0..n).map(|i| json!({ "seq": i }).to_string()).collect();
                        let headers = [("source", "demo")];
                        for chunk in payloads.chunks(batch.max(1) as usize) {
                            let records: Vec<OutgoingRecord<'_>> = chunk
                                .iter()
                                .map(|p| {
                                    let r =
                                        OutgoingRecord::new(p.as_bytes()).with_headers(&headers);
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
                    (None, _) => last = topics.produce_json(topic, key, &input["payload"])?,
                }
                Ok(json!({ "offset": last }))
            }
            "subscribe" => {
                let mode = input["mode"].as_str().unwrap_or("record").to_owned();
                let seen = Arc::clone(&self.seen);
                let id = topics.subscribe(topic, move |m| {
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
            "unsubscribe" => {
                topics.unsubscribe(SubscriptionId(input["id"].as_u64().unwrap_or(0)))?;
                Ok(json!({}))
            }
            "seen" => {
                let s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(json!({ "messages": s.messages, "attempts": s.attempts }))
            }
            other => Err(Error::new("bad_request", format!("unknown op {other:?}"))),
        }
    }
}

plugin_api::export_plugin!(TopicsDemo);

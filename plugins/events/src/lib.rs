//! Test plugin `events-00`: drives the event bus from `execute`, records what its handlers see.
//! Tests and benches write copies with the name patched (`events-01`, ...) to get several
//! distinct subscriber plugins from one build.
//!
//! Ops (`{"op": ...}`):
//! - `emit` `{name, payload, count?, raw?, seq?}`: emits `count` events (with `seq`, the payload
//!   is `{"seq": i}`); returns how many and how many of its own handlers ran meanwhile (0: no
//!   re-entrant delivery).
//! - `on` / `once` `{pattern, mode?, reply?, ms?}`: subscribes; `mode` is `record` (default),
//!   `count`, `latency` (payload `{"t": unix-nanos}`), `panic`, `fail` or `slow` (sleeps `ms`);
//!   `reply` emits an event of that name with the same payload. Returns `{"id"}`.
//! - `off` `{id}`; `seen` → `{"events": [{sub, name, payload}]}`; `count`; `latency` → sorted
//!   latencies in ns; `clear`.
//!
//! `new` subscribes to `probe:init`; `cleanup` tries to subscribe (the host must refuse)
//! and emits `events:cleanup` with the error code it got.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use plugin_api::serde_json::{Value, json};
use plugin_api::{Context, Error, Event, Manifest, Plugin, Result, SubscriptionId};

#[derive(Debug, Default)]
struct Seen {
    events: Vec<Value>,
    count: u64,
    latencies: Vec<u64>,
}

/// Shared with the handlers, which run on this plugin's thread after `execute` returns.
#[derive(Debug)]
pub struct Events {
    seen: Arc<Mutex<Seen>>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn payload_value(e: &Event<'_>) -> Value {
    e.json::<Value>()
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(e.payload()).into_owned()))
}

impl Events {
    fn subscribe(&self, ctx: &Context, input: &Value, once: bool) -> Result<Value> {
        let pattern = input["pattern"]
            .as_str()
            .ok_or("pattern missing")?
            .to_owned();
        let mode = input["mode"].as_str().unwrap_or("record").to_owned();
        let reply = input["reply"].as_str().map(str::to_owned);
        let ms = input["ms"].as_u64().unwrap_or(0);
        let seen = Arc::clone(&self.seen);
        let reply_ctx = ctx.clone();
        let id_cell: Arc<Mutex<u64>> = Arc::default();
        let id_for_handler = Arc::clone(&id_cell);
        let handler = move |e: &Event<'_>| -> Result<()> {
            let sub = *id_for_handler
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match mode.as_str() {
                "count" => {
                    seen.lock().unwrap_or_else(PoisonError::into_inner).count += 1;
                }
                "latency" => {
                    let sent = e.json::<Value>()?["t"].as_u64().unwrap_or(0);
                    let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    s.count += 1;
                    s.latencies.push(now_ns().saturating_sub(sent));
                }
                "panic" => panic!("subscriber was asked to panic on {}", e.name()),
                "fail" => return Err(Error::new("handler_failed", "subscriber was asked to fail")),
                other => {
                    if other == "slow" {
                        std::thread::sleep(Duration::from_millis(ms));
                    }
                    let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    s.count += 1;
                    s.events
                        .push(json!({"sub": sub, "name": e.name(), "payload": payload_value(e)}));
                }
            }
            if let Some(reply) = &reply {
                reply_ctx.emit_raw(reply, e.payload())?;
            }
            Ok(())
        };
        let id = if once {
            ctx.once(&pattern, handler)?
        } else {
            ctx.on(&pattern, handler)?
        };
        *id_cell.lock().unwrap_or_else(PoisonError::into_inner) = id.0;
        Ok(json!({ "id": id.0 }))
    }
}

impl Plugin for Events {
    const MANIFEST: Manifest = Manifest::new("events-00", env!("CARGO_PKG_VERSION"));

    fn new(ctx: &Context) -> Result<Self> {
        let events = Self {
            seen: Arc::default(),
        };
        events.subscribe(ctx, &json!({"pattern": "probe:init"}), false)?;
        Ok(events)
    }

    fn execute(&mut self, ctx: &Context, input: Value) -> Result<Value> {
        match input["op"].as_str().unwrap_or_default() {
            "emit" => {
                let name = input["name"].as_str().ok_or("name missing")?;
                let count = input["count"].as_u64().unwrap_or(1);
                let before = self
                    .seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .count;
                for i in 0..count {
                    if input["seq"] == true {
                        ctx.emit(name, &json!({ "seq": i }))?;
                    } else if input["latency"] == true {
                        ctx.emit(name, &json!({ "t": now_ns() }))?;
                    } else if input["raw"] == true {
                        ctx.emit_raw(
                            name,
                            input["payload"].as_str().unwrap_or_default().as_bytes(),
                        )?;
                    } else {
                        ctx.emit(name, &input["payload"])?;
                    }
                }
                let after = self
                    .seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .count;
                Ok(json!({ "emitted": count, "handled_during_emit": after - before }))
            }
            "on" => self.subscribe(ctx, &input, false),
            "once" => self.subscribe(ctx, &input, true),
            "off" => {
                ctx.off(SubscriptionId(input["id"].as_u64().ok_or("id missing")?))?;
                Ok(json!({ "off": true }))
            }
            "seen" => Ok(
                json!({ "events": self.seen.lock().unwrap_or_else(PoisonError::into_inner).events }),
            ),
            "count" => Ok(
                json!({ "count": self.seen.lock().unwrap_or_else(PoisonError::into_inner).count }),
            ),
            "latency" => {
                let mut l = std::mem::take(
                    &mut self
                        .seen
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .latencies,
                );
                l.sort_unstable();
                Ok(json!({ "latencies": l }))
            }
            "clear" => {
                *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Seen::default();
                Ok(json!({}))
            }
            other => Err(Error::new("bad_request", format!("unknown op {other:?}"))),
        }
    }

    fn cleanup(&mut self, ctx: &Context) -> Result<()> {
        let code = match ctx.on("too:late", |_| Ok(())) {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.code,
        };
        ctx.emit("events:cleanup", &json!({ "subscribe_error": code }))
    }
}

plugin_api::export_plugin!(Events);

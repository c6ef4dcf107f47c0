//! Server-Sent Events of bus events on a plugin route: a handler that answers
//! [`HttpResponse::events`](plugin_api::HttpResponse::events) on a route declaring
//! [`Route::streams`](plugin_api::http::Route::streams) gets a `text/event-stream` of the bus
//! events matching one of its chosen patterns *and* one of the route's declared patterns.
//!
//! - Delivery: one host subscription per chosen pattern (`EventBus::subscribe_host`). Host
//!   handlers run inline on the emitting thread, so they never block: an event goes to the
//!   stream over a bounded queue with `try_send`; a full queue ends the stream with a final
//!   `event: overflow` (the client lost events and should reconnect and resynchronise).
//! - End: the plugin's lifecycle events on the bus (`plugin:unloaded`, `plugin:reloaded`,
//!   `plugin:disabled`, `plugin:failed`) and the server's shutdown end its streams with a final
//!   `event: end` whose data says why. Events queued before the end are sent first.
//! - A client that disconnects drops the body, and with it the stream's subscriptions.
//! - At most `[app] max_streams` streams per plugin are open at once (503 `too_many_streams`).
//!
//! Called by `dispatch.rs` once the handler answered; the lifecycle subscriptions are made once
//! per listener. No plugin code runs here: payloads are host-owned copies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use plugin_host::{BusEvent, EventBus, Pattern};
use tokio::sync::{mpsc, watch};

/// Events a stream may hold before its client reads them; one more ends it with `overflow`.
pub(crate) const QUEUE: usize = 256;

/// Why a stream ended; the data of its final event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client read too slowly and its queue filled up: events were lost.
    Overflow,
    /// The plugin was unloaded.
    Unloaded,
    /// The plugin was replaced by a new instance.
    Reloaded,
    /// The plugin was disabled.
    Disabled,
    /// The plugin's instance failed (a hook failed or hung).
    Failed,
    /// The server is shutting down.
    Shutdown,
}

impl End {
    /// The reason as the final event's data says it.
    fn reason(self) -> &'static str {
        match self {
            Self::Overflow => "overflow",
            Self::Unloaded => "unloaded",
            Self::Reloaded => "reloaded",
            Self::Disabled => "disabled",
            Self::Failed => "failed",
            Self::Shutdown => "shutdown",
        }
    }

    /// The final frame: `event: overflow` for an overflow, `event: end` otherwise.
    fn frame(self) -> Bytes {
        let event = if self == Self::Overflow {
            "overflow"
        } else {
            "end"
        };
        Bytes::from(format!(
            "event: {event}\ndata: {{\"reason\":\"{}\"}}\n\n",
            self.reason()
        ))
    }
}

/// The end signal of one stream: the first reason given wins; never blocks.
#[derive(Debug)]
struct Ender(watch::Sender<Option<End>>);

impl Ender {
    fn end(&self, reason: End) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    fn ended(&self) -> bool {
        self.0.borrow().is_some()
    }
}

/// One open stream, as the registry knows it.
#[derive(Debug)]
struct Entry {
    plugin: String,
    generation: u64,
    ender: Arc<Ender>,
}

/// The open streams of the application listener, by id; ends them on lifecycle events and on
/// shutdown, and caps them per plugin.
#[derive(Debug)]
pub(crate) struct Streams {
    bus: Arc<EventBus>,
    open: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    max_per_plugin: usize,
    keep_alive: Duration,
    shut_down: AtomicBool,
    lifecycle: Mutex<Vec<u64>>,
}

/// The lifecycle events that end a plugin's streams.
const LIFECYCLE: [&str; 4] = [
    "plugin:unloaded",
    "plugin:reloaded",
    "plugin:disabled",
    "plugin:failed",
];

impl Streams {
    /// A registry on `bus`, subscribed to the lifecycle events that end streams.
    ///
    /// # Errors
    /// `invalid_pattern` (the lifecycle patterns are fixed and valid: never in practice).
    pub(crate) fn new(
        bus: Arc<EventBus>,
        max_per_plugin: usize,
        keep_alive: Duration,
    ) -> plugin_host::Result<Arc<Self>> {
        let streams = Arc::new(Self {
            bus: Arc::clone(&bus),
            open: Mutex::default(),
            next_id: AtomicU64::new(1),
            max_per_plugin,
            keep_alive,
            shut_down: AtomicBool::new(false),
            lifecycle: Mutex::default(),
        });
        // A weak handle: the bus owns the handlers, and the registry owns the bus.
        let weak: Weak<Self> = Arc::downgrade(&streams);
        let mut ids = Vec::new();
        for name in LIFECYCLE {
            let weak = Weak::clone(&weak);
            let id = bus.subscribe_host(
                name,
                false,
                Arc::new(move |e: &BusEvent| {
                    if let Some(streams) = weak.upgrade() {
                        streams.on_lifecycle(e);
                    }
                }),
            )?;
            ids.push(id);
        }
        *streams
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ids;
        Ok(streams)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of streams open, of every plugin.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }

    /// Ends the streams a lifecycle event concerns. Runs inline on the manager's thread: it
    /// only takes the registry's lock and signals.
    fn on_lifecycle(&self, e: &BusEvent) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.payload) else {
            return;
        };
        let Some(plugin) = v["name"].as_str() else {
            return;
        };
        let generation = v["generation"].as_u64();
        // Which instances' streams end: an unload or disable ends the named instance's and
        // older ones; a reload (the new generation) ends every older one; a failure ends only
        // the failed instance's (a failed reload candidate leaves the running one serving).
        let (reason, ends): (End, Box<dyn Fn(u64) -> bool>) = match &*e.name {
            "plugin:unloaded" => (
                End::Unloaded,
                Box::new(move |g| generation.is_none_or(|n| g <= n)),
            ),
            "plugin:reloaded" => (
                End::Reloaded,
                Box::new(move |g| generation.is_none_or(|n| g < n)),
            ),
            "plugin:disabled" => (
                End::Disabled,
                Box::new(move |g| generation.is_none_or(|n| g <= n)),
            ),
            _ => (End::Failed, Box::new(move |g| generation == Some(g))),
        };
        for entry in self.entries().values() {
            if entry.plugin == plugin && ends(entry.generation) {
                entry.ender.end(reason);
            }
        }
    }

    /// Ends every stream (the server is stopping) and every stream opened from now on.
    pub(crate) fn shut_down(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        for entry in self.entries().values() {
            entry.ender.end(End::Shutdown);
        }
    }

    /// Ends the streams of `plugin` of instances other than `current` (`None`: every one of
    /// them), with `reason`: for a stream opened while its plugin changed.
    pub(crate) fn end_plugin(&self, plugin: &str, current: Option<u64>, reason: End) {
        for entry in self.entries().values() {
            if entry.plugin == plugin && current != Some(entry.generation) {
                entry.ender.end(reason);
            }
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let ids = std::mem::take(
            self.lifecycle
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for id in ids {
            let _ = self.bus.unsubscribe_host(id);
        }
    }
}

/// Why a stream could not open.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The plugin has `limit` streams open already.
    TooMany {
        /// The cap.
        limit: usize,
    },
    /// A chosen pattern does not parse, or the route declares none: the plugin's fault.
    Invalid(String),
}

/// What to stream: the patterns the route declares and the ones the handler chose.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The plugin.
    pub(crate) plugin: &'a str,
    /// Its instance that answered.
    pub(crate) generation: u64,
    /// The handler function (for messages).
    pub(crate) function: &'a str,
    /// The route's declared patterns.
    pub(crate) declared: &'a [String],
    /// The handler's chosen patterns.
    pub(crate) chosen: &'a [String],
}

/// Parses `texts` as bus patterns, naming the first one that does not parse.
fn patterns(texts: &[String], what: &str, req: &Request<'_>) -> Result<Vec<Pattern>, Refusal> {
    texts
        .iter()
        .map(|t| {
            Pattern::parse(t).map_err(|e| {
                Refusal::Invalid(format!(
                    "`{}`'s function `{}` {what} `{t}`, which is not a bus pattern: {e}",
                    req.plugin, req.function
                ))
            })
        })
        .collect()
}

/// One event on its way to the client.
#[derive(Debug)]
struct Item {
    name: Arc<str>,
    payload: Arc<[u8]>,
    raw: bool,
}

/// Removes a stream's subscriptions and registry entry when its body is dropped (the client
/// disconnected or the stream ended).
#[derive(Debug)]
struct Guard {
    streams: Arc<Streams>,
    id: u64,
    subscriptions: Vec<u64>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for id in self.subscriptions.drain(..) {
            let _ = self.streams.bus.unsubscribe_host(id);
        }
        self.streams.entries().remove(&self.id);
    }
}

impl Streams {
    /// Opens a stream: registers it (refused past the cap), subscribes one host handler per
    /// chosen pattern, and answers `text/event-stream` with `headers` (the handler's).
    pub(crate) fn open(
        self: &Arc<Self>,
        req: &Request<'_>,
        mut headers: HeaderMap,
    ) -> Result<Response, Refusal> {
        if req.declared.is_empty() {
            return Err(Refusal::Invalid(format!(
                "`{}`'s function `{}` answered an event stream on a route that declares no \
                 stream patterns",
                req.plugin, req.function
            )));
        }
        let declared = Arc::new(patterns(req.declared, "declares", req)?);
        let chosen = Arc::new(patterns(req.chosen, "chose", req)?);
        let (ender_tx, end_rx) = watch::channel(None);
        let ender = Arc::new(Ender(ender_tx));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut open = self.entries();
            if open.values().filter(|e| e.plugin == req.plugin).count() >= self.max_per_plugin {
                return Err(Refusal::TooMany {
                    limit: self.max_per_plugin,
                });
            }
            open.insert(
                id,
                Entry {
                    plugin: req.plugin.to_owned(),
                    generation: req.generation,
                    ender: Arc::clone(&ender),
                },
            );
        }
        let mut guard = Guard {
            streams: Arc::clone(self),
            id,
            subscriptions: Vec::new(),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        for index in 0..chosen.len() {
            let handler = feed(index, &chosen, &declared, tx.clone(), &ender);
            let sub = self
                .bus
                .subscribe_host(&req.chosen[index], false, handler)
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            guard.subscriptions.push(sub);
        }
        if self.shut_down.load(Ordering::SeqCst) {
            ender.end(End::Shutdown);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let body = Body::from_stream(futures_util::stream::unfold(
            Pump {
                rx,
                end: end_rx,
                ending: None,
                done: false,
                seq: 0,
                keep_alive: self.keep_alive,
                _guard: guard,
            },
            Pump::next,
        ));
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::OK;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The host handler of chosen pattern `index`: it hands an event matching a declared pattern to
/// the stream, unless an earlier chosen pattern also matches (that pattern's handler hands it:
/// an event is sent once however many chosen patterns match it).
fn feed(
    index: usize,
    chosen: &Arc<Vec<Pattern>>,
    declared: &Arc<Vec<Pattern>>,
    tx: mpsc::Sender<Item>,
    ender: &Arc<Ender>,
) -> plugin_host::HostHandler {
    let (chosen, declared, ender) = (Arc::clone(chosen), Arc::clone(declared), Arc::clone(ender));
    Arc::new(move |e: &BusEvent| {
        if ender.ended()
            || !declared.iter().any(|p| p.matches(&e.name))
            || chosen[..index].iter().any(|p| p.matches(&e.name))
        {
            return;
        }
        let item = Item {
            name: Arc::clone(&e.name),
            payload: Arc::clone(&e.payload),
            raw: e.raw,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(item) {
            ender.end(End::Overflow);
        }
    })
}

/// The body of one stream: events in order, keep-alive comments in silences, then the final
/// frame. Owns the guard, so dropping the body (a disconnected client) unsubscribes.
#[derive(Debug)]
struct Pump {
    rx: mpsc::Receiver<Item>,
    end: watch::Receiver<Option<End>>,
    /// Set once the end is signalled: the queue is drained, then the final frame is sent.
    ending: Option<End>,
    /// The final frame was sent.
    done: bool,
    seq: u64,
    keep_alive: Duration,
    _guard: Guard,
}

/// One chunk of the body.
type Chunk = Result<Bytes, std::convert::Infallible>;

impl Pump {
    async fn next(mut self) -> Option<(Chunk, Self)> {
        if self.done {
            return None;
        }
        if self.ending.is_none() {
            let waited = tokio::time::timeout(self.keep_alive, async {
                tokio::select! {
                    // Events first: one queued before the end signal is sent before the end.
                    biased;
                    item = self.rx.recv() => item,
                    _ = self.end.wait_for(Option::is_some) => None,
                }
            })
            .await;
            match waited {
                Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self)),
                Ok(Some(item)) => {
                    let frame = self.frame(&item);
                    return Some((Ok(frame), self));
                }
                // The end was signalled (or every sender is gone, which cannot happen while the
                // guard holds the subscriptions).
                Ok(None) => self.ending = Some((*self.end.borrow()).unwrap_or(End::Shutdown)),
            }
        }
        // Ending: what is still queued, then the final frame.
        if let Ok(item) = self.rx.try_recv() {
            let frame = self.frame(&item);
            return Some((Ok(frame), self));
        }
        self.done = true;
        let reason = self.ending.unwrap_or(End::Shutdown);
        Some((Ok(reason.frame()), self))
    }

    fn frame(&mut self, item: &Item) -> Bytes {
        self.seq += 1;
        Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            self.seq,
            item.name,
            data(&item.payload, item.raw)
        ))
    }
}

/// The `data:` line of an event: its JSON payload on one line (re-encoded if it spans lines);
/// a raw payload, or one that is not JSON, as a JSON string (UTF-8, invalid bytes replaced).
fn data(payload: &[u8], raw: bool) -> String {
    let text = String::from_utf8_lossy(payload);
    if !raw && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        return if text.contains(['\n', '\r']) {
            v.to_string()
        } else {
            text.into_owned()
        };
    }
    serde_json::Value::String(text.into_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    fn open(
        streams: &Arc<Streams>,
        declared: &[&str],
        chosen: &[&str],
    ) -> Result<Response, Refusal> {
        let declared: Vec<String> = declared.iter().map(|p| (*p).to_owned()).collect();
        let chosen: Vec<String> = chosen.iter().map(|p| (*p).to_owned()).collect();
        let req = Request {
            plugin: "p",
            generation: 1,
            function: "f",
            declared: &declared,
            chosen: &chosen,
        };
        streams.open(&req, HeaderMap::new())
    }

    /// The whole body of an ended stream.
    async fn text(response: Response) -> String {
        let mut body = response.into_body().into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    fn registry(max: usize) -> (Arc<EventBus>, Arc<Streams>) {
        let bus = Arc::new(EventBus::new(Duration::from_millis(10)));
        let streams = Streams::new(Arc::clone(&bus), max, Duration::from_secs(60)).unwrap();
        (bus, streams)
    }

    #[tokio::test]
    async fn events_go_once_in_order_and_only_when_declared_too() {
        let (bus, streams) = registry(4);
        let before = bus.subscription_count();
        let r = open(&streams, &["a:*"], &["a:x", "a:*", "b:*"]).unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(bus.subscription_count(), before + 3);
        bus.emit_host("a:x", b"1").unwrap();
        bus.emit_host("b:x", b"2").unwrap();
        bus.emit_host("a:y", b"{\"k\":\n3}").unwrap();
        bus.emit_host("plugin:unloaded", br#"{"name":"p","generation":1}"#)
            .unwrap();
        assert_eq!(
            text(r).await,
            "id: 1\nevent: a:x\ndata: 1\n\nid: 2\nevent: a:y\ndata: {\"k\":3}\n\n\
             event: end\ndata: {\"reason\":\"unloaded\"}\n\n"
        );
        assert_eq!(bus.subscription_count(), before);
        assert_eq!(streams.len(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_ends_the_stream_with_overflow_without_blocking_the_emitter() {
        let (bus, streams) = registry(4);
        let r = open(&streams, &["a:*"], &["a:*"]).unwrap();
        for _ in 0..QUEUE + 10 {
            bus.emit_host("a:x", b"0").unwrap();
        }
        let body = text(r).await;
        assert_eq!(body.matches("event: a:x").count(), QUEUE);
        assert!(body.ends_with("event: overflow\ndata: {\"reason\":\"overflow\"}\n\n"));
    }

    #[tokio::test]
    async fn lifecycle_events_end_only_their_instances_and_the_cap_holds() {
        let (bus, streams) = registry(2);
        let first = open(&streams, &["a:*"], &["a:*"]).unwrap();
        let _second = open(&streams, &["a:*"], &["a:*"]).unwrap();
        assert!(matches!(
            open(&streams, &["a:*"], &["a:*"]),
            Err(Refusal::TooMany { limit: 2 })
        ));
        // A failed reload candidate (generation 2) leaves instance 1's streams open.
        bus.emit_host("plugin:failed", br#"{"name":"p","generation":2}"#)
            .unwrap();
        bus.emit_host("plugin:reloaded", br#"{"name":"q","generation":2}"#)
            .unwrap();
        assert_eq!(streams.len(), 2);
        bus.emit_host("plugin:reloaded", br#"{"name":"p","generation":2}"#)
            .unwrap();
        assert!(text(first).await.ends_with("{\"reason\":\"reloaded\"}\n\n"));
        assert!(matches!(
            open(&streams, &[], &["a:*"]),
            Err(Refusal::Invalid(m)) if m.contains("declares no stream")
        ));
        assert!(matches!(
            open(&streams, &["a:*"], &["a*"]),
            Err(Refusal::Invalid(m)) if m.contains("`a*`")
        ));
        streams.shut_down();
        let late = open(&streams, &["a:*"], &["a:*"]).unwrap();
        assert!(text(late).await.ends_with("{\"reason\":\"shutdown\"}\n\n"));
    }

    #[test]
    fn data_is_one_line_of_json() {
        assert_eq!(data(br#"{"a":1}"#, false), r#"{"a":1}"#);
        assert_eq!(data(b"{\n  \"a\": 1\n}", false), r#"{"a":1}"#);
        assert_eq!(data(b"line\nbreak", true), r#""line\nbreak""#);
        assert_eq!(data(b"not json", false), r#""not json""#);
        assert_eq!(
            End::Overflow.frame(),
            "event: overflow\ndata: {\"reason\":\"overflow\"}\n\n"
        );
        assert_eq!(
            End::Reloaded.frame(),
            "event: end\ndata: {\"reason\":\"reloaded\"}\n\n"
        );
    }
}

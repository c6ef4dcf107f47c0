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

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use plugin_api::HttpResponse;
use plugin_host::{BusEvent, EventBus, Pattern, PluginState};
use tokio::sync::{mpsc, watch};

use super::App;
use super::dispatch::{self, Refused};
pub(crate) use super::sse::End;
use super::sse::{self, Item};
use crate::api::ApiError;

/// Events a stream may hold before its client reads them; one more ends it with `overflow`.
pub(crate) const QUEUE: usize = 256;

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

    /// Number of streams open and not told to end.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.entries().values().filter(|e| !e.ender.ended()).count()
    }

    /// Ends the streams a lifecycle event concerns. Runs inline on the manager's thread: it
    /// only takes the registry's lock and signals.
    fn on_lifecycle(&self, e: &BusEvent) {
        // Only the host emits in its namespace (the bus refuses plugins); checked again here.
        if e.source.is_some() {
            return;
        }
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
        let body = sse::body(rx, end_rx, self.keep_alive, guard);
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::OK;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// A handler's event-stream answer as a `text/event-stream` (see `stream.rs`): status 200 only,
/// its headers kept; 500 when the route declares no streams or a chosen pattern does not parse,
/// 503 `too_many_streams` past the cap.
pub(super) fn answer(
    app: &App,
    name: &str,
    generation: u64,
    route: &plugin_host::RouteSpec,
    answer: HttpResponse,
) -> Result<Response, Refused> {
    if answer.status != 200 {
        return Err(dispatch::internal(format!(
            "`{name}`'s function `{}` answered an event stream with status {}, not 200",
            route.function, answer.status
        )));
    }
    let headers = dispatch::answer_headers(name, &route.function, &answer.headers)?;
    let request = Request {
        plugin: name,
        generation,
        function: &route.function,
        declared: &route.streams,
        chosen: &answer.stream,
    };
    let response = app.streams.open(&request, headers).map_err(|r| match r {
        Refusal::TooMany { limit } => {
            let error = ApiError::TooManyStreams {
                plugin: name.to_owned(),
                limit,
            };
            let mut r = dispatch::refuse(error, None);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Refusal::Invalid(message) => dispatch::internal(message),
    })?;
    // The plugin may have changed while the handler ran and before the stream was registered,
    // after the lifecycle event that would have ended it: check now.
    match app.manager.get(name) {
        Ok(i) if i.state == PluginState::Disabled => {
            app.streams.end_plugin(name, None, End::Disabled);
        }
        Ok(i) if i.state == PluginState::Active => {
            app.streams
                .end_plugin(name, Some(i.generation), End::Reloaded);
        }
        _ => app.streams.end_plugin(name, None, End::Unloaded),
    }
    Ok(response)
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
        assert_eq!(
            streams.live(),
            2,
            "neither event concerns instance 1 of `p`"
        );
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
}

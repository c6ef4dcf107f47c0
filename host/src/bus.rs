//! The event bus: named events, pattern subscriptions owned by plugins (or the host), bounded
//! delivery into each subscriber plugin's own mailbox.
//!
//! ## Names and patterns
//! - An event name is one or more `:`-separated segments (`user:created`). A segment is 1 to 64
//!   characters of `A-Z a-z 0-9 _ - .`; a name is at most 256 bytes.
//! - A pattern is segments too. A literal segment matches itself. `*` matches exactly one
//!   segment, anywhere (`user:*`, `*:created`). `**`, only as the last segment, matches one or
//!   more segments (`user:**` matches `user:a` and `user:a:b`; a lone `**` matches every event).
//!   So `data:*` matches `data:processed` but neither `data` nor `data:x:y`.
//! - Anything else (empty segments, `da*`, `**` before the end) is rejected with
//!   `invalid_pattern` / `invalid_event_name`.
//! - The namespace `plugin:` is the host's (its lifecycle events `plugin:loaded`, ...): a plugin
//!   that emits in it gets `invalid_event_name`, so a listener can trust those events.
//!
//! ## Delivery
//! The payload is put in one `Arc` per emit and shared read-only by all subscribers. Each
//! delivery is queued in the subscriber's mailbox and runs on the subscriber's own worker thread,
//! never on the emitter's: per subscription, events arrive in the order they were queued. The
//! worker hands the deliveries waiting in its mailbox to the plugin in batches, one call for up
//! to 256 (API minor 3); each handler's panic or failure stays with its own event.
//!
//! Which subscriptions an event name matches is worked out once per name and kept (with the
//! name's shared `Arc<str>`) until a subscription is added or removed. At most 4,096 names are
//! kept; past that a new name is matched on each emit and not kept, so a plugin emitting ever new
//! names costs a match per emit, never unbounded memory. An emit never waits to update the cache.
//! Besides its bounded mailbox, a plugin's worker holds the batch it is running (at most 256
//! deliveries), so that many more deliveries may be waiting to run than `mailbox_capacity`. A
//! plugin receives its own events when it subscribed to a matching pattern (delivered after the
//! current call returns, never re-entrantly). Mailboxes are bounded: when one is full the emitter
//! waits up to `emit_block` (default 50 ms), then the event is dropped *for that subscriber only*
//! and counted; an emitter never waits on its own full mailbox. Host subscribers run inline on
//! the emitting thread and must not block.
//!
//! This module does no I/O and knows nothing of plugins' threads; the manager plugs mailboxes in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};

/// One emitted event, shared read-only by every subscriber it is delivered to.
#[derive(Debug)]
#[non_exhaustive]
pub struct BusEvent {
    /// Full event name, for example `user:created`.
    pub name: Arc<str>,
    /// Payload bytes (JSON unless `raw`).
    pub payload: Arc<[u8]>,
    /// Whether the payload is raw bytes rather than JSON.
    pub raw: bool,
    /// The plugin that emitted it, or `None` for the host.
    pub source: Option<String>,
}

/// Who owns a subscription: a plugin instance (name and generation) or the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    Plugin { name: String, generation: u64 },
    Host,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Queued,
    /// The mailbox stayed full past the limit; counted by the mailbox.
    Dropped,
}

/// Where a plugin's deliveries go (its worker's mailbox).
pub(crate) trait Mailbox: Send + Sync {
    /// Queues `event` for subscription `id`; waits at most `block` when the mailbox is full.
    fn deliver(&self, id: u64, event: &Arc<BusEvent>, block: std::time::Duration) -> Delivery;
}

/// A host-side handler.
pub type HostHandler = Arc<dyn Fn(&BusEvent) + Send + Sync>;

enum Target {
    Plugin(Arc<dyn Mailbox>),
    Host(HostHandler),
}

struct Subscription {
    id: u64,
    owner: Owner,
    pattern: Pattern,
    once: bool,
    fired: AtomicBool,
    target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

/// A validated subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

const MAX_NAME_BYTES: usize = 256;
const MAX_SEGMENT: usize = 64;

fn check_segment(seg: &str) -> Result<(), String> {
    if seg.is_empty() {
        return Err("it has an empty segment".into());
    }
    if seg.len() > MAX_SEGMENT {
        return Err(format!(
            "segment `{seg}` is longer than {MAX_SEGMENT} characters"
        ));
    }
    if let Some(c) = seg
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "{c:?} is not allowed in a segment; use A-Z a-z 0-9 _ - ."
        ));
    }
    Ok(())
}

/// The first segment of the host's own events (`plugin:loaded`, ...), which no plugin may emit:
/// whoever listens to them (operators, event streams) can trust they come from the host.
pub const HOST_NAMESPACE: &str = "plugin";

/// Whether `name` is in one of the host's namespaces: [`HOST_NAMESPACE`] (lifecycle events)
/// or [`crate::jobs::JOB_NAMESPACE`] (the job queue's events).
pub fn is_host_event(name: &str) -> bool {
    let first = name.split(':').next();
    first == Some(HOST_NAMESPACE) || first == Some(crate::jobs::JOB_NAMESPACE)
}

/// What runs at the start of every emit, before any delivery (the job queue's triggers): an
/// error fails the emit and nothing is delivered.
pub(crate) type EmitHook = Arc<dyn Fn(&str, &[u8]) -> Result<()> + Send + Sync>;

/// Checks an event name (see the module docs for the rules).
///
/// # Errors
/// `invalid_event_name`, saying which rule it breaks.
pub fn validate_event_name(name: &str) -> Result<()> {
    let fail = |reason: String| Error::InvalidEventName {
        name: name.to_owned(),
        reason,
    };
    if name.len() > MAX_NAME_BYTES {
        return Err(fail(format!("it is longer than {MAX_NAME_BYTES} bytes")));
    }
    for seg in name.split(':') {
        check_segment(seg).map_err(fail)?;
    }
    Ok(())
}

impl Pattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// `invalid_pattern`, saying which rule it breaks.
    pub fn parse(text: &str) -> Result<Self> {
        let fail = |reason: String| Error::InvalidPattern {
            pattern: text.to_owned(),
            reason,
        };
        if text.len() > MAX_NAME_BYTES {
            return Err(fail(format!("it is longer than {MAX_NAME_BYTES} bytes")));
        }
        let parts: Vec<&str> = text.split(':').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, seg) in parts.iter().enumerate() {
            segments.push(match *seg {
                "*" => Segment::One,
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(fail("`**` may only be the last segment".into())),
                s if s.contains('*') => {
                    return Err(fail(format!(
                        "segment `{s}` mixes `*` with text; `*` stands alone"
                    )));
                }
                s => {
                    check_segment(s).map_err(fail)?;
                    Segment::Literal(s.to_owned())
                }
            });
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether the (valid) event name matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split(':');
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Rest => return parts.next().is_some(),
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
            let _ = i;
        }
        parts.next().is_none()
    }
}

/// The subscriptions an event name matches, in id order, and the name shared by every event
/// of it: what an emit needs, computed once per name and kept until a subscription changes.
struct Route {
    name: Arc<str>,
    subs: Vec<Arc<Subscription>>,
}

/// The most event names whose routes are kept; past it new names are matched on each emit and
/// not kept (a plugin emitting ever new names costs a match per emit, never unbounded memory,
/// and does not push the hot names out).
const MAX_ROUTES: usize = 4096;

#[derive(Default)]
struct Index {
    by_id: HashMap<u64, Arc<Subscription>>,
    exact: HashMap<String, Vec<Arc<Subscription>>>,
    wildcard: Vec<Arc<Subscription>>,
    /// Routes of valid event names, emptied on every change of the subscriptions.
    routes: HashMap<Box<str>, Arc<Route>>,
    /// Bumped on every change of the subscriptions: a route made before a change is not kept.
    version: u64,
}

impl Index {
    /// Forgets every kept route: the subscriptions are about to change.
    fn changed(&mut self) {
        self.routes.clear();
        self.version += 1;
    }

    fn insert(&mut self, sub: Arc<Subscription>) {
        self.changed();
        if sub.pattern.is_exact() {
            self.exact
                .entry(sub.pattern.text.clone())
                .or_default()
                .push(Arc::clone(&sub));
        } else {
            self.wildcard.push(Arc::clone(&sub));
        }
        self.by_id.insert(sub.id, sub);
    }

    /// The route of a valid event name, made from the subscriptions (not kept).
    fn make_route(&self, name: &str) -> Route {
        let mut subs: Vec<Arc<Subscription>> = self.exact.get(name).cloned().unwrap_or_default();
        subs.extend(
            self.wildcard
                .iter()
                .filter(|s| s.pattern.matches(name))
                .cloned(),
        );
        // Subscriptions were pushed in creation order; deliver in id order for determinism.
        subs.sort_unstable_by_key(|s| s.id);
        Route {
            name: Arc::from(name),
            subs,
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Subscription>> {
        let sub = self.by_id.remove(&id)?;
        self.changed();
        if sub.pattern.is_exact() {
            if let Some(list) = self.exact.get_mut(&sub.pattern.text) {
                list.retain(|s| s.id != id);
                if list.is_empty() {
                    self.exact.remove(&sub.pattern.text);
                }
            }
        } else {
            self.wildcard.retain(|s| s.id != id);
        }
        Some(sub)
    }
}

/// Counters of the bus as a whole.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BusStats {
    /// Events emitted.
    pub emitted: u64,
    /// Deliveries queued to subscribers (host handlers included).
    pub delivered: u64,
    /// Deliveries dropped because a mailbox stayed full.
    pub dropped: u64,
}

/// The event bus. Cheap to share (`Arc`); all methods take `&self`.
pub struct EventBus {
    index: RwLock<Index>,
    next_id: AtomicU64,
    emit_block: std::time::Duration,
    emitted: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    hook: std::sync::OnceLock<EmitHook>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus whose emitters wait at most `emit_block` on a full mailbox.
    pub fn new(emit_block: std::time::Duration) -> Self {
        Self {
            index: RwLock::new(Index::default()),
            next_id: AtomicU64::new(1),
            emit_block,
            emitted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            hook: std::sync::OnceLock::new(),
        }
    }

    /// Sets the emit hook (once; later calls are ignored).
    pub(crate) fn set_emit_hook(&self, hook: EmitHook) {
        let _ = self.hook.set(hook);
    }

    /// A fresh id from the bus's id space. Topic subscriptions use it too, so a plugin's event
    /// and topic handlers never share an id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn insert(&self, owner: Owner, pattern: &str, once: bool, target: Target) -> Result<u64> {
        let pattern = Pattern::parse(pattern)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Subscription {
            id,
            owner,
            pattern,
            once,
            fired: AtomicBool::new(false),
            target,
        });
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(sub);
        Ok(id)
    }

    pub(crate) fn subscribe_plugin(
        &self,
        name: &str,
        generation: u64,
        pattern: &str,
        once: bool,
        mailbox: Arc<dyn Mailbox>,
    ) -> Result<u64> {
        let owner = Owner::Plugin {
            name: name.to_owned(),
            generation,
        };
        self.insert(owner, pattern, once, Target::Plugin(mailbox))
    }

    /// Subscribes a host handler, which runs inline on the emitting thread and must not block.
    ///
    /// # Errors
    /// `invalid_pattern`.
    pub fn subscribe_host(&self, pattern: &str, once: bool, handler: HostHandler) -> Result<u64> {
        self.insert(Owner::Host, pattern, once, Target::Host(handler))
    }

    /// Removes subscription `id` if `owner` made it.
    ///
    /// # Errors
    /// `subscription_not_found` when there is no such subscription of this owner.
    pub(crate) fn unsubscribe(&self, owner: &Owner, id: u64) -> Result<()> {
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match index.by_id.get(&id) {
            Some(sub) if &sub.owner == owner => {
                index.remove(id);
                Ok(())
            }
            _ => Err(Error::SubscriptionNotFound { id }),
        }
    }

    /// Removes a host subscription.
    ///
    /// # Errors
    /// `subscription_not_found`.
    pub fn unsubscribe_host(&self, id: u64) -> Result<()> {
        self.unsubscribe(&Owner::Host, id)
    }

    /// Removes every subscription of one plugin instance (`once` ones included); returns how many.
    pub(crate) fn remove_owner(&self, owner: &Owner) -> usize {
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ids: Vec<u64> = index
            .by_id
            .values()
            .filter(|s| &s.owner == owner)
            .map(|s| s.id)
            .collect();
        for id in &ids {
            index.remove(*id);
        }
        ids.len()
    }

    /// Number of live subscriptions of `owner`.
    pub(crate) fn count_owner(&self, owner: &Owner) -> usize {
        let index = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        index.by_id.values().filter(|s| &s.owner == owner).count()
    }

    /// Emits an event. `emitter` is the emitting plugin instance, if any (it is never made to
    /// wait on its own mailbox). Returns the number of deliveries queued.
    ///
    /// # Errors
    /// `invalid_event_name`.
    pub(crate) fn emit(
        &self,
        emitter: Option<&Owner>,
        name: &str,
        payload: &[u8],
        raw: bool,
    ) -> Result<usize> {
        if matches!(emitter, Some(Owner::Plugin { .. })) && is_host_event(name) {
            return Err(Error::InvalidEventName {
                name: name.to_owned(),
                reason: format!(
                    "the namespaces `{HOST_NAMESPACE}:` and `{}:` are the host's (its \
                     lifecycle and job events); a plugin may not emit in them",
                    crate::jobs::JOB_NAMESPACE
                ),
            });
        }
        let route = self.route(name)?;
        if let Some(hook) = self.hook.get() {
            hook(name, payload)?;
        }
        self.emitted.fetch_add(1, Ordering::Relaxed);
        if route.subs.is_empty() {
            return Ok(0);
        }
        let source = match emitter {
            Some(Owner::Plugin { name, .. }) => Some(name.clone()),
            _ => None,
        };
        let event = Arc::new(BusEvent {
            name: Arc::clone(&route.name),
            payload: Arc::from(payload),
            raw,
            source,
        });
        let matched = &route.subs;
        let mut queued = 0;
        let mut spent_once = Vec::new();
        for sub in matched {
            if sub.once {
                if sub.fired.swap(true, Ordering::AcqRel) {
                    continue;
                }
                spent_once.push(sub.id);
            }
            match self.deliver_one(sub, &event, emitter) {
                Delivery::Queued => queued += 1,
                Delivery::Dropped => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.delivered.fetch_add(queued as u64, Ordering::Relaxed);
        self.remove_spent(spent_once);
        Ok(queued)
    }

    /// The route of `name`: from the cache when it is there (the name was valid when it was
    /// cached). Otherwise the name is validated and its route made under the read lock, then kept
    /// if the write lock is free at once, the subscriptions have not changed meanwhile and the
    /// cache has room: an emit never waits for the write lock.
    fn route(&self, name: &str) -> Result<Arc<Route>> {
        let (route, version) = {
            let index = self
                .index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(route) = index.routes.get(name) {
                return Ok(Arc::clone(route));
            }
            validate_event_name(name)?;
            (Arc::new(index.make_route(name)), index.version)
        };
        if let Ok(mut index) = self.index.try_write()
            && index.version == version
            && index.routes.len() < MAX_ROUTES
        {
            index.routes.insert(Box::from(name), Arc::clone(&route));
        }
        Ok(route)
    }

    /// Hands the event to one subscriber: a host handler runs now; a plugin's delivery is
    /// queued to its mailbox, waiting at most the emit limit for room (never for the
    /// emitter's own mailbox).
    fn deliver_one(
        &self,
        sub: &Subscription,
        event: &Arc<BusEvent>,
        emitter: Option<&Owner>,
    ) -> Delivery {
        match &sub.target {
            Target::Host(handler) => {
                handler(event);
                Delivery::Queued
            }
            Target::Plugin(mailbox) => {
                let block = if emitter == Some(&sub.owner) {
                    std::time::Duration::ZERO
                } else {
                    self.emit_block
                };
                mailbox.deliver(sub.id, event, block)
            }
        }
    }

    /// Removes the single-delivery subscriptions that have fired.
    fn remove_spent(&self, spent: Vec<u64>) {
        if spent.is_empty() {
            return;
        }
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in spent {
            index.remove(id);
        }
    }

    /// Emits an event as the host.
    ///
    /// # Errors
    /// `invalid_event_name`.
    pub fn emit_host(&self, name: &str, payload: &[u8]) -> Result<usize> {
        self.emit(None, name, payload, false)
    }

    /// Number of live subscriptions, of every owner.
    pub fn subscription_count(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_id
            .len()
    }

    /// Counters since start.
    pub fn stats(&self) -> BusStats {
        BusStats {
            emitted: self.emitted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn m(pattern: &str, name: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn pattern_rules() {
        assert!(m("user:created", "user:created"));
        assert!(!m("user:created", "user:deleted"));
        assert!(!m("user:created", "user"));
        assert!(m("data:*", "data:processed"));
        assert!(!m("data:*", "data"));
        assert!(!m("data:*", "data:x:y"));
        assert!(m("*:created", "user:created"));
        assert!(!m("*:created", "created"));
        assert!(!m("*:created", "a:b:created"));
        assert!(m("*", "anything"));
        assert!(!m("*", "a:b"));
        assert!(m("data:**", "data:x"));
        assert!(m("data:**", "data:x:y:z"));
        assert!(!m("data:**", "data"));
        assert!(m("**", "a"));
        assert!(m("**", "a:b:c"));
        assert!(m("a:*:c", "a:b:c"));
        assert!(!m("a:*:c", "a:b:d"));
    }

    #[test]
    fn invalid_patterns_and_names_are_rejected() {
        for p in [
            "", "a::b", ":a", "a:", "da*", "**:a", "a:**:b", "a b", "a:*x",
        ] {
            let e = Pattern::parse(p).unwrap_err();
            assert_eq!(e.code().as_str(), "invalid_pattern", "{p}");
        }
        for n in ["", "a::b", "a:*", "a b", "x:", &"a".repeat(300)] {
            let e = validate_event_name(n).unwrap_err();
            assert_eq!(e.code().as_str(), "invalid_event_name", "{n:?}");
        }
        validate_event_name("user:created.v2").unwrap();
    }

    fn recorder(bus: &EventBus, pattern: &str, once: bool) -> (u64, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let id = bus
            .subscribe_host(
                pattern,
                once,
                Arc::new(move |e: &BusEvent| s.lock().unwrap().push(e.name.to_string())),
            )
            .unwrap();
        (id, seen)
    }

    #[test]
    fn off_removes_only_that_subscription_and_once_fires_once() {
        let bus = EventBus::new(std::time::Duration::ZERO);
        let (a, seen_a) = recorder(&bus, "x:*", false);
        let (_b, seen_b) = recorder(&bus, "x:*", false);
        let (_c, seen_c) = recorder(&bus, "x:y", true);
        bus.emit_host("x:y", b"1").unwrap();
        bus.unsubscribe_host(a).unwrap();
        bus.emit_host("x:y", b"2").unwrap();
        assert_eq!(seen_a.lock().unwrap().len(), 1);
        assert_eq!(seen_b.lock().unwrap().len(), 2);
        assert_eq!(seen_c.lock().unwrap().len(), 1);
        assert_eq!(
            bus.count_owner(&Owner::Host),
            1,
            "once was removed after firing"
        );
        assert_eq!(
            bus.unsubscribe_host(a).unwrap_err().code().as_str(),
            "subscription_not_found"
        );
    }

    #[test]
    fn the_route_cache_follows_every_change_of_the_subscriptions() {
        let bus = EventBus::new(std::time::Duration::ZERO);
        assert_eq!(
            bus.emit_host("c:d", b"").unwrap(),
            0,
            "cached with no subscriber"
        );
        let (a, seen_a) = recorder(&bus, "c:*", false);
        assert_eq!(
            bus.emit_host("c:d", b"1").unwrap(),
            1,
            "a new subscription is seen"
        );
        let (_b, seen_b) = recorder(&bus, "c:d", true);
        assert_eq!(bus.emit_host("c:d", b"2").unwrap(), 2);
        assert_eq!(
            bus.emit_host("c:d", b"3").unwrap(),
            1,
            "the spent once is gone"
        );
        bus.unsubscribe_host(a).unwrap();
        assert_eq!(
            bus.emit_host("c:d", b"4").unwrap(),
            0,
            "a removed one is gone"
        );
        assert_eq!(seen_a.lock().unwrap().len(), 3);
        assert_eq!(seen_b.lock().unwrap().len(), 1);
        // More names than the cache keeps: each still reaches its subscriber.
        let (_all, seen_all) = recorder(&bus, "n:*", false);
        for i in 0..MAX_ROUTES + 10 {
            assert_eq!(bus.emit_host(&format!("n:{i}"), b"").unwrap(), 1);
        }
        assert_eq!(seen_all.lock().unwrap().len(), MAX_ROUTES + 10);
        assert!(bus.index.read().unwrap().routes.len() <= MAX_ROUTES);
    }

    #[test]
    fn a_host_event_name_the_host_emitted_first_is_still_refused_to_a_plugin() {
        let bus = EventBus::new(std::time::Duration::ZERO);
        bus.emit_host("plugin:loaded", b"{}").unwrap();
        let plugin = Owner::Plugin {
            name: "p".into(),
            generation: 1,
        };
        let err = bus
            .emit(Some(&plugin), "plugin:loaded", b"{}", false)
            .unwrap_err();
        assert_eq!(err.code().as_str(), "invalid_event_name");
    }

    #[test]
    fn owners_cannot_remove_each_others_subscriptions() {
        struct Null;
        impl Mailbox for Null {
            fn deliver(&self, _: u64, _: &Arc<BusEvent>, _: std::time::Duration) -> Delivery {
                Delivery::Queued
            }
        }
        let bus = EventBus::new(std::time::Duration::ZERO);
        let id = bus
            .subscribe_plugin("a", 1, "x", false, Arc::new(Null))
            .unwrap();
        let b = Owner::Plugin {
            name: "b".into(),
            generation: 2,
        };
        assert!(bus.unsubscribe(&b, id).is_err());
        let a_old = Owner::Plugin {
            name: "a".into(),
            generation: 0,
        };
        assert!(
            bus.unsubscribe(&a_old, id).is_err(),
            "an older generation is another owner"
        );
        let a = Owner::Plugin {
            name: "a".into(),
            generation: 1,
        };
        assert_eq!(bus.remove_owner(&a), 1);
        assert_eq!(bus.emit_host("x", b"").unwrap(), 0);
    }

    #[test]
    fn only_the_host_emits_in_its_namespace() {
        let bus = EventBus::new(std::time::Duration::ZERO);
        let seen = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&seen);
        bus.subscribe_host(
            "plugin:**",
            false,
            Arc::new(move |_| {
                count.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .unwrap();
        let plugin = Owner::Plugin {
            name: "mallory".into(),
            generation: 1,
        };
        for forged in ["plugin:unloaded", "plugin:x:y"] {
            let e = bus.emit(Some(&plugin), forged, b"{}", false).unwrap_err();
            assert_eq!(
                e.code(),
                crate::error::ErrorCode::InvalidEventName,
                "{forged}"
            );
        }
        assert_eq!(seen.load(Ordering::Relaxed), 0);
        // Names that only start alike are the plugin's to use; the host emits in its own.
        assert_eq!(
            bus.emit(Some(&plugin), "plugins:x", b"{}", false).unwrap(),
            0
        );
        assert_eq!(bus.emit_host("plugin:loaded", b"{}").unwrap(), 1);
        assert!(is_host_event("plugin") && !is_host_event("plugins:x"));
    }
}

//! The topics repository: a plugin produces to and consumes from the topics it may use, by
//! logical name; the host maps them to physical topics (`<prefix>.<plugin>.<topic>`), runs the
//! consumers, and hands each message to the plugin's handler on the plugin's own worker thread.
//! The plugin never gets a raw client and never names a consumer group: its group is
//! `<prefix>.<plugin>`, so it cannot join, read or reset another plugin's group.
//!
//! Delivery is at-least-once: an offset is committed only after the handler returned `Ok`. A
//! handler that fails is retried (3 attempts, backing off 50 ms, 200 ms); after that the
//! message is counted as failed and committed, so one poison message cannot stall the topic.
//! Unload stops the plugin's consumers before its cleanup runs.

#[cfg(feature = "kafka")]
pub(crate) mod kafka;
pub(crate) mod memory;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use plugin_api::envelope::BatchRecord;
use plugin_api::wire::Op;
use plugin_api::wire::topics::{
    Create, Created, MessageHeader, Produce, ProduceBatch, Produced, ProducedBatch, Request,
    Subscribe, Subscribed, Unsubscribe, Unsubscribed,
};

use super::naming::Kind;
use super::scope::{Scope, answer};
use crate::config::TopicsConfig;
use crate::error::{Error, Result};

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    pub(crate) key: Option<String>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: BTreeMap<String, String>,
}

/// A consumed message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) partition: i32,
    pub(crate) offset: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) record: Arc<Record>,
}

/// A topic backend. Knows physical names only.
pub(crate) trait TopicBackend: Send + Sync + std::fmt::Debug {
    /// The physical topic of `(plugin, logical)`.
    fn physical(&self, plugin: &str, logical: &str) -> Result<String>;
    /// The consumer group of a plugin.
    fn group(&self, plugin: &str) -> String;
    /// Creates a topic if it does not exist.
    fn create(&self, topic: &str) -> Result<()>;
    /// Appends a record; returns its offset.
    fn produce(&self, topic: &str, record: Record) -> Result<u64>;
    /// Appends records in order; returns their offsets. A backend that can have several
    /// records in flight at once (Kafka) does so; the default produces one after another.
    fn produce_batch(&self, topic: &str, records: &[BatchRecord<'_>]) -> Result<Vec<u64>> {
        records
            .iter()
            .map(|r| {
                let record = Record {
                    key: r.key.map(str::to_owned),
                    payload: r.payload.to_vec(),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                };
                self.produce(topic, record)
            })
            .collect()
    }
    /// A consumer of `topic` in `group`, starting at the group's committed offset.
    fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn TopicConsumer>>;
    /// Whether the backend answers (for `/health`).
    fn check(&self) -> Result<()>;
}

/// One consumer (one group, one topic).
pub(crate) trait TopicConsumer: Send {
    /// The next message, waiting at most `timeout`.
    fn poll(&mut self, timeout: Duration) -> Result<Option<Message>>;
    /// Commits `message` (and everything before it) for the group.
    fn commit(&mut self, message: &Message) -> Result<()>;
}

/// Hands a message to the plugin's handler on the plugin's own thread and waits for the result.
pub(crate) trait Deliver: Send + Sync {
    /// `Err` carries the handler's error (or that the plugin is gone).
    fn deliver(&self, id: u64, topic: &str, envelope: Vec<u8>) -> std::result::Result<(), String>;
}

/// Builds the configured backend (none when the config says so).
///
/// # Errors
/// Only for a backend that cannot start.
pub(crate) fn backend(config: &TopicsConfig) -> Result<Option<Arc<dyn TopicBackend>>> {
    match config {
        TopicsConfig::None => Ok(None),
        TopicsConfig::Memory { prefix } => Ok(Some(Arc::new(memory::MemoryTopics::new(prefix)))),
        #[cfg(feature = "kafka")]
        TopicsConfig::Kafka { brokers, prefix } => Ok(Some(Arc::new(kafka::KafkaTopics::connect(
            brokers, prefix,
        )?))),
        #[allow(
            unreachable_patterns,
            reason = "reachable when the kafka feature is off"
        )]
        other => Err(Error::InvalidConfig {
            key: "backends.topics.backend".into(),
            message: format!(
                "{other:?} is not compiled into this build (enable its cargo feature)"
            ),
        }),
    }
}

/// Counters of one plugin's topic use.
#[derive(Debug, Default)]
pub(crate) struct TopicStats {
    pub(crate) produced: AtomicU64,
    pub(crate) consumed: AtomicU64,
    pub(crate) failed: AtomicU64,
}

#[derive(Debug)]
struct Consumer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// One plugin instance's view of its topics.
#[derive(Debug)]
pub(crate) struct ScopedTopics {
    group: String,
    scope: Scope<String>,
    backend: Arc<dyn TopicBackend>,
    consumers: Mutex<HashMap<u64, Consumer>>,
    pub(crate) stats: Arc<TopicStats>,
}

/// The most records one `produce_batch` request may carry.
pub(crate) const MAX_BATCH: usize = plugin_api::MAX_PRODUCE_BATCH;

/// Reads a `produce_batch` body of `count` records.
fn split_batch(count: usize, body: &[u8]) -> Result<Vec<BatchRecord<'_>>> {
    if count > MAX_BATCH {
        return Err(Error::BadRequest {
            message: format!("a batch holds at most {MAX_BATCH} records; got {count}"),
        });
    }
    plugin_api::envelope::decode_records(body, count)
        .map_err(|e| Error::BadRequest { message: e.message })
}

const RETRIES: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(200)];

impl ScopedTopics {
    /// Opens a plugin's topics (after overrides: `topic_map` maps a logical name to the logical
    /// name whose physical topic it uses).
    ///
    /// # Errors
    /// `invalid_name` when a physical topic name would be invalid.
    pub(crate) fn open(
        backend: &Arc<dyn TopicBackend>,
        plugin: &str,
        topics: &[String],
        map: &BTreeMap<String, String>,
    ) -> Result<Self> {
        Ok(Self {
            group: backend.group(plugin),
            scope: Scope::new(plugin, Kind::Topic, topics, map, |name| {
                backend.physical(plugin, name)
            })?,
            backend: Arc::clone(backend),
            consumers: Mutex::new(HashMap::new()),
            stats: Arc::new(TopicStats::default()),
        })
    }

    /// Where each logical topic lives.
    pub(crate) fn physical_names(&self) -> BTreeMap<String, String> {
        self.scope
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// How many topic accesses were refused.
    pub(crate) fn denied(&self) -> u64 {
        self.scope.denied()
    }

    fn topic(&self, logical: &str) -> Result<&String> {
        self.scope.get(logical)
    }

    /// Handles one request from the plugin (`body` is its envelope's body); answers with the
    /// operation's JSON answer. `next_id` gives subscription ids from the host's id space
    /// (shared with the event bus, so handler ids never collide).
    ///
    /// # Errors
    /// `topic_access_denied`, `bad_request` for a malformed batch, `subscription_not_found`,
    /// and the backend's errors.
    pub(crate) fn handle(
        &self,
        request: Request,
        body: &[u8],
        deliver: Arc<dyn Deliver>,
        next_id: &dyn Fn() -> u64,
    ) -> Result<Vec<u8>> {
        // One arm per operation and no wildcard: an operation added to the wire protocol does
        // not compile until it is handled here.
        match request {
            Request::Create(op) => answer(&self.create(op)?),
            Request::Produce(op) => answer(&self.produce(op, body)?),
            Request::ProduceBatch(op) => answer(&self.produce_batch(op, body)?),
            Request::Subscribe(op) => answer(&self.subscribe(op, deliver, next_id)?),
            Request::Unsubscribe(op) => answer(&self.unsubscribe(op)?),
        }
    }

    fn create(&self, op: Create) -> Result<<Create as Op>::Response> {
        let Create { topic } = op;
        self.backend.create(self.topic(&topic)?)?;
        Ok(Created { created: topic })
    }

    fn produce(&self, op: Produce, body: &[u8]) -> Result<<Produce as Op>::Response> {
        let Produce {
            topic,
            key,
            headers,
        } = op;
        let physical = self.topic(&topic)?;
        let record = Record {
            key,
            payload: body.to_vec(),
            headers,
        };
        let offset = self.backend.produce(physical, record)?;
        self.stats.produced.fetch_add(1, Ordering::Relaxed);
        Ok(Produced { offset })
    }

    fn produce_batch(
        &self,
        op: ProduceBatch,
        body: &[u8],
    ) -> Result<<ProduceBatch as Op>::Response> {
        let ProduceBatch { topic, count } = op;
        let physical = self.topic(&topic)?;
        let records = split_batch(count, body)?;
        let offsets = self.backend.produce_batch(physical, &records)?;
        self.stats
            .produced
            .fetch_add(offsets.len() as u64, Ordering::Relaxed);
        Ok(ProducedBatch { offsets })
    }

    fn subscribe(
        &self,
        op: Subscribe,
        deliver: Arc<dyn Deliver>,
        next_id: &dyn Fn() -> u64,
    ) -> Result<<Subscribe as Op>::Response> {
        let Subscribe { topic } = op;
        let physical = self.topic(&topic)?.clone();
        let consumer = self.backend.consumer(&self.group, &physical)?;
        let id = next_id();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_consumer(
            self.scope.plugin(),
            id,
            topic,
            consumer,
            deliver,
            Arc::clone(&stop),
            Arc::clone(&self.stats),
        )?;
        self.consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Consumer { stop, thread });
        Ok(Subscribed { id })
    }

    fn unsubscribe(&self, op: Unsubscribe) -> Result<<Unsubscribe as Op>::Response> {
        let Unsubscribe { id } = op;
        let consumer = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
            .ok_or(Error::SubscriptionNotFound { id })?;
        // Stopping must not wait on this thread, which is the plugin's own and may be the one
        // the consumer is waiting for: detach after the flag.
        consumer.stop.store(true, Ordering::Release);
        Ok(Unsubscribed { unsubscribed: id })
    }

    /// Stops every consumer and waits for them (each finishes the delivery it is in).
    pub(crate) fn stop_consumers(&self) {
        let consumers: Vec<Consumer> = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, c)| c)
            .collect();
        for c in &consumers {
            c.stop.store(true, Ordering::Release);
        }
        for c in consumers {
            let _ = c.thread.join();
        }
    }
}

/// The consumer loop: poll, hand to the plugin, commit on success, retry then skip on failure.
fn spawn_consumer(
    plugin: &str,
    id: u64,
    topic: String,
    consumer: Box<dyn TopicConsumer>,
    deliver: Arc<dyn Deliver>,
    stop: Arc<AtomicBool>,
    stats: Arc<TopicStats>,
) -> Result<JoinHandle<()>> {
    let plugin = plugin.to_owned();
    let run = ConsumerLoop {
        plugin: plugin.clone(),
        id,
        topic,
        deliver,
        stop,
        stats,
    };
    std::thread::Builder::new()
        .name(format!("topic-{plugin}"))
        .spawn(move || run.run(consumer))
        .map_err(|e| Error::Internal {
            message: format!("cannot start a consumer thread: {e}"),
        })
}

/// What became of one message.
enum Outcome {
    /// The handler took it, now or after retries.
    Consumed,
    /// The handler failed every attempt: it is skipped.
    Failed,
    /// The consumer is stopping: the message stays uncommitted and is redelivered later.
    Stopping,
}

/// One consumer thread's state.
struct ConsumerLoop {
    plugin: String,
    id: u64,
    topic: String,
    deliver: Arc<dyn Deliver>,
    stop: Arc<AtomicBool>,
    stats: Arc<TopicStats>,
}

impl ConsumerLoop {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(self, mut consumer: Box<dyn TopicConsumer>) {
        let (plugin, topic) = (&self.plugin, &self.topic);
        while !self.stopping() {
            let message = match consumer.poll(Duration::from_millis(100)) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(target: "topics", plugin = %plugin, topic = %topic, error = %e.chain(), "poll failed");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            match self.hand_over(&message) {
                Outcome::Consumed => {
                    self.stats.consumed.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Failed => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Stopping => return,
            }
            if let Err(e) = consumer.commit(&message) {
                tracing::warn!(target: "topics", plugin = %plugin, topic = %topic, error = %e.chain(), "commit failed");
            }
        }
    }

    /// Hands one message to the plugin's handler, retrying a failure.
    fn hand_over(&self, message: &Message) -> Outcome {
        let (plugin, topic) = (&self.plugin, &self.topic);
        let header = MessageHeader {
            key: message.record.key.clone(),
            headers: message.record.headers.clone(),
            offset: message.offset,
            partition: message.partition,
            timestamp_ms: message.timestamp_ms,
        };
        let envelope = match plugin_api::envelope::encode(&header, &message.record.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                // A header of this type always encodes; were it not to, skipping the message
                // is better than stalling the topic.
                tracing::error!(target: "topics", plugin = %plugin, topic = %topic, offset = message.offset, error = %e, "cannot frame a message; skipped");
                return Outcome::Failed;
            }
        };
        let mut attempt = 0;
        loop {
            match self.deliver.deliver(self.id, topic, envelope.clone()) {
                Ok(()) => return Outcome::Consumed,
                Err(_) if self.stopping() => return Outcome::Stopping,
                Err(e) if attempt < RETRIES.len() => {
                    tracing::debug!(target: "topics", plugin = %plugin, topic = %topic, offset = message.offset, error = %e, "handler failed; retrying");
                    std::thread::sleep(RETRIES[attempt]);
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(target: "topics", plugin = %plugin, topic = %topic, offset = message.offset, error = %e, "handler failed 3 times; message skipped");
                    return Outcome::Failed;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_and_checked() {
        let mut body = Vec::new();
        plugin_api::envelope::encode_record(&mut body, Some("k"), &[], b"ab");
        let records = split_batch(1, &body).unwrap();
        assert_eq!(records[0].payload, b"ab");
        let e = split_batch(2, &body).unwrap_err();
        assert_eq!(e.code().as_str(), "bad_request");
        let e = split_batch(MAX_BATCH + 1, b"").unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }
}

//! Kafka backend (rdkafka, librdkafka built from source). Physical topics are
//! `<prefix>.<plugin>.<topic>`; a plugin's consumer group is `<prefix>.<plugin>`. One producer
//! is shared by every plugin (it only ever writes to topics the scoping layer allowed); each
//! subscription has its own consumer with auto-commit off, committed by the host after the
//! plugin's handler returned `Ok`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use plugin_api::envelope::BatchRecord;

use super::{Message, Record, TopicBackend, TopicConsumer};
use crate::error::{Error, Result};
use crate::resources::naming;

/// Kafka reached through bootstrap servers.
pub(crate) struct KafkaTopics {
    prefix: String,
    brokers: String,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Always `Some` until dropped (see the `Drop` impl).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for KafkaTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTopics")
            .field("prefix", &self.prefix)
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        kind: crate::BackendKind::Topics,
        message: e.to_string(),
    }
}

impl KafkaTopics {
    /// Connects a producer and an admin client, and checks that a broker answers (as the
    /// PostgreSQL and S3 backends are checked at start): a host never runs on a Kafka that is
    /// not there.
    ///
    /// # Errors
    /// `backend_unavailable` when the clients cannot be created or no broker answers within
    /// [`START_CHECK`].
    pub(crate) fn connect(brokers: &str, prefix: &str) -> Result<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // Plugins produce one record at a time and wait for its offset: do not linger.
            .set("linger.ms", "0")
            // Many records of one plugin are in flight at once (`produce_batch`): a retried
            // request must not reorder or duplicate them.
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .create()
            .map_err(unavailable)?;
        // Cluster metadata is the cheapest request every broker answers.
        producer
            .client()
            .fetch_metadata(None, Timeout::After(START_CHECK))
            .map_err(|e| {
                unavailable(format!(
                    "no Kafka broker answered at {brokers} within {}s ({e}); check \
                     backends.topics.brokers (PLUGIN_HOST_TOPICS_BROKERS)",
                    START_CHECK.as_secs()
                ))
            })?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(unavailable)?;
        // For the admin client's futures (producing needs no runtime: see `block_on`); a
        // worker drives timers, which a current-thread runtime would not while other threads
        // block on its handle.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plugin-host-kafka")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            brokers: brokers.to_owned(),
            producer,
            admin,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

/// How long the start-up check waits for a broker to answer.
const START_CHECK: Duration = Duration::from_secs(5);

/// How long a record may wait for room in the producer's queue.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// The record librdkafka is handed, from a plugin's key, headers and payload.
fn future_record<'a>(
    topic: &'a str,
    key: Option<&'a str>,
    headers: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    payload: &'a [u8],
) -> FutureRecord<'a, str, [u8]> {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    let record = FutureRecord::to(topic).payload(payload).headers(owned);
    match key {
        Some(key) => record.key(key),
        None => record,
    }
}

/// The offset of a delivered record, or why it was not delivered.
/// (The outer error is the delivery channel's: the producer went away first.)
fn delivered<E>(result: std::result::Result<OwnedDeliveryResult, E>) -> Result<u64> {
    match result {
        Ok(Ok(delivery)) => Ok(u64::try_from(delivery.offset).unwrap_or(0)),
        Ok(Err((e, _))) => Err(unavailable(e)),
        Err(_) => Err(unavailable("the producer was closed before delivery")),
    }
}

/// Runs a future to completion on the calling thread, parking it between polls. rdkafka's
/// delivery futures are completed by librdkafka's own threads (no reactor, no timer), so this
/// is all they need, and it spares each produce the hops through an async runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

impl KafkaTopics {
    /// Hands a record to librdkafka, waiting (until `deadline`) while its queue is full.
    fn enqueue<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        deadline: std::time::Instant,
    ) -> Result<DeliveryFuture>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if std::time::Instant::now() < deadline =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(unavailable(e)),
            }
        }
    }
}

impl TopicBackend for KafkaTopics {
    fn physical(&self, plugin: &str, logical: &str) -> Result<String> {
        naming::kafka_topic(&self.prefix, plugin, logical)
    }

    fn group(&self, plugin: &str) -> String {
        format!("{}.{plugin}", self.prefix)
    }

    fn create(&self, topic: &str) -> Result<()> {
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
        let options = AdminOptions::new()
            .request_timeout(Some(Timeout::After(Duration::from_secs(5))))
            .operation_timeout(Some(Timeout::After(Duration::from_secs(5))));
        let results = self
            .handle
            .block_on(self.admin.create_topics([&new], &options))
            .map_err(|e| unavailable(format!("cannot create topic {topic}: {e} (brokers that do not serve CreateTopics create topics on first use)")))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                // Brokers that do not serve CreateTopics (librdkafka's mock cluster) create
                // topics on first use instead.
                Err((
                    _,
                    RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::InvalidRequest,
                )) => {}
                Err((name, code)) => {
                    return Err(unavailable(format!("cannot create topic {name}: {code}")));
                }
            }
        }
        Ok(())
    }

    fn produce(&self, topic: &str, record: Record) -> Result<u64> {
        let r = future_record(
            topic,
            record.key.as_deref(),
            record.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &record.payload,
        );
        let delivery = self.enqueue(r, std::time::Instant::now() + QUEUE_WAIT)?;
        delivered(block_on(delivery))
    }

    fn produce_batch(&self, topic: &str, records: &[BatchRecord<'_>]) -> Result<Vec<u64>> {
        // Every record is enqueued before the first delivery is awaited: all in flight at
        // once; librdkafka keeps their order. One deadline for the whole batch's waits for
        // queue room; after a record cannot be enqueued, the rest are not tried.
        let deadline = std::time::Instant::now() + QUEUE_WAIT;
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let record = future_record(topic, r.key, r.headers.iter().copied(), r.payload);
            let delivery = self.enqueue(record, deadline);
            let stop = delivery.is_err();
            pending.push(delivery);
            if stop {
                break;
            }
        }
        let mut offsets = Vec::with_capacity(records.len());
        let mut failed = Vec::new();
        for delivery in pending {
            match delivery.and_then(|d| delivered(block_on(d))) {
                Ok(offset) => offsets.push(offset),
                Err(e) => failed.push(e),
            }
        }
        match failed.first() {
            None => Ok(offsets),
            Some(e) => Err(unavailable(format!(
                "{} of {} records were not delivered ({} were): {e}",
                records.len() - offsets.len(),
                records.len(),
                offsets.len()
            ))),
        }
    }

    fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn TopicConsumer>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A stopped consumer leaves its group; one that died is noticed within this.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .map_err(unavailable)?;
        consumer.subscribe(&[topic]).map_err(unavailable)?;
        Ok(Box::new(KafkaConsumer {
            consumer,
            topic: topic.to_owned(),
        }))
    }

    fn check(&self) -> Result<()> {
        self.producer
            .client()
            .fetch_metadata(None, Timeout::After(Duration::from_secs(3)))
            .map(drop)
            .map_err(unavailable)
    }
}

struct KafkaConsumer {
    consumer: BaseConsumer,
    topic: String,
}

impl TopicConsumer for KafkaConsumer {
    fn poll(&mut self, timeout: Duration) -> Result<Option<Message>> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            Some(Err(KafkaError::PartitionEOF(_))) => Ok(None),
            Some(Err(e)) => Err(unavailable(e)),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Some(Message {
                    partition: m.partition(),
                    offset: u64::try_from(m.offset()).unwrap_or(0),
                    timestamp_ms: m
                        .timestamp()
                        .to_millis()
                        .and_then(|t| u64::try_from(t).ok())
                        .unwrap_or(0),
                    record: Arc::new(Record {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers,
                    }),
                }))
            }
        }
    }

    fn commit(&mut self, message: &Message) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        let next = i64::try_from(message.offset + 1).unwrap_or(i64::MAX);
        tpl.add_partition_offset(&self.topic, message.partition, Offset::Offset(next))
            .map_err(unavailable)?;
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(unavailable)
    }
}

impl Drop for KafkaTopics {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context panics; shutting it down in
        // the background never does, wherever the manager is dropped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

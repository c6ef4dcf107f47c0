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
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
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
        kind: "topics",
        message: e.to_string(),
    }
}

impl KafkaTopics {
    /// Connects a producer and an admin client.
    ///
    /// # Errors
    /// `backend_unavailable` when the clients cannot be created.
    pub(crate) fn connect(brokers: &str, prefix: &str) -> Result<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // Plugins produce one record at a time and wait for its offset: do not linger.
            .set("linger.ms", "0")
            .set("message.timeout.ms", "10000")
            .create()
            .map_err(unavailable)?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(unavailable)?;
        // A worker thread drives the timers of sends waiting for room in a full queue (a
        // current-thread runtime would not while other threads block on its handle).
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

/// How long a record may wait for room in the producer's queue.
const SEND_TIMEOUT: Timeout = Timeout::After(Duration::from_secs(10));

fn future_record<'a>(topic: &'a str, record: &'a Record) -> FutureRecord<'a, String, Vec<u8>> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (k, v) in &record.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut r = FutureRecord::to(topic)
        .payload(&record.payload)
        .headers(headers);
    if let Some(key) = &record.key {
        r = r.key(key);
    }
    r
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
        let delivery = self
            .handle
            .block_on(
                self.producer
                    .send(future_record(topic, &record), SEND_TIMEOUT),
            )
            .map_err(|(e, _)| unavailable(e))?;
        Ok(u64::try_from(delivery.offset).unwrap_or(0))
    }

    fn produce_batch(&self, topic: &str, records: &[BatchRecord<'_>]) -> Result<Vec<u64>> {
        // Every record in flight at once (joined futures are polled together, so each is
        // enqueued before the first delivery is awaited); librdkafka keeps their order.
        let results = self
            .handle
            .block_on(futures_util::future::join_all(records.iter().map(|r| {
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                let mut record = FutureRecord::<str, [u8]>::to(topic)
                    .payload(r.payload)
                    .headers(headers);
                if let Some(key) = r.key {
                    record = record.key(key);
                }
                self.producer.send(record, SEND_TIMEOUT)
            })));
        let mut offsets = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for result in results {
            match result {
                Ok(delivery) => offsets.push(u64::try_from(delivery.offset).unwrap_or(0)),
                Err((e, _)) => failed.push(e),
            }
        }
        match failed.first() {
            None => Ok(offsets),
            Some(e) => Err(unavailable(format!(
                "{} of {} records were not delivered (the others were): {e}",
                failed.len(),
                records.len()
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

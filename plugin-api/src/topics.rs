//! The topics repository as a plugin sees it: produce to and consume from the topics it
//! declared, by logical name. The host runs the consumers (the plugin never gets a client, and
//! never names a consumer group: its group is its own) and calls the handler on the plugin's
//! own thread. Delivery is at-least-once: a message is committed only after the handler returns
//! `Ok`; an error is retried, then the message is skipped and counted.
//!
//! ```ignore
//! let topics = ctx.topics();
//! topics.create("orders")?;
//! topics.produce_json("orders", Some("order-1"), &json!({ "total": 42 }))?;
//! topics.subscribe("orders", |m| { let order: Value = m.json()?; Ok(()) })?;
//! ```

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::topics::{Create, MessageHeader, Produce, ProduceBatch, Subscribe, Unsubscribe};
use crate::wire::{Op, Service};
use crate::{Context, Result, SubscriptionId, envelope};

/// A consumed message.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    topic: &'a str,
    key: Option<String>,
    headers: BTreeMap<String, String>,
    offset: u64,
    partition: i32,
    timestamp_ms: u64,
    payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// The logical topic.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// The record's key.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The record's headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// Offset in its partition.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// When it was produced, in ms since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The payload as JSON.
    ///
    /// # Errors
    /// `serialization` when it is not JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(self.payload)?)
    }
}

/// A record to produce with [`Topics::produce_batch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OutgoingRecord<'a> {
    key: Option<&'a str>,
    payload: &'a [u8],
    headers: &'a [(&'a str, &'a str)],
}

impl<'a> OutgoingRecord<'a> {
    /// A record with this payload, no key and no headers.
    pub fn new(payload: &'a [u8]) -> Self {
        Self {
            key: None,
            payload,
            headers: &[],
        }
    }

    /// Sets the key (records with one key keep their order).
    pub fn with_key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }
}

/// The most records one [`Topics::produce_batch`] call may carry.
pub const MAX_PRODUCE_BATCH: usize = 10_000;

/// The plugin's topics. Obtained with [`Context::topics`].
#[derive(Debug, Clone)]
pub struct Topics {
    ctx: Context,
}

impl Topics {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// Sends one operation with `body` as the envelope's body; the answer is JSON.
    fn call<O: Op>(&self, op: O, body: &[u8]) -> Result<O::Response> {
        let request = envelope::encode(&O::Request::from(op), body)?;
        let out = self.ctx.call_raw(Service::Topics, &request)?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Creates a declared topic if it does not exist.
    ///
    /// # Errors
    /// `topic_access_denied` for a topic the plugin may not use.
    pub fn create(&self, topic: &str) -> Result<()> {
        self.call(
            Create {
                topic: topic.to_owned(),
            },
            &[],
        )
        .map(drop)
    }

    /// Produces a record; returns its offset.
    ///
    /// # Errors
    /// `topic_access_denied`, `backend_unavailable`.
    pub fn produce(&self, topic: &str, key: Option<&str>, payload: &[u8]) -> Result<u64> {
        self.produce_with_headers(topic, key, payload, &[])
    }

    /// Produces a record with headers; returns its offset.
    ///
    /// # Errors
    /// `topic_access_denied`, `backend_unavailable`.
    pub fn produce_with_headers(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<u64> {
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let op = Produce {
            topic: topic.to_owned(),
            key: key.map(str::to_owned),
            headers,
        };
        Ok(self.call(op, payload)?.offset)
    }

    /// Produces records in order, all in flight at once where the backend allows it (Kafka),
    /// and waits for every one; returns their offsets. Much faster than one
    /// [`produce`](Self::produce) after another against a remote broker.
    ///
    /// # Errors
    /// `topic_access_denied`, `bad_request` for more than [`MAX_PRODUCE_BATCH`] records,
    /// `backend_unavailable` when any record was not delivered. The others may have been:
    /// producing is at-least-once, and retrying the batch can deliver some records twice.
    pub fn produce_batch(&self, topic: &str, records: &[OutgoingRecord<'_>]) -> Result<Vec<u64>> {
        // Lengths travel as `u32`: anything longer could not be framed.
        let too_long = |b: &[u8]| u32::try_from(b.len()).map_or(true, |n| n == u32::MAX);
        if records.iter().any(|r| {
            too_long(r.payload)
                || r.key.is_some_and(|k| too_long(k.as_bytes()))
                || r.headers
                    .iter()
                    .any(|(k, v)| too_long(k.as_bytes()) || too_long(v.as_bytes()))
        }) {
            return Err(crate::Error::new(
                "bad_request",
                "a record, key or header of 4 GiB or more cannot be produced",
            ));
        }
        let size: usize = records.iter().map(|r| r.payload.len() + 16).sum();
        let mut body = Vec::with_capacity(size);
        for r in records {
            envelope::encode_record(&mut body, r.key, r.headers, r.payload);
        }
        let op = ProduceBatch {
            topic: topic.to_owned(),
            count: records.len(),
        };
        Ok(self.call(op, &body)?.offsets)
    }

    /// Produces a JSON record; returns its offset.
    ///
    /// # Errors
    /// `topic_access_denied`, `backend_unavailable`, `serialization`.
    pub fn produce_json<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        key: Option<&str>,
        value: &T,
    ) -> Result<u64> {
        let bytes = serde_json::to_vec(value)?;
        self.produce(topic, key, &bytes)
    }

    /// Consumes a topic with the plugin's own consumer group, from its committed offset. The
    /// handler runs on the plugin's thread; returning `Ok` commits the message.
    ///
    /// # Errors
    /// `topic_access_denied`, `backend_unavailable`.
    pub fn subscribe(
        &self,
        topic: &str,
        mut handler: impl FnMut(&Message<'_>) -> Result<()> + Send + 'static,
    ) -> Result<SubscriptionId> {
        let op = Subscribe {
            topic: topic.to_owned(),
        };
        let id = self.call(op, &[])?.id;
        self.ctx.register(
            id,
            false,
            Box::new(move |event| {
                let (header, payload) = envelope::decode::<MessageHeader>(event.payload())?;
                let message = Message {
                    topic: event.name(),
                    key: header.key,
                    headers: header.headers,
                    offset: header.offset,
                    partition: header.partition,
                    timestamp_ms: header.timestamp_ms,
                    payload,
                };
                handler(&message)
            }),
        );
        Ok(SubscriptionId(id))
    }

    /// Stops a consumer. Messages it had not committed are delivered again to the next consumer
    /// of the plugin's group.
    ///
    /// # Errors
    /// `subscription_not_found`.
    pub fn unsubscribe(&self, id: SubscriptionId) -> Result<()> {
        self.ctx.unregister(id.0);
        self.call(Unsubscribe { id: id.0 }, &[]).map(drop)
    }
}

//! Requests and answers of the topics service ([`Service::Topics`](super::Service::Topics)).
//! Each travels as the JSON header of an envelope ([`crate::envelope`]); a record's payload,
//! or a batch of records, is the envelope's body. A consumed message reaches the plugin's
//! handler as an envelope too, with a [`MessageHeader`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::Created;
use super::requests;

requests! {
    Topics;
    Create(Create) => Created,
    Produce(Produce) => Produced,
    ProduceBatch(ProduceBatch) => ProducedBatch,
    Subscribe(Subscribe) => Subscribed,
    Unsubscribe(Unsubscribe) => Unsubscribed,
}

/// Creates a declared topic if it does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// The logical topic.
    pub topic: String,
}

/// Produces one record; the payload is the envelope's body. `key` travels as `null` when
/// there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Produce {
    /// The logical topic.
    pub topic: String,
    /// The record's key.
    #[serde(default)]
    pub key: Option<String>,
    /// The record's headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Produces `count` records, framed in the envelope's body by
/// [`encode_record`](crate::envelope::encode_record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceBatch {
    /// The logical topic.
    pub topic: String,
    /// How many records the body holds.
    pub count: usize,
}

/// Starts a consumer of the plugin's own group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// The logical topic.
    pub topic: String,
}

/// Stops a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    /// The subscription, as [`Subscribed`] gave it.
    pub id: u64,
}

/// What a topics request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A logical topic.
    Topic(&'a str),
    /// A subscription ([`Unsubscribe`]).
    Subscription(u64),
}

impl Request {
    /// What the request acts on.
    pub fn target(&self) -> Target<'_> {
        match self {
            Self::Create(Create { topic })
            | Self::Produce(Produce { topic, .. })
            | Self::ProduceBatch(ProduceBatch { topic, .. })
            | Self::Subscribe(Subscribe { topic }) => Target::Topic(topic),
            Self::Unsubscribe(Unsubscribe { id }) => Target::Subscription(*id),
        }
    }
}

/// The answer to a [`Produce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Produced {
    /// The record's offset.
    pub offset: u64,
}

/// The answer to a [`ProduceBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBatch {
    /// The records' offsets, in order.
    pub offsets: Vec<u64>,
}

/// The answer to a [`Subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The subscription; messages reach the handler registered under it.
    pub id: u64,
}

/// The answer to an [`Unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribed {
    /// The subscription stopped.
    pub unsubscribed: u64,
}

/// The header of a consumed message as the host delivers it; the payload is the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageHeader {
    /// The record's key.
    #[serde(default)]
    pub key: Option<String>,
    /// The record's headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Offset in its partition.
    pub offset: u64,
    /// Partition.
    pub partition: i32,
    /// When it was produced, in ms since the Unix epoch.
    pub timestamp_ms: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn every_request_round_trips() {
        for request in [
            Request::Create(Create { topic: "t".into() }),
            Request::Produce(Produce {
                topic: "t".into(),
                key: Some("k".into()),
                headers: BTreeMap::from([("a".into(), "1".into())]),
            }),
            Request::ProduceBatch(ProduceBatch {
                topic: "t".into(),
                count: 3,
            }),
            Request::Subscribe(Subscribe { topic: "t".into() }),
            Request::Unsubscribe(Unsubscribe { id: 7 }),
        ] {
            let target = match request {
                Request::Unsubscribe(_) => Target::Subscription(7),
                _ => Target::Topic("t"),
            };
            assert_eq!(request.target(), target);
            let bytes = serde_json::to_vec(&request).unwrap();
            assert_eq!(serde_json::from_slice::<Request>(&bytes).unwrap(), request);
        }
        let header = MessageHeader {
            key: None,
            headers: BTreeMap::new(),
            offset: 1,
            partition: -1,
            timestamp_ms: 2,
        };
        let v = serde_json::to_value(&header).unwrap();
        assert_eq!(serde_json::from_value::<MessageHeader>(v).unwrap(), header);
    }

    /// The headers plugin-api 0.1.0 sends decode, and encode back to the same JSON; the
    /// answers and message headers it reads keep their fields.
    #[test]
    fn shapes_of_plugin_api_1_1() {
        for old in [
            json!({"op": "create", "topic": "orders"}),
            json!({"op": "produce", "topic": "orders", "key": null, "headers": {}}),
            json!({"op": "produce", "topic": "orders", "key": "k", "headers": {"a": "b"}}),
            json!({"op": "produce_batch", "topic": "orders", "count": 2}),
            json!({"op": "subscribe", "topic": "orders"}),
            json!({"op": "unsubscribe", "id": 3}),
        ] {
            let decoded: Request = serde_json::from_value(old.clone()).unwrap();
            assert_eq!(serde_json::to_value(&decoded).unwrap(), old);
        }
        let short: Request =
            serde_json::from_value(json!({"op": "produce", "topic": "o"})).unwrap();
        assert_eq!(
            short,
            Request::Produce(Produce {
                topic: "o".into(),
                key: None,
                headers: BTreeMap::new()
            })
        );
        let header: Value = serde_json::to_value(MessageHeader {
            key: Some("k".into()),
            headers: BTreeMap::from([("h".into(), "v".into())]),
            offset: 4,
            partition: 0,
            timestamp_ms: 9,
        })
        .unwrap();
        assert_eq!(
            header,
            json!({"key": "k", "headers": {"h": "v"}, "offset": 4, "partition": 0, "timestamp_ms": 9})
        );
        assert_eq!(
            serde_json::to_value(Unsubscribed { unsubscribed: 3 }).unwrap(),
            json!({"unsubscribed": 3})
        );
        assert_eq!(
            serde_json::to_value(ProducedBatch {
                offsets: vec![1, 2]
            })
            .unwrap(),
            json!({"offsets": [1, 2]})
        );
        for bad in [
            json!({"op": "produce", "topic": "o", "partition": 1}),
            json!({"op": "unsubscribe", "id": -1}),
            json!({"op": "produce_batch", "topic": "o"}),
        ] {
            assert!(
                serde_json::from_value::<Request>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}

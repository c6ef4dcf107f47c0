//! Requests and answers of the buckets service ([`Service::Buckets`](super::Service::Buckets)).
//! Each travels as the JSON header of an envelope ([`crate::envelope`]); object bytes are the
//! envelope's body, both ways.

use serde::{Deserialize, Serialize};

use super::requests;

requests! {
    Buckets;
    Put(Put) => Stored,
    Get(Get) => Fetched,
    Delete(Delete) => Deleted,
    Exists(Exists) => Existence,
    List(List) => Listed,
    PresignGet(PresignGet) => Presigned,
}

/// Stores the envelope's body under `key`. `content_type` travels as `null` when not given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Put {
    /// The logical bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// Its content type.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// Reads an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The logical bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
}

/// Deletes an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    /// The logical bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
}

/// Whether an object exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exists {
    /// The logical bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
}

/// One page of keys. `page_token` travels as `null` on the first page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {
    /// The logical bucket.
    pub bucket: String,
    /// Only keys starting with it (`""`, or left out, for all).
    #[serde(default)]
    pub prefix: String,
    /// The previous page's `next_page_token`.
    #[serde(default)]
    pub page_token: Option<String>,
    /// Keys per page (the host's default when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// A presigned GET link to an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresignGet {
    /// The logical bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// How long the link works, in seconds.
    pub expires_secs: u64,
}

impl Request {
    /// The logical bucket the request names.
    pub fn bucket(&self) -> &str {
        match self {
            Self::Put(Put { bucket, .. })
            | Self::Get(Get { bucket, .. })
            | Self::Delete(Delete { bucket, .. })
            | Self::Exists(Exists { bucket, .. })
            | Self::List(List { bucket, .. })
            | Self::PresignGet(PresignGet { bucket, .. }) => bucket,
        }
    }
}

/// The answer to a [`Put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Bytes stored.
    pub size: u64,
}

/// The answer to a [`Get`]; the object's bytes are the body. `content_type` and `size` travel
/// only when the object was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// Whether there was an object.
    pub found: bool,
    /// Its content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The answer to a [`Delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Whether there was an object.
    pub deleted: bool,
}

/// The answer to an [`Exists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Existence {
    /// Whether there is an object.
    pub exists: bool,
}

/// The answer to a [`List`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// Keys relative to the bucket, sorted by their bytes.
    pub keys: Vec<String>,
    /// Where the next page starts; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// The answer to a [`PresignGet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presigned {
    /// The link.
    pub url: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_request_round_trips() {
        let (bucket, key) = (String::from("files"), String::from("a/b"));
        for request in [
            Request::Put(Put {
                bucket: bucket.clone(),
                key: key.clone(),
                content_type: Some("text/plain".into()),
            }),
            Request::Get(Get {
                bucket: bucket.clone(),
                key: key.clone(),
            }),
            Request::Delete(Delete {
                bucket: bucket.clone(),
                key: key.clone(),
            }),
            Request::Exists(Exists {
                bucket: bucket.clone(),
                key: key.clone(),
            }),
            Request::List(List {
                bucket: bucket.clone(),
                prefix: "a/".into(),
                page_token: Some("a/a".into()),
                limit: Some(10),
            }),
            Request::PresignGet(PresignGet {
                bucket: bucket.clone(),
                key: key.clone(),
                expires_secs: 60,
            }),
        ] {
            assert_eq!(request.bucket(), "files");
            let bytes = serde_json::to_vec(&request).unwrap();
            assert_eq!(serde_json::from_slice::<Request>(&bytes).unwrap(), request);
        }
    }

    /// The headers plugin-api 0.1.0 sends decode, and encode back to the same JSON; the
    /// answers it reads keep their fields.
    #[test]
    fn shapes_of_plugin_api_1_1() {
        for old in [
            json!({"op": "put", "bucket": "f", "key": "k", "content_type": null}),
            json!({"op": "put", "bucket": "f", "key": "k", "content_type": "text/csv"}),
            json!({"op": "get", "bucket": "f", "key": "k"}),
            json!({"op": "delete", "bucket": "f", "key": "k"}),
            json!({"op": "exists", "bucket": "f", "key": "k"}),
            json!({"op": "list", "bucket": "f", "prefix": "", "page_token": null, "limit": 100}),
            json!({"op": "list", "bucket": "f", "prefix": "r/", "page_token": "r/a", "limit": 1}),
            json!({"op": "presign_get", "bucket": "f", "key": "k", "expires_secs": 3600}),
        ] {
            let decoded: Request = serde_json::from_value(old.clone()).unwrap();
            assert_eq!(serde_json::to_value(&decoded).unwrap(), old);
        }
        let short: Request = serde_json::from_value(json!({"op": "list", "bucket": "f"})).unwrap();
        assert_eq!(
            short,
            Request::List(List {
                bucket: "f".into(),
                prefix: String::new(),
                page_token: None,
                limit: None
            })
        );
        assert_eq!(
            serde_json::to_value(Fetched {
                found: false,
                content_type: None,
                size: None
            })
            .unwrap(),
            json!({"found": false})
        );
        assert_eq!(
            serde_json::to_value(Fetched {
                found: true,
                content_type: Some("text/plain".into()),
                size: Some(2)
            })
            .unwrap(),
            json!({"found": true, "content_type": "text/plain", "size": 2})
        );
        assert_eq!(
            serde_json::to_value(Listed {
                keys: vec![],
                next_page_token: None
            })
            .unwrap(),
            json!({"keys": [], "next_page_token": null})
        );
        for bad in [
            json!({"op": "nope"}),
            json!({"op": "get", "bucket": "f"}),
            json!({"op": "presign_get", "bucket": "f", "key": "k", "expires_secs": -1}),
        ] {
            assert!(
                serde_json::from_value::<Request>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}

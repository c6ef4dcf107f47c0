//! Framing of the host services that carry bytes (buckets, topics): a JSON header (a typed
//! request or answer of [`wire`](crate::wire)) and a raw body in one buffer — `u32`
//! little-endian header length, the header, then the body — so payloads cross the boundary
//! without base64; a batch of records is a body of length-prefixed
//! fields ([`encode_record`]). Used by this crate's typed APIs and by the host; plugin authors
//! never see it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Encodes a header (one of the [`wire`](crate::wire) types) and a body.
///
/// # Errors
/// `serialization` when the header cannot be written as JSON (the wire types always can).
pub fn encode<H: Serialize + ?Sized>(header: &H, body: &[u8]) -> Result<Vec<u8>> {
    let head = serde_json::to_vec(header)?;
    let len = u32::try_from(head.len())
        .map_err(|_| Error::new("bad_request", "an envelope header of 4 GiB or more"))?;
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    Ok(out)
}

/// Splits a buffer into its header, decoded as `H`, and its body.
///
/// # Errors
/// `bad_request` when the buffer is not an envelope or its header is not an `H`.
pub fn decode<H: DeserializeOwned>(bytes: &[u8]) -> Result<(H, &[u8])> {
    let bad = || Error::new("bad_request", "malformed envelope");
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let head = bytes.get(4..4 + len).ok_or_else(bad)?;
    let header: H = serde_json::from_slice(head)
        .map_err(|e| Error::new("bad_request", format!("invalid envelope header: {e}")))?;
    Ok((header, &bytes[4 + len..]))
}

/// A record in a batch body, borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord<'a> {
    /// The key.
    pub key: Option<&'a str>,
    /// The headers, in order.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The payload.
    pub payload: &'a [u8],
}

/// `u32::MAX` as a key length: no key.
const NO_KEY: u32 = u32::MAX;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(
        &u32::try_from(bytes.len())
            .unwrap_or(NO_KEY - 1)
            .to_le_bytes(),
    );
    out.extend_from_slice(bytes);
}

/// Appends one record to a batch body: the key (`u32` length, `u32::MAX` for none, then the
/// bytes), the header count (`u32`) and each header's name and value (`u32` length, bytes),
/// then the payload (`u32` length, bytes). All lengths little-endian. No JSON per record, so a
/// batch costs little more than its bytes.
pub fn encode_record(
    out: &mut Vec<u8>,
    key: Option<&str>,
    headers: &[(&str, &str)],
    payload: &[u8],
) {
    match key {
        Some(k) => put_bytes(out, k.as_bytes()),
        None => out.extend_from_slice(&NO_KEY.to_le_bytes()),
    }
    out.extend_from_slice(&u32::try_from(headers.len()).unwrap_or(0).to_le_bytes());
    for (name, value) in headers {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value.as_bytes());
    }
    put_bytes(out, payload);
}

/// Reads a batch body written by [`encode_record`]: exactly `count` records, nothing after.
///
/// # Errors
/// `bad_request` for a truncated or overlong body, a wrong count, or a key or header that is
/// not UTF-8.
pub fn decode_records(mut body: &[u8], count: usize) -> Result<Vec<BatchRecord<'_>>> {
    fn bad(what: &str) -> Error {
        Error::new("bad_request", format!("malformed batch: {what}"))
    }
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if body.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = body.split_at(n);
        *body = tail;
        Ok(head)
    }
    fn len(body: &mut &[u8]) -> Result<u32> {
        let b = take(body, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn text<'a>(body: &mut &'a [u8]) -> Result<&'a str> {
        let n = len(body)? as usize;
        std::str::from_utf8(take(body, n)?).map_err(|_| bad("a key or header is not UTF-8"))
    }
    // Every record takes at least 12 bytes: never allocate for more than the body can hold.
    let mut records = Vec::with_capacity(count.min(body.len() / 12));
    for _ in 0..count {
        let key = match len(&mut body)? {
            NO_KEY => None,
            n => Some(
                std::str::from_utf8(take(&mut body, n as usize)?)
                    .map_err(|_| bad("a key is not UTF-8"))?,
            ),
        };
        let header_count = len(&mut body)? as usize;
        let mut headers = Vec::with_capacity(header_count.min(body.len() / 8));
        for _ in 0..header_count {
            headers.push((text(&mut body)?, text(&mut body)?));
        }
        let n = len(&mut body)? as usize;
        let payload = take(&mut body, n)?;
        records.push(BatchRecord {
            key,
            headers,
            payload,
        });
    }
    if !body.is_empty() {
        return Err(bad("bytes after the last record"));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_refuse_garbage() {
        let mut body = Vec::new();
        encode_record(&mut body, Some("k"), &[("a", "1"), ("b", "")], b"payload");
        encode_record(&mut body, None, &[], b"");
        let records = decode_records(&body, 2).unwrap();
        assert_eq!(
            records,
            [
                BatchRecord {
                    key: Some("k"),
                    headers: vec![("a", "1"), ("b", "")],
                    payload: b"payload",
                },
                BatchRecord {
                    key: None,
                    headers: vec![],
                    payload: b"",
                },
            ]
        );
        assert!(decode_records(&body, 1).is_err(), "bytes left over");
        assert!(decode_records(&body, 3).is_err(), "a record missing");
        assert!(decode_records(&body[..body.len() - 1], 2).is_err());
        assert!(decode_records(&[0xff; 7], 1).is_err());
        // A huge count or length in a tiny body: an error, not an allocation.
        assert!(decode_records(&[0, 0, 0, 0], usize::MAX).is_err());
        let mut bad_utf8 = Vec::new();
        encode_record(&mut bad_utf8, None, &[], b"");
        bad_utf8[..4].copy_from_slice(&1u32.to_le_bytes());
        bad_utf8.insert(4, 0xff);
        assert!(decode_records(&bad_utf8, 1).is_err());
    }

    #[test]
    fn round_trip() {
        use crate::wire::buckets::{Put, Request};
        let h = Request::Put(Put {
            bucket: "files".into(),
            key: "a/b".into(),
            content_type: None,
        });
        let bytes = encode(&h, b"\x00\xffbody").unwrap();
        let (h2, body) = decode::<Request>(&bytes).unwrap();
        assert_eq!(h2, h);
        assert_eq!(body, b"\x00\xffbody");
        assert!(decode::<serde_json::Value>(b"\x09\x00\x00\x00{}").is_err());
        assert!(decode::<serde_json::Value>(b"").is_err());
        let e = decode::<Request>(&encode(&serde_json::json!({"op": "nope"}), b"").unwrap())
            .unwrap_err();
        assert_eq!(e.code, "bad_request");
    }
}

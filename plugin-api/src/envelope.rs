//! Wire format of the host services that carry bytes (buckets, topics): a JSON header and a raw
//! body in one buffer — `u32` little-endian header length, the header, then the body — so
//! payloads cross the boundary without base64. Used by this crate's typed APIs and by the host;
//! plugin authors never see it.

use serde_json::Value;

use crate::{Error, Result};

/// Encodes a header and a body.
pub fn encode(header: &Value, body: &[u8]) -> Vec<u8> {
    let head = header.to_string().into_bytes();
    let len = u32::try_from(head.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    out
}

/// Splits a buffer into its header and body.
///
/// # Errors
/// `bad_request` when the buffer is not an envelope.
pub fn decode(bytes: &[u8]) -> Result<(Value, &[u8])> {
    let bad = || Error::new("bad_request", "malformed envelope");
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let head = bytes.get(4..4 + len).ok_or_else(bad)?;
    let header: Value = serde_json::from_slice(head).map_err(|_| bad())?;
    Ok((header, &bytes[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = serde_json::json!({"op": "put", "key": "a/b"});
        let bytes = encode(&h, b"\x00\xffbody");
        let (h2, body) = decode(&bytes).unwrap();
        assert_eq!(h2, h);
        assert_eq!(body, b"\x00\xffbody");
        assert!(decode(b"\x09\x00\x00\x00{}").is_err());
        assert!(decode(b"").is_err());
    }
}

//! Presigned-link tokens: a claim (plugin, bucket, key, expiry) and its HMAC-SHA256, so that a
//! link is its own credential and the host keeps no table of issued links. Pure: no I/O; the
//! signing key is the caller's (the folder backend keeps it in `<dir>/.presign-key`).
//!
//! Format: `v1.<claim>.<mac>`, where `<claim>` is the base64url (no padding) of the claim's JSON
//! `{"p": plugin, "b": bucket, "k": key, "e": expiry (Unix seconds)}` and `<mac>` the base64url
//! of HMAC-SHA256 over `v1.<claim>`. Only `A-Z a-z 0-9 - _ .` appear, so a token is a single
//! URL path segment without escaping. The version prefix lets the format change without
//! misreading old links.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

const VERSION: &str = "v1";
/// Longer tokens are refused before any work (a 1024-byte key gives about 1.5 kB).
const MAX_TOKEN_BYTES: usize = 4096;

/// What a token grants: a GET of one object until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Claim {
    /// The plugin whose bucket it is (physical: the owner of the storage location).
    #[serde(rename = "p")]
    pub(crate) plugin: String,
    /// The physical bucket (after the operator's `bucket_map`).
    #[serde(rename = "b")]
    pub(crate) bucket: String,
    /// The object key.
    #[serde(rename = "k")]
    pub(crate) key: String,
    /// Expiry, in seconds since the Unix epoch.
    #[serde(rename = "e")]
    pub(crate) expires: u64,
}

fn invalid(reason: &str) -> Error {
    Error::PresignedUrlInvalid {
        reason: reason.to_owned(),
    }
}

fn mac(secret: &[u8], signed: &str) -> Result<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| Error::Internal {
        message: format!("presign key rejected by HMAC: {e}"),
    })?;
    mac.update(signed.as_bytes());
    Ok(mac)
}

/// Signs a claim.
///
/// # Errors
/// `internal` only if the claim cannot be serialised.
pub(crate) fn sign(secret: &[u8], claim: &Claim) -> Result<String> {
    let json = serde_json::to_vec(claim).map_err(|e| Error::Internal {
        message: format!("cannot serialise a presign claim: {e}"),
    })?;
    let signed = format!("{VERSION}.{}", base64url::encode(&json));
    let tag = mac(secret, &signed)?.finalize().into_bytes();
    Ok(format!("{signed}.{}", base64url::encode(&tag)))
}

/// Checks a token's signature, then its expiry against `now` (Unix seconds); returns its claim.
/// The signature is compared in constant time, and checked before the claim is even parsed.
///
/// # Errors
/// `presigned_url_invalid`: malformed, bad signature, or expired.
pub(crate) fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claim> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid("the token is malformed"));
    }
    let (signed, tag) = token
        .rsplit_once('.')
        .ok_or_else(|| invalid("the token is malformed"))?;
    let claim_b64 = signed
        .strip_prefix(VERSION)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(|| invalid("the token is malformed"))?;
    let tag = base64url::decode(tag).ok_or_else(|| invalid("the token is malformed"))?;
    mac(secret, signed)?
        .verify_slice(&tag)
        .map_err(|_| invalid("the signature does not match"))?;
    let json = base64url::decode(claim_b64).ok_or_else(|| invalid("the token is malformed"))?;
    let claim: Claim =
        serde_json::from_slice(&json).map_err(|_| invalid("the token is malformed"))?;
    if claim.expires <= now {
        return Err(invalid("the link has expired"));
    }
    Ok(claim)
}

/// base64url without padding (RFC 4648 §5): the crate's only use of base64, not worth a
/// dependency.
mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if bytes.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                n |= value(c)? << (18 - 6 * i);
            }
            let produced = chunk.len() - 1;
            // The bits below the decoded bytes must be zero, so that each byte string has
            // exactly one spelling (a token cannot be altered into another valid form of itself).
            if n & ((1u32 << (24 - 8 * produced)) - 1) != 0 {
                return None;
            }
            for i in 0..produced {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(expires: u64) -> Claim {
        Claim {
            plugin: "demo".into(),
            bucket: "files".into(),
            key: "a/b.txt".into(),
            expires,
        }
    }

    #[test]
    fn base64url_round_trips() {
        for len in 0..70 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64url::encode(&bytes);
            assert!(
                text.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            );
            assert_eq!(base64url::decode(&text).unwrap(), bytes, "{len}");
        }
        assert_eq!(base64url::encode(b"hello"), "aGVsbG8");
        assert!(base64url::decode("a").is_none());
        assert!(base64url::decode("a=").is_none());
        assert!(
            base64url::decode("aGVsbG9").is_none(),
            "non-zero unused bits"
        );
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let secret = [7u8; 32];
        let token = sign(&secret, &claim(1000)).unwrap();
        assert!(token.starts_with("v1."));
        assert_eq!(verify(&secret, &token, 999).unwrap(), claim(1000));
        let e = verify(&secret, &token, 1000).unwrap_err();
        assert_eq!(e.code().as_str(), "presigned_url_invalid");
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn tampering_is_detected() {
        let secret = [7u8; 32];
        let token = sign(&secret, &claim(1000)).unwrap();
        assert!(verify(&[8u8; 32], &token, 0).is_err(), "another key");
        // A claim for another key, with the original signature.
        let (_, tag) = token.rsplit_once('.').unwrap();
        let mut forged = claim(1000);
        forged.key = "secret.txt".into();
        let body = base64url::encode(&serde_json::to_vec(&forged).unwrap());
        assert!(verify(&secret, &format!("v1.{body}.{tag}"), 0).is_err());
        // Every single-character change is refused.
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            let mut t = bytes.to_vec();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap();
            if t != token {
                assert!(verify(&secret, &t, 0).is_err(), "changed at {i}: {t}");
            }
        }
        for junk in [
            "",
            ".",
            "v1",
            "v1..",
            "v2.x.y",
            "bogus",
            &"x".repeat(10_000),
        ] {
            assert!(verify(&secret, junk, 0).is_err(), "{junk:?}");
        }
    }
}

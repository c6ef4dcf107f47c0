//! Object keys: the rules every backend relies on so that a key can never name anything outside
//! its bucket. Pure: no I/O. Called by [`ScopedBuckets`](super::ScopedBuckets) before any backend
//! sees a key, and by the folder backend again on keys read back from disk and from tokens.
//!
//! A key is 1 to 1024 bytes of UTF-8, segments separated by `/`. Refused: NUL and every other
//! control character, `\` (a separator on Windows), a leading `/` (absolute), empty segments
//! (`a//b`, a trailing `/`), and the segments `.` and `..`. Everything else (spaces, dots inside
//! a segment, `.hidden`, any Unicode) is allowed.

use crate::error::{Error, Result};

/// The longest key, in bytes (S3's limit).
pub(crate) const MAX_KEY_BYTES: usize = 1024;

fn invalid(key: &str, reason: impl Into<String>) -> Error {
    Error::InvalidKey {
        key: key.chars().take(120).collect(),
        reason: reason.into(),
    }
}

/// Checks an object key against the key rules.
///
/// # Errors
/// `invalid_key`, saying which rule it breaks.
pub(crate) fn validate(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid(key, "a key may not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(
            key,
            format!(
                "it is {} bytes long; the limit is {MAX_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    if key.contains('\0') {
        return Err(invalid(key, "it contains a NUL byte"));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(invalid(
            key,
            format!("it contains the control character {c:?}"),
        ));
    }
    if key.contains('\\') {
        return Err(invalid(
            key,
            "it contains a backslash; use `/` between segments",
        ));
    }
    if key.starts_with('/') {
        return Err(invalid(
            key,
            "it starts with `/`; keys are relative to their bucket",
        ));
    }
    for segment in key.split('/') {
        match segment {
            "" => {
                return Err(invalid(
                    key,
                    "it has an empty segment (`//` or a trailing `/`)",
                ));
            }
            "." | ".." => {
                return Err(invalid(
                    key,
                    format!("it has a `{segment}` segment; keys cannot navigate"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty, or a key, or a key followed by `/`. The last segment may be
/// partial (`photos/20` matches `photos/2024/a`), so only whole segments are held to the
/// segment rules.
///
/// # Errors
/// `invalid_key`, saying which rule it breaks.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    // `a/b/` is checked as `a/b`; `a/.` and `a/..` as partial segments could only match keys
    // that start `a/.x`, which are valid, so a partial last segment is checked for characters
    // only.
    let whole = prefix.strip_suffix('/').unwrap_or(prefix);
    let (dirs, last) = match whole.rsplit_once('/') {
        Some((dirs, last)) => (Some(dirs), last),
        None => (None, whole),
    };
    if let Some(dirs) = dirs {
        validate(dirs)?;
    }
    if prefix.ends_with('/') {
        validate(whole)
    } else {
        // A partial segment: any characters a key may hold.
        validate(&format!("{last}x")).map_err(|_| {
            invalid(
                prefix,
                "its last segment holds characters keys may not hold",
            )
        })?;
        if prefix.len() > MAX_KEY_BYTES {
            return Err(invalid(prefix, "it is longer than any key"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for ok in [
            "a",
            "a/b/c.txt",
            "photos/2024/ada lovelace.png",
            ".hidden",
            "a/.b/..c/...",
            "dots.in.names",
            "ünïcødé/日本",
            &"k".repeat(MAX_KEY_BYTES),
        ] {
            validate(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
    }

    #[test]
    fn refuses_every_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/..",
            "..",
            ".",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "/",
            "a\0b",
            "\0",
            "a\\..\\b",
            "C:\\x",
            "a\nb",
            "a\rb",
            "a\u{7f}b",
            "a\u{85}b",
            &"k".repeat(MAX_KEY_BYTES + 1),
        ] {
            let e = validate(bad).unwrap_err();
            assert_eq!(e.code().as_str(), "invalid_key", "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        for ok in ["", "a", "a/", "a/b", "a/b/", "photos/20", ".h", "a/."] {
            validate_prefix(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "/", "/a", "../", "a/../b", "a//", "a//b", "a\0", "a\\b", "./",
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_error_does_not_echo_a_huge_key() {
        let e = validate(&"k".repeat(5000)).unwrap_err();
        assert!(e.to_string().len() < 400);
    }
}

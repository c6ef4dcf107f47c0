//! Example plugin `auth`: API keys for routes declaring `Auth::Plugin("auth")`
//! (`"auth": "plugin:auth"`). Keys live in its table `keys`, only their SHA-256 stored.
//!
//! - `create_key` `{"user": "..."}` → `{"key": "<64 hex>"}`: 32 random bytes from
//!   `/dev/urandom`; the operator calls it through the admin API
//!   (`POST /api/v1/plugins/auth/call/create_key`); it has no route.
//! - `authenticate` `{"method", "path", "headers"}` (the host calls it before the handler):
//!   `Authorization: Bearer <key>` of a stored key → `{"identity": {"user": ...}}`, anything
//!   else the error code `unauthorized`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Read;

use plugin_api::serde_json::{Value, json};
use plugin_api::{
    Column, Context, Error, Filter, Function, Functions, Manifest, Plugin, Query, Result,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Stateless: the keys are in the table.
#[derive(Debug)]
pub struct Auth;

/// Input of `create_key`.
#[derive(Debug, Deserialize)]
pub struct NewKey {
    /// Whom the key identifies.
    pub user: String,
}

/// Answer of `create_key`.
#[derive(Debug, Serialize)]
pub struct Key {
    /// The key, 64 hex digits; shown once, only its hash is kept.
    pub key: String,
}

/// Input of `authenticate`.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// Request headers, names in lower case.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

const TABLE: &str = "keys";

impl Plugin for Auth {
    const MANIFEST: Manifest = Manifest::new("auth", env!("CARGO_PKG_VERSION"))
        .description("API keys authenticating plugin routes")
        .tables(&[TABLE])
        .functions(&[
            Function::new("create_key")
                .summary("a new API key for a user (only its hash is stored)")
                .input_schema(
                    r#"{"type":"object","required":["user"],"properties":{"user":{"type":"string","minLength":1}}}"#,
                ),
            Function::new("authenticate").summary("the identity of a request's bearer key"),
        ]);

    fn new(ctx: &Context) -> Result<Self> {
        ctx.tables().create(
            TABLE,
            &[
                Column::text("hash").primary_key(),
                Column::text("user").not_null(),
            ],
        )?;
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("create_key", Self::create_key)
            .add_shared("authenticate", Self::authenticate);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unauthorized(message: &str) -> Error {
    Error::new("unauthorized", message)
}

impl Auth {
    fn create_key(&self, ctx: &Context, input: NewKey) -> Result<Key> {
        if input.user.is_empty() {
            return Err(Error::new("bad_request", "`user` is empty"));
        }
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(|e| Error::new("internal", format!("reading /dev/urandom: {e}")))?;
        let key = hex(&raw);
        ctx.tables().insert(
            TABLE,
            json!({"hash": hex(&Sha256::digest(key.as_bytes())), "user": input.user}),
        )?;
        Ok(Key { key })
    }

    fn authenticate(&self, ctx: &Context, input: Request) -> Result<Value> {
        let header = input
            .headers
            .get("authorization")
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer <key>`"))?;
        // The scheme name is case-insensitive (RFC 9110).
        let key = header
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("the `Authorization` header is not `Bearer <key>`"))?;
        let hash = hex(&Sha256::digest(key.as_bytes()));
        let rows = ctx.tables().select(
            TABLE,
            Query::new()
                .columns(&["user"])
                .filter(Filter::eq("hash", hash))
                .limit(1),
        )?;
        let user = rows
            .first()
            .and_then(|r| r.get("user"))
            .cloned()
            .ok_or_else(|| unauthorized("unknown key"))?;
        Ok(json!({"identity": {"user": user}}))
    }
}

plugin_api::export_plugin!(Auth);

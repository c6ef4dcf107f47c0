//! Test plugin `flaky-auth`: an auth plugin (its function `authenticate` is what routes declared
//! `plugin:flaky-auth` call) that answers as the request's `x-auth` header asks:
//!
//! - `user:<name>` → `{"identity": {"user": "<name>"}}`;
//! - `panic` → panics; `slow:<ms>` → sleeps that long, then accepts as `slow`;
//! - `no-identity` → `{}` (an answer without `identity`);
//! - anything else, or no header → the error `unauthorized`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use plugin_api::{Context, Error, Function, Functions, Manifest, Plugin, Result};
use serde::{Deserialize, Serialize};

/// The plugin (no state).
#[derive(Debug)]
pub struct FlakyAuth;

/// What the host sends `authenticate`.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// The request's headers, names in lower case.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Who the caller is.
#[derive(Debug, Serialize)]
pub struct Identity {
    /// The user's name.
    pub user: String,
}

/// The answer; `identity` left out on purpose for `no-identity`.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// The caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

impl Plugin for FlakyAuth {
    const MANIFEST: Manifest = Manifest::new("flaky-auth", env!("CARGO_PKG_VERSION"))
        .description("an auth plugin that fails in each way the header x-auth asks")
        .functions(&[Function::new("authenticate").summary("answers as x-auth asks")]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("authenticate", Self::authenticate);
    }
}

impl FlakyAuth {
    fn authenticate(&self, _: &Context, req: Request) -> Result<Answer> {
        let asked = req.headers.get("x-auth").map_or("", String::as_str);
        let user = |name: &str| {
            Ok(Answer {
                identity: Some(Identity {
                    user: name.to_owned(),
                }),
            })
        };
        if let Some(name) = asked.strip_prefix("user:") {
            return user(name);
        }
        if let Some(ms) = asked.strip_prefix("slow:") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            return user("slow");
        }
        match asked {
            "panic" => panic!("flaky-auth panicked, as asked"),
            "no-identity" => Ok(Answer { identity: None }),
            _ => Err(Error::new("unauthorized", "x-auth does not name a user")),
        }
    }
}

plugin_api::export_plugin!(FlakyAuth);

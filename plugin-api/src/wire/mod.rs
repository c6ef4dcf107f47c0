//! The wire protocol between a plugin and the host's services, defined once for both sides.
//!
//! A plugin reaches a host service with a service name and a request; the host answers with a
//! response. This module owns all three: [`Service`] names every service (its wire name is
//! [`Service::name`]), and each service's module defines its requests as one enum, each
//! variant wrapping one operation type, and each operation's response type ([`Op::Response`]).
//! This crate's typed APIs ([`Tables`](crate::Tables), [`Topics`](crate::Topics),
//! [`Buckets`](crate::Buckets), [`Context::config`](crate::Context::config)) build requests from
//! these types and decode the responses into them; the host decodes requests into the same
//! types and answers with the operation's `Response` type. Not for plugin authors, and not a
//! stable API: only the JSON it produces is (it is the JSON plugins built against
//! `plugin-api` 0.1.0 send, which the tests at the bottom of each module pin).
//!
//! # A change on one side only does not compile
//!
//! The host handles each service's requests with one `match` without a wildcard arm, each arm
//! destructuring its operation without `..`, and each handler returns the operation's
//! `Response` type. A variant added here, a field added to an operation or a response, or a
//! response type changed here therefore breaks the host's build until the host follows. For
//! example, a host-side match that misses an operation (as the host's would, had `Sql` just been
//! added to [`tables::Request`]) is refused:
//!
//! ```compile_fail,E0004
//! use plugin_api::wire::tables::Request;
//!
//! fn handle(request: Request) -> &'static str {
//!     match request {
//!         Request::Create(_) => "create",
//!         Request::Insert(_) => "insert",
//!         Request::Select(_) => "select",
//!         Request::Update(_) => "update",
//!         Request::Delete(_) => "delete",
//!         Request::Count(_) => "count",
//!     }
//! }
//! ```
//!
//! while the same match with every operation compiles (stable rustdoc does not check the error
//! code of a `compile_fail` example, so this twin is what shows the missing arm is the reason):
//!
//! ```
//! use plugin_api::wire::tables::Request;
//!
//! fn handle(request: Request) -> &'static str {
//!     match request {
//!         Request::Create(_) => "create",
//!         Request::Insert(_) => "insert",
//!         Request::Select(_) => "select",
//!         Request::Update(_) => "update",
//!         Request::Delete(_) => "delete",
//!         Request::Count(_) => "count",
//!         Request::Sql(_) => "sql",
//!     }
//! }
//! # assert_eq!(handle(Request::Sql(plugin_api::wire::tables::Sql { sql: "SELECT 1".into(), params: vec![] })), "sql");
//! ```
//!
//! Likewise a handler that answers an operation with another type than its `Response` does not
//! compile:
//!
//! ```compile_fail,E0308
//! use plugin_api::wire::{Op, tables::{Affected, Insert}};
//!
//! fn insert(_op: Insert) -> <Insert as Op>::Response {
//!     Affected { rows_affected: 1 }
//! }
//! ```
//!
//! while answering it with its own answer type compiles:
//!
//! ```
//! use plugin_api::wire::{Op, tables::{Insert, Inserted}};
//!
//! fn insert(_op: Insert) -> <Insert as Op>::Response {
//!     Inserted { rows_affected: 1, row: None }
//! }
//! # let _ = insert;
//! ```
//!
//! The enums are deliberately not `#[non_exhaustive]`: that would force the host's matches to
//! end in a wildcard arm and lose exactly this check.

pub mod buckets;
pub mod config;
pub mod tables;
pub mod topics;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize as SerializeDerive};

/// The host services a plugin can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The plugin's validated configuration ([`config`]).
    Config,
    /// The plugin's tables ([`tables`]).
    Tables,
    /// The plugin's topics ([`topics`]; requests and answers are envelopes).
    Topics,
    /// The plugin's buckets ([`buckets`]; requests and answers are envelopes).
    Buckets,
}

impl Service {
    /// Every service.
    pub const ALL: [Self; 4] = [Self::Config, Self::Tables, Self::Topics, Self::Buckets];

    /// The name the service travels under.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Tables => "tables",
            Self::Topics => "topics",
            Self::Buckets => "buckets",
        }
    }

    /// The service a wire name names; `None` for a name no service has.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One operation of a service: what it is sent as, and what it is answered with.
pub trait Op: Sized {
    /// The service it belongs to.
    const SERVICE: Service;
    /// The service's request enum, of which this operation is a variant.
    type Request: Serialize + DeserializeOwned + From<Self>;
    /// What the host answers it with.
    type Response: Serialize + DeserializeOwned;
}

/// The answer to a `create` of a table or topic: its logical name.
#[derive(Debug, Clone, PartialEq, Eq, SerializeDerive, Deserialize)]
pub struct Created {
    /// The logical name created (or found existing).
    pub created: String,
}

/// Declares a service's request enum, internally tagged by `op`, with one variant per operation
/// type, and each operation's [`Op`] impl. One list, so that an operation cannot be sent as one
/// thing and answered as another.
macro_rules! requests {
    ($service:ident; $($variant:ident($op:ident) => $response:ty,)+) => {
        /// Every request of this service, tagged by `op` on the wire.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Request {
            $(
                #[doc = concat!("See [`", stringify!($op), "`].")]
                $variant($op),
            )+
        }

        $(
            impl From<$op> for Request {
                fn from(op: $op) -> Self {
                    Self::$variant(op)
                }
            }

            impl $crate::wire::Op for $op {
                const SERVICE: $crate::wire::Service = $crate::wire::Service::$service;
                type Request = Request;
                type Response = $response;
            }
        )+
    };
}
pub(crate) use requests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_round_trip() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.name()), Some(s));
        }
        assert_eq!(Service::from_name("Tables"), None);
        assert_eq!(Service::from_name(""), None);
        assert_eq!(
            Service::ALL.map(Service::name),
            ["config", "tables", "topics", "buckets"]
        );
    }
}

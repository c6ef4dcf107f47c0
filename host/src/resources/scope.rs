//! The allow-list every repository checks before anything else: a plugin's effective logical
//! names (its declaration after overrides) mapped to physical locations, and a count of what it
//! was refused. Backends only ever see locations that passed here. Also what the repositories
//! share about answering: the typed denial of a table, and the encoding of an answer. Pure: no
//! I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::naming::Kind;
use crate::error::{Error, Result};

/// The JSON of a repository's answer to a plugin (a `plugin_api::wire` answer type).
///
/// # Errors
/// `internal` if it cannot be encoded, which the wire types never fail.
pub(crate) fn answer<T: serde::Serialize>(answer: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(answer).map_err(|e| Error::Internal {
        message: format!("cannot encode an answer to a plugin: {e}"),
    })
}

/// What a plugin was refused a table for (`table_access_denied`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeniedTable {
    /// A table by name: the logical name the plugin used, or the name the database refused.
    Named(String),
    /// A raw SQL statement refused before its tables were determined: the plugin may use no
    /// table at all, so the statement was not parsed.
    Statement,
}

impl DeniedTable {
    /// The table's name; `None` for a statement whose tables were not determined.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Named(name) => Some(name),
            Self::Statement => None,
        }
    }
}

impl std::fmt::Display for DeniedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => write!(f, "table `{name}`"),
            Self::Statement => f.write_str("the tables of a SQL statement"),
        }
    }
}

/// In error details: the name, or `null` for a statement.
impl serde::Serialize for DeniedTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.name().serialize(s)
    }
}

/// One plugin's allowed resources of one kind.
#[derive(Debug)]
pub(crate) struct Scope<P> {
    plugin: String,
    kind: Kind,
    allowed: BTreeMap<String, P>,
    denied: AtomicU64,
}

impl<P> Scope<P> {
    /// Maps each allowed logical name through `map` (an operator's name map: logical name →
    /// the logical name whose location it uses) and `physical`.
    ///
    /// # Errors
    /// Whatever `physical` refuses (an invalid or over-long mapping).
    pub(crate) fn new(
        plugin: &str,
        kind: Kind,
        names: &[String],
        map: &BTreeMap<String, String>,
        physical: impl Fn(&str) -> Result<P>,
    ) -> Result<Self> {
        let mut allowed = BTreeMap::new();
        for logical in names {
            let target = map.get(logical).unwrap_or(logical);
            allowed.insert(logical.clone(), physical(target)?);
        }
        Ok(Self {
            plugin: plugin.to_owned(),
            kind,
            allowed,
            denied: AtomicU64::new(0),
        })
    }

    /// The location of an allowed name; a counted, typed denial otherwise.
    ///
    /// # Errors
    /// `table_access_denied`, `topic_access_denied` or `bucket_access_denied`.
    pub(crate) fn get(&self, logical: &str) -> Result<&P> {
        self.allowed.get(logical).ok_or_else(|| self.deny(logical))
    }

    /// A counted, typed denial of `what` (a name, or the backend's refusal).
    pub(crate) fn deny(&self, what: &str) -> Error {
        self.denied.fetch_add(1, Ordering::Relaxed);
        let (plugin, allowed) = (self.plugin.clone(), self.allowed.keys().cloned().collect());
        match self.kind {
            Kind::Table => Error::TableAccessDenied {
                plugin,
                table: DeniedTable::Named(what.to_owned()),
                allowed,
            },
            Kind::Topic => Error::TopicAccessDenied {
                plugin,
                topic: what.to_owned(),
                allowed,
            },
            Kind::Bucket => Error::BucketAccessDenied {
                plugin,
                bucket: what.to_owned(),
                allowed,
            },
        }
    }

    /// Counts a denial reported by the backend itself (the database refused a statement).
    pub(crate) fn count_denial(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// How many accesses were refused.
    pub(crate) fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// Allowed logical names and their locations.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &P)> {
        self.allowed.iter()
    }

    /// The plugin these resources belong to.
    pub(crate) fn plugin(&self) -> &str {
        &self.plugin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names_and_counts_typed_denials() {
        let map = BTreeMap::from([("users".to_owned(), "people".to_owned())]);
        let s = Scope::new("p", Kind::Topic, &["users".to_owned()], &map, |n| {
            Ok(format!("x.{n}"))
        })
        .unwrap();
        assert_eq!(s.get("users").unwrap(), "x.people");
        let e = s.get("secrets").unwrap_err();
        assert_eq!(e.code().as_str(), "topic_access_denied");
        assert_eq!(e.details()["allowed"], serde_json::json!(["users"]));
        s.count_denial();
        assert_eq!(s.denied(), 2);
    }

    #[test]
    fn a_denied_statement_has_no_table_name() {
        let e = Error::TableAccessDenied {
            plugin: "p".into(),
            table: DeniedTable::Statement,
            allowed: Vec::new(),
        };
        assert_eq!(e.details()["table"], serde_json::Value::Null);
        assert!(
            e.to_string().contains("the tables of a SQL statement"),
            "{e}"
        );
        let named = Scope::new(
            "p",
            Kind::Table,
            &[],
            &BTreeMap::new(),
            |n| Ok(n.to_owned()),
        )
        .unwrap()
        .deny("users");
        assert_eq!(named.details()["table"], "users");
        assert!(named.to_string().contains("table `users`"), "{named}");
    }
}

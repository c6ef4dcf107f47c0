//! The allow-list every repository checks before anything else: a plugin's effective logical
//! names (its declaration after overrides) mapped to physical locations, and a count of what it
//! was refused. Backends only ever see locations that passed here. Pure: no I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::naming::Kind;
use crate::error::{Error, Result};

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
                table: what.to_owned(),
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
}

//! The effective allowed set of a plugin: its manifest's declaration, replaced per kind by
//! operator overrides (allowed lists and logical-name maps). Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::naming;
use crate::error::{Error, Result};
use crate::manifest::PluginManifest;

/// Operator overrides of a plugin's resources. Any field may be absent: the plugin's own
/// declaration is kept for that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Overrides {
    /// Replaces the declared tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Replaces the declared topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Replaces the declared buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<String>>,
    /// Maps a logical table name to another logical name.
    #[serde(default)]
    pub table_map: BTreeMap<String, String>,
    /// Maps a logical topic name to another logical name.
    #[serde(default)]
    pub topic_map: BTreeMap<String, String>,
    /// Maps a logical bucket name to another logical name.
    #[serde(default)]
    pub bucket_map: BTreeMap<String, String>,
}

/// The resources a plugin may use once overrides are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EffectiveResources {
    /// Allowed logical table names.
    pub tables: Vec<String>,
    /// Allowed logical topic names.
    pub topics: Vec<String>,
    /// Allowed logical bucket names.
    pub buckets: Vec<String>,
    /// Logical table name → name it is mapped to.
    pub table_map: BTreeMap<String, String>,
    /// Logical topic name → name it is mapped to.
    pub topic_map: BTreeMap<String, String>,
    /// Logical bucket name → name it is mapped to.
    pub bucket_map: BTreeMap<String, String>,
}

fn check_logical(kind: &str, name: &str) -> Result<()> {
    let k = match kind {
        "table" => naming::Kind::Table,
        "topic" => naming::Kind::Topic,
        _ => naming::Kind::Bucket,
    };
    naming::validate_logical(k, name).map_err(|e| Error::InvalidOverrides {
        message: e.to_string(),
    })
}

/// One kind of resource in overrides: its name, its replacement list, its name map.
type Kind<'a> = (
    &'static str,
    Option<&'a Vec<String>>,
    &'a BTreeMap<String, String>,
);

impl Overrides {
    /// Checks names and duplicates (not yet against a manifest).
    ///
    /// # Errors
    /// `invalid_overrides`.
    pub fn validate(&self) -> Result<()> {
        for (kind, list, map) in self.kinds() {
            if let Some(list) = list {
                let mut seen = std::collections::HashSet::new();
                for name in list {
                    check_logical(kind, name)?;
                    if !seen.insert(name) {
                        return Err(Error::InvalidOverrides {
                            message: format!("{kind} `{name}` is listed twice"),
                        });
                    }
                }
            }
            for (from, to) in map {
                check_logical(kind, from)?;
                check_logical(kind, to)?;
            }
        }
        Ok(())
    }

    fn kinds(&self) -> [Kind<'_>; 3] {
        [
            ("table", self.tables.as_ref(), &self.table_map),
            ("topic", self.topics.as_ref(), &self.topic_map),
            ("bucket", self.buckets.as_ref(), &self.bucket_map),
        ]
    }

    /// The effective resources of `manifest` under these overrides. A name map may only map
    /// names the plugin is allowed.
    ///
    /// # Errors
    /// `invalid_overrides`.
    pub fn apply(&self, manifest: &PluginManifest) -> Result<EffectiveResources> {
        self.validate()?;
        let pick = |o: Option<&Vec<String>>, declared: &Vec<String>| {
            o.cloned().unwrap_or_else(|| declared.clone())
        };
        let out = EffectiveResources {
            tables: pick(self.tables.as_ref(), &manifest.tables),
            topics: pick(self.topics.as_ref(), &manifest.topics),
            buckets: pick(self.buckets.as_ref(), &manifest.buckets),
            table_map: self.table_map.clone(),
            topic_map: self.topic_map.clone(),
            bucket_map: self.bucket_map.clone(),
        };
        for (kind, allowed, map) in [
            ("table", &out.tables, &out.table_map),
            ("topic", &out.topics, &out.topic_map),
            ("bucket", &out.buckets, &out.bucket_map),
        ] {
            if let Some(from) = map.keys().find(|k| !allowed.contains(k)) {
                return Err(Error::InvalidOverrides {
                    message: format!(
                        "{kind}_map maps `{from}`, which plugin `{}` may not use (allowed: {})",
                        manifest.name,
                        allowed.join(", ")
                    ),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> PluginManifest {
        PluginManifest::parse(
            std::path::Path::new("x"),
            br#"{"name":"p","version":"1.0.0","tables":["users"],"topics":["events"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn absent_fields_keep_the_declaration() {
        let e = Overrides::default().apply(&manifest()).unwrap();
        assert_eq!(e.tables, ["users"]);
        assert_eq!(e.topics, ["events"]);
    }

    #[test]
    fn lists_replace_per_kind_and_maps_must_map_allowed_names() {
        let o = Overrides {
            tables: Some(vec!["customers".into()]),
            table_map: BTreeMap::from([("customers".into(), "clients".into())]),
            ..Overrides::default()
        };
        let e = o.apply(&manifest()).unwrap();
        assert_eq!(e.tables, ["customers"]);
        assert_eq!(e.topics, ["events"], "other kinds untouched");
        let bad = Overrides {
            table_map: BTreeMap::from([("secrets".into(), "x".into())]),
            ..Overrides::default()
        };
        assert_eq!(
            bad.apply(&manifest()).unwrap_err().code().as_str(),
            "invalid_overrides"
        );
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "Users", "a b", "1x", &"a".repeat(64)] {
            let o = Overrides {
                tables: Some(vec![bad.to_owned()]),
                ..Overrides::default()
            };
            assert!(o.validate().is_err(), "{bad:?}");
        }
        let dup = Overrides {
            topics: Some(vec!["a".into(), "a".into()]),
            ..Overrides::default()
        };
        assert!(dup.validate().is_err());
    }
}

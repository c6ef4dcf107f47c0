//! Logical resource names (what a plugin writes) and the physical names the backends see.
//! Pure: no I/O. The only place that converts between the two.
//!
//! Collision-free by construction: every mapping keeps the plugin name and the logical name
//! whole, separated by something neither may contain, so two different `(plugin, name)` pairs
//! never meet (the naive `<plugin>_<name>` would: `a` + `b_c` and `a_b` + `c`):
//! - PostgreSQL: a database and login role per plugin, `<admin database>.<plugin>` (see
//!   [`pg_database`]), holding the schema `p_<plugin>` with tables under their logical names;
//!   two pairs differ in database, schema or table.
//! - SQLite: a database file per plugin, `<plugin>.sqlite3`, tables under their logical names.
//! - Kafka: `<prefix>.<plugin>.<topic>`; `.` appears in neither name.
//! - S3: one bucket, key prefix `<plugin>/<bucket>/`; `/` appears in neither name.
//!
//! Nothing is truncated: a mapping that would be invalid for its backend (a PostgreSQL
//! identifier over 63 bytes, a Kafka topic over 249 characters) is an error at load.

use crate::error::{Error, Result};

/// Prefix of per-plugin PostgreSQL schemas and roles.
pub(crate) const PG_PREFIX: &str = "p_";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub(crate) const PG_MAX_IDENT: usize = 63;
/// Kafka's topic name limit.
pub(crate) const KAFKA_MAX_TOPIC: usize = 249;

/// Kinds of resource, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Table,
    Topic,
    Bucket,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Topic => "topic",
            Self::Bucket => "bucket",
        }
    }
}

/// Checks a logical resource name: 1 to 63 characters of `a-z 0-9 _ -`, starting with a letter.
///
/// # Errors
/// `invalid_name`, saying which rule it breaks.
pub(crate) fn validate_logical(kind: Kind, name: &str) -> Result<()> {
    let fail = |reason: String| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason: format!("{} name: {reason}", kind.as_str()),
        })
    };
    if name.is_empty() {
        return fail("it is empty".into());
    }
    if name.len() > PG_MAX_IDENT {
        return fail(format!(
            "it is {} bytes long; the limit is {PG_MAX_IDENT}",
            name.len()
        ));
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return fail("it must start with a letter a-z".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return fail(format!("{c:?} is not allowed; use a-z, 0-9, '_' and '-'"));
    }
    Ok(())
}

/// A table as a backend sees it: an optional schema and a name, both already valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PhysicalTable {
    pub(crate) schema: Option<String>,
    pub(crate) name: String,
}

impl PhysicalTable {
    /// The quoted SQL reference: `"schema"."name"` or `"name"`. Names hold no `"` (validated).
    pub(crate) fn sql(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }
}

impl PhysicalTable {
    /// The name's parts, schema first.
    pub(crate) fn parts(&self) -> Vec<String> {
        self.schema
            .iter()
            .cloned()
            .chain([self.name.clone()])
            .collect()
    }
}

impl std::fmt::Display for PhysicalTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sql())
    }
}

/// The PostgreSQL schema (and login role) of a plugin: `p_<plugin>`.
///
/// # Errors
/// `invalid_name` when it would be longer than 63 bytes.
pub(crate) fn pg_schema(plugin: &str) -> Result<String> {
    let schema = format!("{PG_PREFIX}{plugin}");
    if schema.len() > PG_MAX_IDENT {
        return Err(Error::InvalidName {
            name: plugin.to_owned(),
            reason: format!(
                "its PostgreSQL schema `{schema}` would be {} bytes; the limit is {PG_MAX_IDENT}, so plugins with tables on PostgreSQL have names of at most {} characters",
                schema.len(),
                PG_MAX_IDENT - PG_PREFIX.len()
            ),
        });
    }
    Ok(schema)
}

/// A plugin's own PostgreSQL database, which is also the name of its login role:
/// `<admin database>.<plugin>` (neither a plugin name nor its schema contains `.`), so hosts
/// sharing an admin database share plugin databases, and hosts on different admin databases of
/// one cluster never meet. Over 63 bytes, the name keeps its first bytes and ends with `~` and
/// 16 hex digits of a hash of the whole name (a plugin name never contains `~`).
///
/// # Errors
/// `invalid_name` for a plugin name too long for PostgreSQL; `invalid_config` for an admin
/// database whose name holds `"`, `$` or NUL (it is quoted into setup statements).
pub(crate) fn pg_database(admin_db: &str, plugin: &str) -> Result<String> {
    pg_schema(plugin)?;
    if admin_db.is_empty() || admin_db.contains(['"', '$', '\0']) {
        return Err(Error::InvalidConfig {
            key: "backends.tables.url".into(),
            message: format!(
                "the admin database name {admin_db:?} may not be empty or hold '\"', '$' or NUL"
            ),
        });
    }
    let plain = format!("{admin_db}.{plugin}");
    if plain.len() <= PG_MAX_IDENT {
        return Ok(plain);
    }
    // FNV-1a, 64 bits: stable across hosts and versions.
    let hash = plain.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let suffix = format!("~{hash:016x}");
    let mut keep = PG_MAX_IDENT - suffix.len();
    while !plain.is_char_boundary(keep) {
        keep -= 1;
    }
    Ok(format!("{}{suffix}", &plain[..keep]))
}

/// A plugin's table on PostgreSQL.
///
/// # Errors
/// `invalid_name` for an invalid logical name or an over-long schema.
pub(crate) fn pg_table(plugin: &str, logical: &str) -> Result<PhysicalTable> {
    validate_logical(Kind::Table, logical)?;
    Ok(PhysicalTable {
        schema: Some(pg_schema(plugin)?),
        name: logical.to_owned(),
    })
}

/// A plugin's SQLite database file name.
pub(crate) fn sqlite_file(plugin: &str) -> String {
    format!("{plugin}.sqlite3")
}

/// A plugin's table on SQLite (inside its own file).
///
/// # Errors
/// `invalid_name` for an invalid logical name.
pub(crate) fn sqlite_table(logical: &str) -> Result<PhysicalTable> {
    validate_logical(Kind::Table, logical)?;
    Ok(PhysicalTable {
        schema: None,
        name: logical.to_owned(),
    })
}

/// A plugin's Kafka topic: `<prefix>.<plugin>.<topic>`.
///
/// # Errors
/// `invalid_name` for an invalid logical name or a topic over 249 characters.
pub(crate) fn kafka_topic(prefix: &str, plugin: &str, logical: &str) -> Result<String> {
    validate_logical(Kind::Topic, logical)?;
    let topic = format!("{prefix}.{plugin}.{logical}");
    if topic.len() > KAFKA_MAX_TOPIC {
        return Err(Error::InvalidName {
            name: logical.to_owned(),
            reason: format!(
                "Kafka topic `{topic}` would be {} characters; the limit is {KAFKA_MAX_TOPIC}",
                topic.len()
            ),
        });
    }
    Ok(topic)
}

/// A plugin's key prefix in the shared S3 bucket: `<plugin>/<bucket>/`.
///
/// # Errors
/// `invalid_name` for an invalid logical name.
pub(crate) fn s3_prefix(plugin: &str, logical: &str) -> Result<String> {
    validate_logical(Kind::Bucket, logical)?;
    Ok(format!("{plugin}/{logical}/"))
}

/// Checks the key prefix of the S3 backend: empty, or up to 200 printable ASCII characters
/// ending in `/`, with no `\` and no empty, `.` or `..` segment.
///
/// # Errors
/// `invalid_config` naming `backends.buckets.prefix`.
pub(crate) fn validate_s3_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let ok = prefix.len() <= 200
        && prefix.ends_with('/')
        && !prefix.starts_with('/')
        && prefix
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'\\')
        && prefix[..prefix.len() - 1]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            key: "backends.buckets.prefix".into(),
            message: format!(
                "{prefix:?}: empty, or up to 200 printable ASCII characters ending in '/' (no '\\\\', no empty, '.' or '..' segments)"
            ),
        })
    }
}

/// Checks an S3 bucket name: 3 to 63 characters of `a-z 0-9 . -`, starting and ending with a
/// letter or digit, no `..`, not an IP address, none of the reserved prefixes and suffixes.
///
/// # Errors
/// `invalid_config` naming the rule.
pub(crate) fn validate_s3_bucket(name: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::InvalidConfig {
            key: "backends.buckets.bucket".into(),
            message: format!("S3 bucket name `{name}`: {reason}"),
        })
    };
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return fail("must be 3 to 63 characters");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
    {
        return fail("only a-z, 0-9, '.' and '-' are allowed (no underscores, no capitals)");
    }
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !edge(b[0]) || !edge(b[b.len() - 1]) {
        return fail("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return fail("must not contain '..'");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("must not be an IP address");
    }
    for p in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(p) {
            return fail("uses a prefix S3 reserves");
        }
    }
    for s in ["-s3alias", "--ol-s3", "--x-s3", ".mrap"] {
        if name.ends_with(s) {
            return fail("uses a suffix S3 reserves");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn the_naive_collision_does_not_happen() {
        let a = pg_table("a", "b_c").unwrap();
        let b = pg_table("a_b", "c").unwrap();
        assert_ne!(a, b);
        assert_ne!(a.sql(), b.sql());
        assert_ne!(
            kafka_topic("ph", "a", "b_c").unwrap(),
            kafka_topic("ph", "a_b", "c").unwrap()
        );
        assert_ne!(
            s3_prefix("a", "b_c").unwrap(),
            s3_prefix("a_b", "c").unwrap()
        );
        assert_ne!(
            s3_prefix("a", "b-c").unwrap(),
            s3_prefix("a-b", "c").unwrap()
        );
    }

    #[test]
    fn over_long_mappings_are_errors_not_truncations() {
        let long = "p".repeat(62);
        assert_eq!(
            pg_schema(&long).unwrap_err().code().as_str(),
            "invalid_name"
        );
        assert!(pg_schema(&"p".repeat(61)).is_ok());
        let t = "t".repeat(63);
        let prefix = "x".repeat(150);
        assert!(kafka_topic(&prefix, &"p".repeat(64), &t).is_err());
        assert_eq!(
            validate_logical(Kind::Table, &"a".repeat(64))
                .unwrap_err()
                .code()
                .as_str(),
            "invalid_name"
        );
    }

    #[test]
    fn plugin_databases_are_distinct_and_fit() {
        assert_eq!(
            pg_database("app", "tables-demo").unwrap(),
            "app.tables-demo"
        );
        let long = "d".repeat(60);
        let a = pg_database(&long, "a").unwrap();
        let b = pg_database(&long, "b").unwrap();
        assert_ne!(a, b);
        assert!(a.len() <= PG_MAX_IDENT && b.len() <= PG_MAX_IDENT);
        assert_eq!(a, pg_database(&long, "a").unwrap(), "stable");
        assert!(pg_database("x\"y", "a").is_err());
        assert!(pg_database("db", &"p".repeat(62)).is_err());
    }

    #[test]
    fn logical_names() {
        for ok in ["users", "a", "user-events_2"] {
            validate_logical(Kind::Table, ok).unwrap();
        }
        for bad in ["", "Users", "1x", "a b", "a.b", "a\"b", "a/b", "_x"] {
            assert!(validate_logical(Kind::Table, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn s3_bucket_rules() {
        validate_s3_bucket("plugin-host-data").unwrap();
        for bad in [
            "ab",
            "Has-Caps",
            "under_score",
            "-dash",
            "dot.",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "x-s3alias",
            &"a".repeat(64),
        ] {
            assert!(validate_s3_bucket(bad).is_err(), "{bad:?}");
        }
    }

    fn plugin_name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_-]{0,20}"
    }

    fn logical_name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_-]{0,20}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Different (plugin, name) pairs never share a physical name, on any backend, and every
        /// mapping is valid for its backend.
        #[test]
        fn mappings_are_injective_and_valid(pairs in proptest::collection::vec((plugin_name(), logical_name()), 1..64)) {
            let mut pg: HashMap<String, (String, String)> = HashMap::new();
            let mut kafka: HashMap<String, (String, String)> = HashMap::new();
            let mut s3: HashMap<String, (String, String)> = HashMap::new();
            let mut sqlite: HashMap<(String, String), (String, String)> = HashMap::new();
            for (plugin, name) in pairs {
                let pair = (plugin.clone(), name.clone());
                let t = pg_table(&plugin, &name).unwrap();
                prop_assert!(t.schema.as_ref().unwrap().len() <= PG_MAX_IDENT && t.name.len() <= PG_MAX_IDENT);
                if let Some(other) = pg.insert(t.sql(), pair.clone()) { prop_assert_eq!(&other, &pair); }
                let k = kafka_topic("plugin-host", &plugin, &name).unwrap();
                prop_assert!(k.len() <= KAFKA_MAX_TOPIC);
                prop_assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
                if let Some(other) = kafka.insert(k, pair.clone()) { prop_assert_eq!(&other, &pair); }
                let p = s3_prefix(&plugin, &name).unwrap();
                if let Some(other) = s3.insert(p, pair.clone()) { prop_assert_eq!(&other, &pair); }
                let f = (sqlite_file(&plugin), sqlite_table(&name).unwrap().sql());
                if let Some(other) = sqlite.insert(f, pair.clone()) { prop_assert_eq!(&other, &pair); }
            }
        }
    }

    #[test]
    fn s3_prefixes() {
        for ok in ["", "plugin-host/", "a/b/", "env-1/"] {
            validate_s3_prefix(ok).unwrap();
        }
        for bad in [
            "x", "/x/", "a//", "../", "./", "a/../", "a b/", "a\\b/", "é/", "a\n/",
        ] {
            assert!(validate_s3_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(validate_s3_prefix(&format!("{}/", "a".repeat(200))).is_err());
    }
}

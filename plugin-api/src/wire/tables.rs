//! Requests and answers of the tables service ([`Service::Tables`](super::Service::Tables)):
//! JSON both ways, written against logical table names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::Created;
use super::requests;

/// A row: column name to value.
pub type Row = Map<String, Value>;

requests! {
    Tables;
    Create(Create) => Created,
    Insert(Insert) => Inserted,
    Select(Select) => Rows,
    Update(Update) => Affected,
    Delete(Delete) => Affected,
    Count(Count) => Counted,
    Sql(Sql) => SqlRows,
}

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// A 64-bit integer.
    Integer,
    /// A floating-point number.
    Real,
    /// Text.
    Text,
    /// A boolean.
    Boolean,
    /// A JSON value.
    Json,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One column of a table to create. The flags travel only when set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// The column's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether it is the primary key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub primary_key: bool,
    /// Whether nulls are refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub not_null: bool,
    /// Whether duplicates are refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
}

/// How a [`Filter`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// `=` (`IS NULL` for a null value).
    Eq,
    /// `<>` (`IS NOT NULL` for a null value).
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `LIKE`.
    Like,
    /// `IN (...)`; the value is an array.
    In,
    /// `IS NULL`; the value is ignored.
    IsNull,
    /// `IS NOT NULL`; the value is ignored.
    NotNull,
}

/// A condition on one column; the conditions of one request are combined with AND.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The column.
    pub column: String,
    /// The comparison.
    pub op: FilterOp,
    /// What the column is compared with (`null` when the comparison takes none).
    #[serde(default)]
    pub value: Value,
}

/// One key of an ordering; `desc` travels only when set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The column.
    pub column: String,
    /// Descending instead of ascending.
    #[serde(default, skip_serializing_if = "is_false")]
    pub desc: bool,
}

/// Creates a declared table if it does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// The logical table.
    pub table: String,
    /// Its columns.
    pub columns: Vec<ColumnSpec>,
}

/// Inserts one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insert {
    /// The logical table.
    pub table: String,
    /// The row.
    pub row: Row,
}

/// Selects rows. `filter` and `order_by` always travel (possibly empty); `columns`, `limit`
/// and `offset` only when given, as plugin-api 0.1.0 sent them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// The logical table.
    pub table: String,
    /// The columns to return; every column when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Conditions.
    #[serde(default)]
    pub filter: Vec<Filter>,
    /// Order.
    #[serde(default)]
    pub order_by: Vec<Order>,
    /// At most this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Skips this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// Updates the rows matching `filter` (every row when it is empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// The logical table.
    pub table: String,
    /// Conditions.
    #[serde(default)]
    pub filter: Vec<Filter>,
    /// Column to new value.
    pub set: Row,
}

/// Deletes the rows matching `filter` (every row when it is empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    /// The logical table.
    pub table: String,
    /// Conditions.
    #[serde(default)]
    pub filter: Vec<Filter>,
}

/// Counts the rows matching `filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    /// The logical table.
    pub table: String,
    /// Conditions.
    #[serde(default)]
    pub filter: Vec<Filter>,
}

/// One raw SQL statement against logical table names, with `$1`, `$2`, ... parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// The statement.
    pub sql: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Vec<Value>,
}

impl Request {
    /// The logical table the request names; `None` for raw SQL, whose tables only the
    /// statement's parse tells.
    pub fn table(&self) -> Option<&str> {
        match self {
            Self::Create(Create { table, .. })
            | Self::Insert(Insert { table, .. })
            | Self::Select(Select { table, .. })
            | Self::Update(Update { table, .. })
            | Self::Delete(Delete { table, .. })
            | Self::Count(Count { table, .. }) => Some(table),
            Self::Sql(_) => None,
        }
    }
}

/// The answer to an [`Insert`]: the row as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inserted {
    /// Rows inserted (1).
    pub rows_affected: u64,
    /// The row as stored, generated columns included.
    pub row: Option<Row>,
}

/// The answer to a [`Select`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// The rows.
    pub rows: Vec<Row>,
}

/// The answer to an [`Update`] or a [`Delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// Rows updated or deleted.
    pub rows_affected: u64,
}

/// The answer to a [`Count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    /// Matching rows.
    pub count: u64,
}

/// The answer to a [`Sql`] statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlRows {
    /// Result rows.
    pub rows: Vec<Row>,
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn round_trip(request: Request) {
        let bytes = serde_json::to_vec(&request).unwrap();
        let back: Request = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, request);
    }

    fn filter(column: &str, op: FilterOp, value: Value) -> Filter {
        Filter {
            column: column.into(),
            op,
            value,
        }
    }

    #[test]
    fn every_request_round_trips() {
        let f = vec![filter("a", FilterOp::Eq, json!(1))];
        let row = json!({"email": "x", "n": 1}).as_object().unwrap().clone();
        round_trip(Request::Create(Create {
            table: "users".into(),
            columns: vec![
                ColumnSpec {
                    name: "id".into(),
                    ty: ColumnType::Integer,
                    primary_key: true,
                    not_null: false,
                    unique: false,
                },
                ColumnSpec {
                    name: "email".into(),
                    ty: ColumnType::Text,
                    primary_key: false,
                    not_null: true,
                    unique: true,
                },
            ],
        }));
        round_trip(Request::Insert(Insert {
            table: "users".into(),
            row: row.clone(),
        }));
        round_trip(Request::Select(Select {
            table: "users".into(),
            columns: vec!["email".into()],
            filter: f.clone(),
            order_by: vec![Order {
                column: "id".into(),
                desc: true,
            }],
            limit: Some(10),
            offset: Some(0),
        }));
        round_trip(Request::Update(Update {
            table: "users".into(),
            filter: f.clone(),
            set: row,
        }));
        round_trip(Request::Delete(Delete {
            table: "users".into(),
            filter: f.clone(),
        }));
        round_trip(Request::Count(Count {
            table: "users".into(),
            filter: f,
        }));
        round_trip(Request::Sql(Sql {
            sql: "SELECT 1".into(),
            params: vec![json!("a"), json!(null)],
        }));
    }

    /// The JSON plugin-api 0.1.0 sends (the `json!` literals of its `tables.rs`) decodes, and
    /// encoding the decoded request gives the same JSON document back.
    #[test]
    fn requests_of_plugin_api_1_1_decode_and_encode_alike() {
        let cases = [
            json!({"op": "create", "table": "users", "columns": [
                {"name": "id", "type": "integer", "primary_key": true},
                {"name": "email", "type": "text", "not_null": true, "unique": true},
                {"name": "score", "type": "real"}, {"name": "ok", "type": "boolean"},
                {"name": "doc", "type": "json"}]}),
            json!({"op": "insert", "table": "users", "row": {"email": "a@b"}}),
            json!({"op": "select", "table": "users", "filter": [], "order_by": []}),
            json!({"op": "select", "table": "users",
                   "filter": [{"column": "a", "op": "eq", "value": 1},
                              {"column": "b", "op": "is_null", "value": null},
                              {"column": "c", "op": "in", "value": [1, 2]},
                              {"column": "d", "op": "like", "value": "x%"}],
                   "order_by": [{"column": "a"}, {"column": "b", "desc": true}],
                   "columns": ["a"], "limit": 5, "offset": 2}),
            json!({"op": "update", "table": "users", "filter": [], "set": {"a": 1}}),
            json!({"op": "delete", "table": "users", "filter": [{"column": "a", "op": "ne", "value": 1}]}),
            json!({"op": "count", "table": "users", "filter": []}),
            json!({"op": "sql", "sql": "SELECT 1", "params": []}),
        ];
        for old in cases {
            let decoded: Request = serde_json::from_value(old.clone()).unwrap();
            assert_eq!(serde_json::to_value(&decoded).unwrap(), old);
        }
        // Fields the host always let a caller leave out.
        let short: Request = serde_json::from_value(json!({"op": "select", "table": "t"})).unwrap();
        assert_eq!(short.table(), Some("t"));
        let sql: Request = serde_json::from_value(json!({"op": "sql", "sql": "x"})).unwrap();
        assert_eq!(sql.table(), None);
        let f: Filter = serde_json::from_value(json!({"column": "a", "op": "not_null"})).unwrap();
        assert_eq!(f.value, Value::Null);
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            json!({"op": "drop", "table": "users"}),
            json!({"table": "users"}),
            json!({"op": "create", "table": "users", "columns": [], "extra": 1}),
            json!({"op": "create", "table": "users", "columns": [{"name": "a", "type": "blob"}]}),
            json!({"op": "insert", "table": "users", "row": [1]}),
            json!({"op": "select", "table": "users", "filter": [{"column": "a", "op": "regex"}]}),
            json!({"op": "count"}),
            json!(null),
        ] {
            assert!(
                serde_json::from_value::<Request>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_keep_their_shapes() {
        assert_eq!(
            serde_json::to_value(Created {
                created: "t".into()
            })
            .unwrap(),
            json!({"created": "t"})
        );
        assert_eq!(
            serde_json::to_value(Inserted {
                rows_affected: 1,
                row: None
            })
            .unwrap(),
            json!({"rows_affected": 1, "row": null})
        );
        assert_eq!(
            serde_json::to_value(Rows { rows: vec![] }).unwrap(),
            json!({"rows": []})
        );
        assert_eq!(
            serde_json::to_value(Affected { rows_affected: 3 }).unwrap(),
            json!({"rows_affected": 3})
        );
        assert_eq!(
            serde_json::to_value(Counted { count: 2 }).unwrap(),
            json!({"count": 2})
        );
        assert_eq!(
            serde_json::to_value(SqlRows {
                rows: vec![],
                rows_affected: 0
            })
            .unwrap(),
            json!({"rows": [], "rows_affected": 0})
        );
    }
}

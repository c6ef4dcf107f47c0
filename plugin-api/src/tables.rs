//! The tables repository as a plugin sees it: typed calls that need no SQL for the common cases,
//! and raw SQL with parameters for the rest, always written against the plugin's *logical*
//! table names. The host maps them to physical names and the database enforces that a plugin
//! reaches nothing it did not declare.
//!
//! ```ignore
//! let t = ctx.tables();
//! t.create("users", &[Column::integer("id").primary_key(), Column::text("email").not_null().unique()])?;
//! let row = t.insert("users", json!({ "email": "ada@example.com" }))?;
//! let rows = t.select("users", Query::new().filter(Filter::eq("email", "ada@example.com")).limit(10))?;
//! let n = t.update("users", &[Filter::eq("id", 1)], json!({ "email": "grace@example.com" }))?;
//! let out = t.sql("SELECT count(*) AS n FROM users WHERE email LIKE $1", &[json!("%@example.com")])?;
//! ```

use serde_json::{Value, json};

use crate::wire::tables::{
    ColumnSpec, ColumnType, Count, Create, Delete, FilterOp, Insert, Order, Select, Sql, Update,
};
use crate::{Context, Error, Result};

/// A column of a table to create.
#[derive(Debug, Clone)]
pub struct Column {
    spec: ColumnSpec,
}

impl Column {
    fn of(name: &str, ty: ColumnType) -> Self {
        Self {
            spec: ColumnSpec {
                name: name.to_owned(),
                ty,
                primary_key: false,
                not_null: false,
                unique: false,
            },
        }
    }

    /// A 64-bit integer column.
    pub fn integer(name: &str) -> Self {
        Self::of(name, ColumnType::Integer)
    }

    /// A floating-point column.
    pub fn real(name: &str) -> Self {
        Self::of(name, ColumnType::Real)
    }

    /// A text column.
    pub fn text(name: &str) -> Self {
        Self::of(name, ColumnType::Text)
    }

    /// A boolean column.
    pub fn boolean(name: &str) -> Self {
        Self::of(name, ColumnType::Boolean)
    }

    /// A JSON column.
    pub fn json(name: &str) -> Self {
        Self::of(name, ColumnType::Json)
    }

    /// Makes it the primary key (an integer primary key is generated when not given).
    pub fn primary_key(mut self) -> Self {
        self.spec.primary_key = true;
        self
    }

    /// Forbids nulls.
    pub fn not_null(mut self) -> Self {
        self.spec.not_null = true;
        self
    }

    /// Forbids duplicates.
    pub fn unique(mut self) -> Self {
        self.spec.unique = true;
        self
    }
}

/// A condition on one column; conditions of one call are combined with AND.
#[derive(Debug, Clone)]
pub struct Filter(crate::wire::tables::Filter);

impl Filter {
    fn op(column: &str, op: FilterOp, value: Value) -> Self {
        Self(crate::wire::tables::Filter {
            column: column.to_owned(),
            op,
            value,
        })
    }

    /// `column = value` (`IS NULL` for a null value).
    pub fn eq(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, FilterOp::Eq, value.into())
    }

    /// `column <> value`.
    pub fn ne(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, FilterOp::Ne, value.into())
    }

    /// `column < value`.
    pub fn lt(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, FilterOp::Lt, value.into())
    }

    /// `column <= value`.
    pub fn le(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, FilterOp::Le, value.into())
    }

    /// `column > value`.
    pub fn gt(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, FilterOp::Gt, value.into())
    }

    /// `column >= value`.
    pub fn ge(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, FilterOp::Ge, value.into())
    }

    /// `column LIKE pattern`.
    pub fn like(column: &str, pattern: &str) -> Self {
        Self::op(column, FilterOp::Like, json!(pattern))
    }

    /// `column IN (values...)`.
    pub fn is_in(column: &str, values: Vec<Value>) -> Self {
        Self::op(column, FilterOp::In, Value::Array(values))
    }

    /// `column IS NULL`.
    pub fn is_null(column: &str) -> Self {
        Self::op(column, FilterOp::IsNull, Value::Null)
    }
}

/// What a `select` returns: columns, conditions, order, page.
#[derive(Debug, Clone, Default)]
pub struct Query {
    columns: Vec<String>,
    filter: Vec<crate::wire::tables::Filter>,
    order_by: Vec<Order>,
    limit: Option<u64>,
    offset: Option<u64>,
}

impl Query {
    /// Every row, every column.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these columns.
    pub fn columns(mut self, columns: &[&str]) -> Self {
        self.columns = columns.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Adds a condition.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter.push(filter.0);
        self
    }

    /// Orders by a column (ascending).
    pub fn order_by(mut self, column: &str) -> Self {
        self.order_by.push(Order {
            column: column.to_owned(),
            desc: false,
        });
        self
    }

    /// Orders by a column, descending.
    pub fn order_by_desc(mut self, column: &str) -> Self {
        self.order_by.push(Order {
            column: column.to_owned(),
            desc: true,
        });
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips `n` rows.
    pub fn offset(mut self, n: u64) -> Self {
        self.offset = Some(n);
        self
    }
}

/// What raw SQL returned.
#[derive(Debug, Clone, Default)]
pub struct SqlResult {
    /// Result rows, one JSON object per row.
    pub rows: Vec<Value>,
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
}

/// The plugin's tables. Obtained with [`Context::tables`].
#[derive(Debug, Clone)]
pub struct Tables {
    ctx: Context,
}

fn filters(f: &[Filter]) -> Vec<crate::wire::tables::Filter> {
    f.iter().map(|x| x.0.clone()).collect()
}

fn objects(rows: Vec<crate::wire::tables::Row>) -> Vec<Value> {
    rows.into_iter().map(Value::Object).collect()
}

impl Tables {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// Creates a declared table if it does not exist.
    ///
    /// # Errors
    /// `table_access_denied` for a table the plugin may not use; `bad_request`; `sql_error`.
    pub fn create(&self, table: &str, columns: &[Column]) -> Result<()> {
        let columns = columns.iter().map(|c| c.spec.clone()).collect();
        self.ctx
            .request(Create {
                table: table.to_owned(),
                columns,
            })
            .map(drop)
    }

    /// Inserts a row (a JSON object of column → value); returns the row as stored.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error` (a unique violation, say).
    pub fn insert(&self, table: &str, row: Value) -> Result<Value> {
        let Value::Object(row) = row else {
            return Err(Error::new(
                "bad_request",
                "a row is a JSON object of column names to values",
            ));
        };
        let out = self.ctx.request(Insert {
            table: table.to_owned(),
            row,
        })?;
        Ok(out.row.map_or(Value::Null, Value::Object))
    }

    /// Selects rows.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn select(&self, table: &str, query: Query) -> Result<Vec<Value>> {
        let out = self.ctx.request(Select {
            table: table.to_owned(),
            columns: query.columns,
            filter: query.filter,
            order_by: query.order_by,
            limit: query.limit,
            offset: query.offset,
        })?;
        Ok(objects(out.rows))
    }

    /// Updates the rows matching `filter` (every row when it is empty); returns how many.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn update(&self, table: &str, filter: &[Filter], set: Value) -> Result<u64> {
        let Value::Object(set) = set else {
            return Err(Error::new(
                "bad_request",
                "`set` is a JSON object of column names to values",
            ));
        };
        let out = self.ctx.request(Update {
            table: table.to_owned(),
            filter: filters(filter),
            set,
        })?;
        Ok(out.rows_affected)
    }

    /// Deletes the rows matching `filter` (every row when it is empty); returns how many.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn delete(&self, table: &str, filter: &[Filter]) -> Result<u64> {
        let out = self.ctx.request(Delete {
            table: table.to_owned(),
            filter: filters(filter),
        })?;
        Ok(out.rows_affected)
    }

    /// Counts the rows matching `filter`.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn count(&self, table: &str, filter: &[Filter]) -> Result<u64> {
        let out = self.ctx.request(Count {
            table: table.to_owned(),
            filter: filters(filter),
        })?;
        Ok(out.count)
    }

    /// Runs one SELECT, INSERT, UPDATE or DELETE written against logical table names, with
    /// `$1`, `$2`, ... parameters.
    ///
    /// # Errors
    /// `table_access_denied` for any table the plugin may not use; `bad_request` for another
    /// kind of statement or several statements; `sql_error`.
    pub fn sql(&self, sql: &str, params: &[Value]) -> Result<SqlResult> {
        let out = self.ctx.request(Sql {
            sql: sql.to_owned(),
            params: params.to_vec(),
        })?;
        Ok(SqlResult {
            rows: objects(out.rows),
            rows_affected: out.rows_affected,
        })
    }
}

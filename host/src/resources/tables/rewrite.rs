//! Raw SQL from a plugin names tables by their logical names. This rewrites every table
//! reference to its physical name and refuses names the plugin may not use, with a friendly
//! error before the database sees the statement. It is not the wall: what a parser cannot see
//! (a table inside a function body or a `DO` block) the database refuses by itself.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, Statement, Value, Visit, Visitor,
};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::Dialect;

/// Why a statement was not rewritten.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RewriteError {
    /// It names a table the plugin may not use.
    Denied(String),
    /// It is not one statement.
    Invalid(String),
}

/// Collects the names of common table expressions, which are not tables.
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites `sql`: `resolve` gives the physical name parts of an allowed logical table. On
/// SQLite, `$N` placeholders become `?N`. A statement the parser cannot read is passed through
/// unchanged: the database is the wall and gives its own error.
pub(crate) fn rewrite(
    sql: &str,
    dialect: Dialect,
    resolve: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<String, RewriteError> {
    let parsed = match dialect {
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, sql),
        Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, sql),
    };
    let Ok(mut statements) = parsed else {
        return Ok(sql.to_owned());
    };
    if statements.len() != 1 {
        return Err(RewriteError::Invalid(format!(
            "send exactly one statement per call (found {})",
            statements.len()
        )));
    }
    // Raw SQL is for queries and data changes. Everything else (COPY, TRUNCATE, DDL, SET,
    // GRANT, ...) is refused here; tables are made with the typed `create`.
    match &statements[0] {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update { .. }
        | Statement::Delete(_) => {}
        other => {
            let kind = other
                .to_string()
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_uppercase();
            return Err(RewriteError::Invalid(format!(
                "{kind} is not allowed through `sql`: send SELECT, INSERT, UPDATE or DELETE (tables are made with the typed create)"
            )));
        }
    }
    let mut ctes = CteNames(HashSet::new());
    let _ = statements.visit(&mut ctes);
    let mut denied: Option<String> = None;
    let _ = sqlparser::ast::visit_relations_mut(&mut statements, |name: &mut ObjectName| {
        let ident = match name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => id,
            _ => {
                denied = Some(name.to_string());
                return ControlFlow::Break(());
            }
        };
        // Unquoted identifiers are case-insensitive in SQL; logical names are lowercase.
        let key = if ident.quote_style.is_some() {
            ident.value.clone()
        } else {
            ident.value.to_lowercase()
        };
        if ctes.0.contains(&key) {
            return ControlFlow::Continue(());
        }
        match resolve(&key) {
            Some(parts) => {
                *name = ObjectName(
                    parts
                        .into_iter()
                        .map(|p| ObjectNamePart::Identifier(Ident::with_quote('"', p)))
                        .collect(),
                );
                ControlFlow::Continue(())
            }
            None => {
                denied = Some(key);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(name) = denied {
        return Err(RewriteError::Denied(name));
    }
    if dialect == Dialect::Sqlite {
        let _ = sqlparser::ast::visit_expressions_mut(&mut statements, |e: &mut Expr| {
            if let Expr::Value(v) = e
                && let Value::Placeholder(p) = &mut v.value
                && let Some(n) = p.strip_prefix('$')
            {
                *p = format!("?{n}");
            }
            ControlFlow::<()>::Continue(())
        });
    }
    Ok(statements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> Result<String, RewriteError> {
        rewrite(sql, Dialect::Postgres, &|n| {
            (n == "users").then(|| vec!["p_demo".to_owned(), "users".to_owned()])
        })
    }

    #[test]
    fn rewrites_allowed_names_everywhere() {
        assert_eq!(
            pg("SELECT * FROM users WHERE id = $1").unwrap(),
            r#"SELECT * FROM "p_demo"."users" WHERE id = $1"#
        );
        assert_eq!(
            pg("SELECT * FROM users u JOIN users v ON u.id = v.id").unwrap(),
            r#"SELECT * FROM "p_demo"."users" AS u JOIN "p_demo"."users" AS v ON u.id = v.id"#
        );
        assert!(
            pg("INSERT INTO USERS (a) SELECT a FROM (SELECT 1 AS a) s")
                .unwrap()
                .contains(r#""p_demo"."users""#)
        );
        assert!(
            pg("WITH x AS (SELECT * FROM users) SELECT * FROM x")
                .unwrap()
                .contains("FROM x")
        );
    }

    #[test]
    fn refuses_other_names_however_written() {
        for sql in [
            "SELECT * FROM secrets",
            "SELECT * FROM users, secrets",
            r#"SELECT * FROM "secrets""#,
            "SELECT * FROM/**/secrets",
            "SELECT * FROM (secrets CROSS JOIN users)",
            "SELECT * FROM users WHERE id IN (SELECT id FROM secrets)",
            "SELECT * FROM pg_catalog.pg_authid",
            r#"SELECT * FROM "p_other"."secrets""#,
            "DELETE FROM secrets",
            "UPDATE secrets SET x = 1",
            "INSERT INTO secrets VALUES (1)",
        ] {
            assert!(
                matches!(pg(sql), Err(RewriteError::Denied(_))),
                "{sql}: {:?}",
                pg(sql)
            );
        }
        assert!(matches!(
            pg("SELECT 1; TRUNCATE other"),
            Err(RewriteError::Invalid(_))
        ));
        assert!(
            matches!(pg(r#"SELECT * FROM "Users""#), Err(RewriteError::Denied(_))),
            "quoted names keep their case"
        );
    }

    #[test]
    fn sqlite_placeholders_become_numbered_question_marks() {
        let out = rewrite(
            "SELECT * FROM users WHERE a = $1 AND b = $2",
            Dialect::Sqlite,
            &|n| (n == "users").then(|| vec!["users".to_owned()]),
        )
        .unwrap();
        assert_eq!(out, r#"SELECT * FROM "users" WHERE a = ?1 AND b = ?2"#);
    }
}

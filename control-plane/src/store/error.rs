//! What can go wrong in the store, classified so that the Admin API can answer
//! with Kong's codes: unique clash (409, code 5), broken reference (400, code 4),
//! database unreachable (503) and everything else (500, details only in logs).

use serde_json::{Map, Value};
use tollgate_shared::EntityKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refuses work right now; retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique key is already taken; `key` is Kong's rendering of the clashing key.
    #[error("UNIQUE violation detected on '{}'", lua_literal(&Value::Object(.key.clone())))]
    Unique {
        kind: EntityKind,
        key: Map<String, Value>,
    },
    #[error("primary key violation on key '{{id=\"{id}\"}}'")]
    PrimaryKey { kind: EntityKind, id: String },
    /// A foreign key names a parent that does not exist.
    #[error("the foreign key '{}' does not reference an existing '{}' entity.", lua_literal(.key), .parent.table_name())]
    MissingParent {
        field: String,
        parent: EntityKind,
        key: Value,
    },
    /// A parent cannot be deleted while a restricting child references it.
    #[error("an existing '{}' entity references this '{}' entity", .child.table_name(), .parent.table_name())]
    Referenced {
        parent: EntityKind,
        child: EntityKind,
    },
    /// A stored row that does not decode: a bug or manual tampering, never client input.
    #[error("stored {kind} row {id} is corrupt: {reason}")]
    Corrupt {
        kind: &'static str,
        id: String,
        reason: String,
    },
    /// A sealed secret that cannot be opened (key missing or value tampered).
    #[error(transparent)]
    Sealing(#[from] super::sealing::SealError),
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl StoreError {
    /// True when the database is unreachable rather than the request being wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        classify(err)
    }
}

/// Sorts a raw driver error into the variants above.
fn classify(err: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match err {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
            StoreError::Unavailable(err.to_string())
        }
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // PostgreSQL: class 08 connection exceptions, 57P0x shutdowns, 53300
            // too many connections; SQLite: 5 busy, 6 locked.
            let unavailable = code.starts_with("08")
                || code.starts_with("57P0")
                || code == "53300"
                || code == "5"
                || code == "6";
            if unavailable {
                return StoreError::Unavailable(db.to_string());
            }
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    let (table, column) = constraint_parts(db.constraint(), db.message());
                    let mut key = Map::new();
                    key.insert(column, Value::Null);
                    StoreError::Unique {
                        kind: kind_of_table(&table).unwrap_or(EntityKind::Services),
                        key,
                    }
                }
                _ => StoreError::Database(E::Database(db)),
            }
        }
        other => StoreError::Database(other),
    }
}

/// `(table, column)` from PostgreSQL's `<table>_<column>_key` constraint name or
/// SQLite's `UNIQUE constraint failed: <table>.<column>` message.
fn constraint_parts(constraint: Option<&str>, message: &str) -> (String, String) {
    if let Some(name) = constraint {
        for kind in EntityKind::ALL {
            let prefix = format!("{}_", kind.table_name());
            if let Some(rest) = name.strip_prefix(&prefix) {
                let column = rest.strip_suffix("_key").unwrap_or(rest);
                return (kind.table_name().into(), column.into());
            }
        }
    }
    if let Some((_, qualified)) = message.rsplit_once(": ") {
        if let Some((table, column)) = qualified.split_once('.') {
            return (table.into(), column.into());
        }
    }
    (String::new(), "id".into())
}

fn kind_of_table(table: &str) -> Option<EntityKind> {
    EntityKind::ALL
        .into_iter()
        .find(|k| k.table_name() == table)
}

/// Renders a JSON value as Kong's messages print Lua tables: `{name="x"}`,
/// keys sorted, `null` for JSON null.
pub fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}={}", lua_literal(&map[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn kong_messages() {
        let key =
            json!({"name": "basic-auth", "route": null, "service": {"id": "x"}, "consumer": null});
        let err = StoreError::Unique {
            kind: EntityKind::Plugins,
            key: key.as_object().unwrap().clone(),
        };
        assert_eq!(
            err.to_string(),
            "UNIQUE violation detected on '{consumer=null,name=\"basic-auth\",route=null,service={id=\"x\"}}'"
        );
        let err = StoreError::Referenced {
            parent: EntityKind::Services,
            child: EntityKind::Routes,
        };
        assert_eq!(
            err.to_string(),
            "an existing 'routes' entity references this 'services' entity"
        );
        let err = StoreError::MissingParent {
            field: "service".into(),
            parent: EntityKind::Services,
            key: json!({"id": "abc"}),
        };
        assert_eq!(
            err.to_string(),
            "the foreign key '{id=\"abc\"}' does not reference an existing 'services' entity."
        );
    }

    #[test]
    fn constraint_names() {
        assert_eq!(
            constraint_parts(Some("consumers_custom_id_key"), ""),
            ("consumers".into(), "custom_id".into())
        );
        assert_eq!(
            constraint_parts(None, "UNIQUE constraint failed: jwt_secrets.key"),
            ("jwt_secrets".into(), "key".into())
        );
    }
}

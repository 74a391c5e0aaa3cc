//! Reading the whole configuration (what [`super::Store::load_config`] and
//! [`super::WriteTxn::load_config`] return): every entity table, on the
//! caller's connection and so inside its transaction (one consistent read).
//!
//! Two things keep a large read fast. Rows are parsed straight from their JSON
//! text into the typed entities; only a row that may hold a sealed secret goes
//! through a `serde_json::Value` first, because opening it edits the JSON.
//! And parsing runs on the blocking pool while the next table is fetched, so
//! the database round trips and the JSON work overlap.

use super::sealing::{self, Keyring};
use super::StoreError;
use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tollgate_shared::{Config, EntityKind};

/// Every entity, read on `conn`.
pub(super) async fn read_config(
    conn: &mut AnyConnection,
    keyring: Option<Arc<Keyring>>,
) -> Result<Config, StoreError> {
    // Each fetch waits for the database; the parse of the table before it
    // runs meanwhile on another thread.
    let services = parse_later(
        EntityKind::Services,
        &keyring,
        fetch(conn, EntityKind::Services).await?,
    );
    let routes = parse_later(
        EntityKind::Routes,
        &keyring,
        fetch(conn, EntityKind::Routes).await?,
    );
    let consumers = parse_later(
        EntityKind::Consumers,
        &keyring,
        fetch(conn, EntityKind::Consumers).await?,
    );
    let plugins = parse_later(
        EntityKind::Plugins,
        &keyring,
        fetch(conn, EntityKind::Plugins).await?,
    );
    let jwt_secrets = parse_later(
        EntityKind::JwtSecrets,
        &keyring,
        fetch(conn, EntityKind::JwtSecrets).await?,
    );
    let certificates = parse_later(
        EntityKind::Certificates,
        &keyring,
        fetch(conn, EntityKind::Certificates).await?,
    );
    let snis = parse_later(
        EntityKind::Snis,
        &keyring,
        fetch(conn, EntityKind::Snis).await?,
    );
    let keyauth_credentials = parse_later(
        EntityKind::KeyauthCredentials,
        &keyring,
        fetch(conn, EntityKind::KeyauthCredentials).await?,
    );
    let basicauth_credentials = parse_later(
        EntityKind::BasicauthCredentials,
        &keyring,
        fetch(conn, EntityKind::BasicauthCredentials).await?,
    );
    let acls = parse_later(
        EntityKind::Acls,
        &keyring,
        fetch(conn, EntityKind::Acls).await?,
    );
    Ok(Config {
        services: joined(services).await?,
        routes: joined(routes).await?,
        consumers: joined(consumers).await?,
        plugins: joined(plugins).await?,
        jwt_secrets: joined(jwt_secrets).await?,
        certificates: joined(certificates).await?,
        snis: joined(snis).await?,
        keyauth_credentials: joined(keyauth_credentials).await?,
        basicauth_credentials: joined(basicauth_credentials).await?,
        acls: joined(acls).await?,
    })
}

async fn fetch(conn: &mut AnyConnection, kind: EntityKind) -> Result<Vec<AnyRow>, StoreError> {
    if kind == EntityKind::KeyauthCredentials {
        // An expired key is never shipped to data planes nor exported; the
        // purge (`Store::purge_expired`) deletes the row soon after.
        let sql = format!(
            "SELECT id, data FROM {} WHERE expires_at IS NULL OR expires_at > $1 ORDER BY id",
            kind.table_name()
        );
        return Ok(sqlx::query(&sql)
            .bind(tollgate_shared::entity::now_seconds())
            .fetch_all(&mut *conn)
            .await?);
    }
    let sql = format!("SELECT id, data FROM {} ORDER BY id", kind.table_name());
    Ok(sqlx::query(&sql).fetch_all(&mut *conn).await?)
}

type Parsed<T> = JoinHandle<Result<Vec<T>, StoreError>>;

/// Parses `rows` on the blocking pool: JSON parsing is CPU work that would
/// otherwise hold a runtime thread for the whole table.
fn parse_later<T: DeserializeOwned + Send + 'static>(
    kind: EntityKind,
    keyring: &Option<Arc<Keyring>>,
    rows: Vec<AnyRow>,
) -> Parsed<T> {
    let keyring = keyring.clone();
    tokio::task::spawn_blocking(move || parse_rows(kind, keyring.as_deref(), &rows))
}

async fn joined<T>(parsed: Parsed<T>) -> Result<Vec<T>, StoreError> {
    parsed
        .await
        .map_err(|e| StoreError::Unavailable(format!("reading the configuration aborted: {e}")))?
}

fn parse_rows<T: DeserializeOwned>(
    kind: EntityKind,
    keyring: Option<&Keyring>,
    rows: &[AnyRow],
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|row| {
            let text: &str = row.try_get("data")?;
            parse_entity(keyring, kind, text).map_err(|reason| StoreError::Corrupt {
                kind: kind.table_name(),
                id: row.try_get::<String, _>("id").unwrap_or_default(),
                reason,
            })
        })
        .collect::<Result<Vec<T>, StoreError>>()
}

/// One stored entity, secrets opened. The error is the reason it is corrupt.
fn parse_entity<T: DeserializeOwned>(
    keyring: Option<&Keyring>,
    kind: EntityKind,
    text: &str,
) -> Result<T, String> {
    if !may_hold_sealed(kind, text) {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let stored = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let opened = sealing::open_entity(keyring, kind, stored).map_err(|e| e.to_string())?;
    serde_json::from_value(opened).map_err(|e| e.to_string())
}

/// Whether opening sealed secrets could change this row. A sealed value
/// starts with the sealing prefix, which appears verbatim in the text unless
/// the JSON spells characters with `\u` escapes, so both are looked for.
fn may_hold_sealed(kind: EntityKind, text: &str) -> bool {
    sealing::has_secret_fields(kind) && (text.contains(sealing::PREFIX) || text.contains("\\u"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;
    use tollgate_shared::{JwtSecret, Service};

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn jwt() -> serde_json::Value {
        json!({
            "id": "5f0c6a8e-8a4c-4d36-9a0e-6a1f3c2b1d00",
            "created_at": 1,
            "consumer": {"id": "5f0c6a8e-8a4c-4d36-9a0e-6a1f3c2b1d01"},
            "key": "k",
            "secret": "s3cr3t",
            "rsa_public_key": null,
            "algorithm": "HS256",
            "tags": null
        })
    }

    #[test]
    fn plain_rows_parse_directly_and_sealed_rows_are_opened() {
        let keyring = Keyring::parse(KEY).unwrap();
        let plain = jwt().to_string();
        assert!(!may_hold_sealed(EntityKind::JwtSecrets, &plain));
        let direct: JwtSecret = parse_entity(None, EntityKind::JwtSecrets, &plain).unwrap();
        assert_eq!(direct.secret.as_deref(), Some("s3cr3t"));

        let sealed = sealing::seal_entity(Some(&keyring), EntityKind::JwtSecrets, &jwt()).unwrap();
        let text = sealed.to_string();
        assert!(may_hold_sealed(EntityKind::JwtSecrets, &text));
        let opened: JwtSecret =
            parse_entity(Some(&keyring), EntityKind::JwtSecrets, &text).unwrap();
        assert_eq!(opened, direct);
        // Without the key the row is reported, not returned sealed.
        let err = parse_entity::<JwtSecret>(None, EntityKind::JwtSecrets, &text).unwrap_err();
        assert!(err.contains("secret"), "{err}");

        // A prefix spelled with escapes is still seen.
        let escaped = text.replace("$tg1$", "\\u0024tg1$");
        assert!(may_hold_sealed(EntityKind::JwtSecrets, &escaped));
        let opened: JwtSecret =
            parse_entity(Some(&keyring), EntityKind::JwtSecrets, &escaped).unwrap();
        assert_eq!(opened, direct);
    }

    #[test]
    fn kinds_without_secrets_never_take_the_value_path() {
        let text = r#"{"name": "$tg1$x"}"#;
        assert!(!may_hold_sealed(EntityKind::Services, text));
        assert!(parse_entity::<Service>(None, EntityKind::Services, "{").is_err());
    }
}

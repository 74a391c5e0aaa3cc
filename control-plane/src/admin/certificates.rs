//! Kong's `snis` shorthand on `POST /certificates`: a list of names that
//! creates one SNI entity per name with the certificate, in the same
//! transaction, answered back (sorted) as the certificate's `snis`.

use super::error::ApiError;
use crate::schema_bridge::validate_entity;
use crate::store::WriteTxn;
use serde_json::{json, Value};
use tollgate_shared::{EntityKind, FieldErrors};

fn snis_violation(message: String) -> ApiError {
    let mut errors = FieldErrors::new();
    errors.add("snis", message);
    ApiError::Schema(errors)
}

/// Takes `snis` out of a certificate's arguments: `None` when absent, the
/// sorted names otherwise (`null` is none). A form's single `snis=a` is one
/// name. A name given twice is Kong's "is duplicated" violation.
pub fn take_sni_names(args: &mut Value) -> Result<Option<Vec<String>>, ApiError> {
    let Some(given) = args.as_object_mut().and_then(|map| map.remove("snis")) else {
        return Ok(None);
    };
    let items = match given {
        Value::Null => Vec::new(),
        Value::String(name) => vec![Value::String(name)],
        Value::Array(items) => items,
        _ => return Err(snis_violation("expected an array".into())),
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(name) = item else {
            return Err(snis_violation("expected an array of strings".into()));
        };
        if names.contains(&name) {
            return Err(snis_violation(format!("{name} is duplicated")));
        }
        names.push(name);
    }
    names.sort();
    Ok(Some(names))
}

/// Refuses names another certificate already serves, before anything is
/// written (Kong checks the whole list first).
pub async fn check_names_are_free(txn: &mut WriteTxn, names: &[String]) -> Result<(), ApiError> {
    for name in names {
        if let Some(existing) = txn.find_by(EntityKind::Snis, "name", name).await? {
            let owner = existing["certificate"]["id"].as_str().unwrap_or_default();
            return Err(snis_violation(format!(
                "{name} already associated with existing certificate '{owner}'"
            )));
        }
    }
    Ok(())
}

/// Creates the SNI entities of `certificate_id`; returns them for the audit log.
pub async fn insert_snis(
    txn: &mut WriteTxn,
    certificate_id: &str,
    names: &[String],
) -> Result<Vec<Value>, ApiError> {
    let mut created = Vec::with_capacity(names.len());
    for name in names {
        let sni = validate_entity(
            EntityKind::Snis,
            &json!({ "name": name, "certificate": { "id": certificate_id } }),
        )
        .map_err(ApiError::Schema)?;
        txn.insert(EntityKind::Snis, &sni).await?;
        created.push(sni);
    }
    Ok(created)
}

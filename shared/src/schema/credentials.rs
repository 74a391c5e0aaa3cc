//! The schemas of the key-auth, basic-auth and acl credentials, with Kong's
//! fields, requirements and generated values
//! (kong/plugins/{key-auth,basic-auth,acl}/daos.lua).

use super::engine::{Auto, Field, Record, Rule};
use super::typedefs::{self, MAX_KEY_LEN};
use serde_json::Value;

/// `keyauth_credentials`: `key` is unique and generated when absent.
pub(crate) fn keyauth_credentials() -> Record {
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        Field::foreign("consumer", "consumers").required(),
        typedefs::unique_string("key").auto(Auto::RandomString),
        typedefs::tags(),
        // Tollgate's stored form of Kong's `ttl` (the Admin API converts).
        typedefs::timestamp_field("expires_at"),
    ])
}

/// `basicauth_credentials`: `username` unique; `password` is stored as
/// Kong's salted hash, computed by the writer before validation.
pub(crate) fn basicauth_credentials() -> Record {
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        Field::foreign("consumer", "consumers").required(),
        typedefs::unique_string("username").required(),
        Field::string("password")
            .required()
            .rule(Rule::LenMax(MAX_KEY_LEN)),
        typedefs::tags(),
    ])
}

/// `acls`: a consumer's group; (consumer, group) is unique in the store.
pub(crate) fn acls() -> Record {
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        Field::foreign("consumer", "consumers").required(),
        Field::string("group")
            .required()
            .rule(Rule::LenMax(MAX_KEY_LEN))
            .rule(Rule::Custom(check_group)),
        typedefs::tags(),
    ])
}

/// A group is sent upstream in `X-Consumer-Groups`: no control characters.
fn check_group(value: &Value) -> Result<(), String> {
    let text = value.as_str().unwrap_or_default();
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

//! Kong's declarative format (`kong.yml`, `POST /config`): parse YAML or JSON
//! text into a validated [`Config`], and render a config back as that format.
//!
//! Accepted: `_format_version` "3.0" (required; "1.1" and "2.1" too, with their
//! route paths migrated to 3.x form), `_transform`, `_comment`, `_ignore`, and
//! the collections `services`, `routes`, `consumers`, `plugins`,
//! `jwt_secrets`, `keyauth_credentials`, `basicauth_credentials`, `acls`,
//! `certificates`, `snis`. Children may be nested in their parent without the
//! foreign key (routes and plugins in services, plugins in routes and
//! consumers, credentials and acls in consumers, snis in certificates);
//! top-level children name their parent by id or endpoint key (`service:
//! my-svc`, `consumer: alice`, `route: my-route`) or as `{id: …}`.
//!
//! Determinism: the same file always gives the same config and hash.
//! * Missing ids are UUID v5, as Kong derives them (namespace per entity type), from the
//!   endpoint key when written, a plugin's cache key (name and resolved
//!   route/service/consumer ids) otherwise, or a digest of the entity's
//!   content for entities with neither (Kong would pick random ids there).
//!   Tollgate's plugin cache key uses resolved ids even for top-level
//!   references by name, so nesting and referencing give the same ids.
//! * Missing `created_at`/`updated_at` are [`DEFAULT_TIMESTAMP`] (1, the
//!   smallest valid timestamp): Kong stamps the load time, which would make
//!   every load of the same file a new config with a new hash.
//! * Values the schema generates at random (a jwt secret's `secret` or `key`,
//!   a key-auth `key`, when omitted) stay random: write them in the file to
//!   keep it reproducible.
//! * Basic-auth passwords are clear text and hashed on load (Kong's
//!   `_transform`, default true); with `_transform: false` (what export
//!   writes) they are taken as hashes already.
//!
//! Every entity goes through [`crate::schema::validate_entity`]; all problems
//! (schema violations, unknown references, duplicate unique keys) are
//! reported together, placed where they occur in the file.

mod document;
mod errors;
mod ids;
mod load;
mod render;
mod route_path;

pub use errors::{EntityError, EntityErrorKind, FlattenedError, InvalidConfig, CODE, NAME};
pub use render::{render_value, render_yaml};

/// `created_at`/`updated_at` of entities whose file does not give them
/// (0 is not a valid timestamp for the schema).
pub const DEFAULT_TIMESTAMP: i64 = 1;

use crate::config::Config;
use crate::entity::EntityKind;
use crate::validation::FieldErrors;
use serde_json::{json, Value};

/// Why a declarative file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeclarativeError {
    /// The text is not YAML/JSON, or not an object at the top.
    #[error("failed parsing declarative configuration: {0}")]
    Syntax(String),
    /// The document parsed but describes an invalid config.
    #[error("{}", .0.message())]
    Invalid(InvalidConfig),
}

impl DeclarativeError {
    /// The 400 body Kong's `POST /config` answers (code 14);
    /// `flatten_errors` adds `flattened_errors` for invalid configs.
    pub fn to_body(&self, flatten_errors: bool) -> Value {
        match self {
            DeclarativeError::Syntax(_) => {
                let message = self.to_string();
                json!({
                    "code": CODE,
                    "name": NAME,
                    "message": message,
                    "fields": { "error": message },
                })
            }
            DeclarativeError::Invalid(invalid) => invalid.to_body(flatten_errors),
        }
    }
}

/// Parses declarative YAML or JSON text into a validated config.
pub fn parse(text: &str) -> Result<Config, DeclarativeError> {
    parse_with(text, crate::schema::validate_entity)
}

/// Parses an already-decoded document (a JSON body that is itself the config).
pub fn parse_value(document: &Value) -> Result<Config, DeclarativeError> {
    parse_value_with(document, crate::schema::validate_entity)
}

/// [`parse`] with another per-entity schema check (same contract as
/// `schema::validate_entity`: the complete entity, or every error).
pub fn parse_with<V>(text: &str, validate: V) -> Result<Config, DeclarativeError>
where
    V: Fn(EntityKind, &Value) -> Result<Value, FieldErrors>,
{
    let document = document::read(text).map_err(DeclarativeError::Syntax)?;
    parse_value_with(&document, validate)
}

/// [`parse_value`] with another per-entity schema check.
pub fn parse_value_with<V>(document: &Value, validate: V) -> Result<Config, DeclarativeError>
where
    V: Fn(EntityKind, &Value) -> Result<Value, FieldErrors>,
{
    if !document.is_object() {
        return Err(DeclarativeError::Syntax("expected an object".into()));
    }
    load::load(document, &validate).map_err(DeclarativeError::Invalid)
}

#[cfg(test)]
mod tests;

//! Deterministic ids for entities a declarative file leaves without one, the
//! way Kong derives them: UUID v5 in a namespace per entity type, itself the
//! UUID v5 of the type's table name in Kong's fixed `_entities` namespace.
//! With the same key, Tollgate and Kong give the same id (e.g. a service named
//! `echo`).

use crate::entity::EntityKind;
use uuid::Uuid;

/// Kong's `_entities` namespace (`kong/db/schema/others/declarative_config.lua`).
const ENTITIES_NAMESPACE: Uuid = Uuid::from_u128(0xfd02801f_0957_4a15_a55a_c8d9606f30b5);

/// The id of the entity of `kind` identified by `key` (endpoint key or cache key).
pub(super) fn generate(kind: EntityKind, key: &str) -> Uuid {
    let namespace = Uuid::new_v5(&ENTITIES_NAMESPACE, kind.table_name().as_bytes());
    Uuid::new_v5(&namespace, key.as_bytes())
}

//! How each entity kind maps onto its table: the unique columns, the foreign
//! key columns and what deleting a parent does to them.

use tollgate_shared::EntityKind;

/// What a foreign key does when its parent row is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    Cascade,
    Restrict,
}

/// A foreign key field of an entity (`service` → column `service_id`).
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    /// The entity's JSON field, rendered as `{"id": …}`.
    pub field: &'static str,
    pub column: &'static str,
    pub parent: EntityKind,
    pub on_delete: OnDelete,
}

/// One entity table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub kind: EntityKind,
    /// Top-level string fields with a UNIQUE column of the same name.
    pub unique: &'static [&'static str],
    /// Unique fields that are secrets (a key-auth `key`): their column holds
    /// the lowercase hex SHA-256 of the value, never the value, which is
    /// sealed in `data` like every secret. Lookups digest what they look for.
    pub digested: &'static [&'static str],
    pub foreign: &'static [Foreign],
    /// Fields that together are unique (Kong's `cache_key`), kept in a
    /// `cache_key` column as the values joined by `|` (a reference by its id,
    /// null as empty). Empty: the table has no such column.
    pub cache_key: &'static [&'static str],
}

impl Table {
    /// The value stored in the column of unique field `field`.
    pub fn column_value(&self, field: &str, value: &str) -> String {
        if self.digested.contains(&field) {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(value.as_bytes()))
        } else {
            value.to_string()
        }
    }
}

const fn fk(
    field: &'static str,
    column: &'static str,
    parent: EntityKind,
    on_delete: OnDelete,
) -> Foreign {
    Foreign {
        field,
        column,
        parent,
        on_delete,
    }
}

const SERVICES: Table = Table {
    kind: EntityKind::Services,
    unique: &["name"],
    digested: &[],
    cache_key: &[],
    foreign: &[fk(
        "client_certificate",
        "client_certificate_id",
        EntityKind::Certificates,
        OnDelete::Restrict,
    )],
};
const ROUTES: Table = Table {
    kind: EntityKind::Routes,
    unique: &["name"],
    digested: &[],
    cache_key: &[],
    foreign: &[fk(
        "service",
        "service_id",
        EntityKind::Services,
        OnDelete::Restrict,
    )],
};
const CONSUMERS: Table = Table {
    kind: EntityKind::Consumers,
    unique: &["username", "custom_id"],
    digested: &[],
    cache_key: &[],
    foreign: &[],
};
const PLUGINS: Table = Table {
    kind: EntityKind::Plugins,
    unique: &["instance_name"],
    digested: &[],
    // One plugin of a name per scope.
    cache_key: &["name", "route", "service", "consumer"],
    foreign: &[
        fk("route", "route_id", EntityKind::Routes, OnDelete::Cascade),
        fk(
            "service",
            "service_id",
            EntityKind::Services,
            OnDelete::Cascade,
        ),
        fk(
            "consumer",
            "consumer_id",
            EntityKind::Consumers,
            OnDelete::Cascade,
        ),
    ],
};
const JWT_SECRETS: Table = Table {
    kind: EntityKind::JwtSecrets,
    unique: &["key"],
    digested: &[],
    cache_key: &[],
    foreign: &[fk(
        "consumer",
        "consumer_id",
        EntityKind::Consumers,
        OnDelete::Cascade,
    )],
};
const CERTIFICATES: Table = Table {
    kind: EntityKind::Certificates,
    unique: &[],
    digested: &[],
    cache_key: &[],
    foreign: &[],
};
const SNIS: Table = Table {
    kind: EntityKind::Snis,
    unique: &["name"],
    digested: &[],
    cache_key: &[],
    foreign: &[fk(
        "certificate",
        "certificate_id",
        EntityKind::Certificates,
        OnDelete::Cascade,
    )],
};

const CONSUMER_CASCADE: &[Foreign] = &[fk(
    "consumer",
    "consumer_id",
    EntityKind::Consumers,
    OnDelete::Cascade,
)];
const KEYAUTH_CREDENTIALS: Table = Table {
    kind: EntityKind::KeyauthCredentials,
    unique: &["key"],
    digested: &["key"],
    cache_key: &[],
    foreign: CONSUMER_CASCADE,
};
const BASICAUTH_CREDENTIALS: Table = Table {
    kind: EntityKind::BasicauthCredentials,
    unique: &["username"],
    digested: &[],
    cache_key: &[],
    foreign: CONSUMER_CASCADE,
};
const ACLS: Table = Table {
    kind: EntityKind::Acls,
    unique: &[],
    digested: &[],
    // A consumer is in a group once.
    cache_key: &["consumer", "group"],
    foreign: CONSUMER_CASCADE,
};

/// The table of `kind`.
pub fn table(kind: EntityKind) -> &'static Table {
    match kind {
        EntityKind::Services => &SERVICES,
        EntityKind::Routes => &ROUTES,
        EntityKind::Consumers => &CONSUMERS,
        EntityKind::Plugins => &PLUGINS,
        EntityKind::JwtSecrets => &JWT_SECRETS,
        EntityKind::Certificates => &CERTIFICATES,
        EntityKind::Snis => &SNIS,
        EntityKind::KeyauthCredentials => &KEYAUTH_CREDENTIALS,
        EntityKind::BasicauthCredentials => &BASICAUTH_CREDENTIALS,
        EntityKind::Acls => &ACLS,
    }
}

/// Parents before children: the order to insert a whole config in.
pub const INSERT_ORDER: [EntityKind; 10] = [
    EntityKind::Certificates,
    EntityKind::Snis,
    EntityKind::Services,
    EntityKind::Routes,
    EntityKind::Consumers,
    EntityKind::JwtSecrets,
    EntityKind::KeyauthCredentials,
    EntityKind::BasicauthCredentials,
    EntityKind::Acls,
    EntityKind::Plugins,
];

/// Every foreign key that points at `parent`, as (child table, foreign key).
pub fn children_of(parent: EntityKind) -> impl Iterator<Item = (&'static Table, &'static Foreign)> {
    EntityKind::ALL.into_iter().flat_map(move |kind| {
        let t = table(kind);
        t.foreign
            .iter()
            .filter(move |f| f.parent == parent)
            .map(move |f| (t, f))
    })
}

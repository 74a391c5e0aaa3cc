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
    pub foreign: &'static [Foreign],
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
    foreign: &[],
};
const PLUGINS: Table = Table {
    kind: EntityKind::Plugins,
    unique: &["instance_name"],
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
    foreign: &[],
};
const SNIS: Table = Table {
    kind: EntityKind::Snis,
    unique: &["name"],
    foreign: &[fk(
        "certificate",
        "certificate_id",
        EntityKind::Certificates,
        OnDelete::Cascade,
    )],
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
    }
}

/// Parents before children: the order to insert a whole config in.
pub const INSERT_ORDER: [EntityKind; 7] = [
    EntityKind::Certificates,
    EntityKind::Snis,
    EntityKind::Services,
    EntityKind::Routes,
    EntityKind::Consumers,
    EntityKind::JwtSecrets,
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

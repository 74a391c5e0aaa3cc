//! From a parsed declarative document to a [`Config`]: collect the entities
//! (top-level and nested), resolve references, give ids to those without one,
//! validate each entity with the schema, check uniqueness, and either build the
//! config or report every problem at once.

use super::errors::{EntityError, EntityErrorKind, ErrorTree, FlattenedError, InvalidConfig, Seg};
use super::{ids, route_path};
use crate::config::Config;
use crate::entity::{
    basic_auth_password_hash, Acl, BasicauthCredential, Certificate, Consumer, EntityKind,
    JwtSecret, KeyauthCredential, Plugin, Route, Service, Sni,
};
use crate::hash::canonical_json;
use crate::validation::FieldErrors;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The formats Kong accepts; "1.1" and "2.1" get their route paths migrated.
const FORMAT_VERSIONS: [&str; 3] = ["1.1", "2.1", "3.0"];

/// Entity collections of Kong's format that Tollgate does not implement. An
/// empty or null one is accepted (tools emit them); entries are refused.
const UNSUPPORTED: [&str; 14] = [
    "upstreams",
    "targets",
    "ca_certificates",
    "vaults",
    "keys",
    "key_sets",
    "hmacauth_credentials",
    "oauth2_credentials",
    "consumer_groups",
    "filter_chains",
    "workspaces",
    "parameters",
    "partials",
    "licenses",
];

/// A foreign key: `child.field` references a `parent`; `nested` children may
/// also be written inside their parent under the child's table name.
struct Relation {
    child: EntityKind,
    field: &'static str,
    parent: EntityKind,
    nested: bool,
}

const RELATIONS: [Relation; 10] = [
    Relation {
        child: EntityKind::Routes,
        field: "service",
        parent: EntityKind::Services,
        nested: true,
    },
    Relation {
        child: EntityKind::Plugins,
        field: "route",
        parent: EntityKind::Routes,
        nested: true,
    },
    Relation {
        child: EntityKind::Plugins,
        field: "service",
        parent: EntityKind::Services,
        nested: true,
    },
    Relation {
        child: EntityKind::Plugins,
        field: "consumer",
        parent: EntityKind::Consumers,
        nested: true,
    },
    Relation {
        child: EntityKind::JwtSecrets,
        field: "consumer",
        parent: EntityKind::Consumers,
        nested: true,
    },
    Relation {
        child: EntityKind::KeyauthCredentials,
        field: "consumer",
        parent: EntityKind::Consumers,
        nested: true,
    },
    Relation {
        child: EntityKind::BasicauthCredentials,
        field: "consumer",
        parent: EntityKind::Consumers,
        nested: true,
    },
    Relation {
        child: EntityKind::Acls,
        field: "consumer",
        parent: EntityKind::Consumers,
        nested: true,
    },
    Relation {
        child: EntityKind::Snis,
        field: "certificate",
        parent: EntityKind::Certificates,
        nested: true,
    },
    Relation {
        child: EntityKind::Services,
        field: "client_certificate",
        parent: EntityKind::Certificates,
        nested: false,
    },
];

/// Parents before children, so every reference resolves against final ids.
const RESOLVE_ORDER: [EntityKind; 10] = [
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

fn kind_for_table(table: &str) -> Option<EntityKind> {
    EntityKind::ALL
        .into_iter()
        .find(|k| k.table_name() == table)
}

fn has_updated_at(kind: EntityKind) -> bool {
    !matches!(
        kind,
        EntityKind::JwtSecrets
            | EntityKind::KeyauthCredentials
            | EntityKind::BasicauthCredentials
            | EntityKind::Acls
    )
}

/// The schema check applied to each entity (normally `schema::validate_entity`).
pub(super) type Validate<'a> = &'a dyn Fn(EntityKind, &Value) -> Result<Value, FieldErrors>;

#[derive(Debug, Clone, Copy)]
struct ParentLink {
    item: usize,
    field: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference {
    Absent,
    Resolved(Uuid),
    Unresolved,
}

/// One entity of the file, wherever it was written.
struct Item {
    kind: EntityKind,
    location: Vec<Seg>,
    /// The entity's own fields as written (nested collections and `_comment`/`_ignore` removed).
    input: Map<String, Value>,
    parent: Option<ParentLink>,
    id: Option<Uuid>,
    id_generated: bool,
    references: Vec<(&'static str, Reference)>,
    errors: FieldErrors,
    conflicts: Vec<String>,
}

#[derive(Default)]
struct Lookup {
    by_key: HashMap<String, Uuid>,
    ids: HashSet<Uuid>,
}

impl Lookup {
    fn find(&self, reference: &str) -> Option<Uuid> {
        self.by_key
            .get(reference)
            .copied()
            .or_else(|| self.find_id(reference))
    }

    fn find_id(&self, reference: &str) -> Option<Uuid> {
        Uuid::parse_str(reference)
            .ok()
            .filter(|id| self.ids.contains(id))
    }
}

/// Validated entities, with the index of the item each came from.
#[derive(Default)]
struct Built {
    services: Vec<(usize, Service)>,
    routes: Vec<(usize, Route)>,
    consumers: Vec<(usize, Consumer)>,
    plugins: Vec<(usize, Plugin)>,
    jwt_secrets: Vec<(usize, JwtSecret)>,
    certificates: Vec<(usize, Certificate)>,
    snis: Vec<(usize, Sni)>,
    keyauth_credentials: Vec<(usize, KeyauthCredential)>,
    basicauth_credentials: Vec<(usize, BasicauthCredential)>,
    acls: Vec<(usize, Acl)>,
}

pub(super) fn load(document: &Value, validate: Validate<'_>) -> Result<Config, InvalidConfig> {
    let mut loader = Loader {
        items: Vec::new(),
        tree: ErrorTree::new(),
        migrate_paths: false,
        transform: true,
    };
    if let Value::Object(root) = document {
        loader.read_root(root);
    } else {
        loader
            .tree
            .put(&[], json!({"@entity": ["expected a record"]}));
    }
    loader.resolve();
    let built = loader.validate(validate);
    loader.check_uniqueness(&built);
    loader.finish(built)
}

struct Loader {
    items: Vec<Item>,
    tree: ErrorTree,
    migrate_paths: bool,
    /// Kong's `_transform` (default true): basic-auth passwords in the file
    /// are clear text and get hashed; an export says `false` because its
    /// passwords are hashes already.
    transform: bool,
}

impl Loader {
    fn read_root(&mut self, root: &Map<String, Value>) {
        match root.get("_format_version") {
            None | Some(Value::Null) => self.top_error("_format_version", "required field missing"),
            Some(Value::String(v)) if FORMAT_VERSIONS.contains(&v.as_str()) => {
                self.migrate_paths = v != "3.0";
            }
            Some(Value::String(_)) => {
                self.top_error("_format_version", "expected one of: 1.1, 2.1, 3.0")
            }
            Some(_) => self.top_error("_format_version", "expected a string"),
        }
        for (key, value) in root {
            match key.as_str() {
                "_format_version" => {}
                "_transform" => match value {
                    Value::Bool(transform) => self.transform = *transform,
                    Value::Null => {}
                    _ => self.top_error("_transform", "expected a boolean"),
                },
                "_comment" => {
                    if !(value.is_string() || value.is_null()) {
                        self.top_error("_comment", "expected a string");
                    }
                }
                "_ignore" => {
                    if !(value.is_array() || value.is_null()) {
                        self.top_error("_ignore", "expected an array");
                    }
                }
                table => match kind_for_table(table) {
                    Some(kind) => {
                        self.collect(kind, value, vec![Seg::Key(kind.table_name())], None)
                    }
                    None => {
                        let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
                        if !UNSUPPORTED.contains(&table) {
                            self.tree.put(&[], json!({ table: "unknown field" }));
                        } else if !empty {
                            let message =
                                format!("'{table}' entities are not supported by Tollgate");
                            self.tree.put(&[], json!({ table: message }));
                        }
                    }
                },
            }
        }
    }

    fn top_error(&mut self, field: &'static str, message: &str) {
        self.tree
            .put(&[Seg::Key(field)], Value::String(message.into()));
    }

    /// Collects the entities of one collection (top-level or nested).
    fn collect(
        &mut self,
        kind: EntityKind,
        value: &Value,
        location: Vec<Seg>,
        parent: Option<ParentLink>,
    ) {
        let elements = match value {
            Value::Null => return,
            Value::Array(elements) => elements,
            _ => {
                self.tree
                    .put(&location, Value::String("expected an array".into()));
                return;
            }
        };
        for (i, element) in elements.iter().enumerate() {
            let mut item_location = location.clone();
            item_location.push(Seg::Index(i));
            let Value::Object(object) = element else {
                self.tree
                    .put(&item_location, Value::String("expected a record".into()));
                continue;
            };
            let mut input = object.clone();
            let mut errors = FieldErrors::new();
            match input.remove("_comment") {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => errors.add("_comment", "expected a string"),
            }
            match input.remove("_ignore") {
                None | Some(Value::Null) | Some(Value::Array(_)) => {}
                Some(_) => errors.add("_ignore", "expected an array"),
            }
            let mut children = Vec::new();
            for relation in RELATIONS.iter().filter(|r| r.nested && r.parent == kind) {
                let table = relation.child.table_name();
                if let Some(nested) = input.remove(table) {
                    children.push((relation, table, nested));
                }
            }
            if let Some(link) = parent {
                if input.get(link.field).is_some_and(|v| !v.is_null()) {
                    errors.add(link.field, "value must be null");
                }
            }
            let index = self.items.len();
            self.items.push(Item {
                kind,
                location: item_location.clone(),
                input,
                parent,
                id: None,
                id_generated: false,
                references: Vec::new(),
                errors,
                conflicts: Vec::new(),
            });
            for (relation, table, nested) in children {
                let mut child_location = item_location.clone();
                child_location.push(Seg::Key(table));
                self.collect(
                    relation.child,
                    &nested,
                    child_location,
                    Some(ParentLink {
                        item: index,
                        field: relation.field,
                    }),
                );
            }
        }
    }

    /// Resolves references and assigns ids, parents before children.
    fn resolve(&mut self) {
        let mut lookups: HashMap<EntityKind, Lookup> = HashMap::new();
        let mut content_seen: HashMap<(EntityKind, String), usize> = HashMap::new();
        for kind in RESOLVE_ORDER {
            for index in 0..self.items.len() {
                if self.items[index].kind != kind {
                    continue;
                }
                let references = self.resolve_references(index, &lookups);
                let item = &mut self.items[index];
                item.references = references;
                let (id, generated) = match item.input.get("id") {
                    None | Some(Value::Null) => {
                        let key = id_key(item, &mut content_seen);
                        (Some(ids::generate(kind, &key)), true)
                    }
                    Some(Value::String(s)) => (Uuid::parse_str(s).ok(), false),
                    Some(_) => (None, false),
                };
                item.id = id;
                item.id_generated = generated;
                if let Some(id) = id {
                    let lookup = lookups.entry(kind).or_default();
                    lookup.ids.insert(id);
                    if let Some(Value::String(key)) =
                        kind.endpoint_key().and_then(|field| item.input.get(field))
                    {
                        lookup.by_key.entry(key.clone()).or_insert(id);
                    }
                }
            }
        }
    }

    fn resolve_references(
        &mut self,
        index: usize,
        lookups: &HashMap<EntityKind, Lookup>,
    ) -> Vec<(&'static str, Reference)> {
        let kind = self.items[index].kind;
        let parent = self.items[index].parent;
        let mut references = Vec::new();
        for relation in RELATIONS.iter().filter(|r| r.child == kind) {
            let field = relation.field;
            if let Some(link) = parent.filter(|link| link.field == field) {
                // A parent without a valid id already has its own error.
                let state = self.items[link.item]
                    .id
                    .map_or(Reference::Unresolved, Reference::Resolved);
                references.push((field, state));
                continue;
            }
            let empty = Lookup::default();
            let lookup = lookups.get(&relation.parent).unwrap_or(&empty);
            let parent_table = relation.parent.table_name();
            let item = &mut self.items[index];
            let state = match item.input.get(field) {
                None | Some(Value::Null) => Reference::Absent,
                Some(Value::String(reference)) => match lookup.find(reference) {
                    Some(id) => Reference::Resolved(id),
                    None => {
                        item.errors.add(
                            field,
                            format!(
                                "invalid reference '{field}: {reference}' (no such entry in '{parent_table}')"
                            ),
                        );
                        Reference::Unresolved
                    }
                },
                Some(Value::Object(object)) => {
                    let found = match (object.len(), object.get("id")) {
                        (1, Some(Value::String(id))) => lookup.find_id(id),
                        _ => None,
                    };
                    match found {
                        Some(id) => Reference::Resolved(id),
                        None => {
                            let written = Value::Object(object.clone()).to_string();
                            item.errors.add(
                                field,
                                format!(
                                    "invalid reference '{field}: {written}' (no such entry in '{parent_table}')"
                                ),
                            );
                            Reference::Unresolved
                        }
                    }
                }
                Some(_) => {
                    item.errors.add(field, "expected a string");
                    Reference::Unresolved
                }
            };
            references.push((field, state));
        }
        references
    }

    /// Runs the schema on every entity and builds the typed ones.
    fn validate(&mut self, validate: Validate<'_>) -> Built {
        let mut built = Built::default();
        for index in 0..self.items.len() {
            let item = &mut self.items[index];
            let mut entity = validation_input(item, self.migrate_paths, self.transform);
            if item.kind == EntityKind::KeyauthCredentials {
                if let Err(message) = ttl_as_expiry(&mut entity) {
                    item.errors.add("ttl", message);
                    continue;
                }
            }
            let validated = match validate(item.kind, &Value::Object(entity)) {
                Ok(validated) => validated,
                Err(errors) => {
                    item.errors.merge_at("", errors);
                    continue;
                }
            };
            let result = match item.kind {
                EntityKind::Services => typed(validated).map(|e| built.services.push((index, e))),
                EntityKind::Routes => typed(validated).map(|e| built.routes.push((index, e))),
                EntityKind::Consumers => typed(validated).map(|e| built.consumers.push((index, e))),
                EntityKind::Plugins => typed(validated).map(|e| built.plugins.push((index, e))),
                EntityKind::JwtSecrets => {
                    typed(validated).map(|e| built.jwt_secrets.push((index, e)))
                }
                EntityKind::Certificates => {
                    typed(validated).map(|e| built.certificates.push((index, e)))
                }
                EntityKind::Snis => typed(validated).map(|e| built.snis.push((index, e))),
                EntityKind::KeyauthCredentials => {
                    typed(validated).map(|e| built.keyauth_credentials.push((index, e)))
                }
                EntityKind::BasicauthCredentials => {
                    typed(validated).map(|e| built.basicauth_credentials.push((index, e)))
                }
                EntityKind::Acls => typed(validated).map(|e| built.acls.push((index, e))),
            };
            if let Err(message) = result {
                item.errors.add_entity(message);
            }
        }
        built
    }

    fn check_uniqueness(&mut self, built: &Built) {
        let items = &mut self.items;
        unique(
            items,
            "services",
            &built.services,
            &[("name", |e| quoted(&e.name))],
            |e| e.id,
        );
        unique(
            items,
            "routes",
            &built.routes,
            &[("name", |e| quoted(&e.name))],
            |e| e.id,
        );
        unique(
            items,
            "consumers",
            &built.consumers,
            &[
                ("username", |e| quoted(&e.username)),
                ("custom_id", |e| quoted(&e.custom_id)),
            ],
            |e| e.id,
        );
        unique(
            items,
            "plugins",
            &built.plugins,
            &[
                ("instance_name", |e| quoted(&e.instance_name)),
                ("(name, route, service, consumer)", |e| {
                    let fk = |f: &Option<crate::ForeignKey>| {
                        f.map_or("null".to_string(), |f| format!("'{}'", f.id))
                    };
                    Some(format!(
                        "('{}', {}, {}, {})",
                        e.name,
                        fk(&e.route),
                        fk(&e.service),
                        fk(&e.consumer)
                    ))
                }),
            ],
            |e| e.id,
        );
        unique(
            items,
            "jwt_secrets",
            &built.jwt_secrets,
            &[("key", |e| Some(format!("'{}'", e.key)))],
            |e| e.id,
        );
        // A key-auth key is a secret: a duplicate is reported without it.
        unique(
            items,
            "keyauth_credentials",
            &built.keyauth_credentials,
            &[("key", |e| Some(format!("'{}'", sha256_hex(&e.key))))],
            |e| e.id,
        );
        unique(
            items,
            "basicauth_credentials",
            &built.basicauth_credentials,
            &[("username", |e| Some(format!("'{}'", e.username)))],
            |e| e.id,
        );
        unique(
            items,
            "acls",
            &built.acls,
            &[("(consumer, group)", |e| {
                Some(format!("('{}', '{}')", e.consumer.id, e.group))
            })],
            |e| e.id,
        );
        unique(items, "certificates", &built.certificates, &[], |e| e.id);
        unique(
            items,
            "snis",
            &built.snis,
            &[("name", |e| Some(format!("'{}'", e.name)))],
            |e| e.id,
        );
    }

    fn finish(self, built: Built) -> Result<Config, InvalidConfig> {
        let Loader {
            items, mut tree, ..
        } = self;
        let mut flattened = Vec::new();
        for item in &items {
            if item.errors.is_empty() && item.conflicts.is_empty() {
                continue;
            }
            let node = if item.errors.is_empty() && item.conflicts.len() == 1 {
                Value::String(item.conflicts[0].clone())
            } else {
                let mut node = item.errors.to_json();
                if let Value::Object(map) = &mut node {
                    if !item.conflicts.is_empty() {
                        let entity = map
                            .entry("@entity".to_string())
                            .or_insert_with(|| Value::Array(Vec::new()));
                        if let Value::Array(messages) = entity {
                            messages.extend(item.conflicts.iter().cloned().map(Value::String));
                        }
                    }
                }
                node
            };
            tree.put(&item.location, node);
            flattened.push(flatten(item, &items));
        }
        if !tree.is_empty() {
            return Err(InvalidConfig {
                fields: tree.into_value(),
                flattened,
            });
        }
        let mut config = Config {
            services: strip(built.services),
            routes: strip(built.routes),
            consumers: strip(built.consumers),
            plugins: strip(built.plugins),
            jwt_secrets: strip(built.jwt_secrets),
            certificates: strip(built.certificates),
            snis: strip(built.snis),
            keyauth_credentials: strip(built.keyauth_credentials),
            basicauth_credentials: strip(built.basicauth_credentials),
            acls: strip(built.acls),
        };
        config.sort();
        Ok(config)
    }
}

/// The key an id is derived from: the endpoint key (`name`, `username`,
/// `key`, `instance_name`) when written; for plugins the cache key
/// `plugins:<name>:<route>:<service>:<consumer>` with resolved ids (so nesting
/// and top-level references give the same id); otherwise a digest of the
/// entity's content with resolved references, numbered among identical twins.
fn id_key(item: &Item, content_seen: &mut HashMap<(EntityKind, String), usize>) -> String {
    if let Some(Value::String(key)) = item.kind.endpoint_key().and_then(|f| item.input.get(f)) {
        return key.clone();
    }
    let reference = |field: &str| {
        item.references
            .iter()
            .find(|(f, _)| *f == field)
            .and_then(|(_, r)| match r {
                Reference::Resolved(id) => Some(id.to_string()),
                _ => None,
            })
            .unwrap_or_default()
    };
    if item.kind == EntityKind::Plugins {
        if let Some(Value::String(name)) = item.input.get("name") {
            return format!(
                "plugins:{name}:{}:{}:{}",
                reference("route"),
                reference("service"),
                reference("consumer")
            );
        }
    }
    let mut content = item.input.clone();
    content.remove("id");
    for (field, state) in &item.references {
        match state {
            Reference::Resolved(id) => {
                content.insert(field.to_string(), Value::String(id.to_string()));
            }
            Reference::Absent => {
                content.remove(*field);
            }
            Reference::Unresolved => {}
        }
    }
    let digest = hex::encode(Sha256::digest(canonical_json(&Value::Object(content))));
    let seen = content_seen.entry((item.kind, digest.clone())).or_insert(0);
    *seen += 1;
    format!("content:{digest}:{seen}")
}

/// The object handed to the schema: the fields as written, plus the id,
/// timestamps fixed at [`super::DEFAULT_TIMESTAMP`] when absent (so the same file always gives the same
/// config and hash), and references as `{"id": …}`.
fn validation_input(item: &Item, migrate_paths: bool, transform: bool) -> Map<String, Value> {
    let mut entity = item.input.clone();
    if migrate_paths && item.kind == EntityKind::Routes {
        if let Some(Value::Array(paths)) = entity.get_mut("paths") {
            for path in paths.iter_mut() {
                if let Value::String(p) = path {
                    *p = route_path::migrate(p);
                }
            }
        }
    }
    if item.id_generated {
        if let Some(id) = item.id {
            entity.insert("id".into(), Value::String(id.to_string()));
        }
    }
    entity
        .entry("created_at")
        .or_insert(Value::from(super::DEFAULT_TIMESTAMP));
    if has_updated_at(item.kind) {
        entity
            .entry("updated_at")
            .or_insert(Value::from(super::DEFAULT_TIMESTAMP));
    }
    for (field, state) in &item.references {
        let id = match state {
            Reference::Absent => continue,
            Reference::Resolved(id) => *id,
            // Already reported; a placeholder keeps the schema from adding a
            // second, misleading error on the same field.
            Reference::Unresolved => Uuid::nil(),
        };
        entity.insert(field.to_string(), json!({ "id": id.to_string() }));
    }
    if transform && item.kind == EntityKind::BasicauthCredentials {
        hash_password(item, &mut entity);
    }
    entity
}

/// A key-auth credential's `ttl` as the stored `expires_at`. Two forms
/// exist and their ranges do not overlap: decK writes the Admin API's `ttl`
/// (seconds left when it dumped, at most Kong's 100000000) and sends it back
/// as seconds from now, while Kong's own declarative export (`kong config
/// db_export`, the hybrid-mode payload) writes the expiry as Unix seconds,
/// which are above 100000000 for any date since 1973. So a `ttl` up to
/// 100000000 counts from the load, a larger one is the instant itself, and 0
/// or null is no expiry. A file may give `expires_at` (what Tollgate
/// exports) instead, not both.
fn ttl_as_expiry(entity: &mut Map<String, Value>) -> Result<(), &'static str> {
    const MESSAGE: &str =
        "must be an integer between 0 and 100000000, or an expiry in Unix seconds";
    let Some(ttl) = entity.remove("ttl") else {
        return Ok(());
    };
    let seconds = match ttl {
        Value::Null => 0,
        Value::Number(n) => n.as_i64().filter(|n| *n >= 0).ok_or(MESSAGE)?,
        _ => return Err(MESSAGE),
    };
    if entity.get("expires_at").is_some_and(|v| !v.is_null()) {
        return Err("'ttl' and 'expires_at' cannot both be set");
    }
    let expires_at = match seconds {
        0 => Value::Null,
        n if n <= crate::entity::MAX_TTL => {
            Value::from(crate::entity::now_seconds().saturating_add(n))
        }
        n => Value::from(n),
    };
    entity.insert("expires_at".into(), expires_at);
    Ok(())
}

/// Kong's basic-auth write transformation: the clear password becomes its
/// salted hash, salted with the resolved consumer id.
fn hash_password(item: &Item, entity: &mut Map<String, Value>) {
    let consumer = item
        .references
        .iter()
        .find_map(|(field, state)| match state {
            Reference::Resolved(id) if *field == "consumer" => Some(id.to_string()),
            _ => None,
        });
    if let (Some(consumer), Some(Value::String(password))) = (consumer, entity.get("password")) {
        let hashed = basic_auth_password_hash(&consumer, password);
        entity.insert("password".into(), Value::String(hashed));
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn strip<T>(built: Vec<(usize, T)>) -> Vec<T> {
    built.into_iter().map(|(_, entity)| entity).collect()
}

fn typed<T: DeserializeOwned>(validated: Value) -> Result<T, String> {
    serde_json::from_value(validated).map_err(|e| format!("invalid entity: {e}"))
}

fn quoted(value: &Option<String>) -> Option<String> {
    value.as_ref().map(|v| format!("'{v}'"))
}

type UniqueKey<T> = (&'static str, fn(&T) -> Option<String>);

/// Flags every entity whose unique key (or, failing that, id) was already
/// declared earlier in the file; the first declaration wins.
fn unique<T>(
    items: &mut [Item],
    table: &str,
    built: &[(usize, T)],
    keys: &[UniqueKey<T>],
    id: fn(&T) -> Uuid,
) {
    let mut seen: Vec<HashSet<String>> = vec![HashSet::new(); keys.len()];
    let mut seen_ids = HashSet::new();
    for (index, entity) in built {
        let values: Vec<Option<String>> = keys.iter().map(|(_, key)| key(entity)).collect();
        let duplicate = keys
            .iter()
            .zip(&values)
            .enumerate()
            .find_map(|(k, (key, value))| {
                value
                    .as_ref()
                    .filter(|v| seen[k].contains(*v))
                    .map(|v| (key.0, v.clone()))
            });
        let duplicate = duplicate.or_else(|| {
            let id = id(entity);
            seen_ids
                .contains(&id)
                .then(|| ("primary key", format!("'{id}'")))
        });
        if let Some((label, value)) = duplicate {
            if let Some(item) = items.get_mut(*index) {
                item.conflicts.push(format!(
                    "uniqueness violation: '{table}' entity with {label} set to {value} already declared"
                ));
            }
            continue;
        }
        for (k, value) in values.into_iter().enumerate() {
            if let Some(value) = value {
                seen[k].insert(value);
            }
        }
        seen_ids.insert(id(entity));
    }
}

fn flatten(item: &Item, items: &[Item]) -> FlattenedError {
    let mut entity = item.input.clone();
    if let Some(link) = item.parent {
        if let Some(parent_id) = items.get(link.item).and_then(|p| p.id) {
            entity.insert(
                link.field.to_string(),
                json!({ "id": parent_id.to_string() }),
            );
        }
    }
    let mut errors: Vec<EntityError> = item
        .errors
        .flatten()
        .into_iter()
        .map(|(path, message)| {
            if path == "@entity" {
                EntityError {
                    kind: EntityErrorKind::Entity,
                    field: None,
                    message,
                }
            } else {
                EntityError {
                    kind: EntityErrorKind::Field,
                    field: Some(path),
                    message,
                }
            }
        })
        .collect();
    errors.extend(item.conflicts.iter().map(|message| EntityError {
        kind: EntityErrorKind::Entity,
        field: None,
        message: message.clone(),
    }));
    let table = item.kind.table_name();
    FlattenedError {
        entity_type: table.strip_suffix('s').unwrap_or(table).to_string(),
        entity_name: item
            .input
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        entity_id: item.id.map(|id| id.to_string()),
        entity_tags: item.input.get("tags").and_then(|tags| {
            tags.as_array()?
                .iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect()
        }),
        entity: Value::Object(entity),
        errors,
    }
}

//! Entity endpoints: list, create, read, upsert (PUT), update (PATCH), delete,
//! nested under a parent or not, and `/E/{e}/f` for the referenced parent.
//! Each write is one store transaction: resolve references, validate with
//! tollgate-shared, write, audit, commit.

use super::audit::redact;
use super::body;
use super::certificates;
use super::error::ApiError;
use super::paging;
use super::response::{committed, json, json_with_status, no_content};
use super::routes::{collection, nested_collection, param, Relation};
use super::AdminRequest;
use crate::schema_bridge::{
    coerce_form, entity_schema, plugin_schema, render_entity, validate_entity,
};
use crate::store::{parse_uuid, table, AuditRecord, ListQuery, WriteTxn};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use tollgate_shared::EntityKind;

fn id_of(entity: &Value) -> String {
    entity
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn validate(kind: EntityKind, input: &Value) -> Result<Value, ApiError> {
    let entity = validate_entity(kind, input).map_err(ApiError::Schema)?;
    // The data planes' own compile step, on what this write adds or changes:
    // a change they could not serve is refused here, never committed.
    tollgate_shared::compile::check_entity(kind, &entity).map_err(ApiError::Schema)?;
    Ok(entity)
}

/// Whether `child` references `parent_id` through `relation`.
fn belongs_to(child: &Value, relation: &Relation, parent_id: &str) -> bool {
    child
        .get(relation.field)
        .and_then(|f| f.get("id"))
        .and_then(Value::as_str)
        == Some(parent_id)
}

/// Body arguments before schema coercion, and whether they came from a form.
async fn raw_arguments(request: &AdminRequest) -> Result<(Value, bool), ApiError> {
    let encoding = body::encoding(&request.headers, &request.body, false)?;
    body::arguments(&encoding, request.body.clone()).await
}

/// Form strings to schema types. A plugin PATCH may omit `name`: the stored
/// plugin's name picks the config schema then.
fn coerce(kind: EntityKind, args: Value, is_form: bool, existing: Option<&Value>) -> Value {
    if !is_form {
        return args;
    }
    let borrowed_name = kind == EntityKind::Plugins && args.get("name").is_none();
    let mut args = args;
    if borrowed_name {
        if let (Some(name), Value::Object(map)) =
            (existing.and_then(|e| e.get("name")).cloned(), &mut args)
        {
            map.insert("name".into(), name);
        } else {
            return coerce_form(kind, args);
        }
    }
    let mut coerced = coerce_form(kind, args);
    if borrowed_name {
        if let Value::Object(map) = &mut coerced {
            map.remove("name");
        }
    }
    coerced
}

/// Turns foreign references given by endpoint key (`service.name=x`) into ids.
async fn resolve_references(
    txn: &mut WriteTxn,
    kind: EntityKind,
    args: &mut Value,
) -> Result<(), ApiError> {
    for foreign in table(kind).foreign {
        let Some(Value::Object(reference)) = args.get(foreign.field) else {
            continue;
        };
        if reference.contains_key("id") {
            continue;
        }
        let Some(key_field) = foreign.parent.endpoint_key() else {
            continue;
        };
        let Some(Value::String(key)) = reference.get(key_field).cloned() else {
            continue;
        };
        match txn.find_by(foreign.parent, key_field, &key).await? {
            Some(parent) => {
                if let Value::Object(map) = args {
                    map.insert(foreign.field.into(), json!({ "id": id_of(&parent) }));
                }
            }
            None => {
                return Err(crate::store::StoreError::MissingParent {
                    field: foreign.field.into(),
                    parent: foreign.parent,
                    key: json!({ key_field: key }),
                }
                .into())
            }
        }
    }
    Ok(())
}

fn audit_record(
    request: &AdminRequest,
    kind: EntityKind,
    id: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> AuditRecord {
    AuditRecord {
        actor: request.actor.clone(),
        method: request.method.to_string(),
        path: request.path.clone(),
        entity_type: Some(kind.table_name().into()),
        entity_id: Some(id.into()),
        before: before.map(|b| redact(kind, b)),
        after: after.map(|a| redact(kind, a)),
    }
}

/// The parent of a nested request, or 404.
async fn nested_parent_in(
    txn: &mut WriteTxn,
    request: &AdminRequest,
    parent: Option<Relation>,
) -> Result<Option<(Relation, String)>, ApiError> {
    let Some(relation) = parent else {
        return Ok(None);
    };
    let found = txn
        .find(relation.parent, request.param(param(relation.parent)))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Some((relation, id_of(&found))))
}

async fn nested_parent(
    request: &AdminRequest,
    parent: Option<Relation>,
) -> Result<Option<(Relation, String)>, ApiError> {
    let Some(relation) = parent else {
        return Ok(None);
    };
    let found = request
        .state
        .store
        .find(relation.parent, request.param(param(relation.parent)))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Some((relation, id_of(&found))))
}

fn parent_id(scope: Option<&(Relation, String)>) -> Option<&str> {
    scope.map(|(_, id)| id.as_str())
}

/// The field a non-UUID path segment names: the endpoint key, or for an acl
/// under its consumer its `group` (Kong's `/consumers/{c}/acls/{group}`).
fn path_key_field(kind: EntityKind, scope: Option<&(Relation, String)>) -> Option<&'static str> {
    match (kind, scope) {
        (EntityKind::Acls, Some(_)) => Some("group"),
        _ => kind.endpoint_key(),
    }
}

/// Kong's `ttl` option of key-auth credentials: seconds from now, stored as
/// `expires_at` (0 or null: never). Kong's bounds and message.
fn apply_ttl(kind: EntityKind, args: &mut Value) -> Result<(), ApiError> {
    if kind != EntityKind::KeyauthCredentials {
        return Ok(());
    }
    let Some(ttl) = args.as_object_mut().and_then(|map| map.remove("ttl")) else {
        return Ok(());
    };
    let seconds = match &ttl {
        Value::Null => Some(0),
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.parse::<i64>().ok(),
        _ => None,
    }
    .filter(|t| (0..=tollgate_shared::entity::MAX_TTL).contains(t));
    let Some(seconds) = seconds else {
        let mut errors = tollgate_shared::FieldErrors::new();
        errors.add("ttl", "must be an integer between 0 and 100000000");
        return Err(ApiError::Schema(errors));
    };
    let expires_at = match seconds {
        0 => Value::Null,
        n => Value::from(tollgate_shared::entity::now_seconds() + n),
    };
    set_field(args, "expires_at", expires_at);
    Ok(())
}

/// Whether a stored entity is a key-auth credential whose `ttl` ran out:
/// Kong no longer shows it.
fn expired(kind: EntityKind, entity: &Value) -> bool {
    kind == EntityKind::KeyauthCredentials
        && entity
            .get("expires_at")
            .and_then(Value::as_i64)
            .is_some_and(|at| at <= tollgate_shared::entity::now_seconds())
}

/// Kong's basic-auth write transformation: a password given in this request
/// is stored as its hash salted with the consumer's id (from the request, or
/// the stored credential's on PATCH). Anything else is left for validation.
fn hash_password(kind: EntityKind, args: &mut Value, existing: Option<&Value>) {
    if kind != EntityKind::BasicauthCredentials {
        return;
    }
    let consumer_of = |entity: &Value| {
        entity
            .get("consumer")
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let consumer = consumer_of(args).or_else(|| existing.and_then(consumer_of));
    let (Some(consumer), Some(Value::String(password))) = (consumer, args.get("password")) else {
        return;
    };
    let hashed = tollgate_shared::entity::basic_auth_password_hash(&consumer, password);
    set_field(args, "password", Value::String(hashed));
}

/// `GET /E`, `GET /P/{p}/E`.
pub async fn list(
    request: &AdminRequest,
    kind: EntityKind,
    parent: Option<Relation>,
) -> Result<Response, ApiError> {
    let size = paging::size(&request.query)?;
    let after = paging::offset_id(&request.query)?;
    let tags = paging::tags(&request.query)?;
    let scope = nested_parent(request, parent).await?;
    let mut equals = Vec::new();
    if let Some((relation, parent_id)) = &scope {
        equals.push((relation.column, parent_id.clone()));
    }
    if kind == EntityKind::Consumers && scope.is_none() {
        if let Some(custom_id) = request.query.get("custom_id") {
            if custom_id.is_empty() {
                return Err(ApiError::BadRequest(
                    "custom_id must be an unempty string".into(),
                ));
            }
            equals.push(("custom_id", custom_id.clone()));
            let page = request
                .state
                .store
                .list(
                    kind,
                    &ListQuery {
                        size: 1,
                        equals,
                        ..Default::default()
                    },
                )
                .await?;
            let data: Vec<Value> = page.items.iter().map(|e| render_entity(kind, e)).collect();
            return Ok(json(&json!({ "data": data, "next": null })));
        }
    }
    let page = request
        .state
        .store
        .list(
            kind,
            &ListQuery {
                after,
                size,
                tags,
                equals,
            },
        )
        .await?;
    let data: Vec<Value> = page
        .items
        .iter()
        .filter(|e| !expired(kind, e))
        .map(|e| render_entity(kind, e))
        .collect();
    let mut body = Map::new();
    body.insert("data".into(), Value::Array(data));
    match page.next_after {
        Some(last) => {
            let token = paging::encode_offset(&Value::String(last));
            let next = match &scope {
                Some((relation, _)) => paging::next_link(
                    &format!(
                        "/{}/{}/{}",
                        collection(relation.parent),
                        request.param(param(relation.parent)),
                        nested_collection(kind)
                    ),
                    &token,
                    &[],
                ),
                None => {
                    let mut extra = Vec::new();
                    if let Some(tags) = request.query.get("tags") {
                        extra.push(("tags", tags.as_str()));
                    }
                    if let Some(size) = request.query.get("size") {
                        extra.push(("size", size.as_str()));
                    }
                    paging::next_link(&format!("/{}", collection(kind)), &token, &extra)
                }
            };
            body.insert("next".into(), Value::String(next));
            body.insert("offset".into(), Value::String(token));
        }
        None => {
            body.insert("next".into(), Value::Null);
        }
    }
    Ok(json(&Value::Object(body)))
}

/// `POST /E`, `POST /P/{p}/E`.
pub async fn create(
    request: &AdminRequest,
    kind: EntityKind,
    parent: Option<Relation>,
) -> Result<Response, ApiError> {
    let (mut raw, is_form) = raw_arguments(request).await?;
    let sni_names = match kind {
        EntityKind::Certificates => certificates::take_sni_names(&mut raw)?,
        _ => None,
    };
    let mut txn = request.state.store.begin_write().await?;
    let mut args = coerce(kind, raw, is_form, None);
    if let Some((relation, parent_id)) = nested_parent_in(&mut txn, request, parent).await? {
        set_field(&mut args, relation.field, json!({ "id": parent_id }));
    }
    resolve_references(&mut txn, kind, &mut args).await?;
    hash_password(kind, &mut args, None);
    apply_ttl(kind, &mut args)?;
    let entity = validate(kind, &args)?;
    if let Some(names) = &sni_names {
        certificates::check_names_are_free(&mut txn, names).await?;
    }
    txn.insert(kind, &entity).await?;
    txn.audit(audit_record(
        request,
        kind,
        &id_of(&entity),
        None,
        Some(&entity),
    ))
    .await?;
    let mut rendered = render_entity(kind, &entity);
    if let Some(names) = sni_names {
        for sni in certificates::insert_snis(&mut txn, &id_of(&entity), &names).await? {
            let audit = audit_record(request, EntityKind::Snis, &id_of(&sni), None, Some(&sni));
            txn.audit(audit).await?;
        }
        set_field(&mut rendered, "snis", json!(names));
    }
    let version = txn.commit().await?;
    Ok(committed(
        json_with_status(StatusCode::CREATED, &rendered),
        version,
    ))
}

fn set_field(args: &mut Value, field: &str, value: Value) {
    if let Value::Object(map) = args {
        map.insert(field.to_string(), value);
    }
}

/// `GET /E/{e}`, `GET /P/{p}/E/{e}`.
pub async fn get(
    request: &AdminRequest,
    kind: EntityKind,
    parent: Option<Relation>,
) -> Result<Response, ApiError> {
    let scope = nested_parent(request, parent).await?;
    let entity = request
        .state
        .store
        .find_under(kind, request.param(param(kind)), parent_id(scope.as_ref()))
        .await?
        .filter(|entity| !expired(kind, entity))
        .ok_or(ApiError::NotFound)?;
    if let Some((relation, parent_id)) = &scope {
        if !belongs_to(&entity, relation, parent_id) {
            return Err(ApiError::NotFound);
        }
    }
    Ok(json(&render_entity(kind, &entity)))
}

/// Kong's code 6 key for a path segment: `{id=…}` or `{<endpoint key>=…}`.
fn not_found_key(kind: EntityKind, key: &str) -> ApiError {
    let mut map = Map::new();
    match (parse_uuid(key), kind.endpoint_key()) {
        (None, Some(field)) => map.insert(field.into(), Value::String(key.into())),
        _ => map.insert("id".into(), Value::String(key.into())),
    };
    ApiError::EntityNotFound { key: map }
}

/// PUT inside `txn`: create or replace the entity at `key`. Returns (before, after).
async fn put_in(
    txn: &mut WriteTxn,
    kind: EntityKind,
    key: &str,
    scope: Option<&(Relation, String)>,
    raw: Value,
    is_form: bool,
) -> Result<(Option<Value>, Value), ApiError> {
    let existing = txn.find_under(kind, key, parent_id(scope)).await?;
    if let (Some(existing), Some((relation, parent_id))) = (&existing, scope) {
        if !belongs_to(existing, relation, parent_id) {
            return Err(ApiError::NotFound);
        }
    }
    let mut args = coerce(kind, raw, is_form, existing.as_ref());
    match parse_uuid(key) {
        Some(id) => set_field(&mut args, "id", Value::String(id)),
        None => {
            let field = path_key_field(kind, scope).ok_or(ApiError::NotFound)?;
            set_field(&mut args, field, Value::String(key.into()));
            match &existing {
                Some(e) => set_field(&mut args, "id", Value::String(id_of(e))),
                None => {
                    if let Value::Object(map) = &mut args {
                        map.remove("id");
                    }
                }
            }
        }
    }
    if let Some((relation, parent_id)) = scope {
        set_field(&mut args, relation.field, json!({ "id": parent_id }));
    }
    resolve_references(txn, kind, &mut args).await?;
    hash_password(kind, &mut args, None);
    apply_ttl(kind, &mut args)?;
    let entity = validate(kind, &args)?;
    txn.upsert(kind, &entity).await?;
    Ok((existing, entity))
}

/// PATCH inside `txn`: merge into the entity at `key` and re-validate.
async fn patch_in(
    txn: &mut WriteTxn,
    kind: EntityKind,
    key: &str,
    scope: Option<&(Relation, String)>,
    raw: Value,
    is_form: bool,
) -> Result<(Value, Value), ApiError> {
    let existing = txn
        .find_under(kind, key, parent_id(scope))
        .await?
        .ok_or_else(|| not_found_key(kind, key))?;
    if let Some((relation, parent_id)) = scope {
        if !belongs_to(&existing, relation, parent_id) {
            return Err(ApiError::NotFound);
        }
    }
    let mut args = coerce(kind, raw, is_form, Some(&existing));
    resolve_references(txn, kind, &mut args).await?;
    hash_password(kind, &mut args, Some(&existing));
    apply_ttl(kind, &mut args)?;
    let mut merged = merge_entity(kind, &existing, &args);
    set_field(&mut merged, "id", Value::String(id_of(&existing)));
    if existing.get("updated_at").is_some() {
        set_field(
            &mut merged,
            "updated_at",
            Value::from(tollgate_shared::entity::now_seconds()),
        );
    }
    if let Some((relation, parent_id)) = scope {
        set_field(&mut merged, relation.field, json!({ "id": parent_id }));
    }
    let entity = validate(kind, &merged)?;
    txn.upsert(kind, &entity).await?;
    Ok((existing, entity))
}

/// How a write to an existing path treats the stored entity.
#[derive(Debug, Clone, Copy)]
enum Update {
    /// `PUT`: replace it (or create it when missing).
    Replace,
    /// `PATCH`: merge the arguments into it.
    Merge,
}

/// `PUT /E/{e}`, `PUT /P/{p}/E/{e}`.
pub async fn put(
    request: &AdminRequest,
    kind: EntityKind,
    parent: Option<Relation>,
) -> Result<Response, ApiError> {
    update(request, kind, parent, Update::Replace).await
}

/// `PATCH /E/{e}`, `PATCH /P/{p}/E/{e}`.
pub async fn patch(
    request: &AdminRequest,
    kind: EntityKind,
    parent: Option<Relation>,
) -> Result<Response, ApiError> {
    update(request, kind, parent, Update::Merge).await
}

async fn update(
    request: &AdminRequest,
    kind: EntityKind,
    parent: Option<Relation>,
    how: Update,
) -> Result<Response, ApiError> {
    let (raw, is_form) = raw_arguments(request).await?;
    let mut txn = request.state.store.begin_write().await?;
    let scope = nested_parent_in(&mut txn, request, parent).await?;
    let key = request.param(param(kind));
    let (before, after) = match how {
        Update::Replace => put_in(&mut txn, kind, key, scope.as_ref(), raw, is_form).await?,
        Update::Merge => {
            let (before, after) =
                patch_in(&mut txn, kind, key, scope.as_ref(), raw, is_form).await?;
            (Some(before), after)
        }
    };
    txn.audit(audit_record(
        request,
        kind,
        &id_of(&after),
        before.as_ref(),
        Some(&after),
    ))
    .await?;
    let version = txn.commit().await?;
    Ok(committed(json(&render_entity(kind, &after)), version))
}

/// `DELETE /E/{e}`: 204 whether or not it existed.
pub async fn delete(
    request: &AdminRequest,
    kind: EntityKind,
    parent: Option<Relation>,
) -> Result<Response, ApiError> {
    let mut txn = request.state.store.begin_write().await?;
    let scope = nested_parent_in(&mut txn, request, parent).await?;
    let key = request.param(param(kind));
    let Some(existing) = txn.find_under(kind, key, parent_id(scope.as_ref())).await? else {
        // Nothing changes: dropping the transaction rolls the version back.
        return Ok(no_content());
    };
    if let Some((relation, parent_id)) = &scope {
        if !belongs_to(&existing, relation, parent_id) {
            return Err(ApiError::NotFound);
        }
    }
    let id = id_of(&existing);
    txn.delete(kind, &id).await?;
    txn.audit(audit_record(request, kind, &id, Some(&existing), None))
        .await?;
    let version = txn.commit().await?;
    Ok(committed(no_content(), version))
}

/// The id `child` references through `relation`, if any.
fn referenced_id(child: &Value, relation: &Relation) -> Option<String> {
    child
        .get(relation.field)
        .and_then(|f| f.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `GET /E/{e}/f`.
pub async fn get_parent(request: &AdminRequest, relation: Relation) -> Result<Response, ApiError> {
    let store = &request.state.store;
    let child = store
        .find(relation.child, request.param(param(relation.child)))
        .await?
        .ok_or(ApiError::NotFound)?;
    let parent_id = referenced_id(&child, &relation).ok_or(ApiError::NotFound)?;
    let parent = store
        .get(relation.parent, &parent_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json(&render_entity(relation.parent, &parent)))
}

/// `PUT`/`PATCH /E/{e}/f`: writes the referenced parent.
pub async fn write_parent(
    request: &AdminRequest,
    relation: Relation,
) -> Result<Response, ApiError> {
    let (raw, is_form) = raw_arguments(request).await?;
    let mut txn = request.state.store.begin_write().await?;
    let child = txn
        .find(relation.child, request.param(param(relation.child)))
        .await?
        .ok_or(ApiError::NotFound)?;
    let parent_id = referenced_id(&child, &relation).ok_or(ApiError::NotFound)?;
    let kind = relation.parent;
    let (before, after) = if request.method == axum::http::Method::PUT {
        put_in(&mut txn, kind, &parent_id, None, raw, is_form).await?
    } else {
        let (before, after) = patch_in(&mut txn, kind, &parent_id, None, raw, is_form).await?;
        (Some(before), after)
    };
    txn.audit(audit_record(
        request,
        kind,
        &id_of(&after),
        before.as_ref(),
        Some(&after),
    ))
    .await?;
    let version = txn.commit().await?;
    Ok(committed(json(&render_entity(kind, &after)), version))
}

/// The field list of a Kong-format schema (`{"fields":[{"name":{…}}, …]}`).
fn field_schema<'a>(schema: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    schema?
        .get("fields")?
        .as_array()?
        .iter()
        .find_map(|entry| entry.get(name))
}

/// Fields that are maps (replaced whole) when no schema says otherwise.
const KNOWN_MAPS: [&str; 3] = ["headers", "custom_fields_by_lua", "queue_headers"];

/// PATCH semantics: records merge recursively, everything else (arrays, sets,
/// maps, foreign keys) is replaced whole.
pub fn merge_entity(kind: EntityKind, existing: &Value, patch: &Value) -> Value {
    let schema = entity_schema(kind);
    let foreign: Vec<&str> = table(kind).foreign.iter().map(|f| f.field).collect();
    let (Value::Object(base), Value::Object(changes)) = (existing, patch) else {
        return existing.clone();
    };
    let mut out = base.clone();
    for (name, value) in changes {
        let merged = match (base.get(name), value) {
            (Some(old @ Value::Object(_)), Value::Object(_))
                if !foreign.contains(&name.as_str()) =>
            {
                if kind == EntityKind::Plugins && name == "config" {
                    let plugin_name = changes
                        .get("name")
                        .or_else(|| base.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let plugin = plugin_schema(plugin_name);
                    let config = field_schema(plugin.as_ref(), "config");
                    merge_record(old, value, config)
                } else {
                    match field_schema(Some(&schema), name) {
                        Some(s) if s.get("type").and_then(Value::as_str) == Some("record") => {
                            merge_record(old, value, Some(s))
                        }
                        Some(_) => value.clone(),
                        None if KNOWN_MAPS.contains(&name.as_str()) => value.clone(),
                        None => merge_record(old, value, None),
                    }
                }
            }
            _ => value.clone(),
        };
        out.insert(name.clone(), merged);
    }
    Value::Object(out)
}

fn merge_record(old: &Value, new: &Value, schema: Option<&Value>) -> Value {
    let (Value::Object(base), Value::Object(changes)) = (old, new) else {
        return new.clone();
    };
    let mut out = base.clone();
    for (name, value) in changes {
        let merged = match (base.get(name), value) {
            (Some(o @ Value::Object(_)), Value::Object(_)) => match field_schema(schema, name) {
                Some(s) if s.get("type").and_then(Value::as_str) == Some("record") => {
                    merge_record(o, value, Some(s))
                }
                Some(_) => value.clone(),
                None if KNOWN_MAPS.contains(&name.as_str()) => value.clone(),
                None => merge_record(o, value, None),
            },
            _ => value.clone(),
        };
        out.insert(name.clone(), merged);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn patch_merges_records_and_replaces_the_rest() {
        let existing = json!({
            "id": "x", "name": "rate-limiting",
            "config": {"minute": 5, "hour": 100, "redis": {"host": "a", "port": 6379}},
            "service": {"id": "s1"}, "tags": ["a", "b"]
        });
        let patch = json!({"config": {"minute": 10, "redis": {"host": "b"}}, "tags": ["c"], "service": {"id": "s2"}});
        let merged = merge_entity(EntityKind::Plugins, &existing, &patch);
        assert_eq!(
            merged,
            json!({
                "id": "x", "name": "rate-limiting",
                "config": {"minute": 10, "hour": 100, "redis": {"host": "b", "port": 6379}},
                "service": {"id": "s2"}, "tags": ["c"]
            })
        );
        let route = json!({"headers": {"x-a": ["1"]}, "paths": ["/a"]});
        let merged = merge_entity(
            EntityKind::Routes,
            &route,
            &json!({"headers": {"x-b": ["2"]}}),
        );
        assert_eq!(merged["headers"], json!({"x-b": ["2"]}));
    }
}

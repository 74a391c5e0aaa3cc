//! The schema engine: field types, value rules, defaults, shorthands,
//! subschemas and cross-field checks, applied to JSON values.
//!
//! It follows the observable behaviour of Kong's schema library (the order
//! rules run in, which checks run when a field already failed, the messages)
//! with our own, much smaller, design: a schema is plain data ([`Record`]) and
//! anything that is not declarative is a `fn` pointer.

use crate::entity::now_seconds;
use crate::validation::{FieldError, FieldErrors};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Kong's generic validator messages (`kong/db/schema/init.lua`).
pub(crate) mod msg {
    pub const REQUIRED: &str = "required field missing";
    pub const UNKNOWN: &str = "unknown field";
    pub const STRING: &str = "expected a string";
    pub const INTEGER: &str = "expected an integer";
    pub const NUMBER: &str = "expected a number";
    pub const BOOLEAN: &str = "expected a boolean";
    pub const ARRAY: &str = "expected an array";
    pub const SET: &str = "expected a set";
    pub const MAP: &str = "expected a map";
    pub const RECORD: &str = "expected a record";
    pub const UUID: &str = "expected a valid UUID";
    pub const TIMESTAMP: &str = "expected a valid timestamp";
    pub const MISSING_PK: &str = "missing primary key";
    pub const CONDITIONAL: &str = "failed conditional validation given value of field";
    pub const AT_LEAST_ONE_OF: &str = "at least one of these fields must be non-empty:";
    pub const MUTUALLY_REQUIRED: &str = "all or none of these fields must be set:";
}

/// A check on one value that is not expressible declaratively.
pub(crate) type ValueCheck = fn(&Value) -> Result<(), String>;

/// A check over a whole record (an entity or a nested record).
pub(crate) type RecordCheck = fn(&Map<String, Value>) -> Result<(), CheckFailure>;

/// What a [`RecordCheck`] reports: a message on a field (dotted path) and/or
/// an entity-level message.
#[derive(Debug, Default)]
pub(crate) struct CheckFailure {
    pub field: Option<(String, String)>,
    pub entity: Option<String>,
}

/// A field's type. Element/key/value fields of containers are fields too.
pub(crate) enum Kind {
    String,
    Integer,
    Number,
    Boolean,
    Array(Box<Field>),
    Set(Box<Field>),
    Map(Box<Field>, Box<Field>),
    Record(Box<Record>),
    /// A reference `{"id": <uuid>}` to an entity of the named collection.
    Foreign(&'static str),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Array(_) => "array",
            Kind::Set(_) => "set",
            Kind::Map(..) => "map",
            Kind::Record(_) => "record",
            Kind::Foreign(_) => "foreign",
        }
    }
}

/// Values generated on insert when the input has none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Auto {
    Uuid,
    Timestamp,
    RandomString,
}

/// A rule on a non-null value. Rules run in Kong's validator order (see
/// [`Rule::rank`]), the first failure wins.
pub(crate) enum Rule {
    /// `Eq(Value::Null)` is Kong's `eq = null`: the field must be absent/null.
    Eq(Value),
    Ne(Value),
    OneOf(Vec<Value>),
    Gt(f64),
    Timestamp,
    Uuid,
    Between(f64, f64),
    LenEq(usize),
    LenMin(usize),
    LenMax(usize),
    StartsWith(&'static str),
    /// Kong's `match`, `match_none`, `match_all`, `match_any` stage.
    Pattern(ValueCheck),
    Contains(Value),
    Custom(ValueCheck),
    MutuallyExclusiveSubsets(Vec<Vec<&'static str>>),
}

impl Rule {
    fn rank(&self) -> u8 {
        match self {
            Rule::Eq(_) => 0,
            Rule::Ne(_) => 1,
            Rule::OneOf(_) => 3,
            Rule::Gt(_) => 4,
            Rule::Timestamp => 5,
            Rule::Uuid => 6,
            Rule::Between(..) => 8,
            Rule::LenEq(_) => 9,
            Rule::LenMin(_) => 10,
            Rule::LenMax(_) => 11,
            Rule::StartsWith(_) => 12,
            Rule::Pattern(_) => 14,
            Rule::Contains(_) => 18,
            Rule::Custom(_) => 19,
            Rule::MutuallyExclusiveSubsets(_) => 20,
        }
    }

    fn apply(&self, value: &Value) -> Result<(), String> {
        match self {
            Rule::Eq(wanted) => {
                if values_equal(value, wanted) {
                    Ok(())
                } else {
                    Err(format!("value must be {}", lua_tostring(wanted)))
                }
            }
            Rule::Ne(unwanted) => {
                if values_equal(value, unwanted) {
                    Err(format!("value must not be {}", lua_tostring(value)))
                } else {
                    Ok(())
                }
            }
            Rule::OneOf(options) => {
                if options.iter().any(|o| values_equal(value, o)) {
                    Ok(())
                } else {
                    Err(format!("expected one of: {}", join_values(options)))
                }
            }
            Rule::Gt(limit) => match value.as_f64() {
                Some(v) if v > *limit => Ok(()),
                Some(_) => Err(format!("value must be greater than {}", lua_number(*limit))),
                None => Ok(()),
            },
            Rule::Timestamp => match value.as_f64() {
                Some(v) if v > 0.0 => Ok(()),
                Some(_) => Err(msg::TIMESTAMP.into()),
                None => Ok(()),
            },
            Rule::Uuid => match value.as_str() {
                Some(s) if is_uuid(s) => Ok(()),
                Some(_) => Err(msg::UUID.into()),
                None => Ok(()),
            },
            Rule::Between(low, high) => match value.as_f64() {
                Some(v) if v >= *low && v <= *high => Ok(()),
                Some(_) => Err(format!(
                    "value should be between {} and {}",
                    lua_int(*low),
                    lua_int(*high)
                )),
                None => Ok(()),
            },
            Rule::LenEq(n) => length_rule(value, |len| len == *n, || format!("length must be {n}")),
            Rule::LenMin(n) => length_rule(
                value,
                |len| len >= *n,
                || format!("length must be at least {n}"),
            ),
            Rule::LenMax(n) => length_rule(
                value,
                |len| len <= *n,
                || format!("length must be at most {n}"),
            ),
            Rule::StartsWith(prefix) => match value.as_str() {
                Some(s) if !s.starts_with(prefix) => Err(format!("should start with: {prefix}")),
                _ => Ok(()),
            },
            Rule::Pattern(check) | Rule::Custom(check) => check(value),
            Rule::Contains(wanted) => match value.as_array() {
                Some(items) if !items.iter().any(|i| values_equal(i, wanted)) => {
                    Err(format!("expected to contain: {}", lua_tostring(wanted)))
                }
                _ => Ok(()),
            },
            Rule::MutuallyExclusiveSubsets(subsets) => {
                let Some(items) = value.as_array() else {
                    return Ok(());
                };
                let mut member_of: Vec<&Vec<&'static str>> = Vec::new();
                for item in items.iter().filter_map(Value::as_str) {
                    if let Some(subset) = subsets.iter().find(|s| s.contains(&item)) {
                        if !member_of.iter().any(|m| std::ptr::eq(*m, subset)) {
                            member_of.push(subset);
                        }
                    }
                }
                if member_of.len() <= 1 {
                    Ok(())
                } else {
                    let list: Vec<String> = member_of
                        .iter()
                        .map(|s| format!("({})", quoted_list(s)))
                        .collect();
                    Err(format!(
                        "these sets are mutually exclusive: {}",
                        list.join(", ")
                    ))
                }
            }
        }
    }

    /// The rule in Kong's `/schemas` output, when it is declarative.
    fn describe(&self) -> Option<(&'static str, Value)> {
        Some(match self {
            Rule::Eq(v) => ("eq", v.clone()),
            Rule::Ne(v) => ("ne", v.clone()),
            Rule::OneOf(v) => ("one_of", Value::Array(v.clone())),
            Rule::Gt(v) => ("gt", number_value(*v)),
            Rule::Timestamp => ("timestamp", Value::Bool(true)),
            Rule::Uuid => ("uuid", Value::Bool(true)),
            Rule::Between(a, b) => (
                "between",
                Value::Array(vec![number_value(*a), number_value(*b)]),
            ),
            Rule::LenEq(n) => ("len_eq", Value::from(*n)),
            Rule::LenMin(n) => ("len_min", Value::from(*n)),
            Rule::LenMax(n) => ("len_max", Value::from(*n)),
            Rule::StartsWith(p) => ("starts_with", Value::from(*p)),
            Rule::Contains(v) => ("contains", v.clone()),
            Rule::MutuallyExclusiveSubsets(s) => (
                "mutually_exclusive_subsets",
                Value::Array(
                    s.iter()
                        .map(|set| Value::Array(set.iter().map(|x| Value::from(*x)).collect()))
                        .collect(),
                ),
            ),
            Rule::Pattern(_) | Rule::Custom(_) => return None,
        })
    }
}

fn length_rule(
    value: &Value,
    ok: impl Fn(usize) -> bool,
    message: impl Fn() -> String,
) -> Result<(), String> {
    let len = match value {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => return Ok(()),
    };
    if ok(len) {
        Ok(())
    } else {
        Err(message())
    }
}

/// One field of a record (or the element/key/value of a container).
pub(crate) struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub default: Option<Value>,
    pub auto: Option<Auto>,
    pub rules: Vec<Rule>,
    /// Replaces every rule's message (Kong's `err`), not type errors.
    pub err: Option<&'static str>,
    /// An explicit `null` takes the default. Kong stores the `null`; Tollgate's
    /// typed entities need a value there, so `null` resets the field instead.
    pub null_is_default: bool,
}

impl Field {
    pub fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            required: false,
            default: None,
            auto: None,
            rules: Vec::new(),
            err: None,
            null_is_default: false,
        }
    }

    pub fn string(name: &'static str) -> Self {
        Self::new(name, Kind::String)
    }

    pub fn integer(name: &'static str) -> Self {
        Self::new(name, Kind::Integer)
    }

    pub fn number(name: &'static str) -> Self {
        Self::new(name, Kind::Number)
    }

    pub fn boolean(name: &'static str) -> Self {
        Self::new(name, Kind::Boolean)
    }

    /// Array elements are always required (a `null` element is an error).
    pub fn array(name: &'static str, element: Field) -> Self {
        Self::new(name, Kind::Array(Box::new(element.required())))
    }

    pub fn set(name: &'static str, element: Field) -> Self {
        Self::new(name, Kind::Set(Box::new(element.required())))
    }

    pub fn map(name: &'static str, keys: Field, values: Field) -> Self {
        Self::new(
            name,
            Kind::Map(Box::new(keys.required()), Box::new(values.required())),
        )
    }

    /// Nested records are required and expanded with their defaults when absent.
    pub fn record(name: &'static str, record: Record) -> Self {
        Self::new(name, Kind::Record(Box::new(record))).required()
    }

    pub fn foreign(name: &'static str, reference: &'static str) -> Self {
        Self::new(name, Kind::Foreign(reference))
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }

    /// A default that an explicit `null` also takes (see [`Field::null_is_default`]).
    pub fn default_on_null(mut self, value: Value) -> Self {
        self.default = Some(value);
        self.null_is_default = true;
        self
    }

    pub fn auto(mut self, auto: Auto) -> Self {
        self.auto = Some(auto);
        self
    }

    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn err(mut self, message: &'static str) -> Self {
        self.err = Some(message);
        self
    }

    fn must_be_null(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r, Rule::Eq(Value::Null)))
    }
}

/// A legacy or convenience input field that is rewritten into real fields
/// before validation and never stored (`url` on services, `redis_host` on
/// rate-limiting).
pub(crate) struct Shorthand {
    /// Name and type of the shorthand input.
    pub field: Field,
    /// The partial record the value stands for.
    pub expand: fn(&Value) -> Map<String, Value>,
    /// Deprecated shorthands lose against the real field when both are given.
    pub deprecated: bool,
    /// Where the value lives in the stored record, to echo it back on output.
    pub mirror: Option<&'static [&'static str]>,
}

/// Fields and checks that replace or extend a record's own, chosen by the value
/// of one of its fields (a plugin's `name`, a route's `protocols`).
pub(crate) struct Subschema {
    pub fields: Vec<Field>,
    pub checks: Vec<Check>,
}

pub(crate) struct Subschemas {
    pub key: &'static str,
    pub select: fn(&str) -> Option<&'static Subschema>,
    pub unknown: fn(&str) -> String,
}

/// A condition on the value of a field, for conditional checks.
pub(crate) enum Match {
    Eq(Value),
    OneOf(Vec<&'static str>),
    NotOneOf(Vec<&'static str>),
    Gt(f64),
    Contains(&'static str),
    /// Every element of an array value is one of these.
    ElementsOneOf(Vec<&'static str>),
    /// No element of an array value is one of these.
    ElementsNotOneOf(Vec<&'static str>),
}

impl Match {
    fn matches(&self, value: &Value) -> bool {
        match self {
            Match::Eq(wanted) => values_equal(value, wanted),
            Match::OneOf(options) => value.as_str().is_some_and(|s| options.contains(&s)),
            Match::NotOneOf(options) => value.as_str().is_some_and(|s| !options.contains(&s)),
            Match::Gt(limit) => value.as_f64().is_some_and(|v| v > *limit),
            Match::Contains(wanted) => value
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(wanted))),
            Match::ElementsOneOf(options) => value.as_array().is_some_and(|a| {
                a.iter()
                    .all(|v| v.as_str().is_some_and(|s| options.contains(&s)))
            }),
            Match::ElementsNotOneOf(options) => value.as_array().is_some_and(|a| {
                a.iter()
                    .all(|v| v.as_str().is_some_and(|s| !options.contains(&s)))
            }),
        }
    }

    fn describe(&self) -> Value {
        let strings =
            |v: &Vec<&'static str>| Value::Array(v.iter().map(|s| Value::from(*s)).collect());
        match self {
            Match::Eq(v) => serde_json::json!({ "eq": v }),
            Match::OneOf(v) => serde_json::json!({ "one_of": strings(v) }),
            Match::NotOneOf(v) => serde_json::json!({ "not_one_of": strings(v) }),
            Match::Gt(v) => serde_json::json!({ "gt": number_value(*v) }),
            Match::Contains(v) => serde_json::json!({ "contains": v }),
            Match::ElementsOneOf(v) => {
                serde_json::json!({ "elements": { "type": "string", "one_of": strings(v) } })
            }
            Match::ElementsNotOneOf(v) => {
                serde_json::json!({ "elements": { "type": "string", "not_one_of": strings(v) } })
            }
        }
    }
}

/// Cross-field checks (Kong's `entity_checks`). Field names may be dotted
/// paths into nested records (`config.redis.host`).
pub(crate) enum Check {
    AtLeastOneOf(Vec<&'static str>),
    MutuallyRequired(Vec<&'static str>),
    Conditional {
        if_field: &'static str,
        if_match: Match,
        then_field: &'static str,
        then_required: bool,
        then_rules: Vec<Rule>,
        then_err: Option<&'static str>,
    },
    ConditionalAtLeastOneOf {
        if_field: &'static str,
        if_match: Match,
        then_fields: Vec<&'static str>,
        then_err: Option<&'static str>,
        else_match: Option<Match>,
        else_fields: Vec<&'static str>,
        else_err: Option<&'static str>,
    },
    /// Runs only when none of `sources` already has an error.
    Custom {
        sources: Vec<&'static str>,
        run: RecordCheck,
    },
}

/// A record type: an entity, a plugin config, a nested record.
#[derive(Default)]
pub(crate) struct Record {
    pub fields: Vec<Field>,
    pub checks: Vec<Check>,
    pub shorthands: Vec<Shorthand>,
    pub subschemas: Option<Subschemas>,
    /// Runs on the record's value once its own fields validated (Kong's
    /// record-level `custom_validator`); the error is the record field's.
    pub custom: Option<ValueCheck>,
}

impl Record {
    pub fn new(fields: Vec<Field>) -> Self {
        Self {
            fields,
            ..Self::default()
        }
    }

    pub fn checks(mut self, checks: Vec<Check>) -> Self {
        self.checks = checks;
        self
    }

    pub fn shorthands(mut self, shorthands: Vec<Shorthand>) -> Self {
        self.shorthands = shorthands;
        self
    }

    pub fn subschemas(mut self, subschemas: Subschemas) -> Self {
        self.subschemas = Some(subschemas);
        self
    }

    pub fn custom(mut self, check: ValueCheck) -> Self {
        self.custom = Some(check);
        self
    }

    /// The subschema named by `data`, if the record has subschemas.
    fn subschema_for(&self, data: &Map<String, Value>) -> Option<&'static Subschema> {
        let subs = self.subschemas.as_ref()?;
        match data.get(subs.key)? {
            Value::String(s) => (subs.select)(s),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .find_map(|s| (subs.select)(s)),
            _ => None,
        }
    }

    /// The record's fields in order, with `sub`'s overrides in place.
    fn effective_fields<'a>(&'a self, sub: Option<&'a Subschema>) -> Vec<&'a Field> {
        self.fields
            .iter()
            .map(|f| {
                sub.and_then(|s| s.fields.iter().find(|o| o.name == f.name))
                    .unwrap_or(f)
            })
            .collect()
    }

    pub fn field<'a>(&'a self, name: &str, sub: Option<&'a Subschema>) -> Option<&'a Field> {
        let base = self.fields.iter().find(|f| f.name == name);
        let over = sub.and_then(|s| s.fields.iter().find(|f| f.name == name));
        over.or(base)
    }
}

/// Validates `input` against `record`: applies shorthands, generates auto
/// values, fills defaults, checks every field and every cross-field rule.
/// Returns the complete record (schema order, unset fields `null`).
pub(crate) fn validate_record(
    record: &Record,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, FieldErrors> {
    let mut data = input.clone();
    apply_shorthands(record, &mut data)?;

    if let Some(key_field) = record
        .subschemas
        .as_ref()
        .and_then(|subs| record.field(subs.key, None))
    {
        fill_missing(key_field, &mut data);
    }
    let sub = record.subschema_for(&data);
    for field in record.effective_fields(sub) {
        fill_missing(field, &mut data);
    }

    if let Some(subs) = &record.subschemas {
        if sub.is_none() {
            let mut errors = FieldErrors::new();
            match data.get(subs.key) {
                None | Some(Value::Null) => errors.add(subs.key, msg::REQUIRED),
                Some(Value::String(s)) => errors.add(subs.key, (subs.unknown)(s)),
                Some(Value::Array(items)) if !items.is_empty() => {
                    let first = items.first().map(lua_tostring).unwrap_or_default();
                    errors.add(subs.key, (subs.unknown)(&first));
                }
                // Anything else is left to ordinary validation to report.
                Some(_) => {}
            }
            if !errors.is_empty() {
                return Err(errors);
            }
        }
    }

    let mut errors = FieldErrors::new();
    let mut checked = Map::new();
    for (key, value) in &data {
        match record.field(key, sub) {
            None => errors.insert(key, FieldError::Message(msg::UNKNOWN.into())),
            Some(field) => match validate_value(field, value) {
                Ok(v) => {
                    checked.insert(key.clone(), v);
                }
                Err(e) => {
                    errors.insert(key, e);
                    // Cross-field checks still see the record's defaults, as in Kong.
                    let value = match (&field.kind, value) {
                        (Kind::Record(nested), Value::Object(map)) => {
                            Value::Object(fill_defaults(nested, map))
                        }
                        _ => value.clone(),
                    };
                    checked.insert(key.clone(), value);
                }
            },
        }
    }

    let fields = record.effective_fields(sub);
    for field in &fields {
        if field.required && checked.get(field.name).is_none_or(Value::is_null) {
            errors.set(field.name, msg::REQUIRED);
        }
    }

    let mut out = Map::new();
    for field in &fields {
        let value = checked.get(field.name).cloned().unwrap_or(Value::Null);
        out.insert(field.name.to_string(), value);
    }

    let sub_checks = sub.map(|s| s.checks.as_slice()).unwrap_or(&[]);
    for check in record.checks.iter().chain(sub_checks) {
        run_check(check, &out, &mut errors);
    }

    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `input` with shorthands applied and defaults filled (recursively), without
/// validation: what cross-field checks see when a record is invalid.
fn fill_defaults(record: &Record, input: &Map<String, Value>) -> Map<String, Value> {
    let mut data = input.clone();
    // Shorthand errors are reported by validation; here they only stop the rewrite.
    let _ = apply_shorthands(record, &mut data);
    let sub = record.subschema_for(&data);
    for field in record.effective_fields(sub) {
        fill_missing(field, &mut data);
        if let (Kind::Record(nested), Some(Value::Object(map))) =
            (&field.kind, data.get(field.name))
        {
            let filled = fill_defaults(nested, map);
            data.insert(field.name.to_string(), Value::Object(filled));
        }
    }
    data
}

fn apply_shorthands(record: &Record, data: &mut Map<String, Value>) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::new();
    for shorthand in &record.shorthands {
        let name = shorthand.field.name;
        let Some(value) = data.get(name).cloned() else {
            continue;
        };
        if value.is_null() {
            data.remove(name);
            continue;
        }
        match validate_value(&shorthand.field, &value) {
            Err(e) => errors.insert(name, e),
            Ok(value) => {
                data.remove(name);
                merge_partial(data, (shorthand.expand)(&value), shorthand.deprecated);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Merges a shorthand's partial record into `data`. A deprecated shorthand
/// only fills what the input left unset; any other overrides it.
fn merge_partial(data: &mut Map<String, Value>, partial: Map<String, Value>, deprecated: bool) {
    for (key, value) in partial {
        let existing = data.get_mut(&key);
        match (existing, value) {
            (Some(Value::Object(target)), Value::Object(nested)) => {
                merge_partial(target, nested, deprecated);
            }
            (Some(slot), value) => {
                if !deprecated || slot.is_null() {
                    *slot = value;
                }
            }
            (None, value) => {
                data.insert(key, value);
            }
        }
    }
}

fn fill_missing(field: &Field, data: &mut Map<String, Value>) {
    let current = data.get(field.name);
    if let Some(auto) = field.auto {
        let absent = current.is_none_or(Value::is_null);
        if absent {
            let generated = match auto {
                Auto::Uuid => Value::String(uuid::Uuid::new_v4().to_string()),
                Auto::Timestamp => Value::from(now_seconds()),
                Auto::RandomString => Value::String(random_string()),
            };
            data.insert(field.name.to_string(), generated);
        }
        return;
    }
    let reset = field.null_is_default && current.is_some_and(Value::is_null);
    if current.is_some() && !reset {
        return;
    }
    if let Some(default) = &field.default {
        data.insert(field.name.to_string(), default.clone());
    } else if matches!(field.kind, Kind::Record(_)) && field.required {
        data.insert(field.name.to_string(), Value::Object(Map::new()));
    } else if !field.required {
        data.insert(field.name.to_string(), Value::Null);
    }
}

/// 32 characters from `[A-Za-z0-9]`, as Kong generates credential keys/secrets.
pub(crate) fn random_string() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Validates one value against its field; returns the normalized value
/// (integers as integers, sets without duplicates, records complete).
pub(crate) fn validate_value(field: &Field, value: &Value) -> Result<Value, FieldError> {
    let message = |m: &str| FieldError::Message(m.to_string());
    if value.is_null() {
        for rule in &field.rules {
            match rule {
                Rule::Ne(Value::Null) => {
                    return Err(message(field.err.unwrap_or("value must not be null")))
                }
                Rule::Eq(wanted) if !wanted.is_null() => {
                    return Err(FieldError::Message(format!(
                        "value must be {}",
                        lua_tostring(wanted)
                    )))
                }
                _ => {}
            }
        }
        if field.required {
            return Err(message(msg::REQUIRED));
        }
        return Ok(Value::Null);
    }
    if field.must_be_null() {
        return Err(message(field.err.unwrap_or("value must be null")));
    }

    let normalized = match &field.kind {
        Kind::String => match value {
            Value::String(_) => value.clone(),
            _ => return Err(message(msg::STRING)),
        },
        Kind::Integer => match as_integer(value) {
            Some(i) => Value::from(i),
            None => return Err(message(msg::INTEGER)),
        },
        Kind::Number => match value {
            Value::Number(n) => n
                .as_f64()
                .map(number_value)
                .unwrap_or_else(|| value.clone()),
            _ => return Err(message(msg::NUMBER)),
        },
        Kind::Boolean => match value {
            Value::Bool(_) => value.clone(),
            _ => return Err(message(msg::BOOLEAN)),
        },
        Kind::Array(element) => match value {
            Value::Array(items) => validate_elements(element, items)?,
            _ => return Err(message(msg::ARRAY)),
        },
        Kind::Set(element) => match value {
            Value::Array(items) => {
                let mut unique: Vec<Value> = Vec::with_capacity(items.len());
                for item in items {
                    if !unique.iter().any(|u| u == item) {
                        unique.push(item.clone());
                    }
                }
                validate_elements(element, &unique)?
            }
            _ => return Err(message(msg::SET)),
        },
        Kind::Map(keys, values) => match value {
            Value::Object(entries) => {
                let mut out = Map::new();
                for (k, v) in entries {
                    validate_value(keys, &Value::String(k.clone()))?;
                    let v = validate_value(values, v)?;
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            _ => return Err(message(msg::MAP)),
        },
        Kind::Record(record) => match value {
            Value::Object(entries) => match validate_record(record, entries) {
                Ok(out) => {
                    let out = Value::Object(out);
                    if let Some(check) = record.custom {
                        check(&out).map_err(FieldError::Message)?;
                    }
                    out
                }
                Err(errors) => return Err(FieldError::Nested(errors)),
            },
            _ => return Err(message(msg::RECORD)),
        },
        Kind::Foreign(_) => validate_foreign(value)?,
    };

    let mut rules: Vec<&Rule> = field.rules.iter().collect();
    let implicit_len_min = Rule::LenMin(1);
    if matches!(field.kind, Kind::String)
        && !field.rules.iter().any(|r| matches!(r, Rule::LenMin(_)))
    {
        rules.push(&implicit_len_min);
    }
    rules.sort_by_key(|r| r.rank());
    for rule in rules {
        if let Err(m) = rule.apply(&normalized) {
            return Err(FieldError::Message(
                field.err.map(str::to_string).unwrap_or(m),
            ));
        }
    }
    Ok(normalized)
}

fn validate_elements(element: &Field, items: &[Value]) -> Result<Value, FieldError> {
    let mut out = Vec::with_capacity(items.len());
    let mut errors = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        match validate_value(element, item) {
            Ok(v) => out.push(v),
            Err(e) => {
                errors.insert(i + 1, e);
                out.push(item.clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(Value::Array(out))
    } else {
        Err(FieldError::Elements(errors))
    }
}

fn validate_foreign(value: &Value) -> Result<Value, FieldError> {
    let nested = |m: &str| {
        let mut e = FieldErrors::new();
        e.add("id", m);
        FieldError::Nested(e)
    };
    let id = value.as_object().and_then(|o| o.get("id"));
    match id {
        None => Err(nested(msg::MISSING_PK)),
        Some(Value::Null) => Err(nested(msg::REQUIRED)),
        Some(Value::String(s)) if is_uuid(s) => Ok(serde_json::json!({ "id": s })),
        Some(Value::String(_)) => Err(nested(msg::UUID)),
        Some(_) => Err(nested(msg::STRING)),
    }
}

fn as_integer(value: &Value) -> Option<i64> {
    if let Some(i) = value.as_i64() {
        return Some(i);
    }
    let f = value.as_f64()?;
    // Whole floats within i64's exactly representable range are integers in Lua too.
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn run_check(check: &Check, entity: &Map<String, Value>, errors: &mut FieldErrors) {
    match check {
        Check::AtLeastOneOf(names) => {
            if !names.iter().any(|n| is_nonempty(get_path(entity, n))) {
                errors.add_entity(format!("{} {}", msg::AT_LEAST_ONE_OF, quoted_list(names)));
            }
        }
        Check::MutuallyRequired(names) => {
            let set = names
                .iter()
                .filter(|n| is_nonempty(get_path(entity, n)))
                .count();
            if set != 0 && set != names.len() {
                errors.add_entity(format!("{} {}", msg::MUTUALLY_REQUIRED, quoted_list(names)));
            }
        }
        Check::Conditional {
            if_field,
            if_match,
            then_field,
            then_required,
            then_rules,
            then_err,
        } => {
            let Some(if_value) = get_path(entity, if_field) else {
                return;
            };
            if !if_match.matches(if_value) {
                return;
            }
            let then_value = get_path(entity, then_field).unwrap_or(&Value::Null);
            let entity_message = || {
                then_err
                    .map(|e| e.replace("%s", if_field))
                    .unwrap_or_else(|| format!("{} '{if_field}'", msg::CONDITIONAL))
            };
            if *then_required && then_value.is_null() {
                errors.set(then_field, msg::REQUIRED);
                errors.add_entity(format!("{} '{if_field}'", msg::CONDITIONAL));
                return;
            }
            if then_value.is_null() {
                return;
            }
            let mut rules: Vec<&Rule> = then_rules.iter().collect();
            rules.sort_by_key(|r| r.rank());
            for rule in rules {
                if let Err(m) = rule.apply(then_value) {
                    errors.set(then_field, m);
                    errors.add_entity(entity_message());
                    return;
                }
            }
        }
        Check::ConditionalAtLeastOneOf {
            if_field,
            if_match,
            then_fields,
            then_err,
            else_match,
            else_fields,
            else_err,
        } => {
            let Some(if_value) = get_path(entity, if_field) else {
                return;
            };
            let (fields, err) = if if_match.matches(if_value) {
                (then_fields, then_err)
            } else if else_match.as_ref().is_some_and(|m| m.matches(if_value)) {
                (else_fields, else_err)
            } else {
                return;
            };
            if fields.iter().any(|n| is_nonempty(get_path(entity, n))) {
                return;
            }
            let list = quoted_list(fields);
            errors.add_entity(match err {
                Some(e) => e.replace("%s", &list),
                None => format!("{} {list}", msg::AT_LEAST_ONE_OF),
            });
        }
        Check::Custom { sources, run } => {
            let invalid = sources
                .iter()
                .any(|s| errors.has(s.split('.').next().unwrap_or(s)));
            let all_absent = sources.iter().all(|s| get_path(entity, s).is_none());
            if invalid || all_absent {
                return;
            }
            if let Err(failure) = run(entity) {
                if let Some((path, message)) = failure.field {
                    errors.set(&path, message);
                }
                if let Some(message) = failure.entity {
                    errors.add_entity(message);
                }
            }
        }
    }
}

/// The value at a dotted path; `None` when a step is missing or not a record.
pub(crate) fn get_path<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => map.get(path),
        Some((head, rest)) => get_path(map.get(head)?.as_object()?, rest),
    }
}

/// Kong's `is_nonempty`: not null, not an empty string, array or object.
pub(crate) fn is_nonempty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

pub(crate) fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn join_values(values: &[Value]) -> String {
    values
        .iter()
        .map(lua_tostring)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as Lua's `tostring` prints it in Kong's messages.
pub(crate) fn lua_tostring(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map(lua_number).unwrap_or_else(|| n.to_string()),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

pub(crate) fn lua_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// `%d` formatting of a Lua number (truncation).
fn lua_int(f: f64) -> String {
    format!("{}", f.trunc() as i64)
}

pub(crate) fn number_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

// ---------------------------------------------------------------------------
// Form coercion

/// Converts the strings of a decoded form body into the types `record` wants.
pub(crate) fn coerce_record(
    record: &Record,
    input: Map<String, Value>,
    sub: Option<&Subschema>,
) -> Map<String, Value> {
    let sub = sub.or_else(|| record.subschema_for(&input));
    input
        .into_iter()
        .map(|(key, value)| {
            let field = record.field(&key, sub).or_else(|| {
                record
                    .shorthands
                    .iter()
                    .find(|s| s.field.name == key)
                    .map(|s| &s.field)
            });
            let value = match field {
                Some(field) => coerce_value(field, value),
                None => value,
            };
            (key, value)
        })
        .collect()
}

pub(crate) fn coerce_value(field: &Field, value: Value) -> Value {
    if value.as_str() == Some("") {
        return Value::Null;
    }
    match (&field.kind, value) {
        (Kind::Integer | Kind::Number, Value::String(s)) => match parse_lua_number(&s) {
            Some(n) => n,
            None => Value::String(s),
        },
        (Kind::Boolean, Value::String(s)) => match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(s),
        },
        (Kind::Array(element) | Kind::Set(element), Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|v| coerce_element(element, v))
                .collect(),
        ),
        (Kind::Array(element) | Kind::Set(element), single) if !single.is_object() => {
            Value::Array(vec![coerce_element(element, single)])
        }
        (Kind::Map(_, values), Value::Object(entries)) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k, coerce_element(values, v)))
                .collect(),
        ),
        (Kind::Record(record), Value::Object(entries)) => {
            Value::Object(coerce_record(record, entries, None))
        }
        (_, other) => other,
    }
}

/// Elements keep `""` (an empty element is the user's mistake to see).
fn coerce_element(field: &Field, value: Value) -> Value {
    if value.as_str() == Some("") {
        return value;
    }
    coerce_value(field, value)
}

/// Lua's `tonumber` for the forms the Admin API sees.
fn parse_lua_number(s: &str) -> Option<Value> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .and_then(|h| i64::from_str_radix(h, 16).ok());
    if let Some(i) = hex {
        return Some(Value::from(i));
    }
    let f: f64 = t.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    Some(number_value(f))
}

// ---------------------------------------------------------------------------
// Kong's `/schemas` rendering

pub(crate) fn record_json(record: &Record, sub: Option<&Subschema>) -> Value {
    let fields: Vec<Value> = record
        .effective_fields(sub)
        .into_iter()
        .map(|f| {
            let mut entry = Map::new();
            entry.insert(f.name.to_string(), field_json(f));
            Value::Object(entry)
        })
        .collect();
    let mut out = Map::new();
    out.insert("fields".into(), Value::Array(fields));
    let sub_checks = sub.map(|s| s.checks.as_slice()).unwrap_or(&[]);
    let checks: Vec<Value> = checks_json(&record.checks)
        .into_iter()
        .chain(checks_json(sub_checks))
        .collect();
    if !checks.is_empty() {
        out.insert("entity_checks".into(), Value::Array(checks));
    }
    if !record.shorthands.is_empty() {
        let shorthands: Vec<Value> = record
            .shorthands
            .iter()
            .map(|s| {
                let mut entry = Map::new();
                entry.insert(s.field.name.to_string(), field_json(&s.field));
                Value::Object(entry)
            })
            .collect();
        out.insert("shorthand_fields".into(), Value::Array(shorthands));
    }
    Value::Object(out)
}

pub(crate) fn field_json(field: &Field) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), Value::from(field.kind.name()));
    if field.required {
        out.insert("required".into(), Value::Bool(true));
    }
    if let Some(auto) = field.auto {
        out.insert("auto".into(), Value::Bool(true));
        match auto {
            Auto::Uuid => {
                out.insert("uuid".into(), Value::Bool(true));
            }
            Auto::Timestamp => {
                out.insert("timestamp".into(), Value::Bool(true));
            }
            Auto::RandomString => {}
        }
    }
    if let Some(default) = &field.default {
        out.insert("default".into(), default.clone());
    }
    for rule in &field.rules {
        if let Some((key, value)) = rule.describe() {
            out.insert(key.into(), value);
        }
    }
    if let Some(err) = field.err {
        out.insert("err".into(), Value::from(err));
    }
    match &field.kind {
        Kind::Array(element) | Kind::Set(element) => {
            out.insert("elements".into(), field_json(element));
        }
        Kind::Map(keys, values) => {
            out.insert("keys".into(), field_json(keys));
            out.insert("values".into(), field_json(values));
        }
        Kind::Record(record) => {
            if let Value::Object(inner) = record_json(record, None) {
                out.extend(inner);
            }
        }
        Kind::Foreign(reference) => {
            out.insert("reference".into(), Value::from(*reference));
        }
        Kind::String | Kind::Integer | Kind::Number | Kind::Boolean => {}
    }
    Value::Object(out)
}

pub(crate) fn checks_json(checks: &[Check]) -> Vec<Value> {
    checks.iter().filter_map(check_json).collect()
}

fn check_json(check: &Check) -> Option<Value> {
    let names = |v: &Vec<&'static str>| Value::Array(v.iter().map(|s| Value::from(*s)).collect());
    Some(match check {
        Check::AtLeastOneOf(fields) => serde_json::json!({ "at_least_one_of": names(fields) }),
        Check::MutuallyRequired(fields) => {
            serde_json::json!({ "mutually_required": names(fields) })
        }
        Check::Conditional {
            if_field,
            if_match,
            then_field,
            then_required,
            then_rules,
            ..
        } => {
            let mut then_match = Map::new();
            if *then_required {
                then_match.insert("required".into(), Value::Bool(true));
            }
            for rule in then_rules {
                if let Some((key, value)) = rule.describe() {
                    then_match.insert(key.into(), value);
                }
            }
            serde_json::json!({ "conditional": {
                "if_field": if_field,
                "if_match": if_match.describe(),
                "then_field": then_field,
                "then_match": then_match,
            }})
        }
        Check::ConditionalAtLeastOneOf {
            if_field,
            if_match,
            then_fields,
            else_match,
            else_fields,
            ..
        } => {
            let mut body = serde_json::json!({
                "if_field": if_field,
                "if_match": if_match.describe(),
                "then_at_least_one_of": names(then_fields),
            });
            if let (Some(m), Value::Object(b)) = (else_match, &mut body) {
                b.insert("else_match".into(), m.describe());
                b.insert("else_then_at_least_one_of".into(), names(else_fields));
            }
            serde_json::json!({ "conditional_at_least_one_of": body })
        }
        Check::Custom { .. } => return None,
    })
}

//! Canonical serialization and hashing of a whole config: the same config gives
//! the same bytes and the same SHA-256 whatever the order of its rows and
//! whatever the key order inside free-form JSON values (plugin `config`).
//!
//! The canonical form is JSON with every object's keys sorted by their UTF-8
//! bytes, no insignificant whitespace, each collection's rows sorted by
//! `(id, canonical bytes of the row)`, and the collections themselves in a
//! fixed order. Array order inside rows is kept: it is data (a plugin's
//! `allow` list, a route's `paths`).

use crate::config::Config;
use crate::entity::{Certificate, Consumer, JwtSecret, Plugin, Route, Service, Sni};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Debug;
use uuid::Uuid;

/// Canonical JSON bytes of `config` (see the module docs).
pub fn canonical_bytes(config: &Config) -> Vec<u8> {
    let collections: [(&str, Vec<Vec<u8>>); 7] = [
        ("certificates", canonical_rows(&config.certificates)),
        ("consumers", canonical_rows(&config.consumers)),
        ("jwt_secrets", canonical_rows(&config.jwt_secrets)),
        ("plugins", canonical_rows(&config.plugins)),
        ("routes", canonical_rows(&config.routes)),
        ("services", canonical_rows(&config.services)),
        ("snis", canonical_rows(&config.snis)),
    ];
    let size: usize = collections
        .iter()
        .map(|(_, rows)| rows.iter().map(|r| r.len() + 1).sum::<usize>() + 16)
        .sum();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'{');
    for (i, (name, rows)) in collections.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, &mut out);
        out.extend_from_slice(b":[");
        for (j, row) in rows.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(row);
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// Lowercase hex SHA-256 of [`canonical_bytes`].
pub fn config_hash(config: &Config) -> String {
    hex::encode(Sha256::digest(canonical_bytes(config)))
}

/// Canonical JSON of any JSON value: object keys sorted recursively.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(value, &mut out);
    out
}

trait Row: Serialize + Debug {
    fn row_id(&self) -> Uuid;
}

macro_rules! impl_row {
    ($($ty:ty),*) => {
        $(impl Row for $ty {
            fn row_id(&self) -> Uuid {
                self.id
            }
        })*
    };
}

impl_row!(
    Service,
    Route,
    Consumer,
    Plugin,
    JwtSecret,
    Certificate,
    Sni
);

fn canonical_rows<T: Row>(rows: &[T]) -> Vec<Vec<u8>> {
    let mut keyed: Vec<(Uuid, Vec<u8>)> = rows
        .iter()
        .map(|row| (row.row_id(), canonical_row(row)))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, bytes)| bytes).collect()
}

fn canonical_row<T: Row>(row: &T) -> Vec<u8> {
    match serde_json::to_value(row) {
        Ok(value) => canonical_json(&value),
        // Unreachable for these types (plain structs, string-keyed maps). The
        // Debug form still depends on every field, so the hash stays a
        // function of the content instead of panicking or dropping the row.
        Err(_) => {
            let mut out = Vec::new();
            write_string(&format!("{row:?}"), &mut out);
            out
        }
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests;

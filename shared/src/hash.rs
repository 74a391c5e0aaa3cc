//! Canonical serialization and hashing of a whole config: the same config gives
//! the same bytes and the same SHA-256 whatever the order of its rows and
//! whatever the key order inside free-form JSON values (plugin `config`).
//!
//! The canonical form is JSON with every object's keys sorted by their UTF-8
//! bytes, no insignificant whitespace, each collection's rows sorted by
//! `(id, canonical bytes of the row)`, and the collections themselves in a
//! fixed order. Array order inside rows is kept: it is data (a plugin's
//! `allow` list, a route's `paths`).

mod canonical;

use crate::config::Config;
use crate::entity::{
    Acl, BasicauthCredential, Certificate, Consumer, JwtSecret, KeyauthCredential, Plugin, Route,
    Service, Sni,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Debug;
use std::io::Write as _;
use uuid::Uuid;

/// Canonical JSON bytes of `config` (see the module docs).
pub fn canonical_bytes(config: &Config) -> Vec<u8> {
    let collections = canonical_collections(config);
    let size: usize = collections
        .iter()
        .map(|(_, rows)| rows.bytes.len() + rows.spans.len() + 16)
        .sum();
    let mut out = Vec::with_capacity(size + 2);
    emit(&collections, |bytes| out.extend_from_slice(bytes));
    out
}

/// Lowercase hex SHA-256 of [`canonical_bytes`], computed without
/// concatenating them.
pub fn config_hash(config: &Config) -> String {
    let mut hasher = Sha256::new();
    emit(&canonical_collections(config), |bytes| hasher.update(bytes));
    hex::encode(hasher.finalize())
}

/// The rows of one collection: their canonical JSON back to back in `bytes`,
/// and `(id, start, end)` of each, in canonical order.
struct Rows {
    bytes: Vec<u8>,
    spans: Vec<(Uuid, usize, usize)>,
}

/// The collections in name order. The credential collections added after the
/// first release (`acls`, `basicauth_credentials`, `keyauth_credentials`)
/// appear only when they hold rows, so a config without them hashes as it did
/// before they existed (and as a data plane of that release computes it).
fn canonical_collections(config: &Config) -> Vec<(&'static str, Rows)> {
    let mut collections = vec![
        ("certificates", canonical_rows(&config.certificates)),
        ("consumers", canonical_rows(&config.consumers)),
        ("jwt_secrets", canonical_rows(&config.jwt_secrets)),
        ("plugins", canonical_rows(&config.plugins)),
        ("routes", canonical_rows(&config.routes)),
        ("services", canonical_rows(&config.services)),
        ("snis", canonical_rows(&config.snis)),
    ];
    if !config.acls.is_empty() {
        collections.push(("acls", canonical_rows(&config.acls)));
    }
    if !config.basicauth_credentials.is_empty() {
        collections.push((
            "basicauth_credentials",
            canonical_rows(&config.basicauth_credentials),
        ));
    }
    if !config.keyauth_credentials.is_empty() {
        collections.push((
            "keyauth_credentials",
            canonical_rows(&config.keyauth_credentials),
        ));
    }
    collections.sort_unstable_by_key(|(name, _)| *name);
    collections
}

/// Feeds the canonical document to `sink`, piece by piece.
fn emit(collections: &[(&'static str, Rows)], mut sink: impl FnMut(&[u8])) {
    let mut name = Vec::new();
    sink(b"{");
    for (i, (collection, rows)) in collections.iter().enumerate() {
        if i > 0 {
            sink(b",");
        }
        name.clear();
        write_string(collection, &mut name);
        sink(&name);
        sink(b":[");
        for (j, (_, from, to)) in rows.spans.iter().enumerate() {
            if j > 0 {
                sink(b",");
            }
            sink(&rows.bytes[*from..*to]);
        }
        sink(b"]");
    }
    sink(b"}");
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
    Sni,
    KeyauthCredential,
    BasicauthCredential,
    Acl
);

fn canonical_rows<T: Row>(rows: &[T]) -> Rows {
    let mut writer = canonical::Writer::new(Vec::with_capacity(rows.len() * 256));
    let mut spans = Vec::with_capacity(rows.len());
    for row in rows {
        let from = writer.out.len();
        write_row(row, &mut writer);
        spans.push((row.row_id(), from, writer.out.len()));
    }
    let bytes = writer.out;
    spans.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| bytes[a.1..a.2].cmp(&bytes[b.1..b.2]))
    });
    Rows { bytes, spans }
}

/// Appends the canonical JSON of one row: written directly, or through a
/// `serde_json::Value` for whatever the direct writer does not handle.
fn write_row<T: Row>(row: &T, writer: &mut canonical::Writer) {
    let from = writer.out.len();
    if writer.write(row).is_ok() {
        return;
    }
    writer.out.truncate(from);
    match serde_json::to_value(row) {
        Ok(value) => write_value(&value, &mut writer.out),
        // Unreachable for these types (plain structs, string-keyed maps). The
        // Debug form still depends on every field, so the hash stays a
        // function of the content instead of panicking or dropping the row.
        Err(_) => write_string(&format!("{row:?}"), &mut writer.out),
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
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings need no escape at all: one scan without early exit (which
    // the compiler vectorizes), then one copy.
    let needs_escape = bytes.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    // Copy runs of bytes that need no escape in one go. Every byte of a
    // multi-byte UTF-8 sequence is >= 0x80, so only ASCII is ever escaped.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape.is_empty() {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests;

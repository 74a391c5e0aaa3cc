//! A prototype of `tollgate_shared::hash::config_hash` that writes the
//! canonical JSON straight from `Serialize`, without building a
//! `serde_json::Value` per row (an IndexMap per object, SipHash per key) and
//! escaping strings run by run instead of char by char. It exists to measure
//! what moving this into the shared crate would save; the benchmark checks
//! that it gives the same hash as the shared implementation.

use serde::ser::{self, Serialize};
use sha2::{Digest, Sha256};
use tollgate_shared::Config;
use uuid::Uuid;

/// Lowercase hex SHA-256 of the canonical bytes, like `config_hash`.
pub fn config_hash(config: &Config) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    buf.push(b'{');
    hash_rows(
        "certificates",
        &config.certificates,
        |r| r.id,
        &mut buf,
        &mut hasher,
    )?;
    buf.push(b',');
    hash_rows(
        "consumers",
        &config.consumers,
        |r| r.id,
        &mut buf,
        &mut hasher,
    )?;
    buf.push(b',');
    hash_rows(
        "jwt_secrets",
        &config.jwt_secrets,
        |r| r.id,
        &mut buf,
        &mut hasher,
    )?;
    buf.push(b',');
    hash_rows("plugins", &config.plugins, |r| r.id, &mut buf, &mut hasher)?;
    buf.push(b',');
    hash_rows("routes", &config.routes, |r| r.id, &mut buf, &mut hasher)?;
    buf.push(b',');
    hash_rows(
        "services",
        &config.services,
        |r| r.id,
        &mut buf,
        &mut hasher,
    )?;
    buf.push(b',');
    hash_rows("snis", &config.snis, |r| r.id, &mut buf, &mut hasher)?;
    buf.push(b'}');
    hasher.update(&buf);
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `"name":[rows…]` into `buf`, handing full chunks to the hasher.
/// Rows sorted by strictly increasing id (what `Snapshot::new` produces) are
/// streamed; otherwise they are collected and sorted by (id, bytes) first.
fn hash_rows<T: Serialize>(
    name: &str,
    rows: &[T],
    id: impl Fn(&T) -> Uuid,
    buf: &mut Vec<u8>,
    hasher: &mut Sha256,
) -> Result<(), Error> {
    write_string(name, buf);
    buf.extend_from_slice(b":[");
    let sorted = rows.windows(2).all(|w| id(&w[0]) < id(&w[1]));
    if sorted {
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            row.serialize(Canonical { out: buf })?;
            if buf.len() >= 32 * 1024 {
                hasher.update(&buf[..]);
                buf.clear();
            }
        }
    } else {
        let mut keyed = rows
            .iter()
            .map(|row| {
                let mut out = Vec::with_capacity(512);
                row.serialize(Canonical { out: &mut out })?;
                Ok((id(row), out))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        keyed.sort_unstable();
        for (i, (_, row)) in keyed.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(row);
        }
    }
    buf.push(b']');
    Ok(())
}

/// The shared crate's escaping: `"` `\` `\n` `\r` `\t` by name, other control
/// characters as `\u00XX`, everything else as is.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
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
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Writes one value's canonical JSON into `out`.
struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

/// An object being written: entries are serialized into `scratch`, then
/// sorted by key bytes and copied out (`serde_json::Map` semantics: a
/// repeated key keeps its last value).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    scratch: Vec<u8>,
    /// (key range, value range) in `scratch`.
    entries: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    pending_key: Option<std::ops::Range<usize>>,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: Option<usize>) -> Self {
        Object {
            out,
            scratch: Vec::with_capacity(256),
            entries: Vec::with_capacity(len.unwrap_or(8)),
            pending_key: None,
        }
    }

    fn key_str(&mut self, key: &str) -> std::ops::Range<usize> {
        let start = self.scratch.len();
        self.scratch.extend_from_slice(key.as_bytes());
        start..self.scratch.len()
    }

    fn value<T: Serialize + ?Sized>(
        &mut self,
        key: std::ops::Range<usize>,
        value: &T,
    ) -> Result<(), Error> {
        let start = self.scratch.len();
        value.serialize(Canonical {
            out: &mut self.scratch,
        })?;
        self.entries.push((key, start..self.scratch.len()));
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        let Object {
            out,
            scratch,
            mut entries,
            ..
        } = self;
        let key = |r: &std::ops::Range<usize>| scratch.get(r.clone()).unwrap_or_default();
        entries.sort_by(|a, b| key(&a.0).cmp(key(&b.0)));
        out.push(b'{');
        let mut first = true;
        for (i, (k, v)) in entries.iter().enumerate() {
            // A repeated key: only the last one (in insertion order) counts.
            if entries
                .get(i + 1)
                .is_some_and(|next| key(&next.0) == key(k))
            {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            let text = std::str::from_utf8(key(k)).map_err(|e| Error(e.to_string()))?;
            write_string(text, out);
            out.push(b':');
            out.extend_from_slice(scratch.get(v.clone()).unwrap_or_default());
        }
        out.push(b'}');
        Ok(())
    }
}

/// An array being written.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { out: self.out })
    }
}

impl<'a> Canonical<'a> {
    fn raw(self, text: &[u8]) -> Result<(), Error> {
        self.out.extend_from_slice(text);
        Ok(())
    }
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.raw(if v { b"true" } else { b"false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.raw(v.to_string().as_bytes())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.raw(v.to_string().as_bytes())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        // As serde_json::to_value does: through f64, non-finite is null.
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        match serde_json::Number::from_f64(v) {
            Some(n) => self.raw(n.to_string().as_bytes()),
            None => self.raw(b"null"),
        }
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        let mut buf = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut array = Array {
            out: self.out,
            first: true,
        };
        out_array(&mut array, v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let mut object = Object::new(self.out, Some(1));
        let key = object.key_str(variant);
        object.value(key, value)?;
        object.finish()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Error> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _variant: &'static str,
        _: usize,
    ) -> Result<ser::Impossible<(), Error>, Error> {
        Err(Error("tuple variants are not used by the config".into()))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, len))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, Some(len)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _variant: &'static str,
        _: usize,
    ) -> Result<ser::Impossible<(), Error>, Error> {
        Err(Error("struct variants are not used by the config".into()))
    }
}

fn out_array(array: &mut Array<'_>, bytes: &[u8]) -> Result<(), Error> {
    array.out.push(b'[');
    for b in bytes {
        array.element(b)?;
    }
    array.out.push(b']');
    Ok(())
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.out.push(b']');
        Ok(())
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        // Keys become strings the way serde_json's map-key serializer makes them.
        let key = match serde_json::to_value(key).map_err(|e| Error(e.to_string()))? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(Error("key must be a string".into())),
        };
        self.pending_key = Some(self.key_str(&key));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| Error("value without key".into()))?;
        self.value(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let key = self.key_str(key);
        self.value(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

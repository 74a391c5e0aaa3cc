//! A serde `Serializer` that writes the canonical JSON of a value straight into
//! a byte buffer, without building a `serde_json::Value` first.
//!
//! It must give exactly the bytes of `canonical_json(&serde_json::to_value(x))`
//! (the hash is part of the protocol). So it mirrors `serde_json`'s value
//! serializer case by case, and refuses (returns an error, and the caller
//! falls back to the `Value` path) whatever it does not mirror exactly: map
//! keys other than strings and integers, integers beyond 64 bits, and
//! `serde_json`'s private number and raw-value tokens.
//!
//! Objects: values are written one after another as they come, with their keys
//! kept aside; at the end of the object the keys are sorted by their bytes (a
//! repeated key keeps its last value, as a `serde_json::Map` would) and the
//! object is rebuilt in that order. The key list and the copy buffer live in
//! the [`Writer`] and are reused, so writing many rows allocates almost
//! nothing per row.

use super::{write_string, write_value};
use serde::ser::{self, Serialize};
use std::borrow::Cow;
use std::fmt::Display;

/// Why a value was not written; the caller falls back to the `Value` path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Unsupported(String);

impl ser::Error for Unsupported {
    fn custom<T: Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

fn unsupported(what: &str) -> Unsupported {
    Unsupported(format!("canonical writer does not handle {what}"))
}

/// Canonical JSON output plus the scratch space objects reuse.
#[derive(Default)]
pub(super) struct Writer {
    /// Everything written so far.
    pub(super) out: Vec<u8>,
    /// The keys of the objects being written, innermost last.
    entries: Vec<Entry>,
    /// Where an object's values are copied while it is rebuilt in key order.
    scratch: Vec<u8>,
}

/// One key of an object being written, and where its value sits (relative to
/// the start of the object).
struct Entry {
    key: Cow<'static, str>,
    from: usize,
    to: usize,
}

impl Writer {
    pub(super) fn new(out: Vec<u8>) -> Self {
        Writer {
            out,
            entries: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Appends the canonical JSON of `value`. On error `out` may hold a
    /// partial value: the caller truncates it.
    pub(super) fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let result = value.serialize(Canonical { w: self });
        if result.is_err() {
            self.entries.clear();
        }
        result
    }
}

/// [`Writer::write`] into a plain buffer.
#[cfg(test)]
pub(super) fn write<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), Unsupported> {
    let mut writer = Writer::new(std::mem::take(out));
    let result = writer.write(value);
    *out = writer.out;
    result
}

struct Canonical<'a> {
    w: &'a mut Writer,
}

/// Decimal digits of `value`, as `Display` (and so `serde_json`) writes them.
fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

/// A float exactly as `serde_json::to_value` then [`write_value`] renders it
/// (non-finite becomes `null`).
fn write_float(out: &mut Vec<u8>, value: serde_json::Value) {
    write_value(&value, out);
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Variant<Array<'a>>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Variant<Object<'a>>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.w
            .out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        write_i64(&mut self.w.out, v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        match (u64::try_from(v), i64::try_from(v)) {
            (Ok(u), _) => self.serialize_u64(u),
            (_, Ok(i)) => self.serialize_i64(i),
            _ => Err(unsupported("128-bit integers")),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        write_u64(&mut self.w.out, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        match u64::try_from(v) {
            Ok(u) => self.serialize_u64(u),
            Err(_) => Err(unsupported("128-bit integers")),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        write_float(&mut self.w.out, serde_json::Value::from(v));
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        write_float(&mut self.w.out, serde_json::Value::from(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        let mut buf = [0u8; 4];
        write_string(v.encode_utf8(&mut buf), &mut self.w.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_string(v, &mut self.w.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        // serde_json renders bytes as an array of numbers.
        self.w.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.w.out.push(b',');
            }
            write_u64(&mut self.w.out, u64::from(*b));
        }
        self.w.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.w.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        refuse_private(name)?;
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        // One key: nothing to sort.
        self.w.out.push(b'{');
        write_string(variant, &mut self.w.out);
        self.w.out.push(b':');
        value.serialize(Canonical { w: &mut *self.w })?;
        self.w.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'a>, Unsupported> {
        self.w.out.push(b'[');
        Ok(Array {
            w: self.w,
            first: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Array<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Array<'a>>, Unsupported> {
        self.w.out.push(b'{');
        write_string(variant, &mut self.w.out);
        self.w.out.push(b':');
        Ok(Variant(self.serialize_seq(Some(len))?))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Unsupported> {
        let _ = len;
        Ok(Object {
            start: self.w.out.len(),
            first: self.w.entries.len(),
            w: self.w,
            next_key: None,
        })
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Object<'a>, Unsupported> {
        refuse_private(name)?;
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Object<'a>>, Unsupported> {
        self.w.out.push(b'{');
        write_string(variant, &mut self.w.out);
        self.w.out.push(b':');
        Ok(Variant(self.serialize_map(Some(len))?))
    }
}

/// `serde_json`'s arbitrary-precision numbers and raw values travel as
/// structs with private names; their `Value` rendering is not an object.
fn refuse_private(name: &str) -> Result<(), Unsupported> {
    if name.starts_with("$serde_json::private::") {
        Err(unsupported(name))
    } else {
        Ok(())
    }
}

struct Array<'a> {
    w: &'a mut Writer,
    first: bool,
}

impl<'a> Array<'a> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        if !self.first {
            self.w.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { w: &mut *self.w })
    }
    /// Writes the closing bracket; gives the buffer back for a variant's brace.
    fn close(self) -> &'a mut Vec<u8> {
        self.w.out.push(b']');
        &mut self.w.out
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

/// An object under construction: its values sit in `out` from `start` on, in
/// arrival order; its keys are `entries[first..]`.
struct Object<'a> {
    w: &'a mut Writer,
    start: usize,
    first: usize,
    next_key: Option<Cow<'static, str>>,
}

impl<'a> Object<'a> {
    fn entry<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Unsupported> {
        let from = self.w.out.len() - self.start;
        value.serialize(Canonical { w: &mut *self.w })?;
        let to = self.w.out.len() - self.start;
        self.w.entries.push(Entry { key, from, to });
        Ok(())
    }

    /// Writes the object in key order; gives the buffer back for a variant's brace.
    fn close(self) -> &'a mut Vec<u8> {
        let Object {
            w, start, first, ..
        } = self;
        // Stable: among equal keys the last one written comes last.
        w.entries[first..].sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        w.scratch.clear();
        w.scratch.extend_from_slice(&w.out[start..]);
        w.out.truncate(start);
        w.out.push(b'{');
        let mut comma = false;
        for i in first..w.entries.len() {
            let entry = &w.entries[i];
            let superseded = w
                .entries
                .get(i + 1)
                .is_some_and(|next| next.key == entry.key);
            if superseded {
                continue;
            }
            if comma {
                w.out.push(b',');
            }
            comma = true;
            write_string(&entry.key, &mut w.out);
            w.out.push(b':');
            w.out.extend_from_slice(&w.scratch[entry.from..entry.to]);
        }
        w.entries.truncate(first);
        w.out.push(b'}');
        &mut w.out
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.next_key = Some(Cow::Owned(key.serialize(MapKey)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let key = self
            .next_key
            .take()
            .ok_or_else(|| unsupported("a map value without a key"))?;
        self.entry(key, value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.entry(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close();
        Ok(())
    }
}

/// A tuple or struct variant: `{"Variant": <inner>}`.
struct Variant<T>(T);

impl ser::SerializeTupleVariant for Variant<Array<'_>> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.0.element(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.0.close().push(b'}');
        Ok(())
    }
}

impl ser::SerializeStructVariant for Variant<Object<'_>> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.0.entry(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.0.close().push(b'}');
        Ok(())
    }
}

/// Map keys as `serde_json::to_value` accepts them here: strings, and
/// integers (rendered in decimal). Anything else is refused.
struct MapKey;

impl ser::Serializer for MapKey {
    type Ok = String;
    type Error = Unsupported;
    type SerializeSeq = ser::Impossible<String, Unsupported>;
    type SerializeTuple = ser::Impossible<String, Unsupported>;
    type SerializeTupleStruct = ser::Impossible<String, Unsupported>;
    type SerializeTupleVariant = ser::Impossible<String, Unsupported>;
    type SerializeMap = ser::Impossible<String, Unsupported>;
    type SerializeStruct = ser::Impossible<String, Unsupported>;
    type SerializeStructVariant = ser::Impossible<String, Unsupported>;

    fn serialize_str(self, v: &str) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_bool(self, _v: bool) -> Result<String, Unsupported> {
        Err(unsupported("a boolean map key"))
    }
    fn serialize_f32(self, _v: f32) -> Result<String, Unsupported> {
        Err(unsupported("a float map key"))
    }
    fn serialize_f64(self, _v: f64) -> Result<String, Unsupported> {
        Err(unsupported("a float map key"))
    }
    fn serialize_char(self, _v: char) -> Result<String, Unsupported> {
        Err(unsupported("a char map key"))
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, Unsupported> {
        Err(unsupported("a bytes map key"))
    }
    fn serialize_none(self) -> Result<String, Unsupported> {
        Err(unsupported("a null map key"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> Result<String, Unsupported> {
        Err(unsupported("an optional map key"))
    }
    fn serialize_unit(self) -> Result<String, Unsupported> {
        Err(unsupported("a unit map key"))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Unsupported> {
        Err(unsupported("a unit map key"))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<String, Unsupported> {
        Err(unsupported("an enum map key"))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _v: &T,
    ) -> Result<String, Unsupported> {
        Err(unsupported("a newtype map key"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _v: &T,
    ) -> Result<String, Unsupported> {
        Err(unsupported("an enum map key"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(unsupported("a sequence map key"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(unsupported("a tuple map key"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(unsupported("a tuple map key"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(unsupported("an enum map key"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(unsupported("a map map key"))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Err(unsupported("a struct map key"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(unsupported("an enum map key"))
    }
}

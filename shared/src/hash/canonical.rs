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
//! object is rebuilt in that order.

use super::{write_string, write_value};
use serde::ser::{self, Serialize};
use std::borrow::Cow;
use std::fmt::Display;
use std::io::Write as _;

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

/// Appends the canonical JSON of `value` to `out`. On error `out` may hold a
/// partial value: the caller truncates it.
pub(super) fn write<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), Unsupported> {
    value.serialize(Canonical { out })
}

struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

fn write_display(out: &mut Vec<u8>, value: impl Display) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{value}");
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
        self.out
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
        write_display(self.out, v);
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
        write_display(self.out, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        match u64::try_from(v) {
            Ok(u) => self.serialize_u64(u),
            Err(_) => Err(unsupported("128-bit integers")),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        write_float(self.out, serde_json::Value::from(v));
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        write_float(self.out, serde_json::Value::from(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        let mut buf = [0u8; 4];
        write_string(v.encode_utf8(&mut buf), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        // serde_json renders bytes as an array of numbers.
        self.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_display(self.out, b);
        }
        self.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.extend_from_slice(b"null");
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
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        value.serialize(Canonical { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'a>, Unsupported> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
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
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        Ok(Variant(self.serialize_seq(Some(len))?))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Unsupported> {
        let start = self.out.len();
        Ok(Object {
            out: self.out,
            start,
            entries: Vec::with_capacity(len.unwrap_or(0)),
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
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
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
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Array<'a> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { out: self.out })
    }
    /// Writes the closing bracket; gives the buffer back for a variant's brace.
    fn close(self) -> &'a mut Vec<u8> {
        self.out.push(b']');
        self.out
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
/// arrival order; `entries` says which key each byte range belongs to.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    entries: Vec<(Cow<'static, str>, usize, usize)>,
    next_key: Option<Cow<'static, str>>,
}

impl<'a> Object<'a> {
    fn entry<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Unsupported> {
        let from = self.out.len();
        value.serialize(Canonical { out: self.out })?;
        self.entries
            .push((key, from - self.start, self.out.len() - self.start));
        Ok(())
    }

    /// Writes the object in key order; gives the buffer back for a variant's brace.
    fn close(mut self) -> &'a mut Vec<u8> {
        let values = self.out.split_off(self.start);
        // Stable: among equal keys the last one written comes last.
        self.entries
            .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        self.out.reserve(values.len() + self.entries.len() * 16 + 2);
        self.out.push(b'{');
        let mut first = true;
        for (i, (key, from, to)) in self.entries.iter().enumerate() {
            let superseded = self.entries.get(i + 1).is_some_and(|next| next.0 == *key);
            if superseded {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_string(key, self.out);
            self.out.push(b':');
            self.out.extend_from_slice(&values[*from..*to]);
        }
        self.out.push(b'}');
        self.out
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

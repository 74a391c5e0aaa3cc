//! The keys and arguments of one Redis script call, written straight in
//! Redis's wire form (RESP bulk strings) as a plugin builds them: the
//! connection copies them behind the `EVALSHA` header as they are, so a call
//! allocates no string per key or argument and nothing is encoded twice.

use std::fmt;

/// A script call's keys and arguments, each a RESP bulk string
/// (`$<length>\r\n<bytes>\r\n`). Keys and arguments are kept apart because
/// Redis takes every key before the first argument, whatever order a plugin
/// finds them in.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    key_count: usize,
    arg_count: usize,
    keys: Vec<u8>,
    args: Vec<u8>,
}

impl fmt::Debug for ScriptCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptCall")
            .field("keys", &self.key_count)
            .field("args", &self.arg_count)
            .finish()
    }
}

impl ScriptCall {
    /// An empty call with room for about `bytes` of encoded keys.
    pub fn with_capacity(bytes: usize) -> ScriptCall {
        ScriptCall {
            keys: Vec::with_capacity(bytes),
            args: Vec::with_capacity(64),
            ..ScriptCall::default()
        }
    }

    /// A call of whole keys and arguments.
    pub fn of<K: AsRef<[u8]>, A: AsRef<[u8]>>(keys: &[K], args: &[A]) -> ScriptCall {
        let mut call = ScriptCall::default();
        for key in keys {
            call.key(&[key.as_ref()]);
        }
        for arg in args {
            call.arg(&[arg.as_ref()]);
        }
        call
    }

    /// Adds a key made of `parts` written one after the other.
    pub fn key(&mut self, parts: &[&[u8]]) -> &mut ScriptCall {
        bulk_string(&mut self.keys, parts);
        self.key_count += 1;
        self
    }

    /// Adds an argument made of `parts` written one after the other.
    pub fn arg(&mut self, parts: &[&[u8]]) -> &mut ScriptCall {
        bulk_string(&mut self.args, parts);
        self.arg_count += 1;
        self
    }

    /// How many keys the call names (`numkeys`).
    pub fn key_count(&self) -> usize {
        self.key_count
    }

    /// How many bulk strings follow `numkeys`: keys and arguments.
    pub fn strings(&self) -> usize {
        self.key_count + self.arg_count
    }

    /// The encoded keys, then the encoded arguments.
    pub fn encoded(&self) -> [&[u8]; 2] {
        [&self.keys, &self.args]
    }
}

/// Appends `parts`, joined, as one RESP bulk string.
pub fn bulk_string(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let length: usize = parts.iter().map(|part| part.len()).sum();
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(length).as_bytes();
    out.reserve(length + digits.len() + 5);
    out.push(b'$');
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_before_arguments_whatever_the_order_they_were_added_in() {
        let mut call = ScriptCall::default();
        call.arg(&[b"1"]).key(&[b"rate", b":", b"k"]).arg(&[b""]);
        assert_eq!(call.key_count(), 1);
        assert_eq!(call.strings(), 3);
        assert_eq!(
            call.encoded().concat(),
            b"$6\r\nrate:k\r\n$1\r\n1\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn a_value_with_crlf_is_counted_not_split() {
        let mut out = Vec::new();
        bulk_string(&mut out, &[b"a\r\nb"]);
        assert_eq!(out, b"$4\r\na\r\nb\r\n");
    }
}

//! What a request is counted as (Kong's identifier): the bytes of a uuid,
//! an address, a header value or a path. Uuids and addresses are written
//! on the stack in Kong's text form, so counting a request allocates
//! nothing and two requests share a counter exactly when Kong's would.

use std::net::IpAddr;
use std::ops::Deref;

/// The longest address text (an IPv6 address with an embedded IPv4 one);
/// a hyphenated uuid (36) fits too.
const INLINE: usize = 45;

/// An identifier borrowed from the request or the config, or written inline.
pub(super) enum Identifier<'a> {
    Borrowed(&'a [u8]),
    Inline { bytes: [u8; INLINE], len: usize },
}

impl Deref for Identifier<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Identifier::Borrowed(bytes) => bytes,
            Identifier::Inline { bytes, len } => &bytes[..*len],
        }
    }
}

impl Identifier<'_> {
    /// A uuid, hyphenated and lowercase.
    pub(super) fn uuid(id: uuid::Uuid) -> Identifier<'static> {
        let mut bytes = [0u8; INLINE];
        let len = id.hyphenated().encode_lower(&mut bytes).len();
        Identifier::Inline { bytes, len }
    }

    /// An address as Rust (and Kong's `ngx.var.remote_addr`) prints it,
    /// IPv4-mapped IPv6 addresses as IPv4.
    pub(super) fn address(ip: IpAddr) -> Identifier<'static> {
        let mut bytes = [0u8; INLINE];
        let len = match ip.to_canonical() {
            IpAddr::V4(v4) => write_ipv4(v4.octets(), &mut bytes),
            IpAddr::V6(v6) => {
                let mut cursor = Cursor {
                    bytes: &mut bytes,
                    len: 0,
                };
                // Cannot fail: the longest IPv6 text fits.
                let _ = std::fmt::Write::write_fmt(&mut cursor, format_args!("{v6}"));
                cursor.len
            }
        };
        Identifier::Inline { bytes, len }
    }
}

/// Dotted decimal without the formatter (the common case, on every request).
fn write_ipv4(octets: [u8; 4], out: &mut [u8; INLINE]) -> usize {
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

struct Cursor<'b> {
    bytes: &'b mut [u8; INLINE],
    len: usize,
}

impl std::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn addresses_print_as_display_does() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut addresses: Vec<IpAddr> = vec![
            "0.0.0.0".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "10.0.100.9".parse().unwrap(),
            "::ffff:1.2.3.4".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            "::".parse().unwrap(),
        ];
        for _ in 0..2000 {
            addresses.push(IpAddr::from(rng.random::<[u8; 4]>()));
            addresses.push(IpAddr::from(rng.random::<[u8; 16]>()));
        }
        for ip in addresses {
            let written = Identifier::address(ip);
            assert_eq!(&*written, ip.to_canonical().to_string().as_bytes(), "{ip}");
        }
    }

    #[test]
    fn uuids_are_hyphenated_lowercase() {
        let id = uuid::Uuid::from_u128(0xABCD_EF01_2345_6789_ABCD_EF01_2345_6789);
        assert_eq!(&*Identifier::uuid(id), id.to_string().as_bytes());
    }
}

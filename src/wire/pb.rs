//! Protobuf primitives for the hand-written fast path: a borrowing field reader and writers.
//!
//! The generated types in [`proto`](super::proto) define the schema and are the reference; this
//! reader and the writers in `body.rs` and `channel.rs` produce and accept the same bytes
//! without building the intermediate structs (tests and fuzz targets compare the two).

use std::fmt;

/// A field value, borrowed from the input.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire types 1 and 5: no field of ours has them; skipped when unknown.
    Fixed,
}

/// Broken framing: a bad varint, a length past the end, a group or an unknown wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Framing;

/// Reads the top-level fields of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// The next field number and value, or `None` at the end.
    #[inline]
    pub(crate) fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, Framing> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(Framing);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Framing)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(Framing),
        };
        Ok(Some((field, value)))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Framing> {
        if n > self.buf.len() {
            return Err(Framing);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A varint of at most 10 bytes whose value fits 64 bits (as prost requires).
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Framing> {
        // Keys, lengths and small numbers take one byte.
        match self.buf.split_first() {
            Some((&b, rest)) if b < 0x80 => {
                self.buf = rest;
                Ok(b.into())
            }
            _ => self.long_varint(),
        }
    }

    #[inline]
    fn long_varint(&mut self) -> Result<u64, Framing> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return Err(Framing);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(Framing)
    }
}

/// Parses dotted-decimal IPv4 text exactly as `std` does (four decimal octets of 1 to 3
/// digits, no leading zeros, at most 255), without its generic parser; `None` means "not this
/// form", and the caller falls back to `std` (which also handles IPv6).
#[inline]
pub(crate) fn parse_ipv4(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut n = 0u16;
        for &d in part {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u16::from(d - b'0');
        }
        *octet = u8::try_from(n).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(octets.into())
}

/// Number of bytes of `n` as a varint.
pub(crate) fn varint_len(n: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `n` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a varint field unless it is 0 (proto3 omits defaults). Field numbers are < 16.
pub(crate) fn put_uint(out: &mut Vec<u8>, field: u8, n: u64) {
    if n != 0 {
        out.push(field << 3);
        put_varint(out, n);
    }
}

/// Length of [`put_uint`]'s output.
pub(crate) fn uint_len(n: u64) -> usize {
    if n == 0 {
        0
    } else {
        1 + varint_len(n)
    }
}

/// Appends a length-delimited field unless it is empty (proto3 omits defaults).
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    if !b.is_empty() {
        put_header(out, field, b.len());
        out.extend_from_slice(b);
    }
}

/// Length of [`put_bytes`]'s output.
pub(crate) fn bytes_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + varint_len(len as u64) + len
    }
}

/// Appends the key and length of a length-delimited field (an embedded message is written
/// even when empty: its presence is its value).
pub(crate) fn put_header(out: &mut Vec<u8>, field: u8, len: usize) {
    out.push((field << 3) | 2);
    put_varint(out, len as u64);
}

/// Length of an embedded message field with `len` bytes of content.
pub(crate) fn message_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Text of an IP address in a stack buffer (the longest IPv6 text is 45 bytes).
pub(crate) struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    pub(crate) fn new(ip: std::net::IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                // Dotted decimal by hand: the same text as `Display`, without the formatter.
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                // RFC 5952 text via `Display`; the buffer is large enough, so this cannot fail.
                fmt::write(&mut t, format_args!("{v6}"))
                    .expect("an IPv6 address has at most 45 characters");
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn varints() {
        for n in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            assert_eq!(out.len(), varint_len(n), "{n}");
            let mut r = Reader::new(&out);
            assert_eq!(r.varint(), Ok(n));
        }
        assert_eq!(Reader::new(&[0xff; 11]).varint(), Err(Framing));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
            Err(Framing)
        );
        assert_eq!(Reader::new(&[0x80]).varint(), Err(Framing));
    }

    #[test]
    fn ipv4_parser_agrees_with_std() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            "",
            "1.2.3.4 ",
            "a.b.c.d",
            "1.2.3.04",
            "100.200.30.0",
            "::1",
            "1.2.3.1000",
        ] {
            assert_eq!(parse_ipv4(text.as_bytes()), text.parse().ok(), "{text:?}");
        }
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(255, 10, 9, 100)),
            IpAddr::V4(Ipv4Addr::new(1, 20, 199, 7)),
            IpAddr::V6(Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc0a8, 0x0101)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ] {
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}

//! The STUN Binding transaction of RFC 8489 the built-in agent uses to learn its
//! server-reflexive addresses from STUN servers: a request without attributes, and the mapped
//! address of a success response.
//!
//! str0m's parser (`is::stun`) only takes binding responses with MESSAGE-INTEGRITY, which
//! connectivity checks have and public STUN servers' answers do not, so the few bytes are
//! read here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 8489 §5: the magic cookie.
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Binding request and Binding success response message types.
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A transaction id: 96 random bits ("SHOULD be cryptographically random", RFC 8489 §5).
pub(crate) type TransactionId = [u8; 12];

/// A Binding request with no attributes.
pub(crate) fn binding_request(id: &TransactionId) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[..2].copy_from_slice(&BINDING_REQUEST);
    m[4..8].copy_from_slice(&MAGIC);
    m[8..].copy_from_slice(id);
    m
}

/// The transaction id of a Binding success response, if `data` is one.
pub(crate) fn success_id(data: &[u8]) -> Option<TransactionId> {
    if data.len() < 20 || data[..2] != BINDING_SUCCESS || data[4..8] != MAGIC {
        return None;
    }
    data[8..20].try_into().ok()
}

/// What a STUN message is, as far as routing it to a session needs (RFC 8489 §5–6).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// A request, with its USERNAME attribute if it has a readable one.
    Request { username: Option<&'a str> },
    /// A response or an indication, with its transaction id.
    Other { id: TransactionId },
}

/// USERNAME (RFC 8489 §14.3).
const USERNAME: u16 = 0x0006;

/// Reads a STUN message's class, transaction id and USERNAME; `None` if `data` is not STUN
/// (first two bits not zero, no magic cookie, or a length that is not the datagram's).
pub(crate) fn classify(data: &[u8]) -> Option<Kind<'_>> {
    let header = data.get(..20)?;
    if header[0] & 0xc0 != 0 || header[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let attrs = data.get(20..20usize.checked_add(len)?)?;
    // The class is bits C1 (0x0100) and C0 (0x0010) of the message type: 00 is a request.
    let class = ((header[0] & 0x01) << 1) | ((header[1] & 0x10) >> 4);
    if class != 0 {
        return Some(Kind::Other {
            id: transaction_id(data)?,
        });
    }
    let mut at = 0;
    while let Some(h) = attrs.get(at..at + 4) {
        let kind = u16::from_be_bytes([h[0], h[1]]);
        let vlen = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let value = attrs.get(at + 4..at + 4 + vlen)?;
        if kind == USERNAME {
            return Some(Kind::Request {
                username: std::str::from_utf8(value).ok(),
            });
        }
        at += 4 + vlen.div_ceil(4) * 4;
    }
    Some(Kind::Request { username: None })
}

/// The transaction id of a STUN message (bytes 8 to 20).
pub(crate) fn transaction_id(data: &[u8]) -> Option<TransactionId> {
    data.get(8..20)?.try_into().ok()
}

/// The mapped address of a Binding success response: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS
/// from a server of RFC 3489's time. `None` for anything malformed.
pub(crate) fn mapped_address(data: &[u8]) -> Option<SocketAddr> {
    let id = success_id(data)?;
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let attrs = data.get(20..20usize.checked_add(len)?)?;
    let mut plain = None;
    let mut at = 0;
    while let Some(header) = attrs.get(at..at + 4) {
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let vlen = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = attrs.get(at + 4..at + 4 + vlen)?;
        match kind {
            XOR_MAPPED_ADDRESS => return address(value, Some(&id)),
            MAPPED_ADDRESS => plain = address(value, None),
            _ => {}
        }
        // Values are padded to a multiple of 4 bytes.
        at += 4 + vlen.div_ceil(4) * 4;
    }
    plain
}

/// An address attribute's value (RFC 8489 §14.1–14.2), XOR-ed with the cookie (and, for IPv6,
/// the transaction id) when `xor` gives the transaction id.
fn address(value: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    let mut key = [0u8; 16];
    if let Some(id) = xor {
        key[..4].copy_from_slice(&MAGIC);
        key[4..].copy_from_slice(id);
    }
    let port = u16::from_be_bytes([value.get(2)? ^ key[0], value.get(3)? ^ key[1]]);
    let ip = match value.get(1)? {
        0x01 => {
            let b: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(std::array::from_fn::<u8, 4, _>(|i| {
                b[i] ^ key[i]
            })))
        }
        0x02 => {
            let b: [u8; 16] = value.get(4..20)?.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|i| {
                b[i] ^ key[i]
            })))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.2, "Sample IPv4 Response": XOR-MAPPED-ADDRESS 192.0.2.1:32853 after a
    /// SOFTWARE attribute, followed by MESSAGE-INTEGRITY and FINGERPRINT.
    const RFC5769_IPV4: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 §2.1, "Sample Request": a Binding request with SOFTWARE, PRIORITY,
    /// ICE-CONTROLLED, USERNAME "evtj:h6vY", MESSAGE-INTEGRITY and FINGERPRINT.
    const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    #[test]
    fn requests_are_routed_by_username_and_the_rest_by_transaction() {
        assert_eq!(
            classify(&RFC5769_REQUEST),
            Some(Kind::Request {
                username: Some("evtj:h6vY")
            })
        );
        assert_eq!(
            classify(&RFC5769_IPV4),
            Some(Kind::Other {
                id: RFC5769_IPV4[8..20].try_into().unwrap()
            })
        );
        assert_eq!(
            classify(&binding_request(&[7; 12])),
            Some(Kind::Request { username: None })
        );
        // Application data, a truncated message, a wrong cookie: not STUN.
        assert_eq!(classify(&[0xff, 1, 2, 3]), None);
        assert_eq!(classify(&RFC5769_REQUEST[..60]), None);
        let mut bad = RFC5769_REQUEST;
        bad[4] = 0;
        assert_eq!(classify(&bad), None);
    }

    #[test]
    fn reads_the_rfc_5769_ipv4_response() {
        assert_eq!(
            mapped_address(&RFC5769_IPV4),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert_eq!(
            success_id(&RFC5769_IPV4),
            Some([0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae])
        );
    }

    #[test]
    fn a_request_is_not_a_response_and_truncations_are_refused() {
        let id = [7u8; 12];
        let request = binding_request(&id);
        assert_eq!(success_id(&request), None);
        assert_eq!(mapped_address(&request), None);
        for cut in 0..RFC5769_IPV4.len() {
            // Every truncation either still holds the whole XOR-MAPPED-ADDRESS or gives nothing;
            // none panics.
            let got = mapped_address(&RFC5769_IPV4[..cut]);
            assert!(got.is_none() || cut >= 48, "cut {cut}: {got:?}");
        }
    }

    #[test]
    fn plain_mapped_address_and_ipv6() {
        let id = [1u8; 12];
        let mut m = binding_request(&id).to_vec();
        m[..2].copy_from_slice(&BINDING_SUCCESS);
        // MAPPED-ADDRESS 10.0.0.1:5000, not XOR-ed.
        m.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x13, 0x88, 10, 0, 0, 1]);
        m[3] = 12;
        assert_eq!(mapped_address(&m), Some("10.0.0.1:5000".parse().unwrap()));
        // XOR-MAPPED-ADDRESS [2001:db8::1]:5000 wins over it.
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&MAGIC);
        key[4..].copy_from_slice(&id);
        let x: Vec<u8> = v6.octets().iter().zip(key).map(|(a, k)| a ^ k).collect();
        let port = 5000u16 ^ 0x2112;
        m.extend_from_slice(&[0x00, 0x20, 0x00, 0x14, 0x00, 0x02]);
        m.extend_from_slice(&port.to_be_bytes());
        m.extend_from_slice(&x);
        m[3] = 12 + 24;
        assert_eq!(
            mapped_address(&m),
            Some("[2001:db8::1]:5000".parse().unwrap())
        );
    }
}

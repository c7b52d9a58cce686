//! The sealed body: a [`Description`] plus the keys it is bound to, as protobuf.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use prost::Message as _;

use super::error::{BodyError, CandidateError};
use super::proto;
use super::Limits;
use crate::{
    Candidate, CandidateKind, Credentials, Description, PublicKey, SessionRef, Transport,
    MAX_CREDENTIAL_LEN,
};

/// Longest foundation accepted or sent (RFC 8445 §5.1.1.3: 1 to 32 ice-chars).
pub const MAX_FOUNDATION_LEN: usize = 32;

/// Protobuf field number of `SessionDescription.candidates`.
const CANDIDATES_FIELD: u64 = 7;

/// The plaintext inside the box: a description and the keys it is bound to.
///
/// Binding both keys inside the authenticated plaintext is what makes a reflected or
/// re-addressed envelope detectable: the cleartext envelope says who sends to whom, the box key
/// is the same both ways, so only the sealed copy of the keys tells the direction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Body {
    /// The sender's public key.
    pub sender: PublicKey,
    /// The recipient's public key.
    pub recipient: PublicKey,
    /// The description (its session and version are sealed with it).
    pub description: Description,
}

impl Body {
    /// Encodes the body as a protobuf `SessionDescription`, refusing what a receiver with
    /// the same `limits` would reject.
    pub fn encode(&self, limits: &Limits) -> Result<Vec<u8>, BodyError> {
        Ok(body_proto(self.sender, self.recipient, &self.description, limits)?.encode_to_vec())
    }

    /// Parses a protobuf `SessionDescription`. The candidates are counted before any is
    /// decoded, so memory stays proportional to `limits.max_candidates`.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Body, BodyError> {
        Body::from_proto(Body::decode_proto(bytes, limits)?)
    }

    /// The protobuf message, its candidates counted first.
    pub(crate) fn decode_proto(
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<proto::SessionDescription, BodyError> {
        let count = count_field(bytes, CANDIDATES_FIELD)?;
        if count > limits.max_candidates {
            return Err(BodyError::TooManyCandidates {
                count,
                max: limits.max_candidates,
            });
        }
        proto::SessionDescription::decode(bytes).map_err(BodyError::Protobuf)
    }

    /// Parses the protobuf message (its candidate count was already checked).
    pub(crate) fn from_proto(m: proto::SessionDescription) -> Result<Body, BodyError> {
        let key = |field, bytes: &[u8]| {
            <[u8; 32]>::try_from(bytes)
                .map(PublicKey)
                .map_err(|_| BodyError::KeyLength {
                    field,
                    len: bytes.len(),
                })
        };
        let sender = key("sender", &m.sender)?;
        let recipient = key("recipient", &m.recipient)?;
        let creds = m.credentials.ok_or(BodyError::MissingCredentials)?;
        check_credential("ufrag", &creds.ufrag)?;
        check_credential("pwd", &creds.pwd)?;
        let candidates = m
            .candidates
            .into_iter()
            .enumerate()
            .map(|(index, c)| {
                candidate_from_proto(c).map_err(|error| BodyError::Candidate { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Body {
            sender,
            recipient,
            description: Description {
                session: SessionRef {
                    epoch: m.epoch,
                    version: m.version,
                },
                ack: m.ack.map(|a| SessionRef {
                    epoch: a.epoch,
                    version: a.version,
                }),
                need_reply: creds.need_creds,
                credentials: Credentials {
                    ufrag: creds.ufrag,
                    pwd: creds.pwd,
                },
                candidates,
                end_of_candidates: m.end_of_candidates,
            },
        })
    }
}

/// The protobuf message of a body, checked against `limits`.
pub(crate) fn body_proto(
    sender: PublicKey,
    recipient: PublicKey,
    d: &Description,
    limits: &Limits,
) -> Result<proto::SessionDescription, BodyError> {
    if d.candidates.len() > limits.max_candidates {
        return Err(BodyError::TooManyCandidates {
            count: d.candidates.len(),
            max: limits.max_candidates,
        });
    }
    check_credential("ufrag", &d.credentials.ufrag)?;
    check_credential("pwd", &d.credentials.pwd)?;
    let candidates = d
        .candidates
        .iter()
        .enumerate()
        .map(|(index, c)| {
            candidate_to_proto(c).map_err(|error| BodyError::Candidate { index, error })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(proto::SessionDescription {
        sender: sender.0.to_vec(),
        recipient: recipient.0.to_vec(),
        epoch: d.session.epoch,
        version: d.session.version,
        ack: d.ack.map(|a| proto::SessionRef {
            epoch: a.epoch,
            version: a.version,
        }),
        credentials: Some(proto::Credentials {
            ufrag: d.credentials.ufrag.clone(),
            pwd: d.credentials.pwd.clone(),
            need_creds: d.need_reply,
        }),
        candidates,
        end_of_candidates: d.end_of_candidates,
    })
}

fn check_credential(field: &'static str, value: &str) -> Result<(), BodyError> {
    if value.is_empty() || value.len() > MAX_CREDENTIAL_LEN {
        return Err(BodyError::CredentialLength {
            field,
            len: value.len(),
            max: MAX_CREDENTIAL_LEN,
        });
    }
    Ok(())
}

/// RFC 8445 §5.1.1.3: 1 to 32 ice-chars (ALPHA / DIGIT / "+" / "/").
fn is_foundation(f: &str) -> bool {
    (1..=MAX_FOUNDATION_LEN).contains(&f.len())
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// An IP address in text form, without a second allocation.
fn ip_text(ip: IpAddr) -> String {
    let mut s = String::with_capacity(if ip.is_ipv4() { 15 } else { 39 });
    // Writing to a String cannot fail.
    write!(s, "{ip}").expect("formatting into a String is infallible");
    s
}

fn candidate_to_proto(c: &Candidate) -> Result<proto::Candidate, CandidateError> {
    if !is_foundation(&c.foundation) {
        return Err(CandidateError::Foundation);
    }
    if !(1..=256).contains(&c.component) {
        return Err(CandidateError::Component(c.component.into()));
    }
    let priority =
        i32::try_from(c.priority).map_err(|_| CandidateError::Priority(c.priority.into()))?;
    let kind = match c.kind {
        CandidateKind::Host => proto::CandidateType::Host,
        CandidateKind::ServerReflexive => proto::CandidateType::ServerReflexive,
        CandidateKind::PeerReflexive => proto::CandidateType::PeerReflexive,
        CandidateKind::Relay => proto::CandidateType::Relay,
    };
    let network = match (c.transport, c.addr.is_ipv4()) {
        (Transport::Udp, true) => proto::NetworkType::Udp4,
        (Transport::Udp, false) => proto::NetworkType::Udp6,
        (Transport::Tcp, true) => proto::NetworkType::Tcp4,
        (Transport::Tcp, false) => proto::NetworkType::Tcp6,
    };
    Ok(proto::Candidate {
        r#type: kind.into(),
        network_type: network.into(),
        foundation: c.foundation.clone(),
        component: c.component.into(),
        priority,
        address: ip_text(c.addr.ip()),
        port: c.addr.port().into(),
        related_address: c.related.map(|r| proto::RelatedAddress {
            address: ip_text(r.ip()),
            port: r.port().into(),
        }),
    })
}

fn candidate_from_proto(c: proto::Candidate) -> Result<Candidate, CandidateError> {
    let kind = match proto::CandidateType::try_from(c.r#type) {
        Ok(proto::CandidateType::Host) => CandidateKind::Host,
        Ok(proto::CandidateType::ServerReflexive) => CandidateKind::ServerReflexive,
        Ok(proto::CandidateType::PeerReflexive) => CandidateKind::PeerReflexive,
        Ok(proto::CandidateType::Relay) => CandidateKind::Relay,
        Ok(proto::CandidateType::UnspecifiedCandidateType) | Err(_) => {
            return Err(CandidateError::Type(c.r#type))
        }
    };
    let (transport, v4) = match proto::NetworkType::try_from(c.network_type) {
        Ok(proto::NetworkType::Udp4) => (Transport::Udp, true),
        Ok(proto::NetworkType::Udp6) => (Transport::Udp, false),
        Ok(proto::NetworkType::Tcp4) => (Transport::Tcp, true),
        Ok(proto::NetworkType::Tcp6) => (Transport::Tcp, false),
        Ok(proto::NetworkType::UnspecifiedNetworkType) | Err(_) => {
            return Err(CandidateError::NetworkType(c.network_type))
        }
    };
    if !is_foundation(&c.foundation) {
        return Err(CandidateError::Foundation);
    }
    let component = u16::try_from(c.component)
        .ok()
        .filter(|n| (1..=256).contains(n))
        .ok_or(CandidateError::Component(c.component.into()))?;
    let priority =
        u32::try_from(c.priority).map_err(|_| CandidateError::Priority(c.priority.into()))?;
    let addr = socket_addr(&c.address, c.port)?;
    if addr.is_ipv4() != v4 {
        return Err(CandidateError::FamilyMismatch);
    }
    let related = c
        .related_address
        .map(|r| socket_addr(&r.address, r.port))
        .transpose()?;
    Ok(Candidate {
        kind,
        transport,
        addr,
        priority,
        foundation: c.foundation,
        component,
        related,
    })
}

fn socket_addr(address: &str, port: i32) -> Result<SocketAddr, CandidateError> {
    let ip: IpAddr = address.parse().map_err(|_| CandidateError::Address)?;
    let port = u16::try_from(port).map_err(|_| CandidateError::Port(port))?;
    Ok(SocketAddr::new(ip, port))
}

/// Counts the top-level occurrences of field `field` in a protobuf message without decoding
/// it: a bounds-checked walk over tags and lengths.
fn count_field(mut bytes: &[u8], field: u64) -> Result<usize, BodyError> {
    let mut count = 0usize;
    while !bytes.is_empty() {
        let key = varint(&mut bytes).ok_or(BodyError::Framing)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut bytes).ok_or(BodyError::Framing)?;
                0
            }
            1 => 8,
            2 => {
                let len = varint(&mut bytes).ok_or(BodyError::Framing)?;
                usize::try_from(len).map_err(|_| BodyError::Framing)?
            }
            5 => 4,
            _ => return Err(BodyError::Framing),
        };
        if skip > bytes.len() {
            return Err(BodyError::Framing);
        }
        bytes = &bytes[skip..];
        if key >> 3 == field {
            count += 1;
        }
    }
    Ok(count)
}

/// Reads a protobuf varint (at most 10 bytes) from the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_reads_and_rejects() {
        let mut b: &[u8] = &[0xac, 0x02, 0xff];
        assert_eq!(varint(&mut b), Some(300));
        assert_eq!(b, &[0xff]);
        let mut b: &[u8] = &[0xff; 11];
        assert_eq!(varint(&mut b), None);
        let mut b: &[u8] = &[];
        assert_eq!(varint(&mut b), None);
    }

    #[test]
    fn foundation_rule() {
        assert!(is_foundation("a+/9"));
        assert!(!is_foundation(""));
        assert!(!is_foundation("a b"));
        assert!(!is_foundation(&"x".repeat(33)));
    }
}

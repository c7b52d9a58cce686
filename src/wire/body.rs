//! The sealed body: a [`Description`] plus the keys it is bound to, as protobuf.

use std::net::{IpAddr, SocketAddr};

use super::error::{BodyError, CandidateError};
use super::pb::{self, IpText, Reader, Value};
use super::proto;
use super::Limits;
use crate::{
    Candidate, CandidateKind, Credentials, Description, PublicKey, Seen, SessionRef, TcpType,
    Transport, MAX_CREDENTIAL_LEN,
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
        let mut out = Vec::with_capacity(256 + 96 * self.description.candidates.len());
        write_body(
            &mut out,
            self.sender,
            self.recipient,
            &self.description,
            limits,
        )?;
        Ok(out)
    }

    /// Parses a protobuf `SessionDescription`. Candidates beyond `limits.max_candidates` are
    /// only counted, never decoded, so memory stays bounded by the limits.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Body, BodyError> {
        read_body(bytes, limits)
    }

    /// The generated protobuf message (the reference path: [`encode`](Body::encode) writes
    /// the same bytes without building it).
    pub fn to_proto(&self, limits: &Limits) -> Result<proto::SessionDescription, BodyError> {
        body_proto(self.sender, self.recipient, &self.description, limits)
    }

    /// Parses the generated protobuf message (the reference path: [`decode`](Body::decode)
    /// accepts the same bytes, or is stricter, without building it).
    pub fn from_proto(m: proto::SessionDescription, limits: &Limits) -> Result<Body, BodyError> {
        if m.candidates.len() > limits.max_candidates {
            return Err(BodyError::TooManyCandidates {
                count: m.candidates.len(),
                max: limits.max_candidates,
            });
        }
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
        if let Some(seen) = &m.seen {
            check_credential("seen ufrag", &seen.ufrag)?;
        }
        let candidates = m
            .candidates
            .into_iter()
            .enumerate()
            .map(|(index, c)| {
                let related = c.related_address.map(|r| (r.address, r.port));
                let raw = RawCandidate {
                    kind: c.r#type,
                    network: c.network_type,
                    foundation: &c.foundation,
                    component: c.component,
                    priority: c.priority,
                    address: c.address.as_bytes(),
                    port: c.port,
                    related: related.as_ref().map(|(a, p)| (a.as_bytes(), *p)),
                    tcp_type: c.tcp_type,
                };
                raw.parse()
                    .map_err(|error| BodyError::Candidate { index, error })
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
                    ufrag: creds.ufrag.into(),
                    pwd: creds.pwd.into(),
                },
                candidates,
                end_of_candidates: m.end_of_candidates,
                seen: m.seen.map(|s| Seen {
                    session: SessionRef {
                        epoch: s.epoch,
                        version: s.version,
                    },
                    ufrag: s.ufrag.into(),
                }),
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
    if let Some(seen) = &d.seen {
        check_credential("seen ufrag", &seen.ufrag)?;
    }
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
            ufrag: d.credentials.ufrag.to_string(),
            pwd: d.credentials.pwd.to_string(),
            need_creds: d.need_reply,
        }),
        candidates,
        end_of_candidates: d.end_of_candidates,
        seen: d.seen.as_ref().map(|s| proto::Seen {
            epoch: s.session.epoch,
            version: s.session.version,
            ufrag: s.ufrag.to_string(),
        }),
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
fn is_foundation(f: &[u8]) -> bool {
    (1..=MAX_FOUNDATION_LEN).contains(&f.len())
        && f.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The wire values of a candidate that can be sent, checked: (type, network type, priority,
/// TCP type).
fn check_candidate(c: &Candidate) -> Result<(i32, i32, i32, i32), CandidateError> {
    if !is_foundation(c.foundation.as_bytes()) {
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
    let tcp_type = match (c.transport, c.tcp_type) {
        (Transport::Udp, Some(_)) => return Err(CandidateError::TcpTypeOnUdp),
        (_, None) => proto::TcpType::UnspecifiedTcpType,
        (_, Some(TcpType::Active)) => proto::TcpType::Active,
        (_, Some(TcpType::Passive)) => proto::TcpType::Passive,
        (_, Some(TcpType::SimultaneousOpen)) => proto::TcpType::SimultaneousOpen,
    };
    Ok((kind.into(), network.into(), priority, tcp_type.into()))
}

fn ip_string(ip: IpAddr) -> String {
    // IpText holds ASCII only.
    String::from_utf8_lossy(IpText::new(ip).as_bytes()).into_owned()
}

fn candidate_to_proto(c: &Candidate) -> Result<proto::Candidate, CandidateError> {
    let (kind, network, priority, tcp_type) = check_candidate(c)?;
    Ok(proto::Candidate {
        r#type: kind,
        network_type: network,
        tcp_type,
        foundation: c.foundation.to_string(),
        component: c.component.into(),
        priority,
        address: ip_string(c.addr.ip()),
        port: c.addr.port().into(),
        related_address: c.related.map(|r| proto::RelatedAddress {
            address: ip_string(r.ip()),
            port: r.port().into(),
        }),
    })
}

/// A candidate's wire fields before parsing (from the generated struct or borrowed from the
/// input).
struct RawCandidate<'a> {
    kind: i32,
    network: i32,
    foundation: &'a str,
    component: i32,
    priority: i32,
    address: &'a [u8],
    port: i32,
    related: Option<(&'a [u8], i32)>,
    tcp_type: i32,
}

impl RawCandidate<'_> {
    fn parse(self) -> Result<Candidate, CandidateError> {
        let kind = match proto::CandidateType::try_from(self.kind) {
            Ok(proto::CandidateType::Host) => CandidateKind::Host,
            Ok(proto::CandidateType::ServerReflexive) => CandidateKind::ServerReflexive,
            Ok(proto::CandidateType::PeerReflexive) => CandidateKind::PeerReflexive,
            Ok(proto::CandidateType::Relay) => CandidateKind::Relay,
            Ok(proto::CandidateType::UnspecifiedCandidateType) | Err(_) => {
                return Err(CandidateError::Type(self.kind))
            }
        };
        let (transport, v4) = match proto::NetworkType::try_from(self.network) {
            Ok(proto::NetworkType::Udp4) => (Transport::Udp, true),
            Ok(proto::NetworkType::Udp6) => (Transport::Udp, false),
            Ok(proto::NetworkType::Tcp4) => (Transport::Tcp, true),
            Ok(proto::NetworkType::Tcp6) => (Transport::Tcp, false),
            Ok(proto::NetworkType::UnspecifiedNetworkType) | Err(_) => {
                return Err(CandidateError::NetworkType(self.network))
            }
        };
        if !is_foundation(self.foundation.as_bytes()) {
            return Err(CandidateError::Foundation);
        }
        let component = u16::try_from(self.component)
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or(CandidateError::Component(self.component.into()))?;
        let priority = u32::try_from(self.priority)
            .map_err(|_| CandidateError::Priority(self.priority.into()))?;
        let addr = socket_addr(self.address, self.port)?;
        if addr.is_ipv4() != v4 {
            return Err(CandidateError::FamilyMismatch);
        }
        let related = self.related.map(|(a, p)| socket_addr(a, p)).transpose()?;
        let tcp_type = match proto::TcpType::try_from(self.tcp_type) {
            Ok(proto::TcpType::UnspecifiedTcpType) => None,
            Ok(proto::TcpType::Active) => Some(TcpType::Active),
            Ok(proto::TcpType::Passive) => Some(TcpType::Passive),
            Ok(proto::TcpType::SimultaneousOpen) => Some(TcpType::SimultaneousOpen),
            Err(_) => return Err(CandidateError::TcpType(self.tcp_type)),
        };
        if transport == Transport::Udp && tcp_type.is_some() {
            return Err(CandidateError::TcpTypeOnUdp);
        }
        Ok(Candidate {
            kind,
            transport,
            addr,
            priority,
            foundation: self.foundation.into(),
            component,
            related,
            tcp_type,
        })
    }
}

fn socket_addr(address: &[u8], port: i32) -> Result<SocketAddr, CandidateError> {
    let ip = match pb::parse_ipv4(address) {
        Some(v4) => IpAddr::V4(v4),
        None => std::str::from_utf8(address)
            .ok()
            .and_then(|a| a.parse().ok())
            .ok_or(CandidateError::Address)?,
    };
    let port = u16::try_from(port).map_err(|_| CandidateError::Port(port))?;
    Ok(SocketAddr::new(ip, port))
}

// ---------------------------------------------------------------------------------------------
// Fast path: write and read the protobuf bytes directly.

/// Appends the body's protobuf encoding to `out`: the bytes prost writes for
/// [`body_proto`]'s message (fields in number order, proto3 defaults omitted).
pub(crate) fn write_body(
    out: &mut Vec<u8>,
    sender: PublicKey,
    recipient: PublicKey,
    d: &Description,
    limits: &Limits,
) -> Result<(), BodyError> {
    if d.candidates.len() > limits.max_candidates {
        return Err(BodyError::TooManyCandidates {
            count: d.candidates.len(),
            max: limits.max_candidates,
        });
    }
    check_credential("ufrag", &d.credentials.ufrag)?;
    check_credential("pwd", &d.credentials.pwd)?;
    if let Some(seen) = &d.seen {
        check_credential("seen ufrag", &seen.ufrag)?;
    }
    pb::put_bytes(out, 1, &sender.0);
    pb::put_bytes(out, 2, &recipient.0);
    pb::put_uint(out, 3, d.session.epoch);
    pb::put_uint(out, 4, d.session.version.into());
    if let Some(ack) = d.ack {
        let len = pb::uint_len(ack.epoch) + pb::uint_len(ack.version.into());
        pb::put_header(out, 5, len);
        pb::put_uint(out, 1, ack.epoch);
        pb::put_uint(out, 2, ack.version.into());
    }
    let (ufrag, pwd) = (d.credentials.ufrag.as_bytes(), d.credentials.pwd.as_bytes());
    let len =
        pb::bytes_len(ufrag.len()) + pb::bytes_len(pwd.len()) + pb::uint_len(d.need_reply.into());
    pb::put_header(out, 6, len);
    pb::put_bytes(out, 1, ufrag);
    pb::put_bytes(out, 2, pwd);
    pb::put_uint(out, 3, d.need_reply.into());
    for (index, c) in d.candidates.iter().enumerate() {
        write_candidate(out, c).map_err(|error| BodyError::Candidate { index, error })?;
    }
    pb::put_uint(out, 8, d.end_of_candidates.into());
    if let Some(seen) = &d.seen {
        let ufrag = seen.ufrag.as_bytes();
        let len = pb::uint_len(seen.session.epoch)
            + pb::uint_len(seen.session.version.into())
            + pb::bytes_len(ufrag.len());
        pb::put_header(out, 9, len);
        pb::put_uint(out, 1, seen.session.epoch);
        pb::put_uint(out, 2, seen.session.version.into());
        pb::put_bytes(out, 3, ufrag);
    }
    Ok(())
}

fn write_candidate(out: &mut Vec<u8>, c: &Candidate) -> Result<(), CandidateError> {
    let (kind, network, priority, tcp_type) = check_candidate(c)?;
    // Enum and int32 fields are written as their (here non-negative) value.
    let (kind, network, priority, tcp_type) = (
        kind as u64,
        network as u64,
        priority as u64,
        tcp_type as u64,
    );
    let address = IpText::new(c.addr.ip());
    let related = c
        .related
        .map(|r| (IpText::new(r.ip()), u64::from(r.port())));
    let related_len = related
        .as_ref()
        .map(|(a, port)| pb::bytes_len(a.as_bytes().len()) + pb::uint_len(*port));
    let len = pb::uint_len(kind)
        + pb::uint_len(network)
        + pb::uint_len(tcp_type)
        + pb::bytes_len(c.foundation.len())
        + pb::uint_len(c.component.into())
        + pb::uint_len(priority)
        + pb::bytes_len(address.as_bytes().len())
        + pb::uint_len(c.addr.port().into())
        + related_len.map_or(0, pb::message_len);
    pb::put_header(out, 7, len);
    pb::put_uint(out, 1, kind);
    pb::put_uint(out, 2, network);
    pb::put_uint(out, 3, tcp_type);
    pb::put_bytes(out, 4, c.foundation.as_bytes());
    pb::put_uint(out, 5, c.component.into());
    pb::put_uint(out, 6, priority);
    pb::put_bytes(out, 7, address.as_bytes());
    pb::put_uint(out, 8, c.addr.port().into());
    if let (Some((a, port)), Some(len)) = (related, related_len) {
        pb::put_header(out, 9, len);
        pb::put_bytes(out, 1, a.as_bytes());
        pb::put_uint(out, 2, port);
    }
    Ok(())
}

/// The body parsed straight from its bytes. Accepts what prost accepts for
/// `SessionDescription` (unknown fields skipped, the last of a repeated scalar wins, integers
/// truncated to the field's width), except that it refuses groups and a singular embedded
/// message given twice (which prost would merge).
fn read_body(bytes: &[u8], limits: &Limits) -> Result<Body, BodyError> {
    let mut r = Reader::new(bytes);
    let (mut sender, mut recipient): (&[u8], &[u8]) = (&[], &[]);
    let mut session = SessionRef {
        epoch: 0,
        version: 0,
    };
    let mut ack = None;
    let mut credentials = None;
    let mut candidates = Vec::with_capacity(limits.max_candidates.min(8));
    let mut end_of_candidates = false;
    let mut seen = None;
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => sender = b,
            (2, Value::Bytes(b)) => recipient = b,
            (3, Value::Varint(v)) => session.epoch = v,
            (4, Value::Varint(v)) => session.version = v as u32,
            (5, Value::Bytes(b)) if ack.is_none() => ack = Some(read_session_ref(b)?),
            (6, Value::Bytes(b)) if credentials.is_none() => {
                credentials = Some(read_credentials(b)?)
            }
            (7, Value::Bytes(b)) => {
                if candidates.len() == limits.max_candidates {
                    // Count the rest without decoding it.
                    let mut count = candidates.len() + 1;
                    while let Some((field, _)) = r.next_field()? {
                        count += usize::from(field == CANDIDATES_FIELD);
                    }
                    return Err(BodyError::TooManyCandidates {
                        count,
                        max: limits.max_candidates,
                    });
                }
                let index = candidates.len();
                let c = read_candidate(b)?
                    .parse()
                    .map_err(|error| BodyError::Candidate { index, error })?;
                candidates.push(c);
            }
            (8, Value::Varint(v)) => end_of_candidates = v != 0,
            (9, Value::Bytes(b)) if seen.is_none() => seen = Some(read_seen(b)?),
            (1..=9, _) => return Err(BodyError::Framing),
            _ => {}
        }
    }
    let key = |field, bytes: &[u8]| {
        <[u8; 32]>::try_from(bytes)
            .map(PublicKey)
            .map_err(|_| BodyError::KeyLength {
                field,
                len: bytes.len(),
            })
    };
    let (credentials, need_reply) = credentials.ok_or(BodyError::MissingCredentials)?;
    Ok(Body {
        sender: key("sender", sender)?,
        recipient: key("recipient", recipient)?,
        description: Description {
            session,
            ack,
            need_reply,
            credentials,
            candidates,
            end_of_candidates,
            seen,
        },
    })
}

fn read_seen(bytes: &[u8]) -> Result<Seen, BodyError> {
    let mut r = Reader::new(bytes);
    let mut session = SessionRef {
        epoch: 0,
        version: 0,
    };
    let mut ufrag = "";
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Varint(v)) => session.epoch = v,
            (2, Value::Varint(v)) => session.version = v as u32,
            (3, Value::Bytes(b)) => ufrag = utf8(b)?,
            (1..=3, _) => return Err(BodyError::Framing),
            _ => {}
        }
    }
    check_credential("seen ufrag", ufrag)?;
    Ok(Seen {
        session,
        ufrag: ufrag.into(),
    })
}

fn read_session_ref(bytes: &[u8]) -> Result<SessionRef, BodyError> {
    let mut r = Reader::new(bytes);
    let mut s = SessionRef {
        epoch: 0,
        version: 0,
    };
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Varint(v)) => s.epoch = v,
            (2, Value::Varint(v)) => s.version = v as u32,
            (1..=2, _) => return Err(BodyError::Framing),
            _ => {}
        }
    }
    Ok(s)
}

fn read_credentials(bytes: &[u8]) -> Result<(Credentials, bool), BodyError> {
    let mut r = Reader::new(bytes);
    let (mut ufrag, mut pwd, mut need) = ("", "", false);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => ufrag = utf8(b)?,
            (2, Value::Bytes(b)) => pwd = utf8(b)?,
            (3, Value::Varint(v)) => need = v != 0,
            (1..=3, _) => return Err(BodyError::Framing),
            _ => {}
        }
    }
    check_credential("ufrag", ufrag)?;
    check_credential("pwd", pwd)?;
    Ok((
        Credentials {
            ufrag: ufrag.into(),
            pwd: pwd.into(),
        },
        need,
    ))
}

fn read_candidate(bytes: &[u8]) -> Result<RawCandidate<'_>, BodyError> {
    let mut r = Reader::new(bytes);
    let mut c = RawCandidate {
        kind: 0,
        network: 0,
        foundation: "",
        component: 0,
        priority: 0,
        address: &[],
        port: 0,
        related: None,
        tcp_type: 0,
    };
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Varint(v)) => c.kind = v as i32,
            (2, Value::Varint(v)) => c.network = v as i32,
            (3, Value::Varint(v)) => c.tcp_type = v as i32,
            (4, Value::Bytes(b)) => c.foundation = utf8(b)?,
            (5, Value::Varint(v)) => c.component = v as i32,
            (6, Value::Varint(v)) => c.priority = v as i32,
            // Every occurrence must be UTF-8, as protobuf's string type asks (prost checks it),
            // even one a later occurrence overrides (found by the decode_body fuzz target).
            (7, Value::Bytes(b)) => c.address = utf8(b)?.as_bytes(),
            (8, Value::Varint(v)) => c.port = v as i32,
            (9, Value::Bytes(b)) if c.related.is_none() => {
                c.related = Some(read_related(b)?);
            }
            (1..=9, _) => return Err(BodyError::Framing),
            _ => {}
        }
    }
    Ok(c)
}

fn read_related(bytes: &[u8]) -> Result<(&[u8], i32), BodyError> {
    let mut r = Reader::new(bytes);
    let (mut address, mut port): (&[u8], i32) = (&[], 0);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => address = utf8(b)?.as_bytes(),
            (2, Value::Varint(v)) => port = v as i32,
            (1..=2, _) => return Err(BodyError::Framing),
            _ => {}
        }
    }
    Ok((address, port))
}

fn utf8(b: &[u8]) -> Result<&str, BodyError> {
    std::str::from_utf8(b).map_err(|_| BodyError::Framing)
}

impl From<pb::Framing> for BodyError {
    fn from(_: pb::Framing) -> BodyError {
        BodyError::Framing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foundation_rule() {
        assert!(is_foundation(b"a+/9"));
        assert!(!is_foundation(b""));
        assert!(!is_foundation(b"a b"));
        assert!(!is_foundation("x".repeat(33).as_bytes()));
    }
}

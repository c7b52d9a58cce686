//! ICE candidates as typed values (RFC 8445 §5.1; cunicu's `Candidate` message).

use std::net::SocketAddr;

use smol_str::SmolStr;

/// Candidate type (RFC 8445 §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CandidateKind {
    /// A local interface address.
    Host,
    /// Server reflexive: the address a STUN server saw.
    ServerReflexive,
    /// Peer reflexive: learned from a connectivity check.
    PeerReflexive,
    /// A TURN relay address.
    Relay,
}

/// Transport protocol of a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (RFC 6544).
    Tcp,
}

/// The connection role of a TCP candidate (RFC 6544 §4.5, `tcptype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TcpType {
    /// Opens outgoing connections only.
    Active,
    /// Accepts incoming connections only.
    Passive,
    /// Simultaneous open (both ends connect at once).
    SimultaneousOpen,
}

/// An ICE candidate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Candidate {
    /// Candidate type.
    pub kind: CandidateKind,
    /// Transport protocol.
    pub transport: Transport,
    /// Transport address.
    pub addr: SocketAddr,
    /// Priority (RFC 8445 §5.1.2).
    pub priority: u32,
    /// Foundation (RFC 8445 §5.1.1.3), at most 32 ice-chars.
    pub foundation: SmolStr,
    /// Component id (1 for RTP / the only component).
    pub component: u16,
    /// Related address (base of a reflexive candidate, or the mapped address of a relay).
    pub related: Option<SocketAddr>,
    /// The TCP candidate's connection role (RFC 6544); `None` for UDP. A TCP candidate without
    /// one is accepted, as sent by agents that leave cunicu's field unset.
    pub tcp_type: Option<TcpType>,
}

impl Candidate {
    /// A host UDP candidate on component 1 with the RFC 8445 §5.1.2.1 recommended priority
    /// for host candidates (type preference 126, local preference 65535).
    pub fn host(addr: SocketAddr) -> Candidate {
        Candidate {
            kind: CandidateKind::Host,
            transport: Transport::Udp,
            addr,
            priority: (126 << 24) | (65535 << 8) | (256 - 1),
            foundation: if addr.is_ipv6() { "2" } else { "1" }.into(),
            component: 1,
            related: None,
            tcp_type: None,
        }
    }
}

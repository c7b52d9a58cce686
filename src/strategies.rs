//! proptest strategies for fuzzing an embedding of the core (feature `proptest`).
//!
//! ```
//! use proptest::prelude::*;
//! use icepact::strategies;
//!
//! proptest!(|(schedule in strategies::schedule(16))| {
//!     // feed `schedule` to your embedding and check your own invariants
//!     prop_assert!(schedule.len() <= 16);
//! });
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;

use crate::{
    AgentEvent, Candidate, CandidateKind, Credentials, Description, Seen, SessionRef, TcpType,
    Transport,
};

/// Well-formed credentials (letters and digits, RFC 8445 lengths).
pub fn credentials() -> impl Strategy<Value = Credentials> {
    ("[a-zA-Z0-9]{4,16}", "[a-zA-Z0-9]{22,32}").prop_map(|(ufrag, pwd)| Credentials {
        ufrag: ufrag.into(),
        pwd: pwd.into(),
    })
}

/// Any typed candidate.
pub fn candidate() -> impl Strategy<Value = Candidate> {
    (
        prop_oneof![
            Just(CandidateKind::Host),
            Just(CandidateKind::ServerReflexive),
            Just(CandidateKind::PeerReflexive),
            Just(CandidateKind::Relay),
        ],
        prop_oneof![Just(Transport::Udp), Just(Transport::Tcp)],
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u32>(),
        "[a-zA-Z0-9+/]{1,32}",
        1u16..=2,
        proptest::option::of((any::<[u8; 4]>(), any::<u16>())),
        0u8..4,
    )
        .prop_map(
            |(kind, transport, ip, port, priority, foundation, component, rel, tcp)| {
                let v4 = |ip: [u8; 4], port| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
                Candidate {
                    kind,
                    transport,
                    addr: v4(ip, port),
                    priority,
                    foundation: foundation.into(),
                    component,
                    related: rel.map(|(ip, port)| v4(ip, port)),
                    // RFC 6544 roles on TCP candidates only (sometimes none, as cunicu allows).
                    tcp_type: match (transport, tcp) {
                        (Transport::Udp, _) | (_, 0) => None,
                        (_, 1) => Some(TcpType::Active),
                        (_, 2) => Some(TcpType::Passive),
                        _ => Some(TcpType::SimultaneousOpen),
                    },
                }
            },
        )
}

/// A session reference with small epochs and versions, so that collisions (duplicates, stale
/// and newer descriptions) are frequent.
pub fn session_ref() -> impl Strategy<Value = SessionRef> {
    (0u64..6, 0u32..6).prop_map(|(epoch, version)| SessionRef { epoch, version })
}

/// Any well-shaped description (it may still be stale, contradictory or from the future).
pub fn description() -> impl Strategy<Value = Description> {
    (
        session_ref(),
        proptest::option::of(session_ref()),
        any::<bool>(),
        credentials(),
        proptest::collection::vec(candidate(), 0..4),
        any::<bool>(),
        proptest::option::of(seen()),
    )
        .prop_map(
            |(session, ack, need_reply, credentials, candidates, end_of_candidates, seen)| {
                Description {
                    session,
                    ack,
                    need_reply,
                    credentials,
                    candidates,
                    end_of_candidates,
                    seen,
                }
            },
        )
}

/// What a sender says it saw of the receiver: a small session reference and a ufrag.
pub fn seen() -> impl Strategy<Value = Seen> {
    (session_ref(), credentials()).prop_map(|(session, c)| Seen {
        session,
        ufrag: c.ufrag,
    })
}

/// Any agent event.
pub fn agent_event() -> impl Strategy<Value = AgentEvent> {
    prop_oneof![
        candidate().prop_map(AgentEvent::LocalCandidate),
        Just(AgentEvent::GatheringDone),
        Just(AgentEvent::Checking),
        Just(AgentEvent::Connected),
        Just(AgentEvent::Completed),
        Just(AgentEvent::Disconnected),
        Just(AgentEvent::Failed),
        Just(AgentEvent::Closed),
    ]
}

/// One input of a schedule.
#[derive(Clone, Debug)]
pub enum Step {
    /// Deliver this description.
    Description(Description),
    /// Report this event from the current agent.
    AgentEvent(AgentEvent),
    /// Let this much time pass, then call `handle_timeout`.
    Wait(Duration),
    /// Ask for a restart.
    Restart,
}

/// A random input schedule of up to `len` steps.
pub fn schedule(len: usize) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => description().prop_map(Step::Description),
        3 => agent_event().prop_map(Step::AgentEvent),
        2 => (1u64..70_000).prop_map(|ms| Step::Wait(Duration::from_millis(ms))),
        1 => Just(Step::Restart),
    ];
    proptest::collection::vec(step, 0..=len)
}

//! Session descriptions: what one peer tells the other about its current session.
//!
//! A description carries what seed 001's offers carry (a session identity, a version, the
//! cumulative candidate list and end-of-candidates) plus the credentials and two fields of our
//! own: an acknowledgement of the remote session it is bound to, and whether a reply is wanted.

use std::cmp::Ordering;

use smol_str::SmolStr;

use crate::candidate::Candidate;
use crate::credentials::Credentials;

/// The identity of one session of one peer and a version within it.
///
/// Ordering is lexicographic on `(epoch, version)`: this is the total order of descriptions that
/// seed 001's random session ids lack (see docs/PROTOCOL.md, "Ordering").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionRef {
    /// The session epoch: strictly increasing over every session a key ever starts, across
    /// restarts of the process (the caller supplies the floor, see [`Peer::new`](crate::Peer::new)).
    pub epoch: u64,
    /// The description version within the session: 0 for the first, +1 for every change.
    pub version: u32,
}

/// The newest description of the receiver's that the sender ever applied, named by its
/// `(epoch, version)` and its ufrag (rule EPOCH_CATCH_UP).
///
/// A receiver that finds here a session newer than anything its process sent, or its current
/// epoch with other credentials, knows that its epoch floor went back (a clock stepped back, a
/// snapshot was restored, a constant was passed) and moves its epoch above. The ufrag tells a
/// reused epoch from the same session.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Seen {
    /// The receiver's session and version the sender applied.
    pub session: SessionRef,
    /// The ufrag of that session's credentials.
    pub ufrag: SmolStr,
}

/// One peer's description of its current session, sent to the other peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Description {
    /// Sender's session and the version of this description.
    pub session: SessionRef,
    /// The receiver's session this one is bound to, and the receiver's latest version the sender
    /// has applied; `None` while the sender has accepted no session of the receiver.
    pub ack: Option<SessionRef>,
    /// The sender wants a reply: its latest version is not yet acknowledged (cunicu's
    /// `need_creds`, generalised to every unacknowledged version).
    pub need_reply: bool,
    /// The sender's ICE credentials for this session.
    pub credentials: Credentials,
    /// Every local candidate of this session so far (cumulative, append-only).
    pub candidates: Vec<Candidate>,
    /// The sender has gathered all its candidates for this session (RFC 8838 §13).
    pub end_of_candidates: bool,
    /// The newest of the receiver's descriptions the sender ever applied, across the sender's
    /// sessions; `None` if none (or from a sender that predates the field).
    pub seen: Option<Seen>,
}

impl Description {
    /// Compares the sender's session and version of two descriptions.
    pub fn order(&self, other: &Description) -> Ordering {
        self.session.cmp(&other.session)
    }
}

//! The tokio runtime of [`icepact`]: a driver task per node that runs the sans-IO
//! [`Endpoint`](icepact::Endpoint) (one [`Peer`](icepact::Peer) per remote key) over a signaling
//! [`Backend`] and a real ICE agent per session on UDP sockets. The core crate has no async
//! dependency; this crate is to it what `quinn` is to `quinn-proto`.
//!
//! The driver follows quinn's `ConnectionDriver`: it waits on the backend subscription, the
//! ICE sockets, the application's commands and `sleep_until(poll_timeout)`, hands the input to
//! the endpoint with `Instant::now()` (never the deadline), then drains every output and agent
//! event until nothing moves. The endpoint checks envelopes (size, rate limit, replay) before
//! they are opened; what is refused is counted in [`PeerStats`]. Sessions are added and removed
//! at any time ([`Node::add_peer`], [`Node::remove_peer`]).
//!
//! Backends: [`MemoryBackend`] (in-process) and, with feature `redis`, `RedisBackend` (Redis
//! pub/sub, one channel per recipient key). See `docs/RUNTIME.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod backend;
mod ice;
mod node;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "room")]
mod room;
mod stun;

pub use agent::{Agent, AgentFactory, AgentInbound, AgentParams, UdpAgent, UdpAgents};
pub use backend::{
    Backend, BackendError, BackendEvent, MemoryBackend, Subscription, SubscriptionSender,
};
pub use ice::{UdpInput, DATA_TAG};
pub use icepact::{InboundLimits, PeerStats};
pub use node::{Node, NodeConfig, NodeEvent, NodeHandle, NodeStatus, PeerStatus};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{
    channel_name, RedisBackend, RedisStats, CHANNEL_PREFIX, HEALTH_DEADLINE, HEALTH_INTERVAL,
};
#[cfg(feature = "room")]
#[cfg_attr(docsrs, doc(cfg(feature = "room")))]
pub use room::{pair_call, RoomBackend};

use icepact::PublicKey;

/// Errors of the runtime adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signaling backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The core refused an input.
    #[error(transparent)]
    Core(#[from] icepact::Error),
    /// A key or envelope could not be used.
    #[error(transparent)]
    Wire(#[from] icepact::wire::Error),
    /// The endpoint refused a command (unknown or duplicate peer, a key it cannot use).
    #[error(transparent)]
    Endpoint(#[from] icepact::EndpointError),
    /// No session with this key.
    #[error("no session with {0:?}")]
    UnknownPeer(PublicKey),
    /// The session has no selected pair yet.
    #[error("no selected pair with {0:?}")]
    NotConnected(PublicKey),
    /// The driver task has stopped.
    #[error("the node stopped")]
    Stopped,
    /// A wait ran out of time.
    #[error("timed out")]
    Timeout,
    /// The operating system's random generator failed (seeding the node's credentials).
    #[error(transparent)]
    Random(#[from] icepact::OsRandomError),
}

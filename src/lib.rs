//! # icepact
//!
//! A sans-IO session state machine that establishes ICE sessions between two peers over an
//! untrusted, unordered, lossy signaling backend, with a totally ordered session epoch on the
//! wire, replay-proof ordering rules and a transition table that the model checker
//! (`icepact-models`) and the simulator (`icepact-sim`) verify by running this very code.
//!
//! One [`Peer`] value manages the session with one remote peer. It does no I/O and reads no
//! clock: feed it descriptions from the remote, events from your ICE agent and the time, and
//! drain what it wants done.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use icepact::{AgentCommand, Config, ConnectionState, Output, Peer, PeerSetup, PublicKey, Seed};
//!
//! let now = Instant::now();
//! let (a_key, b_key) = (PublicKey([1; 32]), PublicKey([2; 32]));
//! // Seeds are secret: draw them from the OS (`Seed::from_rng(&mut OsRng)`) in production.
//! let (seed_a, seed_b) = (Seed::from_bytes([7; 32]), Seed::from_bytes([8; 32]));
//! let setup = |local, remote, seed| PeerSetup { local, remote, epoch_floor: 1, seed };
//! let mut a = Peer::new(Config::default(), setup(a_key, b_key, seed_a), now)?;
//! let mut b = Peer::new(Config::default(), setup(b_key, a_key, seed_b), now)?;
//!
//! // Drain A: it created an agent and wants its first description sent to B.
//! let mut to_b = Vec::new();
//! while let Some(out) = a.poll_output() {
//!     match out {
//!         Output::Send(description) => to_b.push(description),
//!         Output::Agent(AgentCommand::Create { role, .. }) => assert_eq!(role, icepact::Role::Controlling),
//!         _ => {}
//!     }
//! }
//! assert_eq!(a.state(), ConnectionState::Idle);
//!
//! // B receives it: it now knows A's credentials and starts gathering.
//! for d in &to_b {
//!     b.handle_description(now, d)?;
//! }
//! assert_eq!(b.state(), ConnectionState::New);
//! while b.poll_output().is_some() {}
//!
//! // Nothing arrives from B in time: A re-sends with back-off.
//! let wake = a.poll_timeout().expect("A waits for an acknowledgement");
//! assert!(wake > now && wake <= now + Duration::from_millis(750));
//! a.handle_timeout(wake)?;
//! assert!(matches!(a.poll_output(), Some(Output::Send(_))));
//! # Ok::<(), icepact::Error>(())
//! ```
//!
//! See `docs/PROTOCOL.md` for the states, the messages and every rule with its reason; each rule
//! is named in the code where it lives (`rules.rs`, `peer.rs`, `state.rs`).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod agent;
mod backoff;
mod candidate;
mod config;
mod credentials;
mod description;
mod endpoint;
mod error;
mod guard;
// The safety properties shared by the tests, the model checker and the simulator: reachable
// for them, not part of the stable API (hidden from the docs).
#[doc(hidden)]
pub mod invariants;
mod keys;
mod peer;
mod rng;
pub mod room;
pub mod rules;
pub mod state;
pub mod wire;

#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub mod strategies;

// One reference model of an ICE agent for tests, model checker and simulator.
#[cfg(feature = "reference-agent")]
#[cfg_attr(docsrs, doc(cfg(feature = "reference-agent")))]
pub mod reference_agent;

pub use agent::{AgentCommand, AgentEvent, AgentId, AgentRestart};
pub use backoff::Backoff;
pub use candidate::{Candidate, CandidateKind, TcpType, Transport};
pub use config::Config;
pub use credentials::{Credentials, MAX_CREDENTIAL_LEN, PWD_LEN, UFRAG_LEN};
pub use description::{Description, Seen, SessionRef};
pub use endpoint::{
    Endpoint, EndpointConfig, EndpointError, EndpointOutput, Refusal, Transmit, ADMISSION_TIMEOUT,
    DEFAULT_MAX_ESTABLISHING,
};
pub use error::{DescriptionError, Disposition, Error, IgnoreReason, TransitionError};
pub use guard::{InboundLimits, PeerStats, TokenBucket};
pub use keys::{KeyParseError, PublicKey, Role};
pub use peer::{Event, Output, Peer, PeerSetup, RestartCause};
/// The `rand_core` version of [`Seed::from_rng`], [`wire::Nonce::random`] and
/// [`wire::SecretKey::generate`]; each also has a constructor from bytes and one from the
/// operating system's generator, so no caller depends on this version.
pub use rand_core;
pub use rng::{OsRandomError, Seed};
pub use rules::RestartPolicy;
/// The string type of credentials and candidate foundations: cloned without allocation (short
/// strings inline, longer ones shared), so peers and descriptions are cheap to copy.
pub use smol_str::SmolStr;
pub use state::{ConnectionState, Report, ReportOutcome, Trigger};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

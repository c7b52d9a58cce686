//! `icepact-signal`: the room signaling service of seed 004.
//!
//! A client joins a call (`GET /call/{call}`: a seat and a session token, or 409 when every
//! seat is taken), keeps its seat with a WebSocket (`GET /ws`: the `JOIN` handshake, then the
//! server's PINGs, each PONG renewing the seat's lease) on which it receives the room's
//! messages, and publishes `OFFER`/`ANSWER` messages (and `CANDIDATE`s in browser calls) whose
//! bodies must fit the call's namespace ([`namespace`]) (`POST /signal`). Members hear
//! `AVAILABLE` when another member arrives. `/` serves a demo page (two browser tabs connect a
//! WebRTC data channel through the service); `/healthz` and `/debug` (Prometheus counters)
//! listen on a second address.
//!
//! The seat algorithm ([`seats`]) is pure Rust over a small store interface ([`store::Store`]);
//! [`store::MemoryStore`] is the embedded default, so `icepact-signal` runs alone with no other
//! process; [`RedisStore`] (`--redis`) lets several instances share one Redis and behave as one
//! service.
//!
//! Feature `server` (default): the service, its stores and the binary; without it the crate is
//! the seat algorithm alone, which the model checker (`icepact-models`) runs.
//!
//! Built on axum (hyper and tower underneath): the field's standard HTTP/WebSocket stack for
//! tokio, with typed extractors, a body limit layer and graceful shutdown.

#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
mod demo;
#[cfg(feature = "server")]
pub mod namespace;
#[cfg(feature = "server")]
pub mod redis_store;
pub mod seats;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;

#[cfg(feature = "server")]
pub use config::Config;
#[cfg(feature = "server")]
pub use redis_store::RedisStore;
#[cfg(feature = "server")]
pub use server::{start, ApiError, Envelope, Running, Service};
#[cfg(feature = "server")]
pub use store::{MemoryStore, Store};

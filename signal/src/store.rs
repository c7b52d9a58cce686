//! Where seats and room messages live: the [`Store`] interface, and [`MemoryStore`], the
//! embedded default (one service instance, no other process).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::seats::{Millis, Seats, Token};

/// A message relayed to the members of a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMessage {
    /// `OFFER`, `ANSWER` or `AVAILABLE`.
    pub kind: String,
    /// The call.
    pub call: String,
    /// The body, opaque to the service (absent for `AVAILABLE`).
    pub body: Option<String>,
    /// The session that sent it; its own connection does not get it back. Never sent to
    /// clients.
    pub from: Token,
}

/// Why the store could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(pub String);

/// Messages a subscriber may fall behind by before it loses the oldest.
pub const ROOM_BUFFER: usize = 256;

/// The shared state of the service: the seats of every call, updated atomically, and a
/// publish/subscribe channel per call.
pub trait Store: Send + Sync + 'static {
    /// Applies `f` to the seats of `call` atomically and returns its result: no other update
    /// of the same call interleaves (a store may run `f` again on a conflict, so `f` must be a
    /// function of the seats it is given). A call whose seats are empty afterwards may be
    /// forgotten.
    fn update<R: Send + 'static>(
        &self,
        call: &str,
        f: impl FnMut(&mut Seats) -> R + Send,
    ) -> impl Future<Output = Result<R, StoreError>> + Send;

    /// Publishes `message` to the current subscribers of its call (not stored).
    fn publish(&self, message: RoomMessage) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Subscribes to the messages of `call` published from now on.
    fn subscribe(
        &self,
        call: &str,
    ) -> impl Future<Output = Result<broadcast::Receiver<RoomMessage>, StoreError>> + Send;

    /// Whether the store answers (the health check).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[derive(Default)]
struct Calls {
    seats: HashMap<String, Seats>,
    rooms: HashMap<String, broadcast::Sender<RoomMessage>>,
}

/// The in-process store: seats in a map under a lock, rooms as broadcast channels. Cloning
/// shares it.
#[derive(Clone, Default)]
pub struct MemoryStore {
    calls: Arc<Mutex<Calls>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        // A panic while holding the lock leaves a usable map.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls with a seat record (for tests: empty calls are forgotten).
    pub fn calls_held(&self) -> usize {
        self.calls().seats.len()
    }
}

impl Store for MemoryStore {
    async fn update<R: Send + 'static>(
        &self,
        call: &str,
        mut f: impl FnMut(&mut Seats) -> R + Send,
    ) -> Result<R, StoreError> {
        let mut calls = self.calls();
        let seats = calls.seats.entry(call.to_owned()).or_default();
        let r = f(seats);
        if seats.is_empty() {
            calls.seats.remove(call);
        }
        Ok(r)
    }

    async fn publish(&self, message: RoomMessage) -> Result<(), StoreError> {
        let mut calls = self.calls();
        if let Some(tx) = calls.rooms.get(&message.call) {
            if tx.send(message.clone()).is_err() {
                // Nobody listens any more.
                calls.rooms.remove(&message.call);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, call: &str) -> Result<broadcast::Receiver<RoomMessage>, StoreError> {
        let mut calls = self.calls();
        let tx = calls
            .rooms
            .entry(call.to_owned())
            .or_insert_with(|| broadcast::channel(ROOM_BUFFER).0);
        Ok(tx.subscribe())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

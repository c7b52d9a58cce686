//! The signaling backend: publish envelopes to public keys, subscribe to our own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Instant;

use tokio::sync::mpsc;

use icepact::PublicKey;

/// How many inbound events a subscription buffers before the backend drops more (the backend
/// may drop: the core re-sends what was not acknowledged).
pub const SUBSCRIPTION_BUFFER: usize = 1024;

/// What a subscription delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendEvent {
    /// An envelope addressed to our key (unverified bytes).
    Envelope(Vec<u8>),
    /// The subscription is (again) in place; envelopes published while it was not were lost.
    Subscribed,
    /// The connection to the backend was lost; the backend reconnects by itself.
    Lost,
}

/// Everything addressed to one key, as a stream of [`BackendEvent`]s, each stamped with the
/// instant the backend received it (the node takes inputs in arrival order, rule
/// STAMP_ARRIVAL in docs/RUNTIME.md). Made by [`Subscription::channel`].
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<(Instant, BackendEvent)>,
}

/// The backend's end of a [`Subscription`]: stamps each event with the instant it is handed
/// over. Cloning gives another sender to the same subscription.
#[derive(Clone, Debug)]
pub struct SubscriptionSender {
    tx: mpsc::Sender<(Instant, BackendEvent)>,
}

impl Subscription {
    /// A subscription buffering up to `capacity` events, and the sender a backend feeds it
    /// with. A full buffer refuses events ([`SubscriptionSender::try_send`]): the backend drops
    /// them, as its semantics allow.
    pub fn channel(capacity: usize) -> (SubscriptionSender, Subscription) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (SubscriptionSender { tx }, Subscription { rx })
    }

    /// The next event, or `None` once the backend closed the subscription for good.
    pub async fn recv(&mut self) -> Option<BackendEvent> {
        self.rx.recv().await.map(|(_, event)| event)
    }

    /// The next event and the instant it arrived.
    pub(crate) async fn recv_stamped(&mut self) -> Option<(Instant, BackendEvent)> {
        self.rx.recv().await
    }

    /// An event already waiting, without waiting for one.
    pub(crate) fn try_recv_stamped(&mut self) -> Option<(Instant, BackendEvent)> {
        self.rx.try_recv().ok()
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }
}

impl SubscriptionSender {
    /// Hands `event` to the subscription, stamped now; gives it back if the buffer is full or
    /// the subscription was dropped.
    pub fn try_send(
        &self,
        event: BackendEvent,
    ) -> Result<(), mpsc::error::TrySendError<BackendEvent>> {
        self.tx
            .try_send((Instant::now(), event))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full((_, ev)) => mpsc::error::TrySendError::Full(ev),
                mpsc::error::TrySendError::Closed((_, ev)) => mpsc::error::TrySendError::Closed(ev),
            })
    }

    /// Hands `event` to the subscription, waiting while its buffer is full (stamped when it is
    /// taken); gives it back if the subscription was dropped.
    pub async fn send(&self, event: BackendEvent) -> Result<(), BackendEvent> {
        let permit = self.tx.reserve().await.map_err(|_| event.clone())?;
        permit.send((Instant::now(), event));
        Ok(())
    }

    /// Completes when the subscription is dropped.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// True once the subscription was dropped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Errors of a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend cannot be reached now (the envelope was dropped).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend was closed.
    #[error("backend closed")]
    Closed,
}

/// A signaling backend with cunicu's semantics (seed 000): it delivers envelopes addressed by
/// public key, to one key or to a group, may reorder and drop them (for example while the
/// recipient is not subscribed), and stores nothing.
pub trait Backend: Send + Sync + 'static {
    /// Publishes `envelope` to `to`. Success means handed to the backend, not delivered.
    fn publish(
        &self,
        to: PublicKey,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Publishes `envelope` to every key of a group (each recipient gets the same bytes).
    fn multicast(
        &self,
        to: Vec<PublicKey>,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        async move {
            let mut result = Ok(());
            for key in to {
                if let Err(e) = self.publish(key, envelope.clone()).await {
                    result = Err(e);
                }
            }
            result
        }
    }

    /// Subscribes to everything addressed to `key`, from any sender. The subscription survives
    /// losing the backend connection: the backend reconnects and resubscribes by itself.
    fn subscribe(
        &self,
        key: PublicKey,
    ) -> impl Future<Output = Result<Subscription, BackendError>> + Send;
}

/// An in-process backend, for tests and single-process meshes. Cloning shares the hub.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    subscribers: Arc<Mutex<HashMap<PublicKey, Vec<SubscriptionSender>>>>,
    dropped: Arc<AtomicU64>,
}

impl MemoryBackend {
    /// An empty hub.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Delivers `event` to every live subscription of `key`; returns how many took it.
    fn deliver(&self, key: PublicKey, event: &BackendEvent) -> usize {
        let mut map = self
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(subs) = map.get_mut(&key) else {
            return 0;
        };
        subs.retain(|tx| !tx.is_closed());
        let taken = subs
            .iter()
            .filter(|tx| tx.try_send(event.clone()).is_ok())
            .count();
        let dropped = subs.len() - taken;
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        taken
    }

    /// Events dropped because a subscriber's buffer was full (its node is not reading fast
    /// enough); the sessions re-send what is not acknowledged.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Simulates a lost and restored connection for `key`'s subscriptions: they see
    /// [`BackendEvent::Lost`] and then [`BackendEvent::Subscribed`].
    pub fn bounce(&self, key: PublicKey) {
        self.deliver(key, &BackendEvent::Lost);
        self.deliver(key, &BackendEvent::Subscribed);
    }
}

impl Backend for MemoryBackend {
    async fn publish(&self, to: PublicKey, envelope: Vec<u8>) -> Result<(), BackendError> {
        // Nobody subscribed, or a full buffer: dropped, as the semantics allow.
        self.deliver(to, &BackendEvent::Envelope(envelope));
        Ok(())
    }

    async fn subscribe(&self, key: PublicKey) -> Result<Subscription, BackendError> {
        let (tx, subscription) = Subscription::channel(SUBSCRIPTION_BUFFER);
        // The receiver is alive: this first event always fits the empty buffer.
        let _ = tx.try_send(BackendEvent::Subscribed);
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_default()
            .push(tx);
        Ok(subscription)
    }
}

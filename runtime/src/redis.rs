//! The Redis pub/sub backend: one channel per recipient key, `icepact:<hex public key>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, Mutex};
use tracing::{debug, info, warn};

use crate::backend::{
    Backend, BackendError, BackendEvent, Subscription, SubscriptionSender, SUBSCRIPTION_BUFFER,
};
use icepact::PublicKey;

/// Prefix of the per-recipient channels.
pub const CHANNEL_PREFIX: &str = "icepact:";

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// First delay before reconnecting a lost subscription.
const RECONNECT_INITIAL: Duration = Duration::from_millis(50);
/// Longest delay between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How often the subscription connection is checked with `PING` (default).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a `PING` or `PUBLISH` may take before the connection is taken as dead (default).
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// The channel name for a recipient key.
pub fn channel_name(key: &PublicKey) -> String {
    let mut s = String::with_capacity(CHANNEL_PREFIX.len() + 64);
    s.push_str(CHANNEL_PREFIX);
    for b in key.0 {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Counters of a [`RedisBackend`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RedisStats {
    /// Envelopes published.
    pub published: AtomicU64,
    /// Envelopes dropped because publishing failed.
    pub publish_failed: AtomicU64,
    /// Subscriptions (re)established, the first ones included.
    pub subscribed: AtomicU64,
    /// Subscriptions lost (the connection closed, or a health check failed).
    pub lost: AtomicU64,
    /// Health checks of the subscription connection that failed or ran out of time (a frozen
    /// or half-open server).
    pub health_failed: AtomicU64,
}

/// Signaling over Redis pub/sub (stateless: Redis keeps nothing for an absent subscriber).
/// Lost connections are re-established with back-off, and subscriptions resubscribed.
///
/// A server that stops answering without closing the connection (frozen, or a half-open TCP
/// connection after a network change) is found by a `PING` on the subscription connection every
/// [`HEALTH_INTERVAL`] that must be answered within [`HEALTH_DEADLINE`]
/// ([`with_health_check`](RedisBackend::with_health_check) sets both): the subscription is then
/// reported lost ([`BackendEvent::Lost`]) and re-established. A `PUBLISH` that takes longer
/// than the deadline fails. A subscribed connection receives nothing while no one publishes to
/// it, so without the check a frozen server goes unnoticed.
#[derive(Clone)]
pub struct RedisBackend {
    client: redis::Client,
    publisher: Arc<Mutex<Option<MultiplexedConnection>>>,
    stats: Arc<RedisStats>,
    health: Health,
}

/// The subscription's health check.
#[derive(Clone, Copy, Debug)]
struct Health {
    interval: Duration,
    deadline: Duration,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.client.get_connection_info().addr())
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend for the server at `url` (e.g. `redis://127.0.0.1:6379`). Connects lazily.
    pub fn new(url: &str) -> Result<RedisBackend, BackendError> {
        let client =
            redis::Client::open(url).map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(RedisBackend {
            client,
            publisher: Arc::new(Mutex::new(None)),
            stats: Arc::new(RedisStats::default()),
            health: Health {
                interval: HEALTH_INTERVAL,
                deadline: HEALTH_DEADLINE,
            },
        })
    }

    /// Checks the subscription connection every `interval` with a `PING` that must be answered
    /// within `deadline` (a zero interval is taken as 1 ms); `deadline` also bounds a
    /// `PUBLISH`. A frozen server is then reported within `interval + deadline`.
    pub fn with_health_check(mut self, interval: Duration, deadline: Duration) -> RedisBackend {
        self.health = Health {
            interval: interval.max(Duration::from_millis(1)),
            deadline,
        };
        self
    }

    /// The backend's counters.
    pub fn stats(&self) -> &RedisStats {
        &self.stats
    }

    /// Checks that the server answers `PING` within the connect timeout.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.connection().await?;
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        pong.map(drop)
            .map_err(|e| BackendError::Unavailable(e.to_string()))
    }

    /// The shared publishing connection, connecting if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, BackendError> {
        let mut slot = self.publisher.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| BackendError::Unavailable("connect timed out".into()))?
        .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

impl Backend for RedisBackend {
    async fn publish(&self, to: PublicKey, envelope: Vec<u8>) -> Result<(), BackendError> {
        let attempt = async {
            let mut conn = self.connection().await?;
            let sent: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(channel_name(&to))
                .arg(envelope)
                .query_async(&mut conn)
                .await;
            sent.map(drop)
                .map_err(|e| BackendError::Unavailable(e.to_string()))
        };
        // A frozen server never answers: without a deadline the publisher would wait forever
        // and every later envelope would queue behind it.
        let result = tokio::time::timeout(self.health.deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(BackendError::Unavailable("publish timed out".into())));
        match &result {
            Ok(()) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Drop the connection: the next publish reconnects. The envelope is lost, which
                // the backend semantics allow; the core re-sends what is not acknowledged.
                self.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "publish failed");
                *self.publisher.lock().await = None;
            }
        }
        result
    }

    async fn subscribe(&self, key: PublicKey) -> Result<Subscription, BackendError> {
        let (tx, subscription) = Subscription::channel(SUBSCRIPTION_BUFFER);
        let client = self.client.clone();
        let stats = Arc::clone(&self.stats);
        let channel = channel_name(&key);
        // The first subscription is made here so that the caller learns of a wrong URL or an
        // unreachable server; later ones are made by the task.
        let first = subscribe_once(&client, &channel).await?;
        stats.subscribed.fetch_add(1, Ordering::Relaxed);
        let health = self.health;
        tokio::spawn(subscription_task(client, channel, first, tx, stats, health));
        Ok(subscription)
    }
}

/// Opens a pub/sub connection subscribed to `channel`.
async fn subscribe_once(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, BackendError> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| BackendError::Unavailable("subscribe timed out".into()))?
        .map_err(|e| BackendError::Unavailable(e.to_string()))
}

/// Forwards messages until the connection is lost, then reconnects with back-off and
/// resubscribes; ends when the subscription is dropped.
async fn subscription_task(
    client: redis::Client,
    channel: String,
    first: redis::aio::PubSub,
    tx: SubscriptionSender,
    stats: Arc<RedisStats>,
    health: Health,
) {
    let mut pubsub = Some(first);
    let mut delay = RECONNECT_INITIAL;
    // The receiver got no Subscribed event for the first subscription yet.
    if tx.send(BackendEvent::Subscribed).await.is_err() {
        return;
    }
    loop {
        if let Some(conn) = pubsub.take() {
            delay = RECONNECT_INITIAL;
            let (mut sink, mut messages) = conn.split();
            let mut check = tokio::time::interval(health.interval);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: the connection was just made.
            check.tick().await;
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { break };
                        let payload = msg.get_payload_bytes().to_vec();
                        // A full buffer drops the envelope (allowed); a closed one ends us.
                        match tx.try_send(BackendEvent::Envelope(payload)) {
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                            Err(mpsc::error::TrySendError::Full(_)) | Ok(()) => {}
                        }
                    }
                    _ = check.tick() => {
                        // In subscribed mode the answer is ["pong", ""]: any answer will do.
                        let pong = tokio::time::timeout(
                            health.deadline,
                            sink.ping::<redis::Value>(),
                        )
                        .await;
                        if !matches!(pong, Ok(Ok(_))) {
                            stats.health_failed.fetch_add(1, Ordering::Relaxed);
                            warn!(
                                %channel,
                                deadline = ?health.deadline,
                                "redis did not answer a health check; reconnecting"
                            );
                            break;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
            stats.lost.fetch_add(1, Ordering::Relaxed);
            warn!(%channel, "redis subscription lost; reconnecting");
            if tx.send(BackendEvent::Lost).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
        match subscribe_once(&client, &channel).await {
            Ok(conn) => {
                stats.subscribed.fetch_add(1, Ordering::Relaxed);
                info!(%channel, "redis subscription restored");
                if tx.send(BackendEvent::Subscribed).await.is_err() {
                    return;
                }
                pubsub = Some(conn);
            }
            Err(e) => {
                debug!(%channel, error = %e, ?delay, "resubscribe failed");
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
    }
}

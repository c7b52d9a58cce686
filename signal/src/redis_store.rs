//! [`RedisStore`]: several service instances sharing one Redis behave as one service. Each
//! call's seats are one hash (`<prefix>seats:<call>`: a version and the seats as JSON) updated
//! by compare-and-set in a Lua script, so seats are counted across instances atomically; room
//! messages go over Redis pub/sub (`<prefix>room:<call>`), so members joined through different
//! instances hear each other.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::{broadcast, Mutex};
use tracing::{debug, warn};

use crate::seats::Seats;
use crate::store::{unix_millis, RoomMessage, Store, StoreError, ROOM_BUFFER};

/// How long one Redis round trip may take.
const DEADLINE: Duration = Duration::from_secs(2);
/// How often a subscription's connection is asked for a PONG by default (a frozen server is
/// noticed within this plus [`DEADLINE`]).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Compare-and-set attempts before an update gives up (each conflict means another instance
/// changed the same call in between).
const ATTEMPTS: usize = 32;
/// Kept beyond the last lease, so that a record outlives its leases a little.
const TTL_MARGIN_MS: u64 = 60_000;

/// KEYS[1]: the call's hash. ARGV: expected version ("" when absent), new seats as JSON (""
/// to delete), new version, time to live in ms. Returns 1 if written, 0 on a conflict.
const CAS: &str = r#"
local current = redis.call('HGET', KEYS[1], 'v') or ''
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[3], 's', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
"#;

/// Seats and rooms in Redis.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    prefix: String,
    cas: redis::Script,
    /// How often each room subscription's connection is asked for a PONG, and how long the
    /// answer may take.
    health: (Duration, Duration),
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedisStore {
    /// A store on the server at `url` (`redis://host:port`), its keys under `prefix`
    /// (`icepact-signal:` by default in the binary). Connects lazily.
    pub fn new(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        Ok(RedisStore {
            client: redis::Client::open(url).map_err(unavailable)?,
            conn: Arc::new(Mutex::new(None)),
            prefix: prefix.to_owned(),
            cas: redis::Script::new(CAS),
            health: (HEALTH_INTERVAL, DEADLINE),
        })
    }

    /// Checks each room subscription's connection every `interval` and ends the subscription
    /// (its members' WebSockets close, and their clients rejoin) when a PONG takes longer than
    /// `deadline`: a frozen or half-open Redis otherwise leaves members in a call that hears
    /// nothing. Defaults: 5 s and 2 s.
    pub fn with_health_check(mut self, interval: Duration, deadline: Duration) -> RedisStore {
        self.health = (interval.max(Duration::from_millis(1)), deadline);
        self
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(DEADLINE, self.client.get_multiplexed_async_connection())
            .await
            .map_err(|_| StoreError("redis connect timed out".into()))?
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on a connection with the deadline; a failure drops the connection (the next
    /// call reconnects).
    async fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let r = tokio::time::timeout(DEADLINE, f(&mut conn)).await;
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *self.conn.lock().await = None;
                Err(unavailable(e))
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(StoreError("redis timed out".into()))
            }
        }
    }

    fn seats_key(&self, call: &str) -> String {
        format!("{}seats:{call}", self.prefix)
    }

    fn room(&self, call: &str) -> String {
        format!("{}room:{call}", self.prefix)
    }
}

impl Store for RedisStore {
    async fn update<R: Send + 'static>(
        &self,
        call: &str,
        mut f: impl FnMut(&mut Seats) -> R + Send,
    ) -> Result<R, StoreError> {
        let key = self.seats_key(call);
        for attempt in 0..ATTEMPTS {
            let (version, json): (Option<String>, Option<String>) = self
                .with(async |c| {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg("v")
                        .arg("s")
                        .query_async(c)
                        .await
                })
                .await?;
            let before: Seats = match &json {
                Some(j) => serde_json::from_str(j)
                    .map_err(|e| StoreError(format!("corrupt seats of {call}: {e}")))?,
                None => Seats::default(),
            };
            let mut seats = before.clone();
            let r = f(&mut seats);
            if seats == before {
                // Nothing to write: a read, linearised at the HMGET.
                return Ok(r);
            }
            let now = unix_millis();
            let ttl = seats
                .last_expiry()
                .map_or(0, |e| e.saturating_sub(now))
                .saturating_add(TTL_MARGIN_MS);
            let new_json = if seats.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&seats).map_err(unavailable)?
            };
            let new_version = crate::seats::Token::generate()
                .map_err(unavailable)?
                .as_str()
                .to_owned();
            let expected = version.unwrap_or_default();
            let written: i64 = self
                .with(async |c| {
                    self.cas
                        .key(&key)
                        .arg(&expected)
                        .arg(&new_json)
                        .arg(&new_version)
                        .arg(ttl)
                        .invoke_async(c)
                        .await
                })
                .await?;
            if written == 1 {
                return Ok(r);
            }
            debug!(call, attempt, "seat update conflict; retrying");
            tokio::task::yield_now().await;
        }
        Err(StoreError(format!(
            "seats of {call}: {ATTEMPTS} conflicting updates in a row"
        )))
    }

    async fn publish(&self, message: RoomMessage) -> Result<(), StoreError> {
        let channel = self.room(&message.call);
        let payload = serde_json::to_string(&message).map_err(unavailable)?;
        let _receivers: i64 = self
            .with(async |c| {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// A pub/sub connection of its own per subscriber: when it is lost, the subscriber's
    /// channel closes (its WebSocket ends, and the client rejoins with its token).
    async fn subscribe(&self, call: &str) -> Result<broadcast::Receiver<RoomMessage>, StoreError> {
        let channel = self.room(call);
        let pubsub = tokio::time::timeout(DEADLINE, async {
            let mut p = self.client.get_async_pubsub().await?;
            p.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(p)
        })
        .await
        .map_err(|_| StoreError("redis subscribe timed out".into()))?
        .map_err(unavailable)?;
        let (tx, rx) = broadcast::channel(ROOM_BUFFER);
        let (interval, deadline) = self.health;
        tokio::spawn(async move {
            let (mut sink, mut messages) = pubsub.split();
            // No silent wedge: a frozen or half-open Redis delivers nothing and reports nothing,
            // so the connection is asked for a PONG every `interval`; no answer within
            // `deadline` ends the subscription like a lost connection does (the member's
            // WebSocket closes, and its client reconnects and rejoins with its token).
            let mut check = tokio::time::interval(interval);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: the connection was just made.
            check.tick().await;
            loop {
                tokio::select! {
                    m = messages.next() => {
                        let Some(m) = m else { return };
                        let Ok(payload) = m.get_payload::<String>() else { continue };
                        let Ok(message) = serde_json::from_str::<RoomMessage>(&payload) else {
                            continue;
                        };
                        if tx.send(message).is_err() {
                            return;
                        }
                    }
                    _ = check.tick() => {
                        // In subscribed mode the answer is ["pong", ""]: any answer will do.
                        let pong = tokio::time::timeout(deadline, sink.ping::<redis::Value>()).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            warn!(%channel, "redis did not answer a health check; subscription ended");
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self
            .with(async |c| redis::cmd("PING").query_async(c).await)
            .await?;
        Ok(())
    }
}

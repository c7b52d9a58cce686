//! [`RoomBackend`]: signaling through `icepact-signal`, the room service of seed 004, for
//! clients that must not hold Redis credentials.
//!
//! Each pair of keys meets in a call of its own, named after both keys (`ip-` and the first 16
//! bytes of each key in hex, the smaller key first), whose two seats are the two nodes. A node
//! joins a pair's call when it first publishes to that peer (a node publishes to every peer at
//! start), keeps its seat with the call's WebSocket, and receives the peer's envelopes there.
//! Envelopes travel as the body of `OFFER` messages, in base64: sealed, so the service never
//! sees a description.
//!
//! Lost connections are reopened with back-off; a session the service no longer knows (it
//! restarted, or the lease ran out) joins the call again. Envelopes published meanwhile are
//! lost, which the backend semantics allow: the core re-sends what is not acknowledged. A
//! node that restarts while its old seat's lease lives finds the call full until that lease
//! runs out (15 s by default): its publishes fail until then and the core re-sends.
//!
//! Plain `http://` and `ws://` only: put a TLS-terminating proxy in front of the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use base64ct::{Base64, Encoding};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info};

use crate::backend::{Backend, BackendError, BackendEvent, Subscription, SUBSCRIPTION_BUFFER};
use icepact::PublicKey;

/// How long one HTTP request or WebSocket connection attempt may take.
const DEADLINE: Duration = Duration::from_secs(5);
/// First delay before reconnecting a call's WebSocket.
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// No frame for this long (the service PINGs every `--ping-interval`, 5 s by default) means the
/// connection is dead without having been closed (a half-open TCP connection after a network
/// change or a frozen service): it is reopened.
const IDLE: Duration = Duration::from_secs(60);
/// The service's close code for a session it no longer knows.
const SESSION_EXPIRED: u16 = 4001;

/// The room service's message format.
#[derive(Debug, Serialize, Deserialize)]
struct RoomMessage {
    kind: String,
    call: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// The call of the pair `a`, `b` (the same from both sides).
pub fn pair_call(a: &PublicKey, b: &PublicKey) -> String {
    let (lo, hi) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let mut name = String::from("ip-");
    for byte in lo.0[..16].iter().chain(&hi.0[..16]) {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// Signaling through an `icepact-signal` service (see the module docs). Cloning shares it.
#[derive(Clone)]
pub struct RoomBackend {
    inner: Arc<Inner>,
}

struct Inner {
    http_base: String,
    ws_url: String,
    local: PublicKey,
    http: reqwest::Client,
    /// The session token of each joined call (`None` while it must be joined again).
    calls: Mutex<HashMap<String, Option<String>>>,
    /// Where received envelopes go, once subscribed.
    inbound: StdMutex<Option<mpsc::Sender<BackendEvent>>>,
}

impl std::fmt::Debug for RoomBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomBackend")
            .field("service", &self.inner.http_base)
            .finish_non_exhaustive()
    }
}

impl RoomBackend {
    /// A backend for the node with key `local`, on the service at `base` (for example
    /// `http://127.0.0.1:8080`). Connects lazily.
    pub fn new(base: &str, local: PublicKey) -> Result<RoomBackend, BackendError> {
        let http_base = base.trim_end_matches('/').to_owned();
        let ws_url = match http_base.strip_prefix("http://") {
            Some(rest) => format!("ws://{rest}/ws"),
            None => {
                return Err(BackendError::Unavailable(format!(
                    "{base}: only http:// service URLs are supported"
                )))
            }
        };
        let http = reqwest::Client::builder()
            .timeout(DEADLINE)
            .build()
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(RoomBackend {
            inner: Arc::new(Inner {
                http_base,
                ws_url,
                local,
                http,
                calls: Mutex::new(HashMap::new()),
                inbound: StdMutex::new(None),
            }),
        })
    }
}

impl Inner {
    fn inbound(&self) -> Option<mpsc::Sender<BackendEvent>> {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `GET /call/{call}`: a seat and its session token.
    async fn join(&self, call: &str) -> Result<String, BackendError> {
        let url = format!("{}/call/{call}", self.http_base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(BackendError::Unavailable(format!("join {call}: {status}")));
        }
        let text = response
            .text()
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let m: RoomMessage = serde_json::from_str(&text)
            .map_err(|e| BackendError::Unavailable(format!("join {call}: {e}")))?;
        m.session
            .ok_or_else(|| BackendError::Unavailable(format!("join {call}: no session")))
    }

    /// The session of `call`, joining it if needed; true if the call is new to this backend
    /// (its WebSocket is to be started).
    async fn ensure(&self, call: &str) -> Result<(String, bool), BackendError> {
        let mut calls = self.calls.lock().await;
        let known = match calls.get(call) {
            Some(Some(s)) => return Ok((s.clone(), false)),
            Some(None) => true,
            None => false,
        };
        let session = self.join(call).await?;
        calls.insert(call.to_owned(), Some(session.clone()));
        Ok((session, !known))
    }

    /// Forgets `session`, the session of `call` the service no longer knows: the next publish
    /// or reconnection joins again. A session already replaced is left alone (joining twice
    /// would hold two seats, and fill the pair's call).
    async fn expire(&self, call: &str, session: &str) {
        if let Some(slot) = self.calls.lock().await.get_mut(call) {
            if slot.as_deref() == Some(session) {
                *slot = None;
            }
        }
    }
}

/// Keeps the call's WebSocket open (reconnecting with back-off, joining again when the
/// session expired) and hands the envelopes it carries to the subscription, until the backend
/// is dropped.
async fn presence(inner: std::sync::Weak<Inner>, call: String) {
    let mut delay = RECONNECT_INITIAL;
    loop {
        let Some(me) = inner.upgrade() else { return };
        let session = match me.ensure(&call).await {
            Ok((s, _)) => s,
            Err(e) => {
                debug!(%call, error = %e, "join failed");
                drop(me);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        match connect(&me, &call, &session).await {
            Ok(mut ws) => {
                delay = RECONNECT_INITIAL;
                let url = me.ws_url.clone();
                drop(me);
                let expired = read(&inner, &call, &mut ws).await;
                if expired {
                    if let Some(me) = inner.upgrade() {
                        me.expire(&call, &session).await;
                    }
                }
                debug!(%call, %url, expired, "room connection ended; reconnecting");
            }
            Err(e) => {
                debug!(%call, error = %e, "room connection failed");
                drop(me);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket and completes the handshake.
async fn connect(inner: &Inner, call: &str, session: &str) -> Result<Ws, BackendError> {
    let unavailable = |e: String| BackendError::Unavailable(e);
    let attempt = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&inner.ws_url)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let join = RoomMessage {
            kind: "JOIN".into(),
            call: call.to_owned(),
            session: Some(session.to_owned()),
            body: None,
        };
        let text = serde_json::to_string(&join).map_err(|e| unavailable(e.to_string()))?;
        ws.send(Message::text(text))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let m: RoomMessage =
                        serde_json::from_str(&t).map_err(|e| unavailable(e.to_string()))?;
                    if m.kind == "WELCOME" {
                        return Ok(ws);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if frame.is_some_and(|f| u16::from(f.code) == SESSION_EXPIRED) {
                        inner.expire(call, session).await;
                    }
                    return Err(unavailable("closed during the handshake".into()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(unavailable(e.to_string())),
                None => return Err(unavailable("closed during the handshake".into())),
            }
        }
    };
    tokio::time::timeout(DEADLINE, attempt)
        .await
        .map_err(|_| unavailable("handshake timed out".into()))?
}

/// Reads the call's messages until the connection ends; true if the service closed it
/// because the session expired.
async fn read(inner: &std::sync::Weak<Inner>, call: &str, ws: &mut Ws) -> bool {
    info!(%call, "room joined");
    // The backend is checked for liveness once a second: the server's PINGs keep a
    // connection busy forever, so an idle one would otherwise outlive its node.
    // So is the connection: a silent one (no PING for IDLE) is reopened.
    let mut alive = tokio::time::interval(Duration::from_secs(1));
    let mut last_frame = tokio::time::Instant::now();
    loop {
        let m = tokio::select! {
            m = ws.next() => match m {
                Some(m) => {
                    last_frame = tokio::time::Instant::now();
                    m
                }
                None => return false,
            },
            _ = alive.tick() => {
                if inner.strong_count() == 0 {
                    let _ = ws.close(None).await;
                    return false;
                }
                if last_frame.elapsed() > IDLE {
                    debug!(%call, "no frame from the room service for {IDLE:?}; reconnecting");
                    return false;
                }
                continue;
            }
        };
        match m {
            Ok(Message::Text(t)) => {
                let Ok(m) = serde_json::from_str::<RoomMessage>(&t) else {
                    continue;
                };
                if m.kind != "OFFER" {
                    continue;
                }
                let Some(bytes) = m.body.and_then(|b| Base64::decode_vec(&b).ok()) else {
                    continue;
                };
                let Some(tx) = inner.upgrade().and_then(|i| i.inbound()) else {
                    return false;
                };
                // A full buffer drops the envelope (allowed); a closed one ends us.
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    tx.try_send(BackendEvent::Envelope(bytes))
                {
                    return false;
                }
            }
            Ok(Message::Close(frame)) => {
                return frame.is_some_and(|f| u16::from(f.code) == SESSION_EXPIRED);
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

impl Backend for RoomBackend {
    async fn publish(&self, to: PublicKey, envelope: Vec<u8>) -> Result<(), BackendError> {
        let call = pair_call(&self.inner.local, &to);
        let (session, new) = self.inner.ensure(&call).await?;
        if new {
            tokio::spawn(presence(Arc::downgrade(&self.inner), call.clone()));
        }
        let message = RoomMessage {
            kind: "OFFER".into(),
            call: call.clone(),
            session: Some(session.clone()),
            body: Some(Base64::encode_string(&envelope)),
        };
        let response = self
            .inner
            .http
            .post(format!("{}/signal", self.inner.http_base))
            .header("content-type", "application/json")
            .body(
                serde_json::to_string(&message)
                    .map_err(|e| BackendError::Unavailable(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        match response.status().as_u16() {
            200 => Ok(()),
            409 => {
                // The service no longer knows the session: join again next time.
                self.inner.expire(&call, &session).await;
                Err(BackendError::Unavailable(format!(
                    "{call}: session expired"
                )))
            }
            status => Err(BackendError::Unavailable(format!("{call}: {status}"))),
        }
    }

    async fn subscribe(&self, key: PublicKey) -> Result<Subscription, BackendError> {
        if key != self.inner.local {
            return Err(BackendError::Unavailable(
                "a RoomBackend subscribes to its own key only".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        // The receiver is alive: this first event always fits the empty buffer.
        let _ = tx.try_send(BackendEvent::Subscribed);
        *self
            .inner
            .inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        Ok(Subscription::new(rx))
    }
}

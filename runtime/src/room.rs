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
//! Each call's connection is driven by [`icepact::room::RoomClient`], the sans-IO client whose
//! table the browser demo page and the model checker use too (one implementation): lost
//! connections are reopened with back-off and jitter with the same session token (rule
//! ROOM_RECONNECT), a session the service no longer knows (it restarted, or the lease ran out)
//! joins the call again (ROOM_REJOIN), and every step has a deadline (ROOM_DEADLINES).
//! Envelopes published meanwhile are lost, which the backend semantics allow: the core
//! re-sends what is not acknowledged. A node that restarts while its old seat's lease lives
//! finds the call full (ROOM_REFUSED): it tries again every [`FULL_RETRY`] until that lease
//! runs out (15 s by default); its publishes fail until then and the core re-sends.
//!
//! Plain `http://` and `ws://` only: put a TLS-terminating proxy in front of the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use base64ct::{Base64, Encoding};
use futures_util::{SinkExt, StreamExt};
use icepact::room::{
    ClientEvent, ClientOutput, Incoming, JoinResult, Message as RoomMessage, RoomClient,
    RoomConfig, RoomError,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::backend::{
    Backend, BackendError, BackendEvent, Subscription, SubscriptionSender, SUBSCRIPTION_BUFFER,
};
use icepact::{PublicKey, Seed};

/// How long one HTTP request or WebSocket connection attempt may take.
const DEADLINE: Duration = Duration::from_secs(5);
/// How long a publish waits for its call's seat (the first join, or a rejoin).
const SEAT_WAIT: Duration = Duration::from_secs(5);
/// How often a node tries a full pair call again: its own old seat (a previous process of the
/// node) frees when its lease runs out.
pub const FULL_RETRY: Duration = Duration::from_secs(5);

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
    /// Each call's connection task: its current session token, and where a refused publish
    /// is reported.
    calls: StdMutex<HashMap<String, Call>>,
    /// Where received envelopes go, once subscribed.
    inbound: StdMutex<Option<SubscriptionSender>>,
}

#[derive(Clone)]
struct Call {
    session: watch::Receiver<Option<String>>,
    refused: mpsc::UnboundedSender<String>,
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
                calls: StdMutex::new(HashMap::new()),
                inbound: StdMutex::new(None),
            }),
        })
    }
}

impl Inner {
    fn inbound(&self) -> Option<SubscriptionSender> {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `GET /call/{call}?session={session}`, as the client's [`JoinResult`].
    async fn join(&self, call: &str, session: &str) -> JoinResult {
        let url = format!("{}/call/{call}?session={session}", self.http_base);
        let response = match self.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                debug!(%call, error = %e, "join failed");
                return JoinResult::Unavailable;
            }
        };
        match response.status().as_u16() {
            200 => {}
            409 => return JoinResult::Full,
            400 => return JoinResult::Invalid,
            status => {
                debug!(%call, status, "join refused");
                return JoinResult::Unavailable;
            }
        }
        let parsed = response
            .text()
            .await
            .ok()
            .and_then(|t| serde_json::from_str::<RoomMessage>(&t).ok())
            .and_then(|m| m.session);
        match parsed {
            Some(session) => JoinResult::Joined(session),
            None => JoinResult::Unavailable,
        }
    }

    /// The call's connection task, started on first use.
    fn call(self: &Arc<Self>, call: &str) -> Result<Call, BackendError> {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = calls.get(call) {
            return Ok(c.clone());
        }
        let seed = Seed::from_os_rng().map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let client = RoomClient::new(call, RoomConfig::default(), seed).map_err(|e| match e {
            RoomError::InvalidCall => BackendError::Unavailable(format!("{call}: invalid call")),
            e => BackendError::Unavailable(e.to_string()),
        })?;
        let (session_tx, session_rx) = watch::channel(None);
        let (refused_tx, refused_rx) = mpsc::unbounded_channel();
        let c = Call {
            session: session_rx,
            refused: refused_tx,
        };
        calls.insert(call.to_owned(), c.clone());
        tokio::spawn(presence(
            Arc::downgrade(self),
            client,
            session_tx,
            refused_rx,
        ));
        Ok(c)
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Drives one call's [`RoomClient`]: performs its outputs, feeds it the connection's frames and
/// the time, publishes its session token, and hands received envelopes to the subscription,
/// until the backend is dropped.
async fn presence(
    inner: std::sync::Weak<Inner>,
    mut client: RoomClient,
    session: watch::Sender<Option<String>>,
    mut refused: mpsc::UnboundedReceiver<String>,
) {
    let call = client.call().to_owned();
    // `connect` from Disconnected always has an edge.
    let _ = client.connect(Instant::now().into_std());
    let mut ws: Option<Ws> = None;
    // The backend is checked for liveness once a second: the server's PINGs keep a
    // connection busy forever, so an idle one would otherwise outlive its node.
    let mut alive = tokio::time::interval(Duration::from_secs(1));
    loop {
        while let Some(out) = client.poll_output() {
            let Some(me) = inner.upgrade() else { return };
            match out {
                ClientOutput::Join { session } => {
                    let result = me.join(&call, &session).await;
                    if let Err(e) = client.handle_joined(Instant::now().into_std(), result) {
                        warn!(%call, error = %e, "the room service sent a malformed token");
                    }
                }
                ClientOutput::Open => match open(&me.ws_url).await {
                    Ok(socket) => {
                        ws = Some(socket);
                        let _ = client.handle_open(Instant::now().into_std());
                    }
                    Err(e) => {
                        debug!(%call, error = %e, "room connection failed");
                        client.handle_closed(Instant::now().into_std(), None);
                    }
                },
                ClientOutput::Send(text) => {
                    let sent = match ws.as_mut() {
                        // Within the deadline: a peer that stops reading must not block the
                        // task (and with it the client's own handshake deadline).
                        Some(w) => matches!(
                            tokio::time::timeout(DEADLINE, w.send(Message::text(text))).await,
                            Ok(Ok(()))
                        ),
                        None => false,
                    };
                    if !sent {
                        client.handle_closed(Instant::now().into_std(), None);
                    }
                }
                ClientOutput::Close => {
                    if let Some(mut w) = ws.take() {
                        let _ = tokio::time::timeout(DEADLINE, w.close(None)).await;
                    }
                }
                ClientOutput::Event(e) => match e {
                    ClientEvent::StateChanged { from, to } => {
                        debug!(%call, %from, %to, "room client");
                        if to == icepact::room::ClientState::InRoom {
                            info!(%call, "room joined");
                        }
                    }
                    ClientEvent::CallFull => {
                        // ROOM_REFUSED for a user; a node's own old seat frees with its lease.
                        info!(%call, "pair call full; trying again in {FULL_RETRY:?}");
                        drop(me);
                        tokio::time::sleep(FULL_RETRY).await;
                        let _ = client.connect(Instant::now().into_std());
                    }
                    ClientEvent::InvalidCall => {
                        warn!(%call, "the room service refused the call name");
                        return;
                    }
                    e => debug!(%call, event = ?e, "room client"),
                },
                other => debug!(%call, output = ?other, "room client output not handled"),
            }
            let current = client.session();
            session.send_if_modified(|s| {
                let changed = s.as_deref() != current;
                if changed {
                    *s = current.map(str::to_owned);
                }
                changed
            });
        }
        let wake = client.poll_timeout().map(Instant::from_std);
        tokio::select! {
            frame = async { ws.as_mut()?.next().await }, if ws.is_some() => {
                let now = Instant::now().into_std();
                match frame {
                    Some(Ok(Message::Text(t))) => {
                        let Ok(m) = serde_json::from_str::<RoomMessage>(&t) else {
                            client.handle_frame(now);
                            continue;
                        };
                        let relay = client.handle_message(now, Incoming::from_kind(&m.kind));
                        if relay == Ok(true) && m.kind == "OFFER" && !deliver(&inner, m.body) {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        ws = None;
                        client.handle_closed(now, frame.map(|f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => client.handle_frame(now),
                    Some(Err(_)) | None => {
                        ws = None;
                        client.handle_closed(now, None);
                    }
                }
            }
            () = async { tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)).await }, if wake.is_some() => {
                client.handle_timeout(Instant::now().into_std());
            }
            Some(dead) = refused.recv() => {
                // A publish got 409 with the session current then (ROOM_REJOIN); a session
                // already replaced is left alone (two seats would fill the pair's call).
                if client.session() == Some(dead.as_str()) {
                    client.handle_publish_refused(Instant::now().into_std());
                }
            }
            _ = alive.tick() => {
                if inner.strong_count() == 0 {
                    if let Some(mut w) = ws.take() {
                        let _ = w.close(None).await;
                    }
                    return;
                }
            }
        }
    }
}

/// Opens the WebSocket within [`DEADLINE`].
async fn open(url: &str) -> Result<Ws, String> {
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Hands a received envelope to the subscription; false once the backend or its subscriber is
/// gone.
fn deliver(inner: &std::sync::Weak<Inner>, body: Option<String>) -> bool {
    let Some(bytes) = body.and_then(|b| Base64::decode_vec(&b).ok()) else {
        return true;
    };
    let Some(tx) = inner.upgrade().and_then(|i| i.inbound()) else {
        return false;
    };
    // A full buffer drops the envelope (allowed); a closed one ends us.
    !matches!(
        tx.try_send(BackendEvent::Envelope(bytes)),
        Err(mpsc::error::TrySendError::Closed(_))
    )
}

/// The session of `c` once it has one, waiting at most [`SEAT_WAIT`].
async fn seat(c: &mut Call) -> Option<String> {
    let wait = c.session.wait_for(Option::is_some);
    match tokio::time::timeout(SEAT_WAIT, wait).await {
        Ok(Ok(s)) => s.clone(),
        _ => None,
    }
}

impl Backend for RoomBackend {
    async fn publish(&self, to: PublicKey, envelope: Vec<u8>) -> Result<(), BackendError> {
        let call = pair_call(&self.inner.local, &to);
        let mut c = self.inner.call(&call)?;
        let Some(session) = seat(&mut c).await else {
            return Err(BackendError::Unavailable(format!("{call}: no seat yet")));
        };
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
                // The service no longer knows the session: the call's client joins again.
                let _ = c.refused.send(session);
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
        let (tx, subscription) = Subscription::channel(SUBSCRIPTION_BUFFER);
        // The receiver is alive: this first event always fits the empty buffer.
        let _ = tx.try_send(BackendEvent::Subscribed);
        *self
            .inner
            .inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        Ok(subscription)
    }
}

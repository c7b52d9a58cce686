//! The HTTP and WebSocket API (seed 004) over a [`Store`]: small handlers, the service's state
//! in one struct, errors mapped to status codes in one place ([`ApiError`]).

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use icepact::TokenBucket;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::demo;
use crate::namespace::Namespace;
use crate::seats::{Millis, SeatError, Token};
use crate::store::{unix_millis, RoomMessage, Store, StoreError};

/// The message format of seed 004: `{kind, call, session, body}` (defined once, in the core's
/// `icepact::room`, for the service and its clients).
pub use icepact::room::Message as Envelope;

/// WebSocket close codes of the handshake and presence (the core's `icepact::room::close_code`).
pub use icepact::room::close_code as close;

/// Every way a request fails, and its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a missing field, an unknown `kind`, a call name or session token that
    /// cannot be one: 400.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No seat is free: 409.
    #[error("no seat is free in this call")]
    Full,
    /// The session is not a member of the call: 409.
    #[error("the session is not a member of this call")]
    NotMember,
    /// Too many requests from this address or session: 429.
    #[error("rate limit exceeded")]
    RateLimited,
    /// Too many open WebSocket connections: 503.
    #[error("too many connections")]
    TooManyConnections,
    /// The store is unreachable: 503.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SeatError> for ApiError {
    fn from(e: SeatError) -> ApiError {
        match e {
            SeatError::Full => ApiError::Full,
            SeatError::NotMember => ApiError::NotMember,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Full | ApiError::NotMember => StatusCode::CONFLICT,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManyConnections | ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = serde_json::json!({ "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}

/// Token buckets by key (`rate` per second, a burst of `2 × rate`: the core's `TokenBucket`),
/// forgetting keys idle for a minute once there are many.
struct Limiter<K> {
    rate: u32,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: std::hash::Hash + Eq> Limiter<K> {
    fn new(rate: u32) -> Limiter<K> {
        Limiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    fn allow(&mut self, key: K, now: Instant) -> bool {
        const MANY: usize = 100_000;
        if self.buckets.len() > MANY {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last()) < Duration::from_secs(60));
        }
        let rate = self.rate;
        if rate == 0 {
            // A rate of zero admits nothing (a bucket holds at least one token).
            return false;
        }
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(rate, rate.saturating_mul(2), now))
            .allow(now)
    }
}

/// Counters served on `/debug` in Prometheus' text format.
#[derive(Default)]
struct Metrics {
    joins: AtomicU64,
    joins_full: AtomicU64,
    signals: AtomicU64,
    signals_refused: AtomicU64,
    rate_limited: AtomicU64,
    handshakes: AtomicU64,
    handshakes_refused: AtomicU64,
    renewals_failed: AtomicU64,
    relayed: AtomicU64,
    lagged: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The service: configuration, store, limits and counters, shared by every handler.
pub struct Service<S> {
    config: Config,
    store: S,
    by_ip: Mutex<Limiter<IpAddr>>,
    by_session: Mutex<Limiter<Token>>,
    connections: AtomicUsize,
    metrics: Metrics,
    /// True once the instance is shutting down: open WebSockets are closed with 1001.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl<S: Store> Service<S> {
    /// A service over `store`.
    pub fn new(config: Config, store: S) -> Arc<Service<S>> {
        Arc::new(Service {
            by_ip: Mutex::new(Limiter::new(config.ip_rate)),
            by_session: Mutex::new(Limiter::new(config.session_rate)),
            config,
            store,
            connections: AtomicUsize::new(0),
            metrics: Metrics::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Closes every open WebSocket with 1001 ("going away"); new ones are closed at once.
    pub fn close_all(&self) {
        let _ = self.stopping.send(true);
    }

    fn lease(&self) -> Millis {
        u64::try_from(self.config.lease_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        let ok = self
            .by_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(ip, Instant::now());
        if ok {
            Ok(())
        } else {
            bump(&self.metrics.rate_limited);
            Err(ApiError::RateLimited)
        }
    }

    fn check_session(&self, token: &Token) -> Result<(), ApiError> {
        let ok = self
            .by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(token.clone(), Instant::now());
        if ok {
            Ok(())
        } else {
            bump(&self.metrics.rate_limited);
            Err(ApiError::RateLimited)
        }
    }
}

/// A `POST /signal` request, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// `OFFER`, `ANSWER` or (in a browser call) `CANDIDATE`.
    pub kind: String,
    /// A valid call name.
    pub call: String,
    /// The sender's session.
    pub session: Token,
    /// The body, opaque.
    pub body: Option<String>,
}

/// Parses a `POST /signal` body: JSON with a valid call name, a well-formed session token, and
/// a kind and body that fit the call's namespace (rule CALL_NAMESPACE, [`Namespace`]).
pub fn parse_signal(bytes: &[u8]) -> Result<Signal, ApiError> {
    let m: Envelope =
        serde_json::from_slice(bytes).map_err(|_| ApiError::BadRequest("malformed JSON"))?;
    if !valid_call(&m.call) {
        return Err(ApiError::BadRequest("invalid call name"));
    }
    Namespace::of(&m.call)
        .check(&m.kind, m.body.as_deref())
        .map_err(ApiError::BadRequest)?;
    let session = m
        .session
        .as_deref()
        .and_then(Token::parse)
        .ok_or(ApiError::BadRequest("invalid session"))?;
    Ok(Signal {
        kind: m.kind,
        call: m.call,
        session,
        body: m.body,
    })
}

/// Parses a WebSocket handshake: JSON of kind `JOIN` with a valid call name and a well-formed
/// session token; `(session, call)`.
pub fn parse_handshake(text: &str) -> Option<(Token, String)> {
    let m = serde_json::from_str::<Envelope>(text)
        .ok()
        .filter(|m| m.kind == "JOIN" && valid_call(&m.call))?;
    Some((m.session.as_deref().and_then(Token::parse)?, m.call))
}

/// A call name: 1 to 128 characters that need no escaping in a URL path (`A–Z a–z 0–9 . _ ~ -`).
pub use icepact::room::valid_call;

/// The API: `GET /call/{call}`, `GET /ws`, `POST /signal`, and the demo page (`/`,
/// `/app.js`, `/client.json`: the client state table).
pub fn api<S: Store>(service: Arc<Service<S>>) -> Router {
    let limit = service.config.max_body;
    Router::new()
        .route("/", get(demo::index))
        .route("/app.js", get(demo::script))
        .route("/client.json", get(demo::table))
        .route("/call/{call}", get(join::<S>))
        .route("/ws", get(ws::<S>))
        .route("/signal", post(signal::<S>))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(service)
}

/// `/healthz` (200 when the store answers, else 503) and `/debug` (counters).
pub fn health<S: Store>(service: Arc<Service<S>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz::<S>))
        .route("/debug", get(debug_metrics::<S>))
        .with_state(service)
}

/// The query of `GET /call/{call}`.
#[derive(Deserialize)]
struct JoinQuery {
    /// The token the client proposes (its own 128 random bits): a join with a token that
    /// holds a live seat renews that seat, so a retried join never takes a second one.
    session: Option<String>,
}

/// `GET /call/{call}[?session=…]`: a seat and its session token, or 409.
async fn join<S: Store>(
    State(svc): State<Arc<Service<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(call): Path<String>,
    Query(query): Query<JoinQuery>,
) -> Result<Json<Envelope>, ApiError> {
    svc.check_ip(peer.ip())?;
    if !valid_call(&call) {
        return Err(ApiError::BadRequest("invalid call name"));
    }
    let token = match query.session {
        Some(s) => Token::parse(&s).ok_or(ApiError::BadRequest("invalid session"))?,
        None => Token::generate().map_err(|e| StoreError(format!("no randomness: {e}")))?,
    };
    let (now, capacity, lease) = (unix_millis(), svc.config.seats as usize, svc.lease());
    let t = token.clone();
    let joined = svc
        .store
        .update(&call, move |seats| {
            seats.join(now, capacity, t.clone(), lease)
        })
        .await?;
    if let Err(e) = joined {
        bump(&svc.metrics.joins_full);
        return Err(e.into());
    }
    bump(&svc.metrics.joins);
    Ok(Json(Envelope {
        kind: "JOIN".into(),
        call,
        session: Some(token.as_str().to_owned()),
        body: None,
    }))
}

/// `POST /signal`: an `OFFER` or `ANSWER` relayed to the other members of the call.
async fn signal<S: Store>(
    State(svc): State<Arc<Service<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    svc.check_ip(peer.ip())?;
    let refused = |e: ApiError| {
        bump(&svc.metrics.signals_refused);
        e
    };
    let m = parse_signal(&body).map_err(refused)?;
    let token = m.session;
    svc.check_session(&token)?;
    let now = unix_millis();
    let t = token.clone();
    let member = svc
        .store
        .update(&m.call, move |seats| seats.is_member(now, &t))
        .await?;
    if !member {
        return Err(refused(ApiError::NotMember));
    }
    svc.store
        .publish(RoomMessage {
            kind: m.kind,
            call: m.call,
            body: m.body,
            from: token,
        })
        .await?;
    bump(&svc.metrics.signals);
    Ok(StatusCode::OK)
}

/// `GET /ws`: presence and the room's messages, after the handshake.
async fn ws<S: Store>(
    State(svc): State<Arc<Service<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    svc.check_ip(peer.ip())?;
    let open = svc.connections.fetch_add(1, Ordering::AcqRel);
    if open >= svc.config.max_connections {
        svc.connections.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::TooManyConnections);
    }
    let max = svc.config.max_body;
    Ok(upgrade
        .max_message_size(max)
        .on_upgrade(move |socket| async move {
            presence(&svc, socket).await;
            svc.connections.fetch_sub(1, Ordering::AcqRel);
        }))
}

/// How long one WebSocket frame may take to go out: a client that stops reading (its TCP
/// window full) must not hold its connection's task forever.
const SEND_DEADLINE: Duration = Duration::from_secs(5);

/// Sends one frame within [`SEND_DEADLINE`]; false if it failed or timed out.
async fn send(socket: &mut WebSocket, m: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_DEADLINE, socket.send(m)).await,
        Ok(Ok(()))
    )
}

async fn close_with(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    send(&mut socket, Message::Close(Some(frame))).await;
}

/// The handshake, then PINGs, renewals on PONG, and the room's messages until either side
/// goes away or a renewal fails.
async fn presence<S: Store>(svc: &Service<S>, mut socket: WebSocket) {
    let first = tokio::time::timeout(svc.config.handshake_timeout, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(t))) => return Some(t),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    })
    .await;
    let text = match first {
        Err(_) => {
            bump(&svc.metrics.handshakes_refused);
            return close_with(socket, close::HANDSHAKE_TIMEOUT, "handshake timeout").await;
        }
        Ok(None) => return,
        Ok(Some(t)) => t,
    };
    let Some((token, call)) = parse_handshake(&text) else {
        bump(&svc.metrics.handshakes_refused);
        return close_with(socket, close::MALFORMED_HANDSHAKE, "malformed handshake").await;
    };
    // Subscribed before the welcome: nothing published after it is missed.
    let mut room = match svc.store.subscribe(&call).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "subscribe");
            return close_with(socket, close::UNAVAILABLE, "store unavailable").await;
        }
    };
    if renew(svc, &call, &token).await.is_err() {
        bump(&svc.metrics.handshakes_refused);
        return close_with(socket, close::SESSION_EXPIRED, "session expired").await;
    }
    bump(&svc.metrics.handshakes);
    let welcome = Envelope {
        kind: "WELCOME".into(),
        call: call.clone(),
        session: None,
        body: None,
    };
    if !send_json(&mut socket, &welcome).await {
        return;
    }
    let available = RoomMessage {
        kind: "AVAILABLE".into(),
        call: call.clone(),
        body: None,
        from: token.clone(),
    };
    if let Err(e) = svc.store.publish(available).await {
        debug!(error = %e, "publish AVAILABLE");
    }
    let mut ping = tokio::time::interval(svc.config.ping_interval);
    ping.tick().await;
    let mut stopping = svc.stopping.subscribe();
    let stop = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => {
                return close_with(socket, close::GOING_AWAY, "shutting down").await;
            }
            _ = ping.tick() => {
                // A client that stopped answering has let its lease run out by now.
                let now = unix_millis();
                let t = token.clone();
                let live = svc.store.update(&call, move |s| s.is_member(now, &t)).await;
                if !matches!(live, Ok(true)) {
                    bump(&svc.metrics.renewals_failed);
                    return close_with(socket, close::SESSION_EXPIRED, "session expired").await;
                }
                if !send(&mut socket, Message::Ping(Bytes::new())).await {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Pong(_))) => {
                    if renew(svc, &call, &token).await.is_err() {
                        bump(&svc.metrics.renewals_failed);
                        return close_with(socket, close::SESSION_EXPIRED, "session expired").await;
                    }
                }
                // Anything else a client sends after the handshake is ignored (seed 004).
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            relayed = room.recv() => match relayed {
                Ok(m) if m.from != token => {
                    let out = Envelope { kind: m.kind, call: m.call, session: None, body: m.body };
                    if !send_json(&mut socket, &out).await {
                        return;
                    }
                    bump(&svc.metrics.relayed);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    // A client too slow to read loses the oldest messages, not the others'.
                    svc.metrics.lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

async fn renew<S: Store>(svc: &Service<S>, call: &str, token: &Token) -> Result<(), ApiError> {
    let (now, lease) = (unix_millis(), svc.lease());
    let t = token.clone();
    svc.store
        .update(call, move |s| s.renew(now, &t, lease))
        .await??;
    Ok(())
}

async fn send_json(socket: &mut WebSocket, m: &Envelope) -> bool {
    // Serialising these plain string fields cannot fail.
    let text = serde_json::to_string(m).unwrap_or_default();
    send(socket, Message::Text(text.into())).await
}

async fn healthz<S: Store>(State(svc): State<Arc<Service<S>>>) -> StatusCode {
    match svc.store.ping().await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Counters in Prometheus' text exposition format (Rust has no pprof endpoint; seed 004's
/// `/debug` serves these instead).
async fn debug_metrics<S: Store>(State(svc): State<Arc<Service<S>>>) -> String {
    let m = &svc.metrics;
    let mut out = String::new();
    for (name, help, v) in [
        ("signal_joins_total", "Seats taken.", &m.joins),
        (
            "signal_joins_full_total",
            "Joins refused: no seat free.",
            &m.joins_full,
        ),
        (
            "signal_signals_total",
            "OFFER/ANSWER messages published.",
            &m.signals,
        ),
        (
            "signal_signals_refused_total",
            "POST /signal refused (malformed, not a member).",
            &m.signals_refused,
        ),
        (
            "signal_rate_limited_total",
            "Requests refused by a rate limit.",
            &m.rate_limited,
        ),
        (
            "signal_handshakes_total",
            "WebSocket handshakes accepted.",
            &m.handshakes,
        ),
        (
            "signal_handshakes_refused_total",
            "WebSocket handshakes refused or timed out.",
            &m.handshakes_refused,
        ),
        (
            "signal_renewals_failed_total",
            "Connections closed because the seat could not be renewed.",
            &m.renewals_failed,
        ),
        (
            "signal_relayed_total",
            "Messages sent to WebSocket members.",
            &m.relayed,
        ),
        (
            "signal_lagged_total",
            "Messages lost by members too slow to read.",
            &m.lagged,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "# HELP signal_connections Open WebSocket connections.\n# TYPE signal_connections gauge\nsignal_connections {}\n",
        svc.connections.load(Ordering::Relaxed)
    ));
    out
}

/// A running service: its two addresses, and a way to stop it.
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Where `/healthz` and `/debug` listen.
    pub healthz_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.wait().await;
    }

    /// Waits until the service stopped (its `stop` future completed).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds both addresses and serves until [`Running::shutdown`] or `stop` completes.
pub async fn start<S: Store>(
    config: Config,
    store: S,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    let api_listener = TcpListener::bind(config.addr).await?;
    let health_listener = TcpListener::bind(config.healthz_addr).await?;
    let (addr, healthz_addr) = (api_listener.local_addr()?, health_listener.local_addr()?);
    let service = Service::new(config, store);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopper = tx.clone();
    tokio::spawn(async move {
        stop.await;
        let _ = stopper.send(true);
    });
    // Upgraded connections are not the HTTP server's any more: close them ourselves.
    let closer = Arc::clone(&service);
    let mut stopped_rx = rx.clone();
    tokio::spawn(async move {
        let _ = stopped_rx.wait_for(|s| *s).await;
        closer.close_all();
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = axum::serve(
        api_listener,
        api(Arc::clone(&service)).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped(rx.clone()));
    let health = axum::serve(health_listener, health(service)).with_graceful_shutdown(stopped(rx));
    info!(%addr, %healthz_addr, "listening");
    Ok(Running {
        addr,
        healthz_addr,
        stop: tx,
        tasks: vec![
            tokio::spawn(api.into_future()),
            tokio::spawn(health.into_future()),
        ],
    })
}

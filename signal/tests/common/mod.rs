//! Helpers of the service's integration tests: a service on 127.0.0.1, a minimal HTTP/1.1
//! client, WebSocket members, and the Redis server of the tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use icepact_signal::{start, Config, Envelope, MemoryStore, Running, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

pub async fn service(config: Config) -> Running {
    service_on(config, MemoryStore::new()).await
}

pub async fn service_on<S: Store>(config: Config, store: S) -> Running {
    start(config, store, std::future::pending())
        .await
        .expect("the service starts")
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

pub async fn join(addr: SocketAddr, call: &str) -> (u16, Option<Envelope>) {
    let (status, body) = http(addr, "GET", &format!("/call/{call}"), "").await;
    (status, serde_json::from_str(&body).ok())
}

/// A browser call's body for an `OFFER` or `ANSWER` whose SDP is `text` (rule CALL_NAMESPACE).
pub fn sdp(kind: &str, text: &str) -> String {
    let kind = kind.to_lowercase();
    serde_json::json!({ "from": "test", "description": { "type": kind, "sdp": text } }).to_string()
}

/// Posts `body` as `kind` in `call`; an `OFFER`/`ANSWER` body in a browser call is wrapped
/// into a description first ([`sdp`]).
pub async fn post(addr: SocketAddr, kind: &str, call: &str, session: &str, body: &str) -> u16 {
    let body = if matches!(kind, "OFFER" | "ANSWER") && !call.starts_with("ip-") {
        sdp(kind, body)
    } else {
        body.to_owned()
    };
    let m = serde_json::json!({ "kind": kind, "call": call, "session": session, "body": body });
    http(addr, "POST", "/signal", &m.to_string()).await.0
}

pub async fn ws(addr: SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("upgrade")
        .0
}

/// Sends the JOIN handshake of `join` on a new WebSocket.
pub async fn handshake(addr: SocketAddr, join: &Envelope) -> Ws {
    let mut w = ws(addr).await;
    w.send(Message::text(serde_json::to_string(join).unwrap()))
        .await
        .unwrap();
    w
}

/// The next text message as an envelope (pings are answered by reading), within 3 s.
pub async fn next(w: &mut Ws) -> Envelope {
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match w.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a message within 3 s")
}

/// The close code the server ends the connection with, within 3 s.
pub async fn closed_with(w: &mut Ws) -> Option<CloseCode> {
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match w.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 3 s")
}

/// Reads (answering pings) for `d`, expecting nothing but control frames.
pub async fn stay(w: &mut Ws, d: Duration) {
    let _ = tokio::time::timeout(d, async {
        while let Some(Ok(m)) = w.next().await {
            assert!(!m.is_text(), "unexpected message {m:?}");
        }
        panic!("the connection ended");
    })
    .await;
}

/// The Redis server of the tests (`ICEPACT_REDIS_URL`, default `redis://127.0.0.1:6379`) and a
/// key prefix of this test's own, if the server answers. Without it: a failure when `CI` is set,
/// else a skip with a message.
pub async fn redis_or_skip(test: &str) -> Option<(String, String)> {
    let url =
        std::env::var("ICEPACT_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "icepact-signal-test:{}:",
        icepact_signal::seats::Token::generate().unwrap().as_str()
    );
    let store = icepact_signal::RedisStore::new(&url, &prefix).expect("a well-formed URL");
    match store.ping().await {
        Ok(()) => Some((url, prefix)),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but Redis at {url} is unreachable ({e}): start redis-server")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: Redis at {url} is unreachable ({e})");
            None
        }
    }
}

/// Which store a test's service runs on.
pub enum Backing {
    /// The embedded store.
    Memory,
    /// Redis: URL and a key prefix of the test's own.
    Redis(String, String),
}

impl Backing {
    /// A service with `config` on this store.
    pub async fn start(&self, config: Config) -> Running {
        match self {
            Backing::Memory => service(config).await,
            Backing::Redis(url, prefix) => {
                service_on(
                    config,
                    icepact_signal::RedisStore::new(url, prefix).expect("a well-formed URL"),
                )
                .await
            }
        }
    }
}

//! Load of the room service on loopback: 1,000 WebSocket members in 500 two-seat calls, 32
//! publishers posting `OFFER`s as fast as the service answers (closed loop) for 10 s; the
//! sustained publish rate and the publish→receive latency (p50/p99/max). Beside it, raw Redis
//! `PUBLISH`→`SUBSCRIBE` with the same shape (500 channels, a subscriber each, 32 publishers):
//! the physical floor when the service runs on Redis.
//!
//! ```sh
//! cargo bench -p icepact-signal --bench load                  # embedded store
//! cargo bench -p icepact-signal --bench load -- --redis       # the service on Redis, and raw Redis
//! ```
//!
//! Redis is `ICEPACT_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use icepact_signal::{start, Config, Envelope, MemoryStore, RedisStore, Store};
use tokio_tungstenite::tungstenite::Message;

const CALLS: usize = 500;
const PUBLISHERS: usize = 32;
const DURATION: Duration = Duration::from_secs(10);

fn quantiles(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1e6;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        q(0.5),
        q(0.99),
        q(1.0),
        v.len()
    )
}

/// Waits for the publishers, lets the last messages arrive, stops the readers and returns
/// every latency they saw.
async fn collect(
    publishers: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    readers: Vec<tokio::task::JoinHandle<Vec<u64>>>,
) -> Vec<u64> {
    for p in publishers {
        p.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(true);
    let mut latencies = Vec::new();
    for r in readers {
        latencies.extend(r.await.unwrap());
    }
    latencies
}

/// The service with `store`: members join and connect, publishers post for [`DURATION`].
async fn service<S: Store>(store: S, label: &str) {
    let mut config = Config::local();
    config.ip_rate = 1_000_000;
    config.session_rate = 1_000_000;
    config.max_connections = 4 * CALLS;
    let running = start(config, store, std::future::pending()).await.unwrap();
    let base = format!("http://{}", running.addr);
    let ws_url = format!("ws://{}/ws", running.addr);
    let http = reqwest::Client::new();
    let epoch = Instant::now();

    // Join: two members per call; connect both WebSockets.
    let mut members = Vec::new();
    for c in 0..CALLS {
        for _ in 0..2 {
            let text = http
                .get(format!("{base}/call/load-{c}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let join: Envelope = serde_json::from_str(&text).unwrap();
            members.push(join);
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for join in &members {
        let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        ws.send(Message::text(serde_json::to_string(join).unwrap()))
            .await
            .unwrap();
        let mut stop = stop_rx.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let Ok(m) = serde_json::from_str::<Envelope>(&t) else { continue };
                            // The send time travels as the "SDP" of a browser call's offer.
                            let sent = m.body.and_then(|b| {
                                let v: serde_json::Value = serde_json::from_str(&b).ok()?;
                                v["description"]["sdp"].as_str()?.parse::<u64>().ok()
                            });
                            if let Some(sent) = sent {
                                let now = epoch.elapsed().as_nanos() as u64;
                                latencies.push(now.saturating_sub(sent));
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            latencies
        }));
    }
    // Let every handshake finish.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let published = Arc::new(AtomicU64::new(0));
    let members = Arc::new(members);
    let mut publishers = Vec::new();
    let until = Instant::now() + DURATION;
    for p in 0..PUBLISHERS {
        let (http, base, members, published) = (
            http.clone(),
            base.clone(),
            Arc::clone(&members),
            Arc::clone(&published),
        );
        publishers.push(tokio::spawn(async move {
            let mut i = p;
            while Instant::now() < until {
                let m = &members[i % members.len()];
                i += PUBLISHERS;
                let body = serde_json::json!({
                    "kind": "OFFER",
                    "call": m.call,
                    "session": m.session,
                    "body": serde_json::json!({
                        "from": "load",
                        "description": {"type": "offer", "sdp": epoch.elapsed().as_nanos().to_string()},
                    }).to_string(),
                });
                let r = http
                    .post(format!("{base}/signal"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let latencies = collect(publishers, stop_tx, readers).await;
    let n = published.load(Ordering::Relaxed);
    println!(
        "service ({label}): {} members in {CALLS} calls, {PUBLISHERS} publishers: {:.0} publishes/s, {} delivered, latency {}",
        2 * CALLS,
        n as f64 / DURATION.as_secs_f64(),
        latencies.len(),
        quantiles(latencies)
    );
    running.shutdown().await;
}

/// Raw Redis with the service's shape: 500 channels with a subscriber each, 32 publishers.
async fn raw_redis(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for c in 0..CALLS {
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe(format!("load-raw:{c}")).await.unwrap();
        let mut stop = stop_rx.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    m = messages.next() => match m {
                        Some(m) => {
                            let sent = m.get_payload::<String>().ok().and_then(|s| s.parse::<u64>().ok());
                            if let Some(sent) = sent {
                                let now = epoch.elapsed().as_nanos() as u64;
                                latencies.push(now.saturating_sub(sent));
                            }
                        }
                        None => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            latencies
        }));
    }
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let published = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + DURATION;
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (mut conn, published) = (conn.clone(), Arc::clone(&published));
        publishers.push(tokio::spawn(async move {
            let mut i = p;
            while Instant::now() < until {
                let channel = format!("load-raw:{}", i % CALLS);
                i += PUBLISHERS;
                let payload = epoch.elapsed().as_nanos().to_string();
                let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async(&mut conn)
                    .await;
                if r.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let latencies = collect(publishers, stop_tx, readers).await;
    let n = published.load(Ordering::Relaxed);
    println!(
        "raw Redis PUBLISH->SUBSCRIBE: {CALLS} channels, {PUBLISHERS} publishers: {:.0} publishes/s, {} delivered, latency {}",
        n as f64 / DURATION.as_secs_f64(),
        latencies.len(),
        quantiles(latencies)
    );
}

fn main() {
    let redis = std::env::args().any(|a| a == "--redis");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        service(MemoryStore::new(), "embedded store").await;
        if redis {
            let url = std::env::var("ICEPACT_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix = format!(
                "icepact-signal-bench:{}:",
                icepact_signal::seats::Token::generate().unwrap().as_str()
            );
            service(RedisStore::new(&url, &prefix).unwrap(), "Redis store").await;
            raw_redis(&url).await;
        }
    });
}

//! Two processes find each other through Redis or through the room service (`icepact-signal`),
//! connect over the real ICE agent on 127.0.0.1 and exchange a datagram over the selected
//! pair. See docs/RUNTIME.md.
//!
//! ```text
//! cargo run -p icepact-tokio --features redis,room --example pair -- alice   # terminal 1
//! cargo run -p icepact-tokio --features redis,room --example pair -- bob     # terminal 2
//! # through the room service instead of Redis (cargo run -p icepact-signal in a third one):
//! cargo run -p icepact-tokio --features redis,room --example pair -- alice --room http://127.0.0.1:8080
//! ```
//!
//! The demo derives both key pairs from the names, so each side knows the other's public key
//! without a key exchange. Real deployments use their WireGuard keys.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use icepact::wire::SecretKey;
use icepact_tokio::{Node, NodeConfig, NodeEvent, RedisBackend, RoomBackend};

/// The demo's fixed key of a name (never do this with real keys).
fn demo_key(name: &str) -> SecretKey {
    let mut bytes = [0x5a; 32];
    for (b, c) in bytes.iter_mut().zip(name.bytes()) {
        *b ^= c;
    }
    SecretKey::from_bytes(bytes)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(if std::env::var_os("ICEPACT_LOG").is_some() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let me = args.first().cloned().unwrap_or_else(|| "alice".into());
    let other = if me == "alice" { "bob" } else { "alice" };
    let room = args
        .iter()
        .position(|a| a == "--room")
        .and_then(|i| args.get(i + 1).cloned());
    let (secret, remote) = (demo_key(&me), demo_key(other).public_key());

    let started = Instant::now();
    let (url, node) = match room {
        Some(url) => {
            let backend = RoomBackend::new(&url, secret.public_key());
            let node = match backend {
                Ok(b) => Node::start(b, secret, &[remote], NodeConfig::default()).await,
                Err(e) => Err(e.into()),
            };
            (url, node)
        }
        None => {
            let url = std::env::var("ICEPACT_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let node = match RedisBackend::new(&url) {
                Ok(b) => Node::start(b, secret, &[remote], NodeConfig::default()).await,
                Err(e) => Err(e.into()),
            };
            (url, node)
        }
    };
    let mut node = match node {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{me}: cannot start (is the signaling backend at {url} running?): {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{me}: waiting for {other} through {url}");
    let status = match node.wait_connected(remote, Duration::from_secs(60)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{me}: not connected: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{me}: connected in {:?}: {:?} -> {:?}",
        started.elapsed(),
        status.local_addr,
        status.selected
    );

    // Send until the other side's datagram arrived, then a little longer so it gets ours.
    let message = format!("hello from {me}").into_bytes();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut received = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut extra = 5;
    while Instant::now() < deadline && extra > 0 {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = node.send_datagram(remote, message.clone()).await {
                    eprintln!("{me}: send: {e}");
                }
                if received.is_some() {
                    extra -= 1;
                }
            }
            event = node.next_event() => match event {
                Some(NodeEvent::Datagram { data, .. }) if received.is_none() => {
                    println!("{me}: received {:?}", String::from_utf8_lossy(&data));
                    received = Some(data);
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    node.shutdown().await;
    if received.is_some() {
        println!("{me}: done");
        ExitCode::SUCCESS
    } else {
        eprintln!("{me}: no datagram from {other}");
        ExitCode::FAILURE
    }
}

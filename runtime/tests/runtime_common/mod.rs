//! Helpers shared by the runtime integration tests.

#![allow(dead_code)]

use std::time::Duration;

use icepact::wire::SecretKey;
use icepact::{Backoff, PublicKey};
use icepact_tokio::{Node, NodeConfig, NodeEvent, RedisBackend};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// The Redis server of the tests: `ICEPACT_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("ICEPACT_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Redis URL if the server answers. Without it: a failure when `CI` is set, else a skip
/// with a message.
pub async fn redis_or_skip(test: &str) -> Option<String> {
    let url = redis_url();
    let backend = RedisBackend::new(&url).expect("a well-formed ICEPACT_REDIS_URL");
    match backend.ping().await {
        Ok(()) => Some(url),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but Redis at {url} is unreachable ({e}): install and start redis-server"
            )
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: Redis at {url} is unreachable ({e}); set ICEPACT_REDIS_URL");
            None
        }
    }
}

/// A fresh random key pair.
pub fn secret() -> SecretKey {
    let mut bytes = [0; 32];
    ChaCha20Rng::from_os_rng().fill_bytes(&mut bytes);
    SecretKey::from_bytes(bytes)
}

/// Two fresh keys, in either order.
pub fn two_secrets() -> (SecretKey, SecretKey) {
    (secret(), secret())
}

/// A node configuration with quick re-sends, so that lost descriptions are repeated within a
/// second rather than a minute.
pub fn quick_config() -> NodeConfig {
    let mut backoff = Backoff::default();
    backoff.initial = Duration::from_millis(200);
    backoff.max = Duration::from_millis(800);
    let mut config = NodeConfig::default();
    config.peer.backoff = backoff;
    config
}

/// Generous bound for reaching Connected on loopback.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Logs to the test output at DEBUG when `ICEPACT_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("ICEPACT_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .try_init();
    }
}

/// The next datagram `node` receives, with its sender, within 5 s (other events are skipped).
pub async fn next_datagram(node: &mut Node) -> (PublicKey, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match node.next_event().await {
                Some(NodeEvent::Datagram { remote, data }) => return (remote, data),
                Some(_) => continue,
                None => panic!("the node stopped"),
            }
        }
    })
    .await
    .expect("a datagram within 5 s")
}

/// A datagram each way on the selected pair.
pub async fn datagram_round_trip(a: &mut Node, b: &mut Node) {
    let (ka, kb) = (a.local_key(), b.local_key());
    a.send_datagram(kb, b"ping".to_vec())
        .await
        .expect("A has a selected pair");
    assert_eq!(next_datagram(b).await, (ka, b"ping".to_vec()));
    b.send_datagram(ka, b"pong".to_vec())
        .await
        .expect("B has a selected pair");
    assert_eq!(next_datagram(a).await, (kb, b"pong".to_vec()));
}

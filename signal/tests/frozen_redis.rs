//! A Redis server that freezes (SIGSTOP) keeps its TCP connections open and answers nothing: a
//! room subscription on it would hear nothing for ever while its member's WebSocket stays up.
//! The store's health check ends the subscription within its interval plus deadline (the
//! member's connection then closes and its client rejoins); after SIGCONT a new subscription
//! works. The test starts its own redis-server, so the freeze touches no other test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use icepact_signal::seats::Token;
use icepact_signal::store::RoomMessage;
use icepact_signal::{RedisStore, Store};
use tokio::sync::broadcast::error::RecvError;

/// A redis-server child process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        signal(&self.0, "CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{name} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_ends_room_subscriptions_within_the_deadline() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let server = match spawned {
        Ok(c) => Server(c),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but redis-server cannot be started ({e})")
        }
        Err(e) => {
            eprintln!("SKIPPED: redis-server cannot be started ({e})");
            return;
        }
    };
    let (interval, deadline) = (Duration::from_millis(300), Duration::from_millis(500));
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}"), "frozen:")
        .unwrap()
        .with_health_check(interval, deadline);
    let mut up = false;
    for _ in 0..100 {
        if store.ping().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "redis-server on port {port} did not come up");

    let message = |body: &str| RoomMessage {
        kind: "OFFER".into(),
        call: "call".into(),
        body: Some(body.into()),
        from: Token::generate().unwrap(),
    };
    let mut room = store.subscribe("call").await.unwrap();
    store.publish(message("before")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), room.recv()).await;
    assert_eq!(got.unwrap().unwrap().body.as_deref(), Some("before"));

    signal(&server.0, "STOP");
    let frozen = Instant::now();
    let ended = tokio::time::timeout(interval + deadline + Duration::from_secs(2), room.recv())
        .await
        .expect("the subscription ended within the health check's interval plus deadline");
    assert!(matches!(ended, Err(RecvError::Closed)), "{ended:?}");
    eprintln!("frozen Redis noticed after {:?}", frozen.elapsed());

    signal(&server.0, "CONT");
    let mut again = None;
    for _ in 0..50 {
        if let Ok(r) = store.subscribe("call").await {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut room = again.expect("subscribed again after SIGCONT");
    let mut delivered = false;
    for _ in 0..20 {
        if store.publish(message("after")).await.is_ok() {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "publishes work again after SIGCONT");
    let got = tokio::time::timeout(Duration::from_secs(2), room.recv()).await;
    assert_eq!(got.unwrap().unwrap().body.as_deref(), Some("after"));
}

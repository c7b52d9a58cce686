//! A Redis server that freezes (SIGSTOP) keeps its TCP connections open and answers nothing:
//! the backend's health check reports the subscription lost within its deadline, publishes
//! fail and are counted per peer, and after SIGCONT the subscription and the sessions come
//! back. The test starts its own redis-server, so the freeze touches no other test.

mod runtime_common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use icepact_tokio::{Node, RedisBackend};
use runtime_common::*;

/// A redis-server child process, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGCONT first: a stopped process only dies of SIGKILL, which is fine, but be tidy.
        signal(&self.child, "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Starts redis-server on a free port, or `None` (a skip, or a failure under `CI`) if there is
/// no redis-server binary.
async fn start_server(test: &str) -> Option<Server> {
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
    let child = match spawned {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but redis-server cannot be started ({e})")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: redis-server cannot be started ({e})");
            return None;
        }
    };
    let server = Server {
        child,
        url: format!("redis://127.0.0.1:{port}"),
    };
    let probe = RedisBackend::new(&server.url).unwrap();
    for _ in 0..100 {
        if probe.ping().await.is_ok() {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server on port {port} did not come up");
}

#[tokio::test]
async fn a_frozen_redis_is_detected_within_the_deadline_and_survived() {
    let test = "a_frozen_redis_is_detected_within_the_deadline_and_survived";
    let Some(server) = start_server(test).await else {
        return;
    };
    init_tracing();
    let (interval, deadline) = (Duration::from_millis(200), Duration::from_millis(500));
    let backend = || {
        RedisBackend::new(&server.url)
            .unwrap()
            .with_health_check(interval, deadline)
    };
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let backend_a = backend();
    let mut a = Node::start(backend_a.clone(), sa, &[kb], quick_config())
        .await
        .unwrap();
    let mut b = Node::start(backend(), sb, &[ka], quick_config())
        .await
        .unwrap();
    a.wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    b.wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    assert!(a.status().subscribed);

    // Freeze the server: connections stay open, nothing is answered.
    signal(&server.child, "STOP");
    let frozen_at = Instant::now();
    a.wait_for(interval + deadline + Duration::from_secs(1), |s| {
        !s.subscribed && s.backend_losses >= 1
    })
    .await
    .expect("A notices the frozen server");
    let noticed = frozen_at.elapsed();
    eprintln!("freeze noticed after {noticed:?} (interval {interval:?} + deadline {deadline:?})");
    assert!(
        backend_a
            .stats()
            .health_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // A new session of A is published into the frozen server: the publish times out and is
    // counted against the peer it was for.
    a.restart(kb).await.expect("restart");
    a.wait_for(deadline * 4, |s| {
        s.peers.get(&kb).is_some_and(|p| p.stats.send_failed >= 1)
    })
    .await
    .expect("the failed publish is counted in PeerStats");

    // Thaw it: the subscription comes back, and A's new session reaches B by the core's
    // re-sends.
    signal(&server.child, "CONT");
    a.wait_for(Duration::from_secs(10), |s| s.subscribed)
        .await
        .expect("A resubscribes");
    let pa = a
        .wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A re-converges");
    b.wait_for(CONNECT_TIMEOUT, |s| {
        s.peers.get(&ka).is_some_and(|p| {
            p.remote_session.map(|r| r.epoch) == pa.local_session.map(|l| l.epoch)
                && p.selected.is_some()
        })
    })
    .await
    .expect("B re-converges on A's new session");
    a.shutdown().await;
    b.shutdown().await;
}

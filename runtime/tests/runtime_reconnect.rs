//! Killing the Redis connections mid-session: the backend reconnects and resubscribes, and the
//! sessions re-converge. In its own test binary because `CLIENT KILL TYPE pubsub` hits every
//! subscriber on the server.

mod runtime_common;

use std::time::Duration;

use icepact_tokio::{Node, RedisBackend};
use runtime_common::*;

async fn kill_clients(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for kind in ["pubsub", "normal"] {
        // SKIPME defaults to yes: our own connection survives.
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg(kind)
            .query_async(&mut conn)
            .await
            .unwrap();
        eprintln!("killed {killed} {kind} connections");
    }
}

#[tokio::test]
async fn killed_redis_connections_reconnect_and_sessions_reconverge() {
    let Some(url) =
        redis_or_skip("killed_redis_connections_reconnect_and_sessions_reconverge").await
    else {
        return;
    };
    init_tracing();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let backend_a = RedisBackend::new(&url).unwrap();
    let mut a = Node::start(backend_a.clone(), sa, &[kb], quick_config())
        .await
        .unwrap();
    let mut b = Node::start(RedisBackend::new(&url).unwrap(), sb, &[ka], quick_config())
        .await
        .unwrap();
    a.wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    b.wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    let before = a.peer_status(&kb).unwrap();

    // Cut every connection, and restart A's session right away: its new description is
    // published while nobody is subscribed, so Redis drops it; only the core's re-send can
    // deliver it once the subscriptions are back.
    kill_clients(&url).await;
    a.restart(kb).await.expect("restart");
    a.wait_for(Duration::from_secs(5), |s| s.backend_losses >= 1)
        .await
        .expect("A sees the subscription lost");

    let pa = a
        .wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A re-converges");
    let pb = b
        .wait_for(CONNECT_TIMEOUT, |s| {
            s.peers.get(&ka).is_some_and(|p| {
                p.remote_session.map(|r| r.epoch) == pa.local_session.map(|l| l.epoch)
                    && p.selected.is_some()
            })
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "B re-converges on A's new session ({e}): A {pa:?}, B {:?}",
                b.status()
            )
        });
    let pb = &pb.peers[&ka];
    assert!(pa.local_session.unwrap().epoch > before.local_session.unwrap().epoch);
    assert_eq!(pa.selected, pb.local_addr, "A sends to B's current socket");
    assert!(a.status().subscribed && b.status().subscribed);
    assert!(
        backend_a
            .stats()
            .lost
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert!(
        backend_a
            .stats()
            .subscribed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );

    // The data path works on the new session.
    a.send_datagram(kb, b"after".to_vec())
        .await
        .expect("selected pair");
    a.shutdown().await;
    b.shutdown().await;
}

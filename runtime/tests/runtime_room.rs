//! Two nodes signal through `icepact-signal`, the room service (its embedded store, started
//! here on 127.0.0.1): they reach Connected over the real ICE agent and exchange datagrams;
//! the service restarts (every seat forgotten), and a restart of the session renegotiates
//! through the new service: the nodes join their call again by themselves.

#![cfg(feature = "room")]

mod runtime_common;

use std::time::Duration;

use icepact_signal::{start, Config, MemoryStore};
use icepact_tokio::{pair_call, Node, RoomBackend};
use runtime_common::{
    datagram_round_trip, init_tracing, quick_config, two_secrets, CONNECT_TIMEOUT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_through_the_room_service_and_again_after_it_restarts() {
    init_tracing();
    let service = start(Config::local(), MemoryStore::new(), std::future::pending())
        .await
        .unwrap();
    let url = format!("http://{}", service.addr);
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    assert_eq!(pair_call(&ka, &kb), pair_call(&kb, &ka));
    let mut a = Node::start(
        RoomBackend::new(&url, ka).unwrap(),
        sa,
        &[kb],
        quick_config(),
    )
    .await
    .unwrap();
    let mut b = Node::start(
        RoomBackend::new(&url, kb).unwrap(),
        sb,
        &[ka],
        quick_config(),
    )
    .await
    .unwrap();
    let before = a
        .wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    b.wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    datagram_round_trip(&mut a, &mut b).await;

    // The service stops (its WebSockets are closed with "going away") and a new one starts on
    // the same address with nothing in its store.
    let addr = service.addr;
    service.shutdown().await;
    let mut config = Config::local();
    config.addr = addr;
    let service = start(config, MemoryStore::new(), std::future::pending())
        .await
        .expect("the same address again");

    // The established ICE session does not need signaling.
    datagram_round_trip(&mut a, &mut b).await;
    // A restart renegotiates through the new service.
    let old_epoch = before.local_session.unwrap().epoch;
    a.restart(kb).await.unwrap();
    let after = a
        .wait_for(Duration::from_secs(30), |s| {
            s.peers.get(&kb).is_some_and(|p| {
                p.state.is_connected() && p.local_session.is_some_and(|l| l.epoch > old_epoch)
            })
        })
        .await
        .expect("A reconnects on a new session through the new service");
    let epoch = after.peers[&kb].local_session.map(|l| l.epoch);
    b.wait_for(Duration::from_secs(30), |s| {
        s.peers
            .get(&ka)
            .is_some_and(|p| p.state.is_connected() && p.remote_session.map(|r| r.epoch) == epoch)
    })
    .await
    .expect("B follows A's new session");
    datagram_round_trip(&mut a, &mut b).await;
    a.shutdown().await;
    b.shutdown().await;
    service.shutdown().await;
}

//! Two nodes in one process reach Connected over the real ICE agent and exchange datagrams:
//! through the in-process backend, and through a real Redis server.

#![cfg(feature = "redis")]

mod runtime_common;

use std::time::Duration;

use icepact::runtime::{MemoryBackend, Node, NodeEvent, RedisBackend};
use icepact::ConnectionState;
use runtime_common::*;

async fn datagram_round_trip(a: &mut Node, b: &mut Node) {
    let (ka, kb) = (a.local_key(), b.local_key());
    a.send_datagram(kb, b"ping".to_vec())
        .await
        .expect("A has a selected pair");
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match b.next_event().await {
                Some(NodeEvent::Datagram { remote, data }) => return (remote, data),
                Some(_) => continue,
                None => panic!("B stopped"),
            }
        }
    })
    .await
    .expect("B receives the datagram");
    assert_eq!(got, (ka, b"ping".to_vec()));
    b.send_datagram(ka, b"pong".to_vec())
        .await
        .expect("B has a selected pair");
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(NodeEvent::Datagram { data, .. }) = a.next_event().await {
                return data;
            }
        }
    })
    .await
    .expect("A receives the reply");
    assert_eq!(got, b"pong");
}

#[tokio::test]
async fn memory_backend_pair_connects_and_exchanges_a_datagram() {
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut a = Node::start(hub.clone(), sa, &[kb], quick_config())
        .await
        .unwrap();
    let mut b = Node::start(hub.clone(), sb, &[ka], quick_config())
        .await
        .unwrap();
    let pa = a
        .wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    let pb = b
        .wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    assert_eq!(pa.selected, pb.local_addr);
    assert_eq!(pb.selected, pa.local_addr);
    datagram_round_trip(&mut a, &mut b).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_pair_connects_and_exchanges_a_datagram() {
    let Some(url) = redis_or_skip("redis_pair_connects_and_exchanges_a_datagram").await else {
        return;
    };
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut a = Node::start(RedisBackend::new(&url).unwrap(), sa, &[kb], quick_config())
        .await
        .unwrap();
    let mut b = Node::start(RedisBackend::new(&url).unwrap(), sb, &[ka], quick_config())
        .await
        .unwrap();
    let pa = a
        .wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    let pb = b
        .wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    assert_eq!(pa.selected, pb.local_addr);
    assert_eq!(pa.restarts, 0);
    assert_eq!(pb.restarts, 0);
    assert!(matches!(
        pa.state,
        ConnectionState::Connected | ConnectionState::Completed
    ));
    datagram_round_trip(&mut a, &mut b).await;
    a.shutdown().await;
    b.shutdown().await;
}

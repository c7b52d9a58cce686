//! A star: one node with 200 peers, all on the node's one UDP socket (the built-in agents
//! share the node's sockets and route each datagram to its session), every session Connected,
//! and datagrams from several leaves reach the hub on the right session.

mod runtime_common;

use std::collections::BTreeSet;
use std::time::Duration;

use icepact::PublicKey;
use icepact_tokio::{MemoryBackend, Node, NodeConfig};
use runtime_common::{init_tracing, next_datagram, secret};

const LEAVES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_200_peers_connects_them_all_over_one_socket() {
    init_tracing();
    let hub_backend = MemoryBackend::new();
    let hub_secret = secret();
    let hub_key = hub_secret.public_key();
    let leaf_secrets: Vec<_> = (0..LEAVES).map(|_| secret()).collect();
    let leaf_keys: Vec<PublicKey> = leaf_secrets.iter().map(|s| s.public_key()).collect();
    let mut hub = Node::start(
        hub_backend.clone(),
        hub_secret,
        &leaf_keys,
        NodeConfig::default(),
    )
    .await
    .unwrap();
    let mut leaves = Vec::new();
    for s in leaf_secrets {
        leaves.push(
            Node::start(hub_backend.clone(), s, &[hub_key], NodeConfig::default())
                .await
                .unwrap(),
        );
    }
    let status = hub
        .wait_for(Duration::from_secs(60), |s| {
            s.peers.len() == LEAVES && s.peers.values().all(|p| p.state.is_connected())
        })
        .await
        .unwrap_or_else(|_| {
            let s = hub.status();
            let up = s.peers.values().filter(|p| p.state.is_connected()).count();
            panic!("only {up} of {LEAVES} sessions connected within 60 s")
        });
    let local: BTreeSet<_> = status.peers.values().map(|p| p.local_addr).collect();
    assert_eq!(local.len(), 1, "one socket for every session: {local:?}");
    let selected: BTreeSet<_> = status.peers.values().map(|p| p.selected).collect();
    assert_eq!(selected.len(), LEAVES, "each session selected its own leaf");
    assert_eq!(
        status.peers.values().map(|p| p.restarts).sum::<u32>(),
        0,
        "no restarts"
    );
    // The hub's event queue holds the state changes of 200 sessions that nobody read yet (a
    // full queue drops new events, a datagram's included): read them first, as an application
    // does all along.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), hub.next_event()).await
    {
    }
    // Datagrams from a few leaves arrive at the hub attributed to the right sender.
    for i in [0, 57, 123, LEAVES - 1] {
        let leaf = &mut leaves[i];
        leaf.wait_connected(hub_key, Duration::from_secs(10))
            .await
            .unwrap();
        leaf.send_datagram(hub_key, vec![i as u8; 3]).await.unwrap();
        let (from, data) = next_datagram(&mut hub).await;
        assert_eq!((from, data), (leaf_keys[i], vec![i as u8; 3]));
    }
    hub.shutdown().await;
    for leaf in leaves {
        leaf.shutdown().await;
    }
}

/// A backend that subscribes and never finishes a publish: the signaling path is stuck.
#[derive(Clone)]
struct Stuck(MemoryBackend);

impl icepact_tokio::Backend for Stuck {
    async fn publish(
        &self,
        _to: PublicKey,
        _envelope: Vec<u8>,
    ) -> Result<(), icepact_tokio::BackendError> {
        std::future::pending().await
    }

    async fn subscribe(
        &self,
        key: PublicKey,
    ) -> Result<icepact_tokio::Subscription, icepact_tokio::BackendError> {
        self.0.subscribe(key).await
    }
}

/// A backend that does not keep up is not a silent loss: once the node's publish queue is full,
/// every dropped envelope is counted (node and peer) and the application hears it once.
#[tokio::test]
async fn a_stuck_backend_is_an_event_and_every_dropped_envelope_is_counted() {
    init_tracing();
    // More first envelopes than the publish queue holds (1,024, plus the one being published).
    let remotes: Vec<PublicKey> = (0..1_100).map(|_| secret().public_key()).collect();
    let mut node = Node::start(
        Stuck(MemoryBackend::new()),
        secret(),
        &remotes,
        NodeConfig::default(),
    )
    .await
    .unwrap();
    let mut full = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while full == 0 {
        match tokio::time::timeout_at(deadline, node.next_event()).await {
            Ok(Some(icepact_tokio::NodeEvent::PublishQueueFull)) => full += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no PublishQueueFull event"),
        }
    }
    let status = node
        .wait_for(Duration::from_secs(5), |s| s.publish_dropped >= 75)
        .await
        .expect("the dropped envelopes are counted");
    let send_failed: u64 = status.peers.values().map(|p| p.stats.send_failed).sum();
    assert_eq!(send_failed, status.publish_dropped);
    node.shutdown().await;
}

//! Two nodes in one process reach Connected over the real ICE agent and exchange datagrams:
//! through the in-process backend, and through a real Redis server.

mod runtime_common;

use std::time::Duration;

use icepact::{AgentRestart, ConnectionState};
use icepact_tokio::{MemoryBackend, Node, NodeEvent, RedisBackend};
use runtime_common::*;

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

#[tokio::test]
async fn a_node_bound_to_the_unspecified_address_connects_over_loopback() {
    // Bound to 0.0.0.0, the built-in agent binds a socket per local interface address (the
    // loopback one among them) and offers each as a host candidate.
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut unspecified = quick_config();
    unspecified.bind_ip = std::net::Ipv4Addr::UNSPECIFIED.into();
    let mut a = Node::start(hub.clone(), sa, &[kb], unspecified)
        .await
        .unwrap();
    let mut b = Node::start(hub.clone(), sb, &[ka], quick_config())
        .await
        .unwrap();
    let pa = a
        .wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A (0.0.0.0) connects");
    b.wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    assert!(!pa.local_addr.unwrap().ip().is_unspecified());
    datagram_round_trip(&mut a, &mut b).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_bind_failure_is_an_event_within_a_second() {
    // 192.0.2.1 (TEST-NET-1) is no local address: no socket can be bound. The node says so
    // at once, and the empty gathering follows (the core retries after its gathering timeout).
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut foreign = quick_config();
    foreign.bind_ip = std::net::Ipv4Addr::new(192, 0, 2, 1).into();
    let mut a = Node::start(hub.clone(), sa, &[kb], foreign).await.unwrap();
    let b = Node::start(hub.clone(), sb, &[ka], quick_config())
        .await
        .unwrap();
    let (mut error, mut no_candidates) = (None, false);
    tokio::time::timeout(Duration::from_secs(1), async {
        while error.is_none() || !no_candidates {
            match a.next_event().await {
                Some(NodeEvent::AgentError { remote, error: e }) => {
                    assert_eq!(remote, kb);
                    error = Some(e);
                }
                Some(NodeEvent::NoLocalCandidates { remote }) => {
                    assert_eq!(remote, kb);
                    no_candidates = true;
                }
                Some(_) => {}
                None => panic!("A stopped"),
            }
        }
    })
    .await
    .expect("A reports the bind failure and the empty gathering within 1 s");
    assert!(error.unwrap().contains("192.0.2.1"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_adds_and_removes_peers_while_running() {
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let sc = secret();
    let (ka, kb, kc) = (sa.public_key(), sb.public_key(), sc.public_key());
    // A starts alone; B and C know A.
    let mut a = Node::start(hub.clone(), sa, &[], quick_config())
        .await
        .unwrap();
    let b = Node::start(hub.clone(), sb, &[ka], quick_config())
        .await
        .unwrap();
    let mut c = Node::start(hub.clone(), sc, &[ka], quick_config())
        .await
        .unwrap();
    assert!(a.status().peers.is_empty());
    a.add_peer(kb).await.unwrap();
    a.wait_connected(kb, CONNECT_TIMEOUT).await.expect("A-B");
    a.add_peer(kc).await.unwrap();
    assert!(matches!(
        a.add_peer(kc).await,
        Err(icepact_tokio::Error::Endpoint(
            icepact::EndpointError::PeerExists(_)
        ))
    ));
    a.wait_connected(kc, CONNECT_TIMEOUT).await.expect("A-C");
    c.wait_connected(ka, CONNECT_TIMEOUT).await.expect("C-A");
    let before = a.peer_status(&kc).unwrap();
    // B goes; C's session is untouched.
    a.remove_peer(kb).await.unwrap();
    a.wait_for(Duration::from_secs(1), |s| !s.peers.contains_key(&kb))
        .await
        .expect("B's session is gone");
    datagram_round_trip(&mut a, &mut c).await;
    let after = a.peer_status(&kc).unwrap();
    assert_eq!(after.local_session, before.local_session);
    assert_eq!(after.restarts, 0);
    assert!(matches!(
        a.send_datagram(kb, b"gone".to_vec()).await,
        Err(icepact_tokio::Error::UnknownPeer(_))
    ));
    b.shutdown().await;
    c.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_node_handle_works_from_other_tasks_and_reports_a_stopped_node() {
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let a = Node::start(hub.clone(), sa, &[], quick_config())
        .await
        .unwrap();
    let mut b = Node::start(hub.clone(), sb, &[ka], quick_config())
        .await
        .unwrap();
    // Two tasks share A through clones of its handle: one adds B, one waits for the session.
    let adder = a.handle();
    let mut waiter = a.handle();
    tokio::spawn(async move { adder.add_peer(kb).await.expect("add B") });
    let status = tokio::spawn(async move { waiter.wait_connected(kb, CONNECT_TIMEOUT).await })
        .await
        .unwrap()
        .expect("A connects, seen through a handle");
    assert!(status.selected.is_some());
    b.wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    let sender = a.handle();
    tokio::spawn(async move { sender.send_datagram(kb, b"via handle".to_vec()).await })
        .await
        .unwrap()
        .expect("sent through a handle");
    assert_eq!(next_datagram(&mut b).await, (ka, b"via handle".to_vec()));
    let late = a.handle();
    a.shutdown().await;
    assert!(matches!(
        late.restart(kb).await,
        Err(icepact_tokio::Error::Stopped)
    ));
    b.shutdown().await;
}

/// Rule AGENT_RESTART, both modes: a restart (the built-in agent restarted in place, or closed
/// and made again) moves the session to a new epoch on both sides and datagrams flow again;
/// either way the session stays on the node's one socket (the local address stays).
#[tokio::test]
async fn an_in_place_restart_keeps_the_socket_and_reconnects() {
    for mode in [AgentRestart::InPlace, AgentRestart::Recreate] {
        let hub = MemoryBackend::new();
        let (sa, sb) = two_secrets();
        let (ka, kb) = (sa.public_key(), sb.public_key());
        let mut config = quick_config();
        config.peer.agent_restart = mode;
        let mut a = Node::start(hub.clone(), sa, &[kb], config.clone())
            .await
            .unwrap();
        let mut b = Node::start(hub.clone(), sb, &[ka], config).await.unwrap();
        let before = a.wait_connected(kb, CONNECT_TIMEOUT).await.expect("A");
        b.wait_connected(ka, CONNECT_TIMEOUT).await.expect("B");
        let old_epoch = before.local_session.unwrap().epoch;
        a.restart(kb).await.unwrap();
        let after = a
            .wait_for(CONNECT_TIMEOUT, |s| {
                s.peers.get(&kb).is_some_and(|p| {
                    p.restarts == 1
                        && p.state.is_connected()
                        && p.local_session.is_some_and(|l| l.epoch > old_epoch)
                })
            })
            .await
            .expect("A reconnects on a new session");
        let after = after.peers[&kb].clone();
        b.wait_for(CONNECT_TIMEOUT, |s| {
            s.peers.get(&ka).is_some_and(|p| {
                p.state.is_connected()
                    && p.remote_session.map(|r| r.epoch) == after.local_session.map(|l| l.epoch)
            })
        })
        .await
        .expect("B reconnects to A's new session");
        assert_eq!(
            after.local_addr, before.local_addr,
            "{mode:?}: the node's socket is kept"
        );
        datagram_round_trip(&mut a, &mut b).await;
        a.shutdown().await;
        b.shutdown().await;
    }
}

/// A STUN server for the tests: answers every Binding request with an XOR-MAPPED-ADDRESS of
/// `mapped_ip` and the sender's port (a NAT that keeps ports), counting the requests; a server
/// with `answer == false` receives and never answers.
async fn stun_server(
    mapped_ip: std::net::Ipv4Addr,
    answer: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            // A Binding request: type 0x0001, the magic cookie.
            if n < 20 || buf[..2] != [0, 1] || buf[4..8] != [0x21, 0x12, 0xa4, 0x42] {
                continue;
            }
            seen.fetch_add(1, Ordering::SeqCst);
            if !answer {
                continue;
            }
            let mut m = vec![0x01, 0x01, 0x00, 0x0c];
            m.extend_from_slice(&buf[4..20]);
            let port = from.port() ^ 0x2112;
            let ip: Vec<u8> = mapped_ip
                .octets()
                .iter()
                .zip([0x21, 0x12, 0xa4, 0x42])
                .map(|(a, k)| a ^ k)
                .collect();
            m.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            m.extend_from_slice(&port.to_be_bytes());
            m.extend_from_slice(&ip);
            let _ = socket.send_to(&m, from).await;
        }
    });
    (addr, count)
}

/// The built-in agent asks its STUN servers from every socket and offers what they answer as a
/// server-reflexive candidate (base: the socket), next to the host candidate; a server that
/// never answers delays nothing but the end of gathering, and the pair connects either way.
#[tokio::test]
async fn stun_servers_give_server_reflexive_candidates() {
    use icepact::CandidateKind;
    use std::sync::atomic::Ordering;
    let nat: std::net::Ipv4Addr = "198.51.100.7".parse().unwrap();
    let (good, asked) = stun_server(nat, true).await;
    let (silent, asked_silent) = stun_server(nat, false).await;
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut config = quick_config();
    config.stun_servers = vec![good, silent];
    let mut a = Node::start(hub.clone(), sa, &[kb], config.clone())
        .await
        .unwrap();
    let mut b = Node::start(hub.clone(), sb, &[ka], config).await.unwrap();
    a.wait_connected(kb, CONNECT_TIMEOUT).await.expect("A");
    b.wait_connected(ka, CONNECT_TIMEOUT).await.expect("B");
    let status = a
        .wait_for(CONNECT_TIMEOUT, |s| {
            s.peers
                .get(&kb)
                .is_some_and(|p| p.local_candidates.len() == 2)
        })
        .await
        .expect("A offers a host and a server-reflexive candidate");
    let peer = &status.peers[&kb];
    let host = peer
        .local_candidates
        .iter()
        .find(|c| c.kind == CandidateKind::Host)
        .expect("a host candidate");
    let srflx = peer
        .local_candidates
        .iter()
        .find(|c| c.kind == CandidateKind::ServerReflexive)
        .expect("a server-reflexive candidate");
    assert_eq!(
        srflx.addr,
        std::net::SocketAddr::new(nat.into(), host.addr.port())
    );
    assert_eq!(srflx.related, Some(host.addr));
    assert!(
        asked.load(Ordering::SeqCst) >= 2,
        "both nodes asked the server"
    );
    assert!(
        asked_silent.load(Ordering::SeqCst) >= 2,
        "and the silent one"
    );
    datagram_round_trip(&mut a, &mut b).await;
    a.shutdown().await;
    b.shutdown().await;
}

//! Rules STAMP_ARRIVAL and FAILURE_BACKOFF in the runtime, with scripted agents.
//!
//! STAMP_ARRIVAL: a node whose task is held up past a deadline takes what
//! arrived meanwhile at its arrival instant, before the deadline fires. Here A's agent blocks
//! A's task for 2 s right after `Connect`; the report that the pair works arrives 100 ms
//! after `Connect` and waits in A's queue; A's checking deadline is 1 s. Taken at the instant
//! it is handled (as the driver did before the rule), the report comes after the deadline and A
//! restarts a session that was working; taken at its arrival instant, A connects with no
//! restart.

mod runtime_common;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use icepact::{AgentEvent, Candidate, Credentials};
use icepact_tokio::{
    Agent, AgentFactory, AgentInbound, AgentParams, MemoryBackend, Node, NodeEvent,
};
use runtime_common::*;

/// What a scripted agent's "I/O" sends it.
#[derive(Debug)]
enum Input {
    /// The pair works.
    Up,
    /// Hold the node's task this long (a slow handler, a busy CPU).
    Stall(Duration),
}

/// Agents that report Connected `up_after` each `Connect` (or Failed at once if `fail`), and
/// optionally hold the node's task for `stall` at once.
struct Scripted {
    up_after: Duration,
    stall: Option<Duration>,
    fail: bool,
}

struct ScriptedAgent {
    inbound: AgentInbound<Input>,
    up_after: Duration,
    stall: Option<Duration>,
    fail: bool,
    connected: bool,
    events: VecDeque<AgentEvent>,
}

impl AgentFactory for Scripted {
    type Agent = ScriptedAgent;

    fn create(&mut self, p: AgentParams<Input>) -> io::Result<ScriptedAgent> {
        Ok(ScriptedAgent {
            inbound: p.inbound,
            up_after: self.up_after,
            stall: self.stall,
            fail: self.fail,
            connected: false,
            events: VecDeque::new(),
        })
    }
}

impl Agent for ScriptedAgent {
    type Input = Input;

    fn gather(&mut self, _: Instant) {
        let addr = SocketAddr::from(([10, 0, 0, 1], 4000));
        self.events
            .push_back(AgentEvent::LocalCandidate(Candidate::host(addr)));
        self.events.push_back(AgentEvent::GatheringDone);
    }
    fn add_remote_candidate(&mut self, _: &Candidate) {}
    fn connect(&mut self, _: Instant, _: &Credentials) {
        if self.fail {
            // An agent that gives up at once (no usable pair, a broken interface).
            self.events.push_back(AgentEvent::Failed);
            return;
        }
        self.events.push_back(AgentEvent::Checking);
        if let Some(d) = self.stall {
            self.inbound.try_send(Input::Stall(d));
        }
        let (inbound, after) = (self.inbound.clone(), self.up_after);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            inbound.try_send(Input::Up);
        });
    }
    fn report_state(&mut self) {
        if self.connected {
            self.events.push_back(AgentEvent::Connected);
        }
    }
    fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn handle_input(&mut self, _: Instant, input: Input) -> Option<Vec<u8>> {
        match input {
            Input::Up if !self.connected => {
                self.connected = true;
                self.events.push_back(AgentEvent::Connected);
            }
            Input::Up => {}
            // Blocks the node's task on purpose: the node is late, its peer is not.
            Input::Stall(d) => std::thread::sleep(d),
        }
        None
    }
    fn send_datagram(&mut self, _: &[u8]) -> bool {
        false
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
    fn selected(&self) -> Option<SocketAddr> {
        // A node counts a session up once its agent names a pair.
        self.connected
            .then(|| SocketAddr::from(([10, 0, 0, 2], 4000)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_takes_inputs_at_their_arrival_instants() {
    init_tracing();
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut config_a = quick_config();
    config_a.peer.checking_timeout = Duration::from_millis(1_000);
    let slow = Scripted {
        up_after: Duration::from_millis(100),
        stall: Some(Duration::from_millis(2_000)),
        fail: false,
    };
    let fast = Scripted {
        up_after: Duration::ZERO,
        stall: None,
        fail: false,
    };
    let mut a = Node::start_with_agents(hub.clone(), sa, &[kb], config_a, slow)
        .await
        .unwrap();
    let b = Node::start_with_agents(hub.clone(), sb, &[ka], quick_config(), fast)
        .await
        .unwrap();
    a.wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    // Well past the stall and the deadline: still the first session.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let status = a.peer_status(&kb).unwrap();
    assert!(status.state.is_connected(), "{status:?}");
    assert_eq!(
        status.restarts, 0,
        "A restarted for its own lateness: {status:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Rule FAILURE_BACKOFF in the runtime: an agent that fails as soon as it is told to connect
/// restarts the session at once the first time, then after growing waits, each announced as
/// `NodeEvent::RestartDeferred`. Restarting at once every time would loop at the speed of the
/// in-process backend (the test fails then: no deferral is announced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_always_fails_backs_off() {
    init_tracing();
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let broken = Scripted {
        up_after: Duration::ZERO,
        stall: None,
        fail: true,
    };
    let fast = Scripted {
        up_after: Duration::ZERO,
        stall: None,
        fail: false,
    };
    let mut a = Node::start_with_agents(hub.clone(), sa, &[kb], quick_config(), broken)
        .await
        .unwrap();
    let b = Node::start_with_agents(hub.clone(), sb, &[ka], quick_config(), fast)
        .await
        .unwrap();
    let (mut restarts, mut deferred) = (0u32, Vec::new());
    let end = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(event)) = tokio::time::timeout_at(end, a.next_event()).await {
        match event {
            NodeEvent::Restarted { remote, .. } if remote == kb => restarts += 1,
            NodeEvent::RestartDeferred {
                remote, failures, ..
            } if remote == kb => deferred.push(failures),
            _ => {}
        }
    }
    assert!(
        deferred.len() >= 2 && deferred.windows(2).all(|w| w[1] == w[0] + 1),
        "{deferred:?}"
    );
    assert_eq!(deferred[0], 2, "the first failure restarts at once");
    assert!((3..=12).contains(&restarts), "{restarts} restarts in 4 s");
    a.shutdown().await;
    b.shutdown().await;
}

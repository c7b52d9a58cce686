//! A user-supplied ICE agent through the runtime's `Agent` trait: no sockets, an in-process
//! "network" where agents that were told to connect to each other meet. Two nodes reach
//! Connected through it and exchange datagrams, so nothing in the node depends on the built-in
//! agent.

mod runtime_common;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use icepact::{AgentEvent, Candidate, Credentials};
use icepact_tokio::{Agent, AgentFactory, AgentInbound, AgentParams, MemoryBackend, Node};
use runtime_common::*;

/// What agents send each other.
#[derive(Debug)]
enum Wire {
    /// The sender checks with our credentials: the pair works.
    Hello,
    /// An application datagram.
    Data(Vec<u8>),
}

/// Agents by their local ufrag, with the remote credentials they connect to.
#[derive(Default)]
struct Net {
    agents: BTreeMap<String, (AgentInbound<Wire>, Option<Credentials>)>,
}

struct MemAgents {
    net: Arc<Mutex<Net>>,
    next_port: u16,
}

struct MemAgent {
    net: Arc<Mutex<Net>>,
    local: Credentials,
    remote: Option<Credentials>,
    addr: SocketAddr,
    connected: bool,
    events: VecDeque<AgentEvent>,
}

impl AgentFactory for MemAgents {
    type Agent = MemAgent;

    fn create(&mut self, p: AgentParams<Wire>) -> io::Result<MemAgent> {
        self.next_port += 1;
        let mut net = self.net.lock().unwrap();
        net.agents
            .insert(p.credentials.ufrag.to_string(), (p.inbound, None));
        Ok(MemAgent {
            net: Arc::clone(&self.net),
            local: p.credentials,
            remote: None,
            addr: SocketAddr::from(([10, 9, 9, 9], self.next_port)),
            connected: false,
            events: VecDeque::new(),
        })
    }
}

impl MemAgent {
    fn inbound_of_remote(&self) -> Option<AgentInbound<Wire>> {
        let remote = self.remote.as_ref()?;
        let net = self.net.lock().unwrap();
        let (inbound, theirs) = net.agents.get(remote.ufrag.as_str())?;
        // Only an agent that checks with our credentials answers.
        (theirs.as_ref() == Some(&self.local)).then(|| inbound.clone())
    }

    fn up(&mut self) {
        if !self.connected {
            self.connected = true;
            self.events.push_back(AgentEvent::Connected);
        }
    }
}

impl Drop for MemAgent {
    fn drop(&mut self) {
        self.net
            .lock()
            .unwrap()
            .agents
            .remove(self.local.ufrag.as_str());
    }
}

impl Agent for MemAgent {
    type Input = Wire;

    fn gather(&mut self, _now: Instant) {
        self.events
            .push_back(AgentEvent::LocalCandidate(Candidate::host(self.addr)));
        self.events.push_back(AgentEvent::GatheringDone);
    }
    fn add_remote_candidate(&mut self, _: &Candidate) {}
    fn connect(&mut self, _: Instant, remote: &Credentials) {
        self.remote = Some(remote.clone());
        if let Some(entry) = self
            .net
            .lock()
            .unwrap()
            .agents
            .get_mut(self.local.ufrag.as_str())
        {
            entry.1 = Some(remote.clone());
        }
        self.events.push_back(AgentEvent::Checking);
        if let Some(them) = self.inbound_of_remote() {
            them.try_send(Wire::Hello);
            self.up();
        }
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
    fn handle_input(&mut self, _: Instant, input: Wire) -> Option<Vec<u8>> {
        match input {
            Wire::Hello => {
                self.up();
                None
            }
            Wire::Data(d) => self.connected.then_some(d),
        }
    }
    fn send_datagram(&mut self, data: &[u8]) -> bool {
        self.connected
            && self
                .inbound_of_remote()
                .is_some_and(|them| them.try_send(Wire::Data(data.to_vec())))
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
    fn selected(&self) -> Option<SocketAddr> {
        // The remote's address is not known to this toy network: name ours.
        self.connected.then_some(self.addr)
    }
}

#[tokio::test]
async fn a_user_supplied_agent_connects_two_nodes() {
    let net = Arc::new(Mutex::new(Net::default()));
    let agents = || MemAgents {
        net: Arc::clone(&net),
        next_port: 0,
    };
    let hub = MemoryBackend::new();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut a = Node::start_with_agents(hub.clone(), sa, &[kb], quick_config(), agents())
        .await
        .unwrap();
    let mut b = Node::start_with_agents(hub.clone(), sb, &[ka], quick_config(), agents())
        .await
        .unwrap();
    a.wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    b.wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    a.send_datagram(kb, b"through my agent".to_vec())
        .await
        .expect("A's agent has a pair");
    assert_eq!(
        next_datagram(&mut b).await,
        (ka, b"through my agent".to_vec())
    );
    // A restart replaces the agent (the old one is dropped) and the sessions come back.
    a.restart(kb).await.unwrap();
    a.wait_for(CONNECT_TIMEOUT, |s| {
        s.peers
            .get(&kb)
            .is_some_and(|p| p.restarts == 1 && p.state.is_connected())
    })
    .await
    .expect("A reconnects with a new agent");
    a.shutdown().await;
    b.shutdown().await;
}

//! The ICE agent boundary of the runtime: the node drives any [`Agent`] made by an
//! [`AgentFactory`]; [`UdpAgents`] makes the built-in one (str0m's `is` on UDP sockets).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::ice::{IceSession, NodeSockets, UdpInput};
use icepact::{AgentEvent, AgentId, Candidate, Credentials, PublicKey, Role};

/// An ICE agent of one session, driven by the node's task (it is never shared between
/// threads, so it needs no locking).
///
/// The node creates one on the core's `Create` command and drops it on `Close`; the other
/// commands map to the methods below. Reports go to the core through
/// [`poll_event`](Agent::poll_event), drained after every call. The agent's own I/O tasks (socket
/// readers, for example) reach it through the [`AgentInbound`] in its [`AgentParams`]: the node
/// hands each input to [`handle_input`](Agent::handle_input) on its task.
pub trait Agent: Send + 'static {
    /// What the agent's I/O tasks send it.
    type Input: Send + 'static;

    /// `Gather`: gather local candidates, then report `GatheringDone` (also when none was
    /// found: the core then applies its gathering timeout). Gathering may go on after the call
    /// returns (STUN queries): ask for [`handle_timeout`](Agent::handle_timeout) through
    /// [`poll_timeout`](Agent::poll_timeout) meanwhile.
    fn gather(&mut self, now: Instant);
    /// `AddRemoteCandidate`.
    fn add_remote_candidate(&mut self, candidate: &Candidate);
    /// `Connect`: start connectivity checks with the remote's credentials.
    fn connect(&mut self, now: Instant, remote: &Credentials);
    /// `EndOfRemoteCandidates`.
    fn end_of_remote_candidates(&mut self) {}
    /// `Restart`: an in-place ICE restart (RFC 8445 §9), sent only when the node's
    /// [`Config::agent_restart`](icepact::Config::agent_restart) is
    /// [`AgentRestart::InPlace`](icepact::AgentRestart::InPlace). Take the new local credentials,
    /// forget the remote credentials, remote candidates and every pair, keep the sockets; a
    /// `Gather` follows, then `Connect` as for a new agent. From now on report only about the
    /// new credentials. Keep tagging inputs with the [`AgentInbound`] the agent was created
    /// with. Return false if the agent cannot restart in place (the default): the node then
    /// drops it and creates a new one.
    fn restart(&mut self, now: Instant, credentials: &Credentials) -> bool {
        let _ = (now, credentials);
        false
    }
    /// `ReportState`: report the current connectivity state once more (repeats are ignored).
    fn report_state(&mut self);
    /// The next report for the core.
    fn poll_event(&mut self) -> Option<AgentEvent>;
    /// When [`handle_timeout`](Agent::handle_timeout) should be called next.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// Time has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// An input from the agent's I/O; returns an application datagram if it carried one.
    fn handle_input(&mut self, now: Instant, input: Self::Input) -> Option<Vec<u8>>;
    /// Sends an application datagram on the selected pair; false if there is none.
    fn send_datagram(&mut self, data: &[u8]) -> bool;
    /// The local address of the selected pair (or the agent's first address).
    fn local_addr(&self) -> Option<SocketAddr>;
    /// The remote address of the selected pair.
    fn selected(&self) -> Option<SocketAddr>;
}

/// Creates the agents of a node.
pub trait AgentFactory: Send + 'static {
    /// The agents it creates.
    type Agent: Agent;

    /// A new agent; an error is reported as [`NodeEvent::AgentError`](crate::NodeEvent) and
    /// the session's gathering finds nothing (the core retries after its gathering timeout).
    fn create(
        &mut self,
        params: AgentParams<<Self::Agent as Agent>::Input>,
    ) -> io::Result<Self::Agent>;
}

/// What an agent is created with.
#[derive(Debug)]
#[non_exhaustive]
pub struct AgentParams<I> {
    /// The agent's id (commands and reports name it).
    pub agent: AgentId,
    /// The remote peer of the session.
    pub remote: PublicKey,
    /// Local ICE credentials.
    pub credentials: Credentials,
    /// Our ICE role.
    pub role: Role,
    /// Where the agent's I/O tasks send their inputs.
    pub inbound: AgentInbound<I>,
}

/// Sends inputs to one agent on the node's task (cloneable; give one to each I/O task).
#[derive(Debug)]
pub struct AgentInbound<I> {
    remote: PublicKey,
    agent: AgentId,
    tx: mpsc::Sender<(PublicKey, AgentId, Instant, I)>,
}

impl<I> Clone for AgentInbound<I> {
    fn clone(&self) -> Self {
        AgentInbound {
            remote: self.remote,
            agent: self.agent,
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static> AgentInbound<I> {
    pub(crate) fn new(
        remote: PublicKey,
        agent: AgentId,
        tx: mpsc::Sender<(PublicKey, AgentId, Instant, I)>,
    ) -> Self {
        AgentInbound { remote, agent, tx }
    }

    /// Hands `input` to the agent, waiting while the node's queue is full; false once the node
    /// stopped (the I/O task should end then). The input is stamped with the instant it is
    /// taken (rule STAMP_ARRIVAL).
    pub async fn send(&self, input: I) -> bool {
        match self.tx.reserve().await {
            Ok(permit) => {
                permit.send((self.remote, self.agent, Instant::now(), input));
                true
            }
            Err(_) => false,
        }
    }

    /// Hands `input` to the agent without waiting; false if the node's queue is full or the
    /// node stopped (the input is dropped, as a full socket buffer drops a datagram).
    pub fn try_send(&self, input: I) -> bool {
        self.tx
            .try_send((self.remote, self.agent, Instant::now(), input))
            .is_ok()
    }

    /// True once the node stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The built-in agents: str0m's sans-IO ICE agent (`is`), one per session, all on the node's
/// UDP sockets: one bound to `bind_ip`, or for an unspecified address one per local interface
/// address. Each socket is a host candidate; each STUN server that answers from a socket adds
/// a server-reflexive one. The sockets are bound when the first agent is made (a failure is
/// that agent's error, and the next agent tries again) and live as long as the factory.
/// Datagrams are routed to their session by the STUN request's USERNAME, by the transaction id
/// of a response, or by the source address, as str0m does.
#[derive(Clone)]
pub struct UdpAgents {
    bind_ip: IpAddr,
    stun_servers: Vec<SocketAddr>,
    sockets: Option<Arc<NodeSockets>>,
}

impl std::fmt::Debug for UdpAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpAgents")
            .field("bind_ip", &self.bind_ip)
            .field("stun_servers", &self.stun_servers)
            .field(
                "sockets",
                &self
                    .sockets
                    .as_ref()
                    .map(|s| s.local_addrs().collect::<Vec<_>>()),
            )
            .finish()
    }
}

impl UdpAgents {
    /// Agents on sockets bound to `bind_ip`, asking `stun_servers` (each socket the servers of
    /// its address family) for server-reflexive candidates.
    pub fn new(bind_ip: IpAddr, stun_servers: Vec<SocketAddr>) -> UdpAgents {
        UdpAgents {
            bind_ip,
            stun_servers,
            sockets: None,
        }
    }

    /// The addresses of the node's sockets, once bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .as_ref()
            .map_or_else(Vec::new, |s| s.local_addrs().collect())
    }
}

impl AgentFactory for UdpAgents {
    type Agent = UdpAgent;

    fn create(&mut self, p: AgentParams<UdpInput>) -> io::Result<UdpAgent> {
        let sockets = match &self.sockets {
            Some(s) => Arc::clone(s),
            None => {
                let s = Arc::new(NodeSockets::bind(self.bind_ip)?);
                self.sockets = Some(Arc::clone(&s));
                s
            }
        };
        Ok(UdpAgent(IceSession::new(
            &p.credentials,
            p.role,
            sockets,
            &self.stun_servers,
            p.inbound,
        )))
    }
}

/// The built-in agent (see [`UdpAgents`]).
pub struct UdpAgent(IceSession);

impl std::fmt::Debug for UdpAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpAgent")
            .field("local", &self.0.local_addr())
            .finish_non_exhaustive()
    }
}

impl Agent for UdpAgent {
    type Input = UdpInput;

    fn gather(&mut self, now: Instant) {
        self.0.gather(now);
    }
    fn add_remote_candidate(&mut self, candidate: &Candidate) {
        self.0.add_remote_candidate(candidate);
    }
    fn connect(&mut self, now: Instant, remote: &Credentials) {
        self.0.connect(now, remote);
    }
    fn restart(&mut self, _now: Instant, credentials: &Credentials) -> bool {
        self.0.restart(credentials);
        true
    }
    fn report_state(&mut self) {
        self.0.report_again();
    }
    fn poll_event(&mut self) -> Option<AgentEvent> {
        self.0.events.pop_front()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn handle_input(&mut self, now: Instant, d: UdpInput) -> Option<Vec<u8>> {
        self.0.handle_datagram(now, d.local, d.from, &d.data)
    }
    fn send_datagram(&mut self, data: &[u8]) -> bool {
        self.0.send_datagram(data)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.0.local_addr())
    }
    fn selected(&self) -> Option<SocketAddr> {
        self.0.selected()
    }
}

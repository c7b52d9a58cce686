//! A real ICE agent (str0m's sans-IO [`is::IceAgent`]) per session, on the node's UDP sockets:
//! one bound to the configured address, or, for an unspecified address (`0.0.0.0`, `::`), one
//! per local interface address of that family, each a host candidate; and a server-reflexive
//! candidate per socket and STUN server that answers (RFC 8445 §5.1.1.2).
//!
//! Every session of a node shares these sockets ([`NodeSockets`]), as str0m does: a datagram
//! is routed to its session by the USERNAME of a STUN request (`receiver-ufrag:sender-ufrag`,
//! RFC 8445 §7.2.2), by the transaction id of a STUN response to a request the session sent,
//! and otherwise by its source address (the remote addresses the session talks to).
//!
//! The agent does the STUN connectivity checks; this module owns the sockets, maps the core's
//! [`AgentCommand`]s to the agent and the agent's state changes to [`AgentEvent`]s along the
//! core's transition table.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use is::stun::{StunMessage, StunPacket};
use is::{IceAgent, IceAgentEvent, IceConnectionState, IceCreds, Protocol};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::agent::AgentInbound;
use crate::stun::{self, TransactionId};
use tracing::{debug, trace};

use icepact::{AgentEvent, Candidate, CandidateKind, Credentials, Role, Transport};

/// First byte of an application datagram on the selected pair (RFC 7983 leaves 0–3 to STUN).
pub const DATA_TAG: u8 = 0xff;
/// STUN datagrams kept from before `Connect` (the remote may start checking first).
const MAX_EARLY: usize = 32;
/// Largest UDP datagram read.
const RECV_BUF: usize = 2048;
/// How long gathering waits for STUN servers before it is done without the silent ones.
const STUN_TIMEOUT: Duration = Duration::from_secs(3);
/// A Binding request is sent again this long after the previous one until answered (RFC 8489
/// §6.2.1 starts its retransmissions at 500 ms; this one does not double, as the whole
/// transaction lasts only `STUN_TIMEOUT`).
const STUN_RETRANSMIT: Duration = Duration::from_millis(500);

/// When to try again a Binding request the socket could not take.
const STUN_BLOCKED_RETRY: Duration = Duration::from_millis(10);

/// A Binding request to a STUN server from one socket, not answered yet.
struct StunQuery {
    local: SocketAddr,
    server: SocketAddr,
    id: TransactionId,
    next_send: Instant,
}

/// A datagram received on one of the built-in agent's sockets.
#[derive(Debug)]
pub struct UdpInput {
    /// The address of the socket it arrived on.
    pub(crate) local: SocketAddr,
    pub(crate) from: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// One of the node's sockets.
#[derive(Clone)]
struct Socket {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
}

/// Transaction ids remembered for routing STUN responses (the oldest forgotten first): a
/// check's response comes within seconds, and a node sends a few per pair and second.
const MAX_TRANSACTIONS: usize = 1 << 16;

/// Where the datagrams of the node's sockets go: to the session whose local ufrag a STUN
/// request names, whose request a response answers, or that talks to the source address.
#[derive(Default)]
struct Router {
    by_ufrag: HashMap<String, AgentInbound<UdpInput>>,
    by_transaction: HashMap<TransactionId, String>,
    transactions: VecDeque<TransactionId>,
    by_source: HashMap<SocketAddr, String>,
}

impl Router {
    fn route(&self, from: SocketAddr, data: &[u8]) -> Option<&AgentInbound<UdpInput>> {
        let named = match stun::classify(data) {
            Some(stun::Kind::Request { username }) => username.and_then(|u| u.split(':').next()),
            Some(stun::Kind::Other { id }) => self.by_transaction.get(&id).map(String::as_str),
            None => None,
        };
        named
            .and_then(|u| self.by_ufrag.get(u))
            .or_else(|| self.by_ufrag.get(self.by_source.get(&from)?))
    }

    fn transaction(&mut self, id: TransactionId, ufrag: &str) {
        if self.by_transaction.insert(id, ufrag.to_owned()).is_none() {
            self.transactions.push_back(id);
            if self.transactions.len() > MAX_TRANSACTIONS {
                if let Some(old) = self.transactions.pop_front() {
                    self.by_transaction.remove(&old);
                }
            }
        }
    }

    /// Forgets a session's ufrag and the sources routed to it; returns where its datagrams
    /// went.
    fn forget(&mut self, ufrag: &str) -> Option<AgentInbound<UdpInput>> {
        self.by_source.retain(|_, u| u != ufrag);
        self.by_ufrag.remove(ufrag)
    }
}

/// The UDP sockets of one node, shared by all of its sessions, and their reader tasks (ended
/// when the last handle is dropped).
pub(crate) struct NodeSockets {
    sockets: Vec<Socket>,
    router: Arc<Mutex<Router>>,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for NodeSockets {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

impl NodeSockets {
    /// Binds the node's sockets on `ip` (any port; every interface address if `ip` is
    /// unspecified). Fails if no socket can be bound.
    pub fn bind(ip: IpAddr) -> io::Result<NodeSockets> {
        let router = Arc::new(Mutex::new(Router::default()));
        let mut sockets = Vec::new();
        let mut readers = Vec::new();
        let mut last_error = None;
        for addr in bind_addresses(ip)? {
            let bound = std::net::UdpSocket::bind(SocketAddr::new(addr, 0)).and_then(|s| {
                s.set_nonblocking(true)?;
                let socket = Arc::new(UdpSocket::from_std(s)?);
                let local = socket.local_addr()?;
                Ok((socket, local))
            });
            match bound {
                Ok((socket, local)) => {
                    readers.push(tokio::spawn(read_loop(
                        Arc::clone(&socket),
                        local,
                        Arc::clone(&router),
                    )));
                    sockets.push(Socket { socket, local });
                }
                Err(e) => {
                    debug!(%addr, error = %e, "cannot bind");
                    last_error = Some(e);
                }
            }
        }
        if sockets.is_empty() {
            return Err(last_error
                .unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no address")));
        }
        Ok(NodeSockets {
            sockets,
            router,
            readers,
        })
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.sockets.iter().map(|s| s.local)
    }

    fn router(&self) -> std::sync::MutexGuard<'_, Router> {
        // A panic while holding the lock leaves a usable map.
        self.router.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the core was last told about the agent's connectivity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reported {
    Nothing,
    Checking,
    Connected,
    Completed,
    Disconnected,
    Failed,
}

/// One ICE session: the agent on the node's sockets.
pub(crate) struct IceSession {
    agent: IceAgent,
    /// The node's sockets (at least one) and their router.
    node: Arc<NodeSockets>,
    /// The local ufrag this session is routed by.
    ufrag: String,
    started: bool,
    reported: Reported,
    /// The selected pair: (local, remote).
    nominated: Option<(SocketAddr, SocketAddr)>,
    /// Remote addresses that passed a STUN integrity check in this session.
    verified: BTreeSet<SocketAddr>,
    /// STUN datagrams that arrived before `Connect`, handled right after it.
    early: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// The STUN servers to ask for server-reflexive candidates.
    stun_servers: Vec<SocketAddr>,
    /// Binding requests of the current gathering not answered yet.
    queries: Vec<StunQuery>,
    /// When the current gathering is done whatever the STUN servers say.
    gathering_until: Option<Instant>,
    /// Events for the core, fed in order by the driver.
    pub events: VecDeque<AgentEvent>,
}

impl Drop for IceSession {
    fn drop(&mut self) {
        let _ = self.node.router().forget(&self.ufrag);
    }
}

/// The addresses to bind for `ip`: `ip` itself, or every local interface address of its
/// family when it is unspecified (IPv6 link-local addresses are left out: they need a scope).
fn bind_addresses(ip: IpAddr) -> io::Result<Vec<IpAddr>> {
    if !ip.is_unspecified() {
        return Ok(vec![ip]);
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()?
        .into_iter()
        .map(|i| i.ip())
        .filter(|a| a.is_ipv4() == ip.is_ipv4())
        .filter(|a| match a {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no local interface address for {ip}"),
        ));
    }
    Ok(ips)
}

impl IceSession {
    /// Creates the agent on the node's sockets; datagrams for it go to `inbound`.
    pub fn new(
        credentials: &Credentials,
        role: Role,
        node: Arc<NodeSockets>,
        stun_servers: &[SocketAddr],
        inbound: AgentInbound<UdpInput>,
    ) -> IceSession {
        let mut agent = IceAgent::new(IceCreds {
            ufrag: credentials.ufrag.to_string(),
            pass: credentials.pwd.to_string(),
        });
        agent.set_controlling(role == Role::Controlling);
        let ufrag = credentials.ufrag.to_string();
        node.router().by_ufrag.insert(ufrag.clone(), inbound);
        IceSession {
            agent,
            node,
            ufrag,
            started: false,
            reported: Reported::Nothing,
            nominated: None,
            verified: BTreeSet::new(),
            early: VecDeque::new(),
            stun_servers: stun_servers.to_vec(),
            queries: Vec::new(),
            gathering_until: None,
            events: VecDeque::new(),
        }
    }

    /// The local address of the selected pair, else of the first socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.nominated
            .map_or(self.node.sockets[0].local, |(local, _)| local)
    }

    /// The remote address of the selected pair.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.nominated.map(|(_, remote)| remote)
    }

    /// `Gather`: every socket's address is a host candidate, and every socket asks the STUN
    /// servers of its family for its server-reflexive address. Gathering is done when every
    /// server answered or after [`STUN_TIMEOUT`]. An address the agent refuses (unspecified,
    /// for instance) gives no candidate; with none at all the core hears only GatheringDone
    /// (rule GATHERING_TIMEOUT).
    pub fn gather(&mut self, now: Instant) {
        for s in &self.node.sockets {
            let candidate = match is::Candidate::host(s.local, "udp") {
                Ok(c) => c,
                Err(e) => {
                    debug!(local = %s.local, error = %e, "unusable local address");
                    continue;
                }
            };
            if let Some(added) = self.agent.add_local_candidate(candidate) {
                let mut c = Candidate::host(s.local);
                c.priority = added.prio();
                self.events.push_back(AgentEvent::LocalCandidate(c));
            }
        }
        self.queries.clear();
        for s in &self.node.sockets {
            for &server in &self.stun_servers {
                if server.is_ipv4() != s.local.is_ipv4() {
                    continue;
                }
                let Ok(random) = icepact::wire::Nonce::from_os_rng() else {
                    debug!("no random transaction id: STUN skipped");
                    continue;
                };
                let mut id = [0u8; 12];
                id.copy_from_slice(&random.0[..12]);
                self.queries.push(StunQuery {
                    local: s.local,
                    server,
                    id,
                    next_send: now,
                });
            }
        }
        if self.queries.is_empty() {
            self.events.push_back(AgentEvent::GatheringDone);
        } else {
            self.gathering_until = now.checked_add(STUN_TIMEOUT);
            self.send_stun(now);
        }
    }

    /// Sends the Binding requests that are due.
    fn send_stun(&mut self, now: Instant) {
        for q in &mut self.queries {
            if q.next_send > now {
                continue;
            }
            let s = self
                .node
                .sockets
                .iter()
                .find(|s| s.local == q.local)
                .unwrap_or(&self.node.sockets[0]);
            self.node.router().transaction(q.id, &self.ufrag);
            let sent = s
                .socket
                .try_send_to(&stun::binding_request(&q.id), q.server);
            let wait = match sent {
                Ok(_) => STUN_RETRANSMIT,
                // A socket the reactor has not seen writable yet (just bound): soon again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => STUN_BLOCKED_RETRY,
                Err(e) => {
                    debug!(server = %q.server, error = %e, "STUN request not sent");
                    STUN_RETRANSMIT
                }
            };
            q.next_send = now.checked_add(wait).unwrap_or(now);
        }
    }

    /// A STUN server's answer to one of our Binding requests: a server-reflexive candidate
    /// with its socket's address as base (RFC 8445 §5.1.1.2). False if `data` is not one.
    fn stun_answer(&mut self, local: SocketAddr, from: SocketAddr, data: &[u8]) -> bool {
        let Some(id) = stun::success_id(data) else {
            return false;
        };
        let Some(i) = self
            .queries
            .iter()
            .position(|q| q.id == id && q.server == from && q.local == local)
        else {
            return false;
        };
        self.queries.swap_remove(i);
        match stun::mapped_address(data).map(|mapped| {
            (
                mapped,
                is::Candidate::server_reflexive(mapped, local, "udp"),
            )
        }) {
            Some((mapped, Ok(candidate))) => {
                // A mapped address equal to the base adds nothing (no NAT): the agent drops
                // such a redundant candidate (RFC 8445 §5.1.3).
                if let Some(added) = self.agent.add_local_candidate(candidate) {
                    let mut c = Candidate::host(mapped);
                    c.kind = CandidateKind::ServerReflexive;
                    c.foundation = if mapped.is_ipv6() { "4" } else { "3" }.into();
                    c.priority = added.prio();
                    c.related = Some(local);
                    self.events.push_back(AgentEvent::LocalCandidate(c));
                }
            }
            other => debug!(%from, ?other, "unusable STUN answer"),
        }
        if self.queries.is_empty() {
            self.gathering_done();
        }
        true
    }

    /// Ends the current gathering.
    fn gathering_done(&mut self) {
        if self.gathering_until.take().is_some() {
            self.queries.clear();
            self.events.push_back(AgentEvent::GatheringDone);
        }
    }

    /// `Restart` in place (str0m's `ice_restart`): new local credentials, the remote side and
    /// every pair forgotten, the sockets kept; the next `Gather` offers them again. An agent
    /// that was past Checking reports Checking at once, as the reference agent's kinds do;
    /// after that it reports as a new agent would.
    pub fn restart(&mut self, credentials: &Credentials) {
        {
            let mut router = self.node.router();
            if let Some(inbound) = router.forget(&self.ufrag) {
                router
                    .by_ufrag
                    .insert(credentials.ufrag.to_string(), inbound);
            }
        }
        self.ufrag = credentials.ufrag.to_string();
        self.agent.ice_restart(
            IceCreds {
                ufrag: credentials.ufrag.to_string(),
                pass: credentials.pwd.to_string(),
            },
            false,
        );
        // The restart's own events (IceRestart, Checking) describe no pair of the new
        // credentials; what the core hears is decided here.
        while self.agent.poll_event().is_some() {}
        if !matches!(self.reported, Reported::Nothing | Reported::Checking) {
            self.events.push_back(AgentEvent::Checking);
        }
        self.reported = Reported::Nothing;
        self.started = false;
        self.nominated = None;
        self.verified.clear();
        self.early.clear();
        self.queries.clear();
        self.gathering_until = None;
    }

    /// `AddRemoteCandidate`: UDP candidates go to the agent; others are not supported.
    pub fn add_remote_candidate(&mut self, c: &Candidate) {
        if c.transport != Transport::Udp {
            debug!(?c, "skipping a non-UDP remote candidate");
            return;
        }
        let kind = match c.kind {
            CandidateKind::Host => is::CandidateKind::Host,
            CandidateKind::ServerReflexive => is::CandidateKind::ServerReflexive,
            CandidateKind::PeerReflexive => is::CandidateKind::PeerReflexive,
            CandidateKind::Relay => is::CandidateKind::Relayed,
        };
        self.agent.add_remote_candidate(is::Candidate::from_parts(
            c.foundation.to_string(),
            c.component,
            Protocol::Udp,
            c.priority,
            c.addr,
            kind,
            c.related,
            None,
            None,
        ));
    }

    /// `Connect`: the remote credentials are known; connectivity checks start now.
    pub fn connect(&mut self, now: Instant, remote: &Credentials) {
        self.agent.set_remote_credentials(IceCreds {
            ufrag: remote.ufrag.to_string(),
            pass: remote.pwd.to_string(),
        });
        self.started = true;
        self.agent.handle_timeout(now);
        self.flush();
        // Checks that arrived before we knew the remote credentials: a nomination among them
        // would otherwise be lost (the controlling side does not repeat a successful one).
        while let Some((local, from, data)) = self.early.pop_front() {
            self.handle_datagram(now, local, from, &data);
        }
    }

    /// When the session wants [`handle_timeout`](IceSession::handle_timeout): for STUN
    /// retransmissions and the end of gathering, and for the agent once started (before
    /// `Connect` it must not leave its New state).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let stun = self
            .queries
            .iter()
            .map(|q| q.next_send)
            .chain(self.gathering_until)
            .min();
        let agent = if self.started {
            self.agent.poll_timeout()
        } else {
            None
        };
        stun.into_iter().chain(agent).min()
    }

    /// Advances the STUN queries and the agent's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.gathering_until.is_some_and(|t| t <= now) {
            debug!(
                unanswered = self.queries.len(),
                "STUN servers did not answer in time"
            );
            self.gathering_done();
        }
        self.send_stun(now);
        if !self.started {
            return;
        }
        // The agent has no Failed state and, with no usable pair, checks forever: the core's
        // CHECKING_TIMEOUT (`Config::checking_timeout`, 30 s) restarts the session then.
        self.agent.handle_timeout(now);
        self.flush();
    }

    /// A datagram from the socket: STUN goes to the agent; an application datagram from a
    /// verified address is returned.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        if self.stun_answer(local, from, data) {
            return None;
        }
        match data.first() {
            Some(0..=3) if !self.started => {
                if self.early.len() < MAX_EARLY {
                    self.early.push_back((local, from, data.to_vec()));
                }
                None
            }
            Some(0..=3) => {
                let Ok(message) = StunMessage::parse(data) else {
                    trace!(%from, "not a STUN message");
                    return None;
                };
                let packet = StunPacket {
                    proto: Protocol::Udp,
                    source: from,
                    destination: local,
                    message,
                };
                self.agent.handle_packet(now, packet);
                self.flush();
                None
            }
            Some(&DATA_TAG) if self.verified.contains(&from) => Some(data[1..].to_vec()),
            _ => {
                trace!(%from, "dropped an unexpected datagram");
                None
            }
        }
    }

    /// Sends an application datagram on the selected pair; false if there is none.
    pub fn send_datagram(&self, data: &[u8]) -> bool {
        let Some((local, to)) = self.nominated else {
            return false;
        };
        let mut buf = Vec::with_capacity(data.len() + 1);
        buf.push(DATA_TAG);
        buf.extend_from_slice(data);
        // UDP is lossy anyway: a full socket buffer drops the datagram.
        self.socket_for(local).try_send_to(&buf, to).is_ok()
    }

    /// The socket bound to `local` (the first one if none is: the agent only names addresses
    /// it was given).
    fn socket_for(&self, local: SocketAddr) -> &UdpSocket {
        let s = self
            .node
            .sockets
            .iter()
            .find(|s| s.local == local)
            .unwrap_or(&self.node.sockets[0]);
        &s.socket
    }

    /// Sends what the agent queued and turns its events into core events.
    fn flush(&mut self) {
        while let Some(t) = self.agent.poll_transmit() {
            {
                // Answers to our checks, and datagrams from where we send, come back to us.
                let mut router = self.node.router();
                if let Some(stun::Kind::Request { .. }) = stun::classify(&t.contents) {
                    if let Some(id) = stun::transaction_id(&t.contents) {
                        router.transaction(id, &self.ufrag);
                    }
                }
                router
                    .by_source
                    .entry(t.destination)
                    .or_insert_with(|| self.ufrag.clone());
            }
            if let Err(e) = self
                .socket_for(t.source)
                .try_send_to(&t.contents, t.destination)
            {
                debug!(error = %e, to = %t.destination, "STUN send failed");
            }
        }
        while let Some(event) = self.agent.poll_event() {
            match event {
                IceAgentEvent::IceConnectionStateChange(state) => self.report(state),
                IceAgentEvent::DiscoveredRecv { source, .. } => {
                    self.verified.insert(source);
                    self.node
                        .router()
                        .by_source
                        .insert(source, self.ufrag.clone());
                }
                IceAgentEvent::NominatedSend {
                    source,
                    destination,
                    ..
                } => {
                    debug!(%source, %destination, "selected pair");
                    self.nominated = Some((source, destination));
                    self.node
                        .router()
                        .by_source
                        .insert(destination, self.ufrag.clone());
                }
                IceAgentEvent::IceRestart(_) => {}
            }
        }
    }

    /// Rule REPORT_POLL: reports the state last reported once more (the core ignores a repeat;
    /// it repairs a report the core never got).
    pub fn report_again(&mut self) {
        let event = match self.reported {
            Reported::Nothing => return,
            Reported::Checking => AgentEvent::Checking,
            Reported::Connected => AgentEvent::Connected,
            Reported::Completed => AgentEvent::Completed,
            Reported::Disconnected => AgentEvent::Disconnected,
            Reported::Failed => AgentEvent::Failed,
        };
        self.events.push_back(event);
    }

    /// Maps the agent's state to the core's reports, once per change. The agent has no Failed
    /// state: Checking → Disconnected (nothing left to try) is reported as Failed. Its
    /// Connected → Checking and Completed → Connected steps while it checks new pairs are not
    /// reported (the core would ignore or follow them, rule AGENT_REPORTS; they change nothing
    /// the embedding needs).
    fn report(&mut self, state: IceConnectionState) {
        use Reported as R;
        let push = |events: &mut VecDeque<AgentEvent>, e, r| {
            events.push_back(e);
            r
        };
        let ev = &mut self.events;
        let mut r = self.reported;
        match state {
            IceConnectionState::New => {}
            IceConnectionState::Checking => {
                if r == R::Nothing {
                    r = push(ev, AgentEvent::Checking, R::Checking);
                }
            }
            IceConnectionState::Connected | IceConnectionState::Completed => {
                if r == R::Nothing {
                    r = push(ev, AgentEvent::Checking, R::Checking);
                }
                if matches!(r, R::Checking | R::Disconnected) {
                    r = push(ev, AgentEvent::Connected, R::Connected);
                }
                if state == IceConnectionState::Completed && r == R::Connected {
                    r = push(ev, AgentEvent::Completed, R::Completed);
                }
            }
            IceConnectionState::Disconnected => match r {
                R::Connected | R::Completed => {
                    r = push(ev, AgentEvent::Disconnected, R::Disconnected)
                }
                R::Checking => r = push(ev, AgentEvent::Failed, R::Failed),
                R::Nothing | R::Disconnected | R::Failed => {}
            },
        }
        self.reported = r;
    }
}

/// Reads one of the node's sockets and routes each datagram to its session; a datagram no
/// session claims is dropped (as a closed port would).
async fn read_loop(socket: Arc<UdpSocket>, local: SocketAddr, router: Arc<Mutex<Router>>) {
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors (port unreachable) surface here on some systems: keep reading.
                trace!(error = %e, "recv_from");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            }
        };
        let data = &buf[..len];
        let inbound = router
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .route(from, data)
            .cloned();
        let Some(inbound) = inbound else {
            trace!(%from, "a datagram for no session");
            continue;
        };
        let received = UdpInput {
            local,
            from,
            data: data.to_vec(),
        };
        if !inbound.send(received).await {
            // The node stopped.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icepact::{AgentId, PublicKey};
    use tokio::sync::mpsc;

    /// A STUN server that never answers: gathering offers the host candidate at once, re-sends
    /// the request every 500 ms, and is done after `STUN_TIMEOUT` without it (no wedge).
    #[tokio::test]
    async fn a_silent_stun_server_ends_gathering_after_the_timeout() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tx, _rx) = mpsc::channel(8);
        let inbound = AgentInbound::new(PublicKey([9; 32]), AgentId(1), tx);
        let credentials = Credentials {
            ufrag: "abcd".into(),
            pwd: "0123456789abcdefghijkl".into(),
        };
        let node = Arc::new(NodeSockets::bind(IpAddr::from([127, 0, 0, 1])).unwrap());
        let mut session = IceSession::new(
            &credentials,
            Role::Controlling,
            node,
            &[silent.local_addr().unwrap()],
            inbound,
        );
        // Let the reactor see the new socket writable (before that a send would block and be
        // tried again 10 ms later).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = Instant::now();
        session.gather(now);
        let events: Vec<_> = session.events.drain(..).collect();
        assert!(
            matches!(events.as_slice(), [AgentEvent::LocalCandidate(c)] if c.kind == CandidateKind::Host)
        );
        assert_eq!(session.poll_timeout(), Some(now + STUN_RETRANSMIT));
        session.handle_timeout(now + STUN_RETRANSMIT);
        assert!(session.events.is_empty());
        session.handle_timeout(now + STUN_TIMEOUT);
        assert_eq!(
            session.events.drain(..).collect::<Vec<_>>(),
            [AgentEvent::GatheringDone]
        );
        assert_eq!(
            session.poll_timeout(),
            None,
            "nothing left to wait for before Connect"
        );
        let mut buf = [0u8; 64];
        silent
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let (n, _) = silent.recv_from(&mut buf).unwrap();
        assert_eq!(
            (n, &buf[..2]),
            (20, &[0u8, 1][..]),
            "a Binding request reached the server"
        );
    }
}

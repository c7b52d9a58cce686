//! The node driver: one task per node running an [`Endpoint`] (one [`Peer`](icepact::Peer) per
//! remote) and an ICE agent per session, in the style of quinn's `ConnectionDriver`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Span};

use crate::agent::{Agent, AgentFactory, AgentInbound, AgentParams, UdpAgents};
use crate::backend::{Backend, BackendEvent, Subscription};
use crate::Error;
use icepact::wire::{Header, Limits, SecretKey};
use icepact::{
    AgentCommand, AgentEvent, AgentId, Candidate, Config, ConnectionState, Endpoint,
    EndpointConfig, EndpointOutput, Event, InboundLimits, PeerStats, PublicKey, RestartCause, Role,
    Seed, SessionRef, Transmit,
};

/// Most passes over the agents in one drive before yielding (each pass makes progress; this
/// only bounds a misbehaving agent).
const MAX_DRIVE_PASSES: usize = 64;
/// Queue lengths between the driver and its helpers.
const QUEUE: usize = 1024;

/// Configuration of a [`Node`]. Start from [`NodeConfig::default`] and set the fields you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Configuration of every session's [`Peer`](icepact::Peer).
    pub peer: Config,
    /// Inbound limits per remote peer.
    pub limits: InboundLimits,
    /// Address the ICE sockets bind to (their host candidate).
    pub bind_ip: IpAddr,
    /// First session epoch; `None` takes the Unix time in microseconds (rule EPOCH_ORDER).
    pub epoch_floor: Option<u64>,
    /// STUN servers the built-in agent asks for server-reflexive candidates (none by default).
    pub stun_servers: Vec<SocketAddr>,
    /// Rule ADMISSION: sessions establishing at once (`EndpointConfig::max_establishing`;
    /// default 16, 0: no limit).
    pub max_establishing: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            peer: Config::default(),
            limits: InboundLimits::default(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            epoch_floor: None,
            stun_servers: Vec::new(),
            max_establishing: icepact::DEFAULT_MAX_ESTABLISHING,
        }
    }
}

/// What one remote peer's session looks like now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStatus {
    /// Connection state of the core.
    pub state: ConnectionState,
    /// Restarts so far.
    pub restarts: u32,
    /// Our current session.
    pub local_session: Option<SessionRef>,
    /// The remote session we are bound to.
    pub remote_session: Option<SessionRef>,
    /// Our ICE socket's address, while an agent is live.
    pub local_addr: Option<SocketAddr>,
    /// The remote address of the selected pair.
    pub selected: Option<SocketAddr>,
    /// The local candidates of our current session (host, and server-reflexive from STUN).
    pub local_candidates: Vec<Candidate>,
    /// Inbound and outbound counters.
    pub stats: PeerStats,
}

/// A snapshot of a node, published by the driver after every round of work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// Per remote peer.
    pub peers: BTreeMap<PublicKey, PeerStatus>,
    /// Envelopes that could not be attributed to a peer (undecodable, oversized, misaddressed
    /// or from an unknown sender).
    pub unrouted: PeerStats,
    /// The backend subscription is in place.
    pub subscribed: bool,
    /// Times the subscription was lost.
    pub backend_losses: u64,
    /// Events dropped because the application did not read them.
    pub events_dropped: u64,
    /// Envelopes dropped because the backend did not take them as fast as the node produced
    /// them (its publish queue was full); each is also a `send_failed` of its peer, and the
    /// session re-sends what is not acknowledged.
    pub publish_dropped: u64,
}

/// What the node tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A session changed state.
    StateChanged {
        /// The remote peer.
        remote: PublicKey,
        /// Previous state.
        from: ConnectionState,
        /// New state.
        to: ConnectionState,
    },
    /// The agent of a session finished gathering without a local candidate (the node is bound
    /// to an unspecified or non-local address, or no interface is usable): the session cannot
    /// connect until this is fixed. The core restarts it after its gathering timeout, with a
    /// growing deadline (rule GATHERING_TIMEOUT).
    NoLocalCandidates {
        /// The remote peer.
        remote: PublicKey,
    },
    /// The ICE agent of a session could not be created: no socket could be bound (the bind
    /// address is not local, or no port is free). The session's gathering finds nothing, so
    /// [`NodeEvent::NoLocalCandidates`] follows, and the core retries with a new agent after
    /// its gathering timeout.
    AgentError {
        /// The remote peer.
        remote: PublicKey,
        /// What failed.
        error: String,
    },
    /// A session was restarted (new credentials, new agent).
    Restarted {
        /// The remote peer.
        remote: PublicKey,
        /// Why.
        cause: RestartCause,
    },
    /// A session failed again before it ever connected, so its next session starts at `at`,
    /// not at once (rule FAILURE_BACKOFF: the wait grows with `failures` and is jittered).
    /// Repeated, it means the remote cannot be reached (a network that blocks UDP, a remote
    /// behind a NAT that needs a TURN server, an ICE agent that fails at once).
    RestartDeferred {
        /// The remote peer.
        remote: PublicKey,
        /// Failures in a row since the session last connected.
        failures: u32,
        /// When the next session starts.
        at: Instant,
    },
    /// The signaling backend is not keeping up: the node's publish queue was full and an
    /// envelope was dropped (counted in [`NodeStatus::publish_dropped`]). Sent once per
    /// episode, when the first envelope is dropped after the queue had room.
    PublishQueueFull,
    /// A datagram arrived on the selected pair.
    Datagram {
        /// The remote peer.
        remote: PublicKey,
        /// Its contents.
        data: Vec<u8>,
    },
}

enum Command {
    Send {
        to: PublicKey,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Restart {
        remote: PublicKey,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    AddPeer {
        remote: PublicKey,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    RemovePeer {
        remote: PublicKey,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Shutdown,
}

/// A running node: one driver task, one signaling subscription, one session per remote key.
///
/// The `Node` owns the driver (dropping it stops the driver) and the event stream; commands and
/// status are also available from any number of tasks through a cloneable [`NodeHandle`]
/// ([`Node::handle`]).
#[derive(Debug)]
pub struct Node {
    handle: NodeHandle,
    events: mpsc::Receiver<NodeEvent>,
    task: Option<JoinHandle<()>>,
}

/// A cloneable handle to a running [`Node`]: its commands and status, from any task. Its
/// commands fail with [`Error::Stopped`] once the node stopped.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    local: PublicKey,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<NodeStatus>,
}

impl Node {
    /// Subscribes to our key on `backend` and starts the driver with one session per key in
    /// `remotes` (more can be added and removed later).
    ///
    /// The sessions use the built-in ICE agent ([`UdpAgents`] on `config.bind_ip`);
    /// [`start_with_agents`](Node::start_with_agents) takes another.
    pub async fn start<B: Backend>(
        backend: B,
        secret: SecretKey,
        remotes: &[PublicKey],
        config: NodeConfig,
    ) -> Result<Node, Error> {
        let agents = UdpAgents::new(config.bind_ip, config.stun_servers.clone());
        Node::start_with_agents(backend, secret, remotes, config, agents).await
    }

    /// As [`start`](Node::start), with the ICE agents made by `factory` (`config.bind_ip` is
    /// then only used in log lines).
    pub async fn start_with_agents<B: Backend, F: AgentFactory>(
        backend: B,
        secret: SecretKey,
        remotes: &[PublicKey],
        config: NodeConfig,
        factory: F,
    ) -> Result<Node, Error> {
        let local = secret.public_key();
        let now = Instant::now();
        // 256 bits from a generator seeded by the OS: credentials and nonces are secret.
        let seed = Seed::from_os_rng()?;
        let epoch_floor = config.epoch_floor.unwrap_or_else(unix_micros);
        let mut endpoint_config = EndpointConfig::default();
        endpoint_config.peer = config.peer;
        endpoint_config.limits = config.limits;
        endpoint_config.max_establishing = config.max_establishing;
        let mut endpoint = Endpoint::new(endpoint_config, secret, epoch_floor, seed);
        let mut agents = BTreeMap::new();
        for &remote in remotes {
            endpoint.add_peer(now, remote)?;
            agents.insert(remote, Slot::new(local, remote));
        }
        let subscription = backend.subscribe(local).await?;
        let backend = Arc::new(backend);
        let (publish_tx, publish_rx) = mpsc::channel(QUEUE);
        let (failed_tx, failed_rx) = mpsc::channel(QUEUE);
        tokio::spawn(publisher(Arc::clone(&backend), publish_rx, failed_tx));
        let (inbound_tx, inbound_rx) = mpsc::channel(QUEUE);
        let (events_tx, events) = mpsc::channel(QUEUE);
        let (status_tx, status) = watch::channel(NodeStatus::default());
        let (commands, commands_rx) = mpsc::channel(64);
        let driver = Driver {
            endpoint,
            agents,
            factory,
            inbound: inbound_tx,
            ctx: Ctx {
                local,
                publish: publish_tx,
                events: events_tx,
                bind_ip: config.bind_ip,
                subscribed: false,
                backend_losses: 0,
                events_dropped: 0,
                publish_dropped: 0,
                publish_full: false,
            },
            status: status_tx,
            dirty: remotes.iter().copied().collect(),
            clock: now,
        };
        let span = info_span!("node", local = ?local);
        let task = tokio::spawn(tracing::Instrument::instrument(
            driver.run(subscription, inbound_rx, commands_rx, failed_rx),
            span,
        ));
        Ok(Node {
            handle: NodeHandle {
                local,
                commands,
                status,
            },
            events,
            task: Some(task),
        })
    }

    /// A handle for other tasks (commands and status; events stay here).
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Our public key.
    pub fn local_key(&self) -> PublicKey {
        self.handle.local_key()
    }

    /// The latest snapshot.
    pub fn status(&self) -> NodeStatus {
        self.handle.status()
    }

    /// The status of the session with `remote`.
    pub fn peer_status(&self, remote: &PublicKey) -> Option<PeerStatus> {
        self.handle.peer_status(remote)
    }

    /// Waits until `pred` holds for the node's status, at most `timeout`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(&NodeStatus) -> bool,
    ) -> Result<NodeStatus, Error> {
        self.handle.wait_for(timeout, pred).await
    }

    /// Waits until the session with `remote` is Connected or Completed.
    pub async fn wait_connected(
        &mut self,
        remote: PublicKey,
        timeout: Duration,
    ) -> Result<PeerStatus, Error> {
        self.handle.wait_connected(remote, timeout).await
    }

    /// Sends a datagram to `to` over the selected pair.
    pub async fn send_datagram(&self, to: PublicKey, data: Vec<u8>) -> Result<(), Error> {
        self.handle.send_datagram(to, data).await
    }

    /// Restarts the session with `remote` (new epoch, credentials and agent).
    pub async fn restart(&self, remote: PublicKey) -> Result<(), Error> {
        self.handle.restart(remote).await
    }

    /// Starts a session with `remote`.
    pub async fn add_peer(&self, remote: PublicKey) -> Result<(), Error> {
        self.handle.add_peer(remote).await
    }

    /// Ends the session with `remote`: its agent is closed and its envelopes are refused from
    /// now on.
    pub async fn remove_peer(&self, remote: PublicKey) -> Result<(), Error> {
        self.handle.remove_peer(remote).await
    }

    /// The next event, or `None` once the driver stopped.
    pub async fn next_event(&mut self) -> Option<NodeEvent> {
        self.events.recv().await
    }

    /// Closes every session and stops the driver.
    pub async fn shutdown(mut self) {
        let _ = self.handle.commands.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl NodeHandle {
    /// Our public key.
    pub fn local_key(&self) -> PublicKey {
        self.local
    }

    /// The latest snapshot.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// The status of the session with `remote`.
    pub fn peer_status(&self, remote: &PublicKey) -> Option<PeerStatus> {
        self.status.borrow().peers.get(remote).cloned()
    }

    /// Waits until `pred` holds for the node's status, at most `timeout`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&NodeStatus) -> bool,
    ) -> Result<NodeStatus, Error> {
        let waited = tokio::time::timeout(timeout, self.status.wait_for(|s| pred(s))).await;
        match waited {
            Ok(Ok(status)) => Ok(status.clone()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Waits until the session with `remote` is Connected or Completed.
    pub async fn wait_connected(
        &mut self,
        remote: PublicKey,
        timeout: Duration,
    ) -> Result<PeerStatus, Error> {
        let status = self
            .wait_for(timeout, |s| {
                s.peers.get(&remote).is_some_and(|p| {
                    matches!(
                        p.state,
                        ConnectionState::Connected | ConnectionState::Completed
                    ) && p.selected.is_some()
                })
            })
            .await?;
        status
            .peers
            .get(&remote)
            .cloned()
            .ok_or(Error::UnknownPeer(remote))
    }

    /// Sends a datagram to `to` over the selected pair.
    pub async fn send_datagram(&self, to: PublicKey, data: Vec<u8>) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Send { to, data, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Restarts the session with `remote` (new epoch, credentials and agent).
    pub async fn restart(&self, remote: PublicKey) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Restart { remote, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Starts a session with `remote`.
    pub async fn add_peer(&self, remote: PublicKey) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::AddPeer { remote, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Ends the session with `remote`: its agent is closed and its envelopes are refused from
    /// now on.
    pub async fn remove_peer(&self, remote: PublicKey) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::RemovePeer { remote, reply }).await?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    async fn command(&self, c: Command) -> Result<(), Error> {
        self.commands.send(c).await.map_err(|_| Error::Stopped)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Publishes sealed envelopes in order, off the driver's path, and tells the driver which
/// failed (so that `PeerStats::send_failed` counts them).
async fn publisher<B: Backend>(
    backend: Arc<B>,
    mut rx: mpsc::Receiver<(PublicKey, Vec<u8>)>,
    failed: mpsc::Sender<PublicKey>,
) {
    while let Some((to, envelope)) = rx.recv().await {
        if let Err(e) = backend.publish(to, envelope).await {
            // Dropped: the core re-sends what the remote does not acknowledge.
            debug!(error = %e, "publish failed");
            // A full queue loses the count only (the driver is far behind anyway).
            let _ = failed.try_send(to);
        }
    }
}

/// The live agent of one session (the one the core created last and has not closed), and the
/// session's log span.
struct Slot<A> {
    agent: Option<(AgentId, Made<A>)>,
    /// Our ICE role towards this remote (fixed for the pair; kept for an agent that cannot
    /// restart in place and is created again).
    role: Option<Role>,
    span: Span,
}

/// What became of the agent the core created.
enum Made<A> {
    /// The factory made it. Its I/O tags inputs with the id it was created with, which an
    /// in-place restart does not change.
    Running(A, AgentId),
    /// The factory could not make it (no socket): it answers `Gather` with GatheringDone alone
    /// (these reports, fed like a running agent's), so the core's gathering timeout applies.
    Broken(VecDeque<AgentEvent>),
}

impl<A: Agent> Slot<A> {
    fn new(local: PublicKey, remote: PublicKey) -> Slot<A> {
        Slot {
            agent: None,
            role: None,
            span: info_span!("peer", local = ?local, remote = ?remote),
        }
    }

    /// The live agent, if the factory made it.
    fn running(&self) -> Option<&A> {
        match self.agent.as_ref() {
            Some((_, Made::Running(a, _))) => Some(a),
            _ => None,
        }
    }

    /// The live agent, if the factory made it.
    fn running_mut(&mut self) -> Option<&mut A> {
        match self.agent.as_mut() {
            Some((_, Made::Running(a, _))) => Some(a),
            _ => None,
        }
    }

    /// The live agent's next report, with its id.
    fn next_event(&mut self) -> Option<(AgentId, AgentEvent)> {
        let (id, made) = self.agent.as_mut()?;
        let event = match made {
            Made::Running(a, _) => a.poll_event(),
            Made::Broken(pending) => pending.pop_front(),
        };
        event.map(|e| (*id, e))
    }
}

/// What the driver shares between sessions.
struct Ctx {
    local: PublicKey,
    publish: mpsc::Sender<(PublicKey, Vec<u8>)>,
    events: mpsc::Sender<NodeEvent>,
    bind_ip: IpAddr,
    subscribed: bool,
    backend_losses: u64,
    events_dropped: u64,
    publish_dropped: u64,
    /// The last envelope offered to the publisher was dropped.
    publish_full: bool,
}

impl Ctx {
    fn emit(&mut self, event: NodeEvent) {
        if self.events.try_send(event).is_err() {
            self.events_dropped += 1;
        }
    }
}

/// What the agents' I/O tasks send them, tagged with the session, the agent and the instant
/// it arrived.
type Inbound<F> = (
    PublicKey,
    AgentId,
    Instant,
    <<F as AgentFactory>::Agent as Agent>::Input,
);

/// An input taken from a queue before the timers fire (rule STAMP_ARRIVAL).
enum Queued<I> {
    Agent(PublicKey, AgentId, I),
    Backend(BackendEvent),
}

struct Driver<F: AgentFactory> {
    endpoint: Endpoint,
    agents: BTreeMap<PublicKey, Slot<F::Agent>>,
    factory: F,
    /// Given to every agent created ([`AgentInbound`]).
    inbound: mpsc::Sender<Inbound<F>>,
    ctx: Ctx,
    status: watch::Sender<NodeStatus>,
    /// Sessions whose status may have changed since it was last published: only these are
    /// rebuilt and compared (a node with hundreds of peers handles thousands of inputs).
    dirty: BTreeSet<PublicKey>,
    /// The instant the core and the agents were last told (rule STAMP_ARRIVAL): the latest
    /// arrival stamp or timer instant taken, never going back.
    clock: Instant,
}

impl<F: AgentFactory> Driver<F> {
    async fn run(
        mut self,
        mut subscription: Subscription,
        mut inbound: mpsc::Receiver<Inbound<F>>,
        mut commands: mpsc::Receiver<Command>,
        mut failed: mpsc::Receiver<PublicKey>,
    ) {
        let mut backend_open = true;
        loop {
            self.drive(self.clock);
            self.publish_status();
            let deadline = self.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.command(c),
                },
                event = subscription.recv_stamped(), if backend_open => match event {
                    Some((at, event)) => {
                        let first = (at, Queued::Backend(event));
                        self.take_queued(Some(first), &mut subscription, &mut inbound, true);
                    }
                    None => {
                        warn!("backend closed the subscription");
                        self.ctx.subscribed = false;
                        backend_open = false;
                    }
                },
                // The driver holds a sender, so this never yields None.
                Some((remote, agent, at, input)) = inbound.recv() => {
                    let first = (at, Queued::Agent(remote, agent, input));
                    self.take_queued(Some(first), &mut subscription, &mut inbound, backend_open);
                }
                // None once the publisher ended (never before the driver): then disabled.
                Some(to) = failed.recv() => {
                    self.endpoint.transmit_failed(&to);
                    self.dirty.insert(to);
                }
                () = sleep_until(deadline) => {
                    // Rule STAMP_ARRIVAL: what arrived while the node was busy is taken first,
                    // in arrival order and at its arrival instants; only then do the timers
                    // fire. A node that falls behind does not fire a deadline that an input
                    // waiting in its queue had met (a Connected the agent would report, an
                    // acknowledgement that stops a re-send).
                    self.take_queued(None, &mut subscription, &mut inbound, backend_open);
                    let now = self.at(Instant::now());
                    self.timeout(now);
                }
            }
        }
        let now = self.at(Instant::now());
        let remotes: Vec<PublicKey> = self.agents.keys().copied().collect();
        for remote in remotes {
            if let Err(e) = self.endpoint.remove_peer(now, remote) {
                debug!(error = %e, "close");
            }
        }
        self.outputs(now);
        self.transmits();
        self.agents.clear();
        self.publish_status();
    }

    /// The instant an input that arrived at `at` is taken at: its arrival, or the latest
    /// instant already taken if that is later (the core and the agents never see time go back).
    fn at(&mut self, at: Instant) -> Instant {
        self.clock = self.clock.max(at);
        self.clock
    }

    /// Rule STAMP_ARRIVAL: takes `first` and every input waiting in the two queues now (no
    /// more, so that a flood cannot hold the timers back) and applies them in arrival order,
    /// each at its own arrival instant, with what the agents report in between. Whichever
    /// queue woke the node, an input that arrived later is never taken before one that arrived
    /// earlier (the later one would fire the deadlines in between first).
    fn take_queued(
        &mut self,
        first: Option<(Instant, Queued<<F::Agent as Agent>::Input>)>,
        subscription: &mut Subscription,
        inbound: &mut mpsc::Receiver<Inbound<F>>,
        backend_open: bool,
    ) {
        let mut batch: Vec<(Instant, Queued<<F::Agent as Agent>::Input>)> =
            first.into_iter().collect();
        for _ in 0..inbound.len() {
            let Ok((remote, agent, at, input)) = inbound.try_recv() else {
                break;
            };
            batch.push((at, Queued::Agent(remote, agent, input)));
        }
        if backend_open {
            for _ in 0..subscription.len() {
                let Some((at, event)) = subscription.try_recv_stamped() else {
                    break;
                };
                batch.push((at, Queued::Backend(event)));
            }
        }
        // Stable: each queue is in arrival order already.
        batch.sort_by_key(|(at, _)| *at);
        for (at, queued) in batch {
            match queued {
                Queued::Agent(remote, agent, input) => self.input(at, remote, agent, input),
                Queued::Backend(event) => self.backend_event(at, event),
            }
            self.drive(self.clock);
        }
    }

    fn backend_event(&mut self, at: Instant, event: BackendEvent) {
        match event {
            BackendEvent::Envelope(bytes) => {
                let now = self.at(at);
                self.envelope(now, &bytes);
            }
            BackendEvent::Subscribed => self.ctx.subscribed = true,
            BackendEvent::Lost => {
                self.ctx.subscribed = false;
                self.ctx.backend_losses += 1;
            }
        }
    }

    /// Carries out the endpoint's outputs and feeds queued agent events until nothing moves.
    fn drive(&mut self, now: Instant) {
        for _ in 0..MAX_DRIVE_PASSES {
            self.outputs(now);
            let mut moved = false;
            for (remote, slot) in &mut self.agents {
                let _span = slot.span.clone().entered();
                while let Some((id, event)) = slot.next_event() {
                    moved = true;
                    self.dirty.insert(*remote);
                    match self
                        .endpoint
                        .handle_agent_event(now, *remote, id, event.clone())
                    {
                        Ok(d) => debug!(?event, ?d, "agent event"),
                        Err(e) => warn!(?event, error = %e, "agent event refused"),
                    }
                }
            }
            if !moved {
                break;
            }
        }
        self.outputs(now);
        // Envelopes last: the agents' immediate reports (candidates, the end of gathering) are
        // in the descriptions by now, so each remote gets one where it would get several
        // (rule SUPERSEDED_SEND).
        self.transmits();
    }

    /// Hands every waiting envelope to the publisher.
    fn transmits(&mut self) {
        while let Some(Transmit { to, envelope }) = self.endpoint.poll_transmit() {
            self.dirty.insert(to);
            if self.ctx.publish.try_send((to, envelope)).is_ok() {
                self.ctx.publish_full = false;
                continue;
            }
            self.endpoint.transmit_failed(&to);
            self.ctx.publish_dropped += 1;
            if !self.ctx.publish_full {
                self.ctx.publish_full = true;
                warn!("the signaling backend is not keeping up: envelopes dropped");
                self.ctx.emit(NodeEvent::PublishQueueFull);
            }
        }
    }

    /// Carries out every queued output of the endpoint, in order.
    fn outputs(&mut self, now: Instant) {
        while let Some(output) = self.endpoint.poll_output() {
            match output {
                EndpointOutput::Agent { remote, command } => {
                    self.agent_command(now, remote, command);
                }
                EndpointOutput::Event { remote, event } => self.event(remote, event),
                other => debug!(?other, "endpoint output this driver does not know"),
            }
        }
    }

    fn event(&mut self, remote: PublicKey, event: Event) {
        let _span = self.agents.get(&remote).map(|a| a.span.clone().entered());
        match event {
            Event::StateChanged { from, to, trigger } => {
                info!(?from, ?to, ?trigger, "state");
                self.ctx.emit(NodeEvent::StateChanged { remote, from, to });
            }
            Event::NoLocalCandidates { timeouts } => {
                warn!(
                    bind_ip = %self.ctx.bind_ip,
                    timeouts,
                    "the ICE agent gathered no local candidate; the session cannot connect"
                );
                self.ctx.emit(NodeEvent::NoLocalCandidates { remote });
            }
            Event::Restarted { cause, restarts } => {
                info!(?cause, restarts, "restarted");
                self.ctx.emit(NodeEvent::Restarted { remote, cause });
            }
            Event::RestartDeferred { failures, at } => {
                let wait = at.saturating_duration_since(Instant::now());
                warn!(
                    failures,
                    ?wait,
                    "the session keeps failing; the next one starts later"
                );
                self.ctx.emit(NodeEvent::RestartDeferred {
                    remote,
                    failures,
                    at,
                });
            }
            event => info!(?event, "event"),
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let agents = self
            .agents
            .values_mut()
            .filter_map(|s| s.running_mut().and_then(|a| a.poll_timeout()));
        agents.chain(self.endpoint.poll_timeout()).min()
    }

    fn timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            let due = self
                .endpoint
                .peers()
                .filter(|(_, p)| p.poll_timeout().is_some_and(|t| t <= now))
                .map(|(k, _)| *k);
            self.dirty.extend(due);
            if let Err(e) = self.endpoint.handle_timeout(now) {
                warn!(error = %e, "handle_timeout");
            }
        }
        for (remote, slot) in &mut self.agents {
            let span = slot.span.clone();
            if let Some(agent) = slot.running_mut() {
                if agent.poll_timeout().is_some_and(|t| t <= now) {
                    let _span = span.entered();
                    agent.handle_timeout(now);
                    self.dirty.insert(*remote);
                }
            }
        }
    }

    fn command(&mut self, c: Command) {
        let now = self.at(Instant::now());
        match &c {
            Command::Send { to: remote, .. }
            | Command::Restart { remote, .. }
            | Command::AddPeer { remote, .. }
            | Command::RemovePeer { remote, .. } => {
                self.dirty.insert(*remote);
            }
            Command::Shutdown => {}
        }
        match c {
            Command::Send { to, data, reply } => {
                let result = match self.agents.get_mut(&to) {
                    None => Err(Error::UnknownPeer(to)),
                    Some(slot) => {
                        let sent = slot.running_mut().is_some_and(|a| a.send_datagram(&data));
                        if sent {
                            Ok(())
                        } else {
                            Err(Error::NotConnected(to))
                        }
                    }
                };
                let _ = reply.send(result);
            }
            Command::Restart { remote, reply } => {
                let result = self.endpoint.restart(now, remote).map_err(Error::from);
                let _ = reply.send(result);
            }
            Command::AddPeer { remote, reply } => {
                let result = self.endpoint.add_peer(now, remote).map_err(Error::from);
                if result.is_ok() {
                    self.agents
                        .insert(remote, Slot::new(self.ctx.local, remote));
                }
                let _ = reply.send(result);
            }
            Command::RemovePeer { remote, reply } => {
                let result = self.endpoint.remove_peer(now, remote).map_err(Error::from);
                // The Close command of the removed session's agent is carried out first.
                self.outputs(now);
                self.agents.remove(&remote);
                let _ = reply.send(result);
            }
            Command::Shutdown => {}
        }
    }

    /// An input from an agent's I/O that arrived at `at`; inputs of an agent closed since are
    /// dropped.
    fn input(
        &mut self,
        at: Instant,
        remote: PublicKey,
        id: AgentId,
        input: <F::Agent as Agent>::Input,
    ) {
        let now = self.at(at);
        let Some(slot) = self.agents.get_mut(&remote) else {
            return;
        };
        self.dirty.insert(remote);
        let _span = slot.span.clone().entered();
        let Some((_, Made::Running(agent, _))) = slot
            .agent
            .as_mut()
            .filter(|(_, made)| matches!(made, Made::Running(_, born) if *born == id))
        else {
            return;
        };
        if let Some(data) = agent.handle_input(now, input) {
            self.ctx.emit(NodeEvent::Datagram { remote, data });
        }
    }

    /// Carries out a command of the core for the agent of the session with `remote`.
    fn agent_command(&mut self, now: Instant, remote: PublicKey, command: AgentCommand) {
        let Some(slot) = self.agents.get_mut(&remote) else {
            return;
        };
        self.dirty.insert(remote);
        let _span = slot.span.clone().entered();
        debug!(?command, "agent command");
        let create = match &command {
            AgentCommand::Create {
                agent,
                credentials,
                role,
            } => Some((*agent, credentials.clone(), *role)),
            AgentCommand::Restart {
                agent,
                new,
                credentials,
            } => {
                // Rule AGENT_RESTART: the live agent restarts in place if it can; one that
                // cannot (or could not be made) is replaced by a new one.
                let live = slot.agent.as_mut().filter(|(id, _)| id == agent);
                if let Some((id, Made::Running(a, _))) = live {
                    if a.restart(now, credentials) {
                        *id = *new;
                        return;
                    }
                }
                slot.role.map(|role| (*new, credentials.clone(), role))
            }
            _ => None,
        };
        if let Some((id, credentials, role)) = create {
            slot.agent = None;
            slot.role = Some(role);
            let params = AgentParams {
                agent: id,
                remote,
                credentials,
                role,
                inbound: AgentInbound::new(remote, id, self.inbound.clone()),
            };
            match self.factory.create(params) {
                Ok(agent) => slot.agent = Some((id, Made::Running(agent, id))),
                Err(e) => {
                    warn!(bind_ip = %self.ctx.bind_ip, error = %e, "cannot create the ICE agent");
                    slot.agent = Some((id, Made::Broken(VecDeque::new())));
                    self.ctx.emit(NodeEvent::AgentError {
                        remote,
                        error: format!(
                            "cannot create the ICE agent (bind {}): {e}",
                            self.ctx.bind_ip
                        ),
                    });
                }
            }
            return;
        }
        let Some((live, made)) = slot.agent.as_mut() else {
            return;
        };
        let live = *live;
        if matches!(command, AgentCommand::Close { agent: id } if id == live) {
            slot.agent = None;
            return;
        }
        let agent = match made {
            Made::Running(agent, _) => agent,
            Made::Broken(pending) => {
                if matches!(command, AgentCommand::Gather { agent: id } if id == live) {
                    pending.push_back(AgentEvent::GatheringDone);
                } else {
                    debug!(?command, "command for an agent that could not be created");
                }
                return;
            }
        };
        match command {
            AgentCommand::Gather { agent: id } if id == live => agent.gather(now),
            AgentCommand::AddRemoteCandidate {
                agent: id,
                candidate,
            } if id == live => agent.add_remote_candidate(&candidate),
            AgentCommand::Connect { agent: id, remote } if id == live => {
                agent.connect(now, &remote);
            }
            AgentCommand::EndOfRemoteCandidates { agent: id } if id == live => {
                agent.end_of_remote_candidates();
            }
            AgentCommand::ReportState { agent: id } if id == live => agent.report_state(),
            other => debug!(?other, "command for another agent"),
        }
    }

    /// The endpoint checks, opens and applies it; what it refuses is counted in its stats.
    fn envelope(&mut self, now: Instant, bytes: &[u8]) {
        // The claimed sender's counters change whatever becomes of it.
        if let Ok(header) = Header::peek(bytes, &Limits::default()) {
            self.dirty.insert(header.sender);
        }
        if let Err(refusal) = self.endpoint.handle_envelope(now, bytes) {
            debug!(%refusal, "envelope refused");
        }
    }

    /// Publishes the node's status: the sessions marked dirty are rebuilt and compared, the
    /// others are left as they are; watchers wake only on a change.
    fn publish_status(&mut self) {
        let updates: Vec<(PublicKey, Option<PeerStatus>)> = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|k| (k, self.peer_status_now(&k)))
            .collect();
        let unrouted = self.endpoint.unrouted();
        let ctx = &self.ctx;
        self.status.send_if_modified(|old| {
            let mut changed = false;
            for (k, status) in updates {
                match status {
                    Some(s) if old.peers.get(&k) != Some(&s) => {
                        old.peers.insert(k, s);
                        changed = true;
                    }
                    Some(_) => {}
                    None => changed |= old.peers.remove(&k).is_some(),
                }
            }
            let fields = (
                unrouted,
                ctx.subscribed,
                ctx.backend_losses,
                ctx.events_dropped,
                ctx.publish_dropped,
            );
            if (
                old.unrouted,
                old.subscribed,
                old.backend_losses,
                old.events_dropped,
                old.publish_dropped,
            ) != fields
            {
                (
                    old.unrouted,
                    old.subscribed,
                    old.backend_losses,
                    old.events_dropped,
                    old.publish_dropped,
                ) = fields;
                changed = true;
            }
            changed
        });
    }

    /// The status of the session with `remote` as it is now, if it exists.
    fn peer_status_now(&self, remote: &PublicKey) -> Option<PeerStatus> {
        let peer = self.endpoint.peer(remote)?;
        let agent = self.agents.get(remote).and_then(Slot::running);
        Some(PeerStatus {
            state: peer.state(),
            restarts: peer.restarts(),
            local_session: peer.local_session(),
            remote_session: peer.remote_session(),
            local_addr: agent.and_then(|a| a.local_addr()),
            selected: agent.and_then(|a| a.selected()),
            local_candidates: peer.local_candidates().to_vec(),
            stats: self.endpoint.stats(remote).unwrap_or_default(),
        })
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

//! The node driver: one task per node running one [`Peer`] per remote, in the style of quinn's
//! `ConnectionDriver`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Span};

use super::backend::{Backend, BackendEvent, Subscription};
use super::guard::{nonce_of, InboundLimits, PeerStats, RateLimiter, ReplayCache};
use super::ice::{IceSession, Received};
use super::Error;
use crate::wire::{self, Channel, Header, Limits, SecretKey};
use crate::{
    AgentCommand, Config, ConnectionState, Disposition, Event, IgnoreReason, Output, Peer,
    PublicKey, SessionRef,
};

/// Most passes over the peers in one drive before yielding (each pass makes progress; this
/// only bounds a misbehaving agent).
const MAX_DRIVE_PASSES: usize = 64;
/// Queue lengths between the driver and its helpers.
const QUEUE: usize = 1024;

/// Configuration of a [`Node`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Configuration of every [`Peer`].
    pub peer: Config,
    /// Inbound limits per remote peer.
    pub limits: InboundLimits,
    /// Address the ICE sockets bind to (their host candidate).
    pub bind_ip: IpAddr,
    /// First session epoch; `None` takes the Unix time in microseconds (rule EPOCH_ORDER).
    pub epoch_floor: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            peer: Config::default(),
            limits: InboundLimits::default(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            epoch_floor: None,
        }
    }
}

/// What one remote peer's session looks like now.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Inbound and outbound counters.
    pub stats: PeerStats,
}

/// A snapshot of a node, published by the driver after every round of work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    Shutdown,
}

/// A running node: one driver task, one signaling subscription, one session per remote key.
#[derive(Debug)]
pub struct Node {
    local: PublicKey,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<NodeStatus>,
    events: mpsc::Receiver<NodeEvent>,
    task: Option<JoinHandle<()>>,
}

impl Node {
    /// Subscribes to our key on `backend` and starts the driver with one session per key in
    /// `remotes`.
    pub async fn start<B: Backend>(
        backend: B,
        secret: SecretKey,
        remotes: &[PublicKey],
        config: NodeConfig,
    ) -> Result<Node, Error> {
        let local = secret.public_key();
        let now = Instant::now();
        let mut rng = ChaCha20Rng::from_os_rng();
        let epoch_floor = config.epoch_floor.unwrap_or_else(unix_micros);
        let limits = Limits {
            max_envelope_len: config.limits.max_envelope_len,
            max_candidates: config.peer.max_candidates,
        };
        let mut slots = BTreeMap::new();
        for &remote in remotes {
            let channel = Channel::new(&secret, remote)?.with_limits(limits);
            let peer = Peer::new(config.peer, local, remote, epoch_floor, rng.next_u64(), now)?;
            slots.insert(
                remote,
                Slot {
                    peer,
                    channel,
                    ice: None,
                    stats: PeerStats::default(),
                    limiter: RateLimiter::new(&config.limits, now),
                    replay: ReplayCache::new(config.limits.replay_window),
                    span: info_span!("peer", local = ?local, remote = ?remote),
                },
            );
        }
        let subscription = backend.subscribe(local).await?;
        let backend = Arc::new(backend);
        let (publish_tx, publish_rx) = mpsc::channel(QUEUE);
        tokio::spawn(publisher(Arc::clone(&backend), publish_rx));
        let (udp_tx, udp_rx) = mpsc::channel(QUEUE);
        let (events_tx, events) = mpsc::channel(QUEUE);
        let (status_tx, status) = watch::channel(NodeStatus::default());
        let (commands, commands_rx) = mpsc::channel(64);
        let driver = Driver {
            slots,
            ctx: Ctx {
                local,
                rng,
                publish: publish_tx,
                udp_tx,
                events: events_tx,
                bind_ip: config.bind_ip,
                unrouted: PeerStats::default(),
                subscribed: false,
                backend_losses: 0,
                events_dropped: 0,
            },
            status: status_tx,
        };
        let span = info_span!("node", local = ?local);
        let task = tokio::spawn(tracing::Instrument::instrument(
            driver.run(subscription, udp_rx, commands_rx),
            span,
        ));
        Ok(Node {
            local,
            commands,
            status,
            events,
            task: Some(task),
        })
    }

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

    /// The next event, or `None` once the driver stopped.
    pub async fn next_event(&mut self) -> Option<NodeEvent> {
        self.events.recv().await
    }

    /// Closes every session and stops the driver.
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
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

/// Publishes sealed envelopes in order, off the driver's path.
async fn publisher<B: Backend>(backend: Arc<B>, mut rx: mpsc::Receiver<(PublicKey, Vec<u8>)>) {
    while let Some((to, envelope)) = rx.recv().await {
        if let Err(e) = backend.publish(to, envelope).await {
            // Dropped: the core re-sends what the remote does not acknowledge.
            debug!(error = %e, "publish failed");
        }
    }
}

/// One remote peer's session and its inbound guard.
struct Slot {
    peer: Peer,
    channel: Channel,
    ice: Option<IceSession>,
    stats: PeerStats,
    limiter: RateLimiter,
    replay: ReplayCache,
    span: Span,
}

/// Everything the driver shares between slots.
struct Ctx {
    local: PublicKey,
    rng: ChaCha20Rng,
    publish: mpsc::Sender<(PublicKey, Vec<u8>)>,
    udp_tx: mpsc::Sender<Received>,
    events: mpsc::Sender<NodeEvent>,
    bind_ip: IpAddr,
    unrouted: PeerStats,
    subscribed: bool,
    backend_losses: u64,
    events_dropped: u64,
}

struct Driver {
    slots: BTreeMap<PublicKey, Slot>,
    ctx: Ctx,
    status: watch::Sender<NodeStatus>,
}

impl Driver {
    async fn run(
        mut self,
        mut subscription: Subscription,
        mut udp: mpsc::Receiver<Received>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut backend_open = true;
        loop {
            self.drive(Instant::now());
            self.publish_status();
            let deadline = self.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.command(c),
                },
                event = subscription.recv(), if backend_open => match event {
                    Some(BackendEvent::Envelope(bytes)) => self.envelope(Instant::now(), &bytes),
                    Some(BackendEvent::Subscribed) => self.ctx.subscribed = true,
                    Some(BackendEvent::Lost) => {
                        self.ctx.subscribed = false;
                        self.ctx.backend_losses += 1;
                    }
                    None => {
                        warn!("backend closed the subscription");
                        self.ctx.subscribed = false;
                        backend_open = false;
                    }
                },
                // The driver holds a sender, so this never yields None.
                Some(received) = udp.recv() => self.datagram(Instant::now(), received),
                () = sleep_until(deadline) => self.timeout(Instant::now()),
            }
        }
        let now = Instant::now();
        for slot in self.slots.values_mut() {
            let _span = slot.span.clone().entered();
            if let Err(e) = slot.peer.close(now) {
                debug!(error = %e, "close");
            }
            slot.drain(&mut self.ctx, now);
            slot.ice = None;
        }
        self.publish_status();
    }

    /// Feeds queued agent events and drains outputs until nothing moves.
    fn drive(&mut self, now: Instant) {
        for slot in self.slots.values_mut() {
            let _span = slot.span.clone().entered();
            for _ in 0..MAX_DRIVE_PASSES {
                slot.drain(&mut self.ctx, now);
                let Some(ice) = slot.ice.as_mut() else { break };
                let Some(event) = ice.events.pop_front() else {
                    break;
                };
                let agent = ice.id;
                match slot.peer.handle_agent_event(now, agent, event.clone()) {
                    Ok(d) => debug!(?event, ?d, "agent event"),
                    Err(e) => warn!(?event, error = %e, "agent event refused"),
                }
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        self.slots
            .values_mut()
            .flat_map(|s| {
                [
                    s.peer.poll_timeout(),
                    s.ice.as_mut().and_then(|i| i.poll_timeout()),
                ]
            })
            .flatten()
            .min()
    }

    fn timeout(&mut self, now: Instant) {
        for slot in self.slots.values_mut() {
            let _span = slot.span.clone().entered();
            if slot.peer.poll_timeout().is_some_and(|t| t <= now) {
                if let Err(e) = slot.peer.handle_timeout(now) {
                    warn!(error = %e, "handle_timeout");
                }
            }
            if let Some(ice) = slot.ice.as_mut() {
                if ice.poll_timeout().is_some_and(|t| t <= now) {
                    ice.handle_timeout(now);
                }
            }
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Send { to, data, reply } => {
                let result = match self.slots.get(&to) {
                    None => Err(Error::UnknownPeer(to)),
                    Some(slot) => match slot.ice.as_ref() {
                        Some(ice) if ice.send_datagram(&data) => Ok(()),
                        _ => Err(Error::NotConnected(to)),
                    },
                };
                let _ = reply.send(result);
            }
            Command::Restart { remote, reply } => {
                let result = match self.slots.get_mut(&remote) {
                    None => Err(Error::UnknownPeer(remote)),
                    Some(slot) => slot.peer.restart(now).map_err(Error::from),
                };
                let _ = reply.send(result);
            }
            Command::Shutdown => {}
        }
    }

    fn datagram(&mut self, now: Instant, r: Received) {
        let Some(slot) = self.slots.get_mut(&r.remote) else {
            return;
        };
        let _span = slot.span.clone().entered();
        let Some(ice) = slot.ice.as_mut().filter(|i| i.id == r.agent) else {
            return;
        };
        if let Some(data) = ice.handle_datagram(now, r.from, &r.data) {
            let event = NodeEvent::Datagram {
                remote: r.remote,
                data,
            };
            if self.ctx.events.try_send(event).is_err() {
                self.ctx.events_dropped += 1;
            }
        }
    }

    /// Inbound protection, then the core. Everything refused is counted, nothing refused
    /// reaches the peer.
    fn envelope(&mut self, now: Instant, bytes: &[u8]) {
        let header = match Header::peek(bytes, &Limits::default()) {
            Ok(h) => h,
            Err(wire::Error::TooLarge { .. }) => {
                self.ctx.unrouted.oversized += 1;
                return;
            }
            Err(e) => {
                debug!(error = %e, "undecodable envelope");
                self.ctx.unrouted.garbage += 1;
                return;
            }
        };
        if header.recipient != self.ctx.local {
            self.ctx.unrouted.misrouted += 1;
            return;
        }
        let Some(slot) = self.slots.get_mut(&header.sender) else {
            self.ctx.unrouted.misrouted += 1;
            return;
        };
        let _span = slot.span.clone().entered();
        slot.inbound(now, bytes);
        slot.drain(&mut self.ctx, now);
    }

    fn publish_status(&mut self) {
        let peers = self
            .slots
            .iter()
            .map(|(k, s)| {
                let status = PeerStatus {
                    state: s.peer.state(),
                    restarts: s.peer.restarts(),
                    local_session: s.peer.local_session(),
                    remote_session: s.peer.remote_session(),
                    local_addr: s.ice.as_ref().map(IceSession::local_addr),
                    selected: s.ice.as_ref().and_then(IceSession::selected),
                    stats: s.stats,
                };
                (*k, status)
            })
            .collect();
        let status = NodeStatus {
            peers,
            unrouted: self.ctx.unrouted,
            subscribed: self.ctx.subscribed,
            backend_losses: self.ctx.backend_losses,
            events_dropped: self.ctx.events_dropped,
        };
        self.status.send_if_modified(|old| {
            if *old == status {
                false
            } else {
                *old = status;
                true
            }
        });
    }
}

impl Slot {
    /// Checks an envelope that claims to come from this peer, opens it and applies it.
    fn inbound(&mut self, now: Instant, bytes: &[u8]) {
        let limits = self.channel.limits();
        if bytes.len() > limits.max_envelope_len {
            self.stats.oversized += 1;
            return;
        }
        if !self.limiter.allow(now) {
            self.stats.rate_limited += 1;
            return;
        }
        let Some(nonce) = nonce_of(bytes) else {
            self.stats.garbage += 1;
            return;
        };
        if self.replay.contains(&nonce) {
            self.stats.replayed += 1;
            return;
        }
        let description = match self.channel.open(bytes) {
            Ok(d) => d,
            Err(wire::Error::Authentication | wire::Error::Binding(_)) => {
                self.stats.wrong_key += 1;
                return;
            }
            Err(wire::Error::NotForUs | wire::Error::UnexpectedSender) => {
                self.stats.misrouted += 1;
                return;
            }
            Err(e) => {
                debug!(error = %e, "invalid envelope");
                self.stats.garbage += 1;
                return;
            }
        };
        self.replay.insert(nonce);
        match self.peer.handle_description(now, &description) {
            Ok(Disposition::Applied) => self.stats.applied += 1,
            Ok(Disposition::Ignored(IgnoreReason::Duplicate(_))) => self.stats.duplicate += 1,
            Ok(Disposition::Ignored(reason)) => {
                debug!(?reason, "ignored description");
                self.stats.stale += 1;
            }
            Err(e) => {
                warn!(error = %e, "description rejected");
                self.stats.rejected += 1;
            }
        }
    }

    /// Carries out the peer's outputs in order.
    fn drain(&mut self, ctx: &mut Ctx, now: Instant) {
        while let Some(output) = self.peer.poll_output() {
            match output {
                Output::Send(d) => match self.channel.seal(&d, &mut ctx.rng) {
                    Ok(envelope) => {
                        if ctx
                            .publish
                            .try_send((self.channel.remote_key(), envelope))
                            .is_ok()
                        {
                            self.stats.sent += 1;
                        } else {
                            self.stats.send_failed += 1;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot seal description");
                        self.stats.send_failed += 1;
                    }
                },
                Output::Agent(command) => self.agent_command(ctx, now, command),
                Output::Event(Event::StateChanged { from, to, trigger }) => {
                    info!(?from, ?to, ?trigger, "state");
                    let event = NodeEvent::StateChanged {
                        remote: self.channel.remote_key(),
                        from,
                        to,
                    };
                    if ctx.events.try_send(event).is_err() {
                        ctx.events_dropped += 1;
                    }
                }
                Output::Event(event) => info!(?event, "event"),
            }
        }
    }

    fn agent_command(&mut self, ctx: &Ctx, now: Instant, command: AgentCommand) {
        debug!(?command, "agent command");
        if let AgentCommand::Create {
            agent,
            credentials,
            role,
        } = &command
        {
            let remote = self.channel.remote_key();
            match IceSession::new(
                *agent,
                remote,
                credentials,
                *role,
                ctx.bind_ip,
                ctx.udp_tx.clone(),
            ) {
                Ok(ice) => self.ice = Some(ice),
                Err(e) => warn!(error = %e, "cannot create the ICE agent"),
            }
            return;
        }
        let Some(ice) = self.ice.as_mut() else {
            return;
        };
        match command {
            AgentCommand::Gather { agent } if agent == ice.id => ice.gather(),
            AgentCommand::AddRemoteCandidate { agent, candidate } if agent == ice.id => {
                ice.add_remote_candidate(&candidate);
            }
            AgentCommand::Connect { agent, remote } if agent == ice.id => ice.connect(now, &remote),
            AgentCommand::EndOfRemoteCandidates { .. } => {}
            AgentCommand::ReportState { agent } if agent == ice.id => ice.report_again(),
            AgentCommand::Close { agent } if agent == ice.id => self.ice = None,
            other => debug!(?other, "command for another agent"),
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

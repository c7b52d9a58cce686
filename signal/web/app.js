// The demo client: seed 003's signaling client over icepact-signal, and perfect negotiation
// (W3C WebRTC 1.0, "Perfect negotiation example") for one RTCPeerConnection with a data channel.
//
// The signaling states and their edges are not written here: the page loads them from
// /client.json (the table of icepact::room, the Rust client) and every change goes through
// go(), which refuses (and reports) a change the table does not have. The rules follow the
// Rust client's, named the same: ROOM_RECONNECT, ROOM_REJOIN, ROOM_ONE_TOKEN, ROOM_DEADLINES,
// ROOM_REFUSED.
"use strict";

const $ = (id) => document.getElementById(id);
const demo = {
  id: randomId(8),         // this member's id: roles are chosen by comparing ids
  token: randomId(16),     // ROOM_ONE_TOKEN: proposed with every join, so a retry never takes two seats
  state: "Disconnected",
  link: "Down",
  call: null,
  session: null,
  remoteId: null,
  attempt: 0,
  reconnects: 0,           // connections re-established after a loss
  rejoins: 0,              // ROOM_REJOIN: new seats taken after a session expired
  lastError: null,
  connectedCount: 0,       // times the RTCPeerConnection reached "connected"
  rollbacks: 0,            // glare resolved by rolling our offer back (polite side)
  ignoredOffers: 0,        // glare resolved by ignoring theirs (impolite side)
  received: [],            // chat messages received over the data channel
  violations: [],          // state changes the table refused
  log: [],
};
window.icepactDemo = demo;

let table = null;
let ws = null;
let timer = null;
let pc = null;
let dc = null;
let makingOffer = false;
let ignoreOffer = false;
let pending = [];                 // remote candidates waiting for a remote description
let inbox = Promise.resolve();    // remote messages, handled one at a time
let outbox = Promise.resolve();   // POST /signal, in order (a candidate never overtakes its offer)

// ?delay=N holds each incoming signaling message for N ms (a slow network; the glare test
// uses it to make both offers cross).
const DELAY_MS = Number(new URLSearchParams(location.search).get("delay")) || 0;
const DEADLINE_MS = 5000;         // ROOM_DEADLINES: join, open, handshake
const BACKOFF = { initial: 250, max: 5000, jitter: 0.25 };

function randomId(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function log(text) {
  const line = new Date().toISOString().slice(11, 23) + " " + text;
  demo.log.push(line);
  const el = $("log");
  el.textContent += line + "\n";
  el.scrollTop = el.scrollHeight;
}

// The one way the signaling state changes: along an edge of the Rust client's table.
function go(trigger) {
  const edge = table.edges.find(([from, t]) => from === demo.state && t === trigger);
  if (!edge) {
    const v = `no edge for ${trigger} from ${demo.state}`;
    demo.violations.push(v);
    log("TABLE VIOLATION: " + v);
    render();
    return false;
  }
  if (edge[2] !== demo.state) log(`${demo.state} → ${edge[2]} (${trigger})`);
  demo.state = edge[2];
  render();
  return true;
}
const inCall = () => demo.state === "Calling" || demo.state === "InCall";

function render() {
  $("state").textContent = demo.state;
  $("link").textContent = demo.link + (demo.link === "Down" && demo.state !== "Disconnected" ? ` (attempt ${demo.attempt})` : "");
  $("link").className = demo.link === "Up" ? "up" : "down";
  $("seat").textContent = demo.session ? demo.call + " · " + demo.session.slice(0, 6) + "…" : "none";
  $("pc").textContent = pc ? pc.connectionState : "none";
  $("dc").textContent = dc ? dc.readyState : "none";
  $("role").textContent = demo.remoteId ? (polite() ? "polite" : "impolite") : "–";
  $("violations").textContent = demo.violations.join("; ");
  const joined = demo.state !== "Disconnected";
  $("join").disabled = joined;
  $("call-name").disabled = joined;
  $("leave").disabled = !joined;
  $("call").disabled = !joined || demo.state === "Connecting" || (pc && pc.connectionState === "connected");
  $("hangup").disabled = !inCall();
  const open = dc && dc.readyState === "open";
  $("message").disabled = !open;
  $("send").disabled = !open;
}

// The smaller id is impolite, as icepact's smaller key controls.
const polite = () => demo.id > demo.remoteId;

// ---- Signaling connection (ROOM_RECONNECT, ROOM_REJOIN, ROOM_DEADLINES, ROOM_REFUSED) ----

function arm(ms, fire) {
  clearTimeout(timer);
  timer = setTimeout(fire, ms);
}

async function attempt() {
  if (demo.state === "Disconnected") return;
  if (demo.session) return openSocket();
  demo.link = "Joining";
  render();
  arm(DEADLINE_MS, () => lost("join deadline"));
  let response;
  try {
    response = await fetch("/call/" + encodeURIComponent(demo.call) + "?session=" + demo.token);
  } catch (e) {
    return lost("join failed: " + e);
  }
  if (demo.link !== "Joining") return;
  if (response.status === 409 || response.status === 400) {
    // ROOM_REFUSED: retrying cannot fix these; in a call the seat is gone for good.
    clearTimeout(timer);
    demo.lastError = response.status === 409 ? "full" : "invalid";
    log(`join refused: ${response.status} (${demo.lastError === "full" ? "every seat is taken" : "invalid call name"})`);
    if (inCall()) go("Hangup");
    if (demo.state === "InRoom") go("SocketLost");
    go("Refused");
    demo.link = "Down";
    closePeer();
    render();
    return;
  }
  if (!response.ok) return lost("join failed: " + response.status);
  const join = await response.json();
  demo.session = join.session;
  demo.token = join.session;
  if (demo.joinedBefore) demo.rejoins++;
  demo.joinedBefore = true;
  log("seat taken in " + join.call);
  openSocket();
}

function openSocket() {
  demo.link = "Opening";
  render();
  arm(DEADLINE_MS, () => lost("open deadline"));
  const socket = new WebSocket(`ws://${location.host}/ws`);
  ws = socket;
  socket.onopen = () => {
    if (ws !== socket) return;
    if (demo.state === "Connecting") go("SocketOpen");
    demo.link = "Handshaking";
    socket.send(JSON.stringify({ kind: "JOIN", call: demo.call, session: demo.session }));
    arm(DEADLINE_MS, () => lost("handshake deadline"));
    render();
  };
  socket.onmessage = (event) => {
    if (ws !== socket) return;
    let m;
    try { m = JSON.parse(event.data); } catch (_) { return; }
    if (m.kind === "WELCOME" && demo.link === "Handshaking") {
      clearTimeout(timer);
      go("Welcome");
      demo.link = "Up";
      if (demo.attempt > 0) demo.reconnects++;
      demo.attempt = 0;
      log("in the room" + (inCall() ? " (the call went on meanwhile)" : ""));
      render();
    } else if (demo.link === "Up" && m.kind === "AVAILABLE") {
      log("another member is available");
    } else if (demo.link === "Up" && ["OFFER", "ANSWER", "CANDIDATE"].includes(m.kind)) {
      let body;
      try { body = JSON.parse(m.body); } catch (_) { return; }
      const handle = () => {
        inbox = inbox.then(() => handleSignal(body)).catch((e) => log("signal: " + e));
      };
      if (DELAY_MS > 0) setTimeout(handle, DELAY_MS); else handle();
    }
  };
  socket.onclose = (event) => {
    if (ws !== socket) return;
    if (event.code === 4001) expire();
    lost(`closed (${event.code})`, event.code);
  };
}

// ROOM_REJOIN: the service no longer knows the token.
function expire() {
  if (demo.session) log("session expired: joining again");
  demo.session = null;
}

// ROOM_RECONNECT: back-off with jitter; at once after a graceful shutdown (1001).
function lost(reason, code) {
  if (demo.state === "Disconnected") return;
  const socket = ws;
  ws = null;
  if (socket) { socket.onclose = null; try { socket.close(); } catch (_) {} }
  go("SocketLost");
  demo.link = "Down";
  const a = demo.attempt;
  demo.attempt++;
  const nominal = Math.min(BACKOFF.initial * 2 ** a, BACKOFF.max);
  const delay = code === 1001 && a === 0 ? 0 : nominal * (1 - BACKOFF.jitter + 2 * BACKOFF.jitter * Math.random());
  log(`signaling lost: ${reason}; reconnecting in ${Math.round(delay)} ms (attempt ${demo.attempt})`);
  render();
  arm(delay, attempt);
}

function join() {
  demo.call = $("call-name").value.trim();
  demo.lastError = null;
  if (!go("Connect")) return;
  demo.attempt = 0;
  attempt();
}

function leave() {
  clearTimeout(timer);
  const socket = ws;
  ws = null;
  if (socket) { socket.onclose = null; socket.close(1000); }
  closePeer();
  go("Leave");
  demo.link = "Down";
  demo.session = null;
  demo.joinedBefore = false;
  render();
}

// POST /signal, one at a time and in order. A 409 means the session expired (ROOM_REJOIN).
function post(kind, payload) {
  const message = { kind, call: demo.call, session: demo.session, body: JSON.stringify({ from: demo.id, ...payload }) };
  outbox = outbox.then(async () => {
    if (!message.session) return;
    try {
      // ROOM_DEADLINES: a post that hangs must not hold every later one behind it.
      const r = await fetch("/signal", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(message),
        signal: AbortSignal.timeout(DEADLINE_MS),
      });
      if (r.status === 409 && demo.session === message.session) {
        expire();
        if (ws) lost("publish refused (409)", 4001);
      } else if (!r.ok) {
        log(`publish ${kind}: ${r.status}`);
      }
    } catch (e) {
      log(`publish ${kind} failed: ${e}`);
    }
  });
}

// ---- The call: perfect negotiation ----

function makePeer() {
  pc = new RTCPeerConnection({ iceServers: [] });
  // Negotiated with a fixed id on both sides: one channel, whoever offers first.
  dc = pc.createDataChannel("chat", { negotiated: true, id: 0 });
  const mine = pc;
  dc.onopen = () => { log("data channel open"); render(); };
  dc.onclose = () => render();
  dc.onmessage = (e) => {
    demo.received.push(e.data);
    $("chat").textContent += "them: " + e.data + "\n";
  };
  pc.onicecandidate = ({ candidate }) => {
    if (pc === mine) post("CANDIDATE", { candidate: candidate ? candidate.toJSON() : null });
  };
  pc.onconnectionstatechange = () => {
    if (pc !== mine) return;
    if (pc.connectionState === "connected") {
      demo.connectedCount++;
      log("peer connection connected");
    }
    render();
  };
  pc.onnegotiationneeded = async () => {
    try {
      makingOffer = true;
      await mine.setLocalDescription();
      if (pc !== mine || mine.signalingState !== "have-local-offer") return;
      post("OFFER", { description: mine.localDescription.toJSON() });
      go("OfferSent");
    } catch (e) {
      log("offer: " + e);
    } finally {
      makingOffer = false;
    }
  };
}

function closePeer() {
  if (pc) pc.close();
  pc = null;
  dc = null;
  pending = [];
  makingOffer = false;
  ignoreOffer = false;
}

function call() {
  if (pc && pc.connectionState !== "closed" && pc.connectionState !== "failed") return;
  closePeer();
  makePeer(); // negotiationneeded fires: the offer goes out
  render();
}

function hangup() {
  closePeer();
  if (inCall()) go("Hangup");
}

async function handleSignal(m) {
  if (typeof m.from !== "string" || m.from === demo.id) return;
  if (m.from !== demo.remoteId) {
    // NEW_REMOTE: a message from another member means the old one lost its seat (two seats).
    if (demo.remoteId) {
      log("a new member: the old call is over");
      closePeer();
      if (inCall()) go("Hangup");
    }
    demo.remoteId = m.from;
    render();
  }
  if (m.description) {
    const d = m.description;
    if (!pc) makePeer();
    const collision = d.type === "offer" && (makingOffer || pc.signalingState !== "stable");
    ignoreOffer = !polite() && collision;
    if (ignoreOffer) {
      demo.ignoredOffers++;
      log("glare: ignoring their offer (impolite)");
      return;
    }
    if (d.type === "answer" && pc.signalingState !== "have-local-offer") return; // stale answer
    if (collision) {
      demo.rollbacks++;
      log("glare: rolling our offer back (polite)");
    }
    await pc.setRemoteDescription(d); // rolls back our offer first if needed
    for (const c of pending.splice(0)) await addCandidate(c);
    if (d.type === "offer") {
      await pc.setLocalDescription();
      post("ANSWER", { description: pc.localDescription.toJSON() });
      go("OfferReceived");
    } else {
      go("AnswerReceived");
    }
  } else if ("candidate" in m) {
    // Candidates wait until a remote description exists (seed 003's "common mistake").
    if (!pc || !pc.remoteDescription) pending.push(m.candidate);
    else await addCandidate(m.candidate);
  }
}

async function addCandidate(c) {
  if (!c) return;
  try {
    await pc.addIceCandidate(c);
  } catch (e) {
    if (!ignoreOffer) log("candidate: " + e);
  }
}

function send() {
  const text = $("message").value;
  if (!dc || dc.readyState !== "open" || !text) return;
  dc.send(text);
  $("chat").textContent += "me: " + text + "\n";
  $("message").value = "";
}

$("join").onclick = join;
$("leave").onclick = leave;
$("call").onclick = call;
$("hangup").onclick = hangup;
$("send").onclick = send;
$("message").onkeydown = (e) => { if (e.key === "Enter") send(); };

fetch("/client.json").then((r) => r.json()).then((t) => {
  table = t;
  demo.ready = true;
  log(`client table loaded: ${t.states.length} states, ${t.edges.length} edges; my id ${demo.id}`);
  render();
});

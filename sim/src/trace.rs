//! Run traces: recorded when asked for, exported as JSON Lines and as a Mermaid
//! `sequenceDiagram`, and hashed so two runs can be compared.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceKind {
    /// A description was handed to the backend.
    Send {
        /// Sender node.
        from: usize,
        /// Recipient node.
        to: usize,
        /// Sender's epoch.
        epoch: u64,
        /// Version.
        version: u32,
        /// Acknowledged (epoch, version).
        ack: Option<(u64, u32)>,
        /// Reply wanted.
        need_reply: bool,
        /// Candidates carried.
        candidates: usize,
        /// What the backend did with it.
        fate: String,
    },
    /// A description reached a peer.
    Deliver {
        /// Sender node.
        from: usize,
        /// Recipient node.
        to: usize,
        /// Sender's epoch.
        epoch: u64,
        /// Version.
        version: u32,
        /// What the peer did with it.
        disposition: String,
    },
    /// An agent report reached a peer.
    Agent {
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
        /// The agent that reported.
        agent: u64,
        /// The report.
        event: String,
        /// How long before the current instant it was stamped (rule LATE_INPUT), in µs.
        early_us: u64,
        /// What the peer did with it.
        disposition: String,
    },
    /// A state change of the peer of `node` towards `remote`.
    State {
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// A session restart.
    Restart {
        /// Node.
        node: usize,
        /// Remote.
        remote: usize,
        /// Why.
        cause: String,
    },
    /// A fault or a milestone.
    Fault {
        /// What.
        what: String,
    },
    /// An invariant was violated.
    Violation {
        /// What.
        what: String,
    },
}

/// One trace line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Virtual time in microseconds.
    pub at_us: u64,
    /// What.
    #[serde(flatten)]
    pub kind: TraceKind,
}

/// A run's trace (empty unless enabled).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    enabled: bool,
    entries: Vec<TraceEntry>,
}

/// FNV-1a, 64 bit: a stable hash (std's `DefaultHasher` may change between Rust versions).
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

impl Trace {
    /// A trace that records if `enabled`.
    pub fn new(enabled: bool) -> Trace {
        Trace {
            enabled,
            entries: Vec::new(),
        }
    }

    /// Records an entry (if enabled).
    pub fn push(&mut self, at: Duration, kind: TraceKind) {
        if self.enabled {
            self.entries.push(TraceEntry {
                at_us: at.as_micros() as u64,
                kind,
            });
        }
    }

    /// True if it records.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The entries.
    pub fn entries(&self) -> &[TraceEntry] {
        &self.entries
    }

    /// A stable hash of every entry (0 when not enabled).
    pub fn hash(&self) -> u64 {
        if !self.enabled {
            return 0;
        }
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        self.entries.hash(&mut h);
        h.finish()
    }

    /// JSON Lines, one entry per line.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            // Plain data with struct variants and string keys always serialises.
            out.push_str(&serde_json::to_string(e).expect("trace entries serialise"));
            out.push('\n');
        }
        out
    }

    /// A Mermaid `sequenceDiagram` of the messages, state changes and faults (at most
    /// `limit` lines, so it stays readable).
    pub fn to_mermaid(&self, nodes: usize, limit: usize) -> String {
        let mut out = String::from("sequenceDiagram\n");
        for n in 0..nodes {
            out.push_str(&format!("    participant N{n}\n"));
        }
        for e in self.entries.iter().take(limit) {
            let t = e.at_us as f64 / 1e6;
            let line = match &e.kind {
                TraceKind::Send {
                    from,
                    to,
                    epoch,
                    version,
                    ack,
                    need_reply,
                    fate,
                    ..
                } => {
                    let arrow = if fate == "sent" || fate == "duplicated" {
                        "->>"
                    } else {
                        "-x"
                    };
                    let ack = ack.map_or("-".to_string(), |(e, v)| format!("{e}v{v}"));
                    format!(
                        "N{from}{arrow}N{to}: t={t:.3} e{epoch}v{version} ack {ack}{}{}",
                        if *need_reply { " need" } else { "" },
                        if fate == "sent" {
                            String::new()
                        } else {
                            format!(" ({fate})")
                        }
                    )
                }
                TraceKind::State {
                    node,
                    remote,
                    from,
                    to,
                } => {
                    format!("Note over N{node}: t={t:.3} to N{remote}: {from} → {to}")
                }
                TraceKind::Restart {
                    node,
                    remote,
                    cause,
                } => {
                    format!("Note over N{node}: restart towards N{remote}: {cause}")
                }
                TraceKind::Fault { what: f } => {
                    format!("Note over N0: t={t:.3} {}", f.replace(['{', '}'], ""))
                }
                TraceKind::Violation { what: v } => format!("Note over N0: VIOLATION {v}"),
                TraceKind::Deliver { .. } | TraceKind::Agent { .. } => continue,
            };
            out.push_str("    ");
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

//! Stateright models of the icepact core.
//!
//! [`IceModel`] drives the real [`icepact::Peer`] values of a 2- or 3-node mesh through an
//! adversarial environment with budgets (unordered network, drops, replays, crashes, agent
//! failures, timers) and checks the named [`properties`] built on [`icepact::invariants`].
//!
//! [`check`] is the library entry point: it runs one configuration and returns one
//! [`VerdictRow`] per property; [`format_table`] prints rows as a verdict table. Exhaustiveness
//! is tracked here (stateright's `is_done()` is true after any run). A breadth-first run's
//! counterexamples are shortest; a depth-first run's are the paths its search took, shortened
//! by [`shorten`] (no step can be left out any more, but a shorter path may exist).
//!
//! See docs/MODEL-CHECKING.md for the properties, budgets and results.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bfs;
pub mod dfs;
pub mod endpoint_mesh;
pub mod model;
pub mod properties;
pub mod room_client;
pub mod seats;
pub mod shared;
pub mod trace;

use std::fmt::Write as _;
use std::time::Duration;

use stateright::Model as _;

pub use icepact::reference_agent::AgentKind;
pub use icepact::{AgentRestart, RestartPolicy};
use model::Msg;
pub use model::{Action, Budgets, IceModel, State};

/// Which search explores the state space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Our breadth-first search ([`bfs::search`]): single-threaded, shortest discoveries.
    Bfs,
    /// Our depth-first search ([`dfs::search`]): multi-threaded, memory bounded by the depth;
    /// counterexamples are its paths, shortened by [`shorten`].
    Dfs,
}

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Nodes in the mesh (2 or 3).
    pub peers: usize,
    /// The restart rule of every peer.
    pub policy: RestartPolicy,
    /// Environment budgets.
    pub budgets: Budgets,
    /// The search.
    pub engine: Engine,
    /// Threads of the DFS checker.
    pub threads: usize,
    /// Stop after this long (the run is then not exhaustive).
    pub timeout: Option<Duration>,
    /// Which real agent the reference agent behaves like.
    pub agent: AgentKind,
    /// Partial-order reduction of independent sessions (3 peers only; see
    /// [`IceModel::reduce`]).
    pub reduction: bool,
    /// How every peer replaces its agent on a restart (rule AGENT_RESTART).
    pub agent_restart: AgentRestart,
    /// Split a crash of a mesh node into one step per session ([`IceModel::split_crash`]).
    pub split_crash: bool,
    /// Only the sessions of node A ([`IceModel::star`]; 3 peers only).
    pub star: bool,
}

impl Default for CheckOptions {
    /// The default configuration: 2 peers, the Epoch policy, default budgets, DFS on 2 threads.
    fn default() -> Self {
        CheckOptions {
            peers: 2,
            policy: RestartPolicy::Epoch,
            budgets: Budgets::TWO_PEERS,
            engine: Engine::Dfs,
            threads: 2,
            timeout: None,
            agent: AgentKind::Libwebrtc,
            reduction: true,
            agent_restart: AgentRestart::Recreate,
            split_crash: false,
            star: false,
        }
    }
}

impl CheckOptions {
    /// The standard suite: 2 peers (default, replay and lossy budgets) and 3 peers under the
    /// Epoch policy, 2 peers under Seed.
    pub fn suite() -> Vec<CheckOptions> {
        let two = CheckOptions::default();
        vec![
            two.clone(),
            CheckOptions {
                budgets: Budgets::TWO_PEERS_REPLAY,
                ..two.clone()
            },
            CheckOptions {
                budgets: Budgets::TWO_PEERS_LOSSY,
                ..two.clone()
            },
            CheckOptions {
                peers: 3,
                budgets: Budgets::THREE_PEERS,
                ..two.clone()
            },
            CheckOptions {
                policy: RestartPolicy::Seed,
                ..two
            },
        ]
    }

    /// A short label of the configuration: `2 peers epoch d1 r1 c1 f1 l1 x0 q0 t1/4 k2
    /// libwebrtc` (drops, replays, crashes, failures, lost reports, quirks, restart requests,
    /// early timers / timer cap, link capacity, agent kind).
    pub fn label(&self) -> String {
        let b = &self.budgets;
        let policy = match self.policy {
            RestartPolicy::Epoch => "epoch",
            RestartPolicy::Seed => "seed",
        };
        format!(
            "{} peers {policy} d{} r{} c{} f{} l{} x{} q{} t{}/{}{} k{} {:?}{}{}{}{}",
            self.peers,
            b.drops,
            b.replays,
            b.crashes,
            b.failures,
            b.lost_events,
            b.quirks,
            b.restarts,
            b.early_timers,
            b.timer_cap,
            if b.recovery > 0 {
                format!("+{}", b.recovery)
            } else {
                String::new()
            },
            b.link_capacity,
            self.agent,
            if self.agent_restart == AgentRestart::InPlace {
                " in-place"
            } else {
                ""
            },
            if self.reduction || self.peers < 3 {
                ""
            } else {
                " unreduced"
            },
            if self.split_crash && self.reduction && self.peers > 2 {
                " split-crash"
            } else {
                ""
            },
            if self.star && self.peers > 2 {
                " star"
            } else {
                ""
            }
        )
    }

    /// The model these options check.
    pub fn model(&self) -> IceModel {
        let mut model = IceModel::with_agent(self.peers, self.policy, self.budgets, self.agent)
            .with_agent_restart(self.agent_restart);
        model.reduction = self.reduction;
        model.split_crash = self.split_crash;
        if self.star {
            model = model.star();
        }
        model
    }
}

/// The outcome of one property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An invariant held in every visited state.
    Holds,
    /// An invariant was violated.
    Violated,
    /// A sanity example was found.
    Found,
    /// No sanity example was found (a failure if the run was exhaustive).
    NotFound,
}

impl Outcome {
    /// True for the outcomes that are failures.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Violated | Outcome::NotFound)
    }
}

/// One line of the verdict table: a property in a configuration.
#[derive(Clone, Debug)]
pub struct VerdictRow {
    /// The property.
    pub property: &'static str,
    /// `always` or `sometimes`.
    pub always: bool,
    /// The rule it checks.
    pub rule: &'static str,
    /// The configuration ([`CheckOptions::label`]).
    pub config: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Unique states of the run.
    pub unique_states: usize,
    /// Deepest path of the run (initial state = 1).
    pub max_depth: usize,
    /// Seconds of the run.
    pub seconds: f64,
    /// Every reachable state was visited.
    pub exhaustive: bool,
    /// Actions in the shortest counterexample, if violated.
    pub path_len: Option<usize>,
    /// The counterexample as a numbered step list.
    pub trace: Option<String>,
    /// The counterexample as a Mermaid `sequenceDiagram`.
    pub mermaid: Option<String>,
}

/// The verdict rows of a finished breadth-first search of a small model (the seats, the room
/// client): one per property, with the rule `rule_of` names for it.
pub fn rows_of<M: stateright::Model>(
    model: &M,
    out: &bfs::SearchOutcome<M::Action>,
    config: &str,
    rule_of: fn(&str) -> &'static str,
) -> Vec<VerdictRow>
where
    M::Action: std::fmt::Debug,
{
    model
        .properties()
        .iter()
        .map(|p| {
            let always = matches!(p.expectation, stateright::Expectation::Always);
            let path = out.discoveries.get(p.name);
            let outcome = match (always, path.is_some()) {
                (true, false) => Outcome::Holds,
                (true, true) => Outcome::Violated,
                (false, true) => Outcome::Found,
                (false, false) => Outcome::NotFound,
            };
            let trace = path.filter(|_| always).map(|actions| {
                actions
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("  {}. {a:?}\n", i + 1))
                    .collect::<String>()
            });
            VerdictRow {
                property: p.name,
                always,
                rule: rule_of(p.name),
                config: config.to_owned(),
                outcome,
                unique_states: out.unique_states,
                max_depth: out.max_depth,
                seconds: out.seconds,
                exhaustive: out.exhaustive,
                path_len: path.filter(|_| always).map(Vec::len),
                trace,
                mermaid: None,
            }
        })
        .collect()
}

/// Checks one configuration and returns a row per property, in [`properties::PROPERTIES`]
/// order.
pub fn check(opts: &CheckOptions) -> Vec<VerdictRow> {
    let model = opts.model();
    let (unique, depth, seconds, exhaustive, mut found) = match opts.engine {
        Engine::Bfs => {
            let out = bfs::search(
                &model,
                &bfs::Limits {
                    timeout: opts.timeout,
                    ..bfs::Limits::default()
                },
            );
            let found: Vec<(&'static str, Option<Vec<Action>>)> = out
                .discoveries
                .into_iter()
                .map(|(n, p)| (n, Some(p)))
                .collect();
            (
                out.unique_states,
                out.max_depth,
                out.seconds,
                out.exhaustive,
                found,
            )
        }
        Engine::Dfs => {
            let out = dfs::search(&model, opts.threads, opts.timeout);
            let found: Vec<(&'static str, Option<Vec<Action>>)> = out
                .discovered
                .iter()
                .map(|n| {
                    let path = out.paths.iter().find(|(p, _)| p == n).map(|(_, p)| p);
                    (*n, path.map(|p| shorten(&model, n, p)))
                })
                .collect();
            (
                out.unique_states,
                out.max_depth,
                out.seconds,
                out.exhaustive,
                found,
            )
        }
    };
    let mut rows = Vec::new();
    for info in properties::PROPERTIES {
        let discovered = found.iter_mut().find(|(n, _)| *n == info.name);
        let outcome = match (info.always, discovered.is_some()) {
            (true, false) => Outcome::Holds,
            (true, true) => Outcome::Violated,
            (false, true) => Outcome::Found,
            (false, false) => Outcome::NotFound,
        };
        let mut row = VerdictRow {
            property: info.name,
            always: info.always,
            rule: info.rule,
            config: opts.label(),
            outcome,
            unique_states: unique,
            max_depth: depth,
            seconds,
            exhaustive,
            path_len: None,
            trace: None,
            mermaid: None,
        };
        if outcome == Outcome::Violated {
            let path = match discovered.and_then(|(_, p)| p.take()) {
                Some(p) => Some(p),
                None => {
                    // The breadth-first search can take as long as the check itself: say why.
                    eprintln!(
                        "{} violated after {unique} states; searching breadth-first for a \
                         shortest counterexample",
                        info.name
                    );
                    shortest_counterexample(&model, info.name, opts.timeout)
                }
            };
            if let Some(path) = path {
                row.path_len = Some(path.len());
                row.trace = Some(trace::text(&model, &path));
                row.mermaid = Some(trace::mermaid(&model, &path));
            }
        }
        rows.push(row);
    }
    rows
}

/// Shortens a path to a state violating `property`, delta-debugging style: leaves out runs of
/// steps (halves, quarters, … single steps), keeping each omission after which the remaining
/// actions are still enabled in turn and still reach a violation (cut at the first), until no
/// single step can be left out. Actions that name a message by its index (deliver, drop,
/// duplicate, replay) name it by content instead, so leaving out an earlier step does not make
/// them point at another message. The result is a valid counterexample; a shorter one may
/// exist (breadth-first search finds the shortest, at the cost of holding a whole level of
/// states).
pub fn shorten(model: &IceModel, property: &str, path: &[Action]) -> Vec<Action> {
    let Some(prop) = model.properties().into_iter().find(|p| p.name == property) else {
        return path.to_vec();
    };
    // The message an index-naming action names in `state`.
    let named = |state: &State, a: &Action| -> Option<Msg> {
        match *a {
            Action::Deliver(i) | Action::Drop(i) | Action::Duplicate(i) => {
                state.net.get(i).map(|m| (**m).clone())
            }
            Action::Replay(i) => state.history.get(i).map(|m| (**m).clone()),
            _ => None,
        }
    };
    // The action `a` with its index pointing at `msg` in `state` (the first equal message).
    let renamed = |state: &State, a: &Action, msg: &Msg| -> Option<Action> {
        let pos = |list: &[shared::Shared<Msg>]| list.iter().position(|m| **m == *msg);
        Some(match *a {
            Action::Deliver(_) => Action::Deliver(pos(&state.net)?),
            Action::Drop(_) => Action::Drop(pos(&state.net)?),
            Action::Duplicate(_) => Action::Duplicate(pos(&state.net)?),
            Action::Replay(_) => Action::Replay(pos(&state.history)?),
            _ => a.clone(),
        })
    };
    // Runs `steps`; on a violation returns the steps taken up to it, with indices as taken.
    let run = |steps: &[(Action, Option<Msg>)]| -> Option<Vec<(Action, Option<Msg>)>> {
        let mut state = model.init_states().into_iter().next()?;
        if !(prop.condition)(model, &state) {
            return Some(Vec::new());
        }
        let mut taken = Vec::new();
        let mut enabled = Vec::new();
        for (a, msg) in steps {
            let a = match msg {
                Some(m) => renamed(&state, a, m)?,
                None => a.clone(),
            };
            enabled.clear();
            model.actions(&state, &mut enabled);
            if !enabled.contains(&a) {
                return None;
            }
            let msg = named(&state, &a);
            state = model.next_state(&state, a.clone())?;
            taken.push((a, msg));
            if !(prop.condition)(model, &state) {
                return Some(taken);
            }
        }
        None
    };
    let plain: Vec<(Action, Option<Msg>)> = path.iter().map(|a| (a.clone(), None)).collect();
    let Some(mut best) = run(&plain) else {
        // Not a counterexample of this property (cannot happen for a path the search
        // recorded): return it unchanged rather than a wrong shortening.
        return path.to_vec();
    };
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut shorter = false;
        let mut end = best.len();
        while end > 0 {
            let from = end.saturating_sub(chunk);
            let mut candidate = best.clone();
            candidate.drain(from..end);
            match run(&candidate) {
                Some(taken) => {
                    end = from.min(taken.len());
                    best = taken;
                    shorter = true;
                }
                None => end = from,
            }
        }
        if chunk > 1 {
            chunk = chunk.div_ceil(2);
        } else if !shorter {
            return best.into_iter().map(|(a, _)| a).collect();
        }
    }
}

/// A shortest path to a state violating `property` (breadth-first, stopping at the first).
pub fn shortest_counterexample(
    model: &IceModel,
    property: &'static str,
    timeout: Option<Duration>,
) -> Option<Vec<Action>> {
    let out = bfs::search(
        model,
        &bfs::Limits {
            timeout,
            stop_on: Some(property),
            ..bfs::Limits::default()
        },
    );
    out.discoveries.get(property).cloned()
}

/// Formats rows as a verdict table, followed by every counterexample (trace and Mermaid).
pub fn format_table(rows: &[VerdictRow]) -> String {
    let mut out = String::new();
    let w = rows
        .iter()
        .map(|r| r.property.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let cw = rows
        .iter()
        .map(|r| r.config.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<w$}  {:<9}  {:<cw$}  {:<9}  {:>10}  {:>5}  {:>8}  {:<10}  {:>4}",
        "property", "kind", "config", "verdict", "states", "depth", "seconds", "exhaustive", "path"
    );
    for r in rows {
        let verdict = match r.outcome {
            Outcome::Holds => "holds",
            Outcome::Violated => "VIOLATED",
            Outcome::Found => "found",
            Outcome::NotFound => "NOT FOUND",
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:<9}  {:<cw$}  {:<9}  {:>10}  {:>5}  {:>8.2}  {:<10}  {:>4}",
            r.property,
            if r.always { "always" } else { "sometimes" },
            r.config,
            verdict,
            r.unique_states,
            r.max_depth,
            r.seconds,
            if r.exhaustive { "yes" } else { "no" },
            r.path_len.map_or("-".to_string(), |n| n.to_string()),
        );
    }
    for r in rows.iter().filter(|r| r.trace.is_some()) {
        let _ = writeln!(
            out,
            "\n### {} violated ({}), counterexample: {} steps\n",
            r.property,
            r.config,
            r.path_len.unwrap_or(0)
        );
        if let Some(t) = &r.trace {
            out.push_str(t);
        }
        if let Some(m) = &r.mermaid {
            let _ = write!(out, "\n```mermaid\n{m}```\n");
        }
    }
    out
}

/// True if no row is a failure: every invariant holds and every sanity example was found.
pub fn all_pass(rows: &[VerdictRow]) -> bool {
    rows.iter().all(|r| !r.outcome.is_failure())
}

//! Readable traces: a numbered step list and a Mermaid `sequenceDiagram` of a path.

use std::fmt::Write as _;

use stateright::Model;

use crate::model::{Action, IceModel, Note, State};

/// One step of a path: the action in words and what it caused.
#[derive(Clone, Debug)]
pub struct Step {
    /// The action, described in the state it was taken in.
    pub action: Action,
    /// The action in words.
    pub text: String,
    /// What happened.
    pub notes: Vec<Note>,
}

/// Replays `actions` from the initial state, recording every step. The initial state's own
/// notes (first sends) are step 0 with no action.
pub fn replay(model: &IceModel, actions: &[Action]) -> (Vec<Step>, Option<State>) {
    let Some(mut state) = model.init_states().into_iter().next() else {
        return (Vec::new(), None);
    };
    let mut steps = Vec::new();
    for a in actions {
        let mut notes = Vec::new();
        let text = model.describe(&state, a);
        state = model.step(&state, a, Some(&mut notes));
        steps.push(Step {
            action: a.clone(),
            text,
            notes,
        });
    }
    (steps, Some(state))
}

/// A note in words.
pub fn note_text(model: &IceModel, n: &Note) -> String {
    match n {
        Note::Send { from, d } => format!("{} sends {d}", model.end_name(*from)),
        Note::State { end, from, to } => format!("{}: {from} -> {to}", model.end_name(*end)),
        Note::Restarted { end, cause } => format!("{} restarts ({cause})", model.end_name(*end)),
        Note::Ignored { end, reason } => format!("{} ignores it: {reason}", model.end_name(*end)),
        Note::Agent { end, cmd } => format!("{} agent: {cmd}", model.end_name(*end)),
        Note::Violation(v) => format!("VIOLATION {v}"),
    }
}

/// The numbered step list of a path, with the final state of every peer end.
pub fn text(model: &IceModel, actions: &[Action]) -> String {
    let (steps, last) = replay(model, actions);
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(out, "{:>3}. {}", i + 1, step.text);
        for n in &step.notes {
            // Agent bookkeeping is noise in a trace; state changes and messages tell the story.
            if matches!(n, Note::Agent { .. }) {
                continue;
            }
            let _ = writeln!(out, "       {}", note_text(model, n));
        }
    }
    if let Some(s) = last {
        let _ = writeln!(out, "     final:");
        for (e, end) in s.ends.iter().enumerate() {
            let _ = writeln!(
                out,
                "       {} {} local {:?} bound {:?} restarts {}",
                model.end_name(e),
                end.peer.state(),
                end.peer.local_session().map(|r| (r.epoch, r.version)),
                end.peer.remote_session().map(|r| (r.epoch, r.version)),
                end.peer.restarts()
            );
        }
        if let Some(d) = &s.detail {
            let _ = writeln!(out, "       first violation: {d}");
        }
    }
    out
}

/// The path as a Mermaid `sequenceDiagram`: deliveries are arrows, faults and state changes
/// are notes.
pub fn mermaid(model: &IceModel, actions: &[Action]) -> String {
    let Some(init) = model.init_states().into_iter().next() else {
        return String::new();
    };
    let mut out = String::from("sequenceDiagram\n");
    for n in 0..model.peers {
        let _ = writeln!(out, "    participant {}", IceModel::node_name(n));
    }
    let last = IceModel::node_name(model.peers - 1);
    let _ = writeln!(
        out,
        "    Note over A,{last}: e100v2 = session epoch 100, version 2 · ack=e101v1 = the newest \
         remote description applied · reply = an answer is asked for · 1c = one candidate · \
         eoc = end of candidates · dashed arrow = replayed or duplicated by the backend · x = \
         lost"
    );
    let node = |e: usize| IceModel::node_name(model.node_of(e));
    let mut state = init;
    for a in actions {
        let mut notes = Vec::new();
        let next = model.step(&state, a, Some(&mut notes));
        match *a {
            Action::Deliver(i) => {
                let m = &state.net[i];
                let _ = writeln!(
                    out,
                    "    {}->>{}: {}",
                    node(m.to ^ 1),
                    node(m.to),
                    crate::model::short(&m.d)
                );
            }
            Action::Replay(i) => {
                let m = &state.history[i];
                let _ = writeln!(
                    out,
                    "    {}--){}: replayed {}",
                    node(m.to ^ 1),
                    node(m.to),
                    crate::model::short(&m.d)
                );
            }
            Action::Duplicate(i) => {
                let m = &state.net[i];
                let _ = writeln!(
                    out,
                    "    {}--){}: second copy of {}",
                    node(m.to ^ 1),
                    node(m.to),
                    crate::model::short(&m.d)
                );
            }
            Action::Drop(i) => {
                let m = &state.net[i];
                let _ = writeln!(
                    out,
                    "    {}-x{}: lost {}",
                    node(m.to ^ 1),
                    node(m.to),
                    crate::model::short(&m.d)
                );
            }
            Action::Meet(p) => {
                let _ = writeln!(
                    out,
                    "    {}-->>{}: ICE connected",
                    node(2 * p),
                    node(2 * p + 1)
                );
            }
            Action::Crash(n, floor) => {
                let floor = match floor {
                    crate::model::Floor::Above => "above every epoch it used",
                    crate::model::Floor::Equal => "equal to the old process's floor",
                    crate::model::Floor::Zero => "zero",
                };
                let _ = writeln!(
                    out,
                    "    Note over {}: crash: state lost; the new process starts its epochs {floor}",
                    IceModel::node_name(n)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "    Note over {}: {}",
                    node(action_end(a)),
                    model.describe(&state, a)
                );
            }
        }
        for n in &notes {
            match n {
                Note::State { end, from, to } => {
                    let _ = writeln!(out, "    Note over {}: {from} → {to}", node(*end));
                }
                Note::Restarted { end, cause } => {
                    let _ = writeln!(
                        out,
                        "    Note over {}: restart: {}",
                        node(*end),
                        words(cause)
                    );
                }
                Note::Violation(v) => {
                    // On the node the detail names ("B: ..." or "B(C): ..."), highlighted.
                    let at = v
                        .split(": ")
                        .nth(1)
                        .and_then(|d| d.chars().next())
                        .filter(|c| (b'A'..b'A' + model.peers as u8).contains(&(*c as u8)))
                        .unwrap_or(IceModel::node_name(0));
                    let _ = writeln!(
                        out,
                        "    rect rgb(255, 200, 200)\n    Note over {at}: VIOLATION {}\n    end",
                        words(v).replace(';', ",")
                    );
                }
                _ => {}
            }
        }
        state = next;
    }
    out
}

/// `Debug` text in words: `Some(SessionRef { epoch: 100, version: 1 })` → `e100v1`,
/// `RemoteRestart { from: .., to: .. }` → `RemoteRestart from e100v1 to e1100v0`.
fn words(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(i) = out.find("SessionRef { epoch: ") {
        let rest = &out[i + "SessionRef { epoch: ".len()..];
        let Some((epoch, rest)) = rest.split_once(", version: ") else {
            break;
        };
        let Some((version, _)) = rest.split_once(" }") else {
            break;
        };
        let end = i
            + "SessionRef { epoch: ".len()
            + epoch.len()
            + ", version: ".len()
            + version.len()
            + " }".len();
        out.replace_range(i..end, &format!("e{epoch}v{version}"));
    }
    out.replace("Some(", "(")
        .replace(" { from: ", " from ")
        .replace(", to: ", " to ")
        .replace(" { seen: ", " seen ")
        .replace(" }", "")
        .replace(['{', '}'], "")
}

fn action_end(a: &Action) -> usize {
    match *a {
        Action::AgentEvent(e)
        | Action::Timer(e)
        | Action::EarlyTimer(e)
        | Action::LoseEvent(e)
        | Action::Quirk(e)
        | Action::Fail(e, _)
        | Action::Restart(e) => e,
        Action::Meet(p) | Action::CrashHalf(p) => 2 * p,
        Action::MeetLosing(_, e) => e,
        Action::Deliver(_)
        | Action::Drop(_)
        | Action::Replay(_)
        | Action::Duplicate(_)
        | Action::Crash(..)
        | Action::Assign(_) => 0,
    }
}

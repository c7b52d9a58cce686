//! A breadth-first search over any stateright [`Model`] that returns **shortest** discoveries.
//!
//! stateright 0.31's BFS overwrites a discovery with every later state that satisfies it (a
//! regression of its "Eventually fix"), so it returns the *last*, usually the longest, witness;
//! and its `is_done()` is true after any run, also one cut short. This search explores level by
//! level and keeps, for each property, the first state that decides it: since every state of
//! level `k` is examined before any of level `k + 1`, that first state is at minimal depth and its
//! path is a shortest one. Iterating `target_max_depth` with stateright would find the same
//! length but re-explores every level once per iteration and skips property checks at the cut.
//!
//! The visited set keeps 64-bit fingerprints (as stateright does) with the parent fingerprint
//! and action index; paths are rebuilt by replaying action indices from the initial state, so
//! `actions()` and `next_state()` must be deterministic (they are: no hash-map order in state).

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use stateright::{Expectation, Model};

/// Limits of a search. A search that hits one is not exhaustive.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Stop after this long.
    pub timeout: Option<Duration>,
    /// Stop after this many unique states.
    pub max_states: Option<usize>,
    /// Stop as soon as this property has a discovery.
    pub stop_on: Option<&'static str>,
}

/// The outcome of a search.
#[derive(Clone, Debug)]
pub struct SearchOutcome<A> {
    /// Unique states visited.
    pub unique_states: usize,
    /// Deepest level reached, counting the initial state as depth 1 (stateright's convention).
    pub max_depth: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// True if every reachable state was visited (no limit was hit).
    pub exhaustive: bool,
    /// Per property name, the actions of a shortest discovery (a counterexample for `always`,
    /// an example for `sometimes`).
    pub discoveries: BTreeMap<&'static str, Vec<A>>,
}

/// The 64-bit fingerprint of a state (SipHash with fixed keys: stable across runs).
pub fn fingerprint<T: Hash>(t: &T) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

struct Parent {
    parent: Option<u64>,
    action: u32,
}

/// Explores `model` breadth-first within `limits`.
pub fn search<M>(model: &M, limits: &Limits) -> SearchOutcome<M::Action>
where
    M: Model,
    M::State: Hash,
{
    let start = Instant::now();
    let properties = model.properties();
    let mut visited: HashMap<u64, Parent> = HashMap::new();
    let mut found: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Init states get the pseudo action index of their position.
    let mut frontier: VecDeque<(M::State, u64, usize)> = VecDeque::new();
    for (i, s) in model.init_states().into_iter().enumerate() {
        let fp = fingerprint(&s);
        if let Entry::Vacant(v) = visited.entry(fp) {
            v.insert(Parent {
                parent: None,
                action: i as u32,
            });
            frontier.push_back((s, fp, 1));
        }
    }
    let mut max_depth = 0;
    let mut exhaustive = true;
    let mut actions = Vec::new();
    let mut examined = 0usize;
    'search: while let Some((state, fp, depth)) = frontier.pop_front() {
        max_depth = max_depth.max(depth);
        for p in &properties {
            if found.contains_key(p.name) {
                continue;
            }
            let holds = (p.condition)(model, &state);
            let discovered = match p.expectation {
                Expectation::Always | Expectation::Eventually => !holds,
                Expectation::Sometimes => holds,
            };
            if discovered {
                found.insert(p.name, fp);
                if limits.stop_on == Some(p.name) {
                    exhaustive = false;
                    break 'search;
                }
            }
        }
        examined += 1;
        if examined.is_multiple_of(1024) && limits.timeout.is_some_and(|t| start.elapsed() >= t) {
            exhaustive = false;
            break;
        }
        if limits.max_states.is_some_and(|m| visited.len() >= m) {
            exhaustive = false;
            break;
        }
        actions.clear();
        model.actions(&state, &mut actions);
        for (i, a) in actions.drain(..).enumerate() {
            let Some(next) = model.next_state(&state, a) else {
                continue;
            };
            let nfp = fingerprint(&next);
            if let Entry::Vacant(v) = visited.entry(nfp) {
                v.insert(Parent {
                    parent: Some(fp),
                    action: i as u32,
                });
                frontier.push_back((next, nfp, depth + 1));
            }
        }
    }
    if !frontier.is_empty() {
        exhaustive = false;
    }
    let discoveries = found
        .into_iter()
        .filter_map(|(name, fp)| Some((name, replay(model, &visited, fp)?)))
        .collect();
    SearchOutcome {
        unique_states: visited.len(),
        max_depth,
        seconds: start.elapsed().as_secs_f64(),
        exhaustive,
        discoveries,
    }
}

/// Rebuilds the actions leading to `fp` from the parent map by replaying indices.
fn replay<M: Model>(model: &M, visited: &HashMap<u64, Parent>, fp: u64) -> Option<Vec<M::Action>>
where
    M::State: Hash,
{
    let mut indices = Vec::new();
    let mut cur = fp;
    loop {
        let p = visited.get(&cur)?;
        indices.push(p.action);
        match p.parent {
            Some(parent) => cur = parent,
            None => break,
        }
    }
    indices.reverse();
    let (&init, steps) = indices.split_first()?;
    let mut state = model.init_states().into_iter().nth(init as usize)?;
    let mut path = Vec::new();
    for &i in steps {
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let action = actions.into_iter().nth(i as usize)?;
        let mut again = Vec::new();
        model.actions(&state, &mut again);
        let copy = again.into_iter().nth(i as usize)?;
        state = model.next_state(&state, action)?;
        path.push(copy);
    }
    Some(path)
}

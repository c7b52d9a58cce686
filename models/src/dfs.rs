//! A parallel depth-first search over a stateright [`Model`] with memory bounded by the depth.
//!
//! stateright's own DFS checker pushes every successor of a state on a work queue (with the
//! path that reached it) and hands half of a thread's queue to a shared broker after every
//! block, where it waits until another thread runs dry. On wide state spaces that broker grows
//! without bound: the 2-peer check with a drop, a replay, a crash and a failure held 4.5 GB
//! after 60 s. This search keeps, per thread, a stack of frames (a state, its actions and the
//! next one to try) and generates successors one at a time, so a thread holds at most
//! `depth × (one state + its actions)`. An idle thread gets work from a busy one: the busy
//! thread hands over its *bottom* frame with actions left (the largest subtree it has left),
//! and the receiver goes on where it would have. Visited states are 64-bit fingerprints in a
//! sharded set.
//!
//! Paths cost nothing until they are needed: the path to a frame is the actions chosen in the
//! frames below it on the thread's stack, and only a frame whose ancestors left the stack (a
//! job's first frame, or the frame above one handed over) stores its path. When a state makes
//! a property's first discovery, the path to it is assembled from the stack and returned in
//! [`Outcome::paths`].
//!
//! Fingerprints hash the state with ahash under fixed keys ([`crate::shared`]), so counts are
//! the same in every run and on every thread count.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use stateright::{Expectation, Model};

/// What a search found.
#[derive(Clone, Debug)]
pub struct Outcome<A> {
    /// Distinct states visited.
    pub unique_states: usize,
    /// Longest path (initial state = 1).
    pub max_depth: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Every reachable state was visited (not cut by the timeout, not stopped because every
    /// property was decided).
    pub exhaustive: bool,
    /// Properties with a discovery (a violated `always`, a found `sometimes`), by name.
    pub discovered: Vec<&'static str>,
    /// For each discovery, the actions from an initial state to the first state that made it
    /// (a depth-first path: valid, not shortest).
    pub paths: Vec<(&'static str, Vec<A>)>,
}

/// Fingerprints are already uniform 64-bit hashes: the set uses them as they are.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const SHARDS: usize = 64;

/// The visited set: 64 shards, each a set of fingerprints behind its own lock.
struct Visited {
    shards: Vec<Mutex<HashSet<u64, BuildHasherDefault<IdHasher>>>>,
}

impl Visited {
    fn new() -> Visited {
        Visited {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Fingerprints in the set (read at the end, when no thread inserts any more).
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True if `fp` was not in the set.
    fn insert(&self, fp: u64) -> bool {
        // The top bits pick the shard; the set hashes the whole fingerprint.
        let shard = &self.shards[(fp >> 58) as usize % SHARDS];
        lock(shard).insert(fp)
    }
}

/// Work handed from a busy thread to idle ones.
struct Queue<S, A> {
    jobs: Vec<Frame<S, A>>,
    idle: usize,
    done: bool,
}

struct Search<'a, M: Model> {
    model: &'a M,
    properties: Vec<stateright::Property<M>>,
    visited: Visited,
    queue: Mutex<Queue<M::State, M::Action>>,
    wake: Condvar,
    /// Threads waiting for work (mirrors `queue.idle` for a lock-free look).
    idle: AtomicUsize,
    /// Bit i: property i has a discovery.
    discovered: AtomicU64,
    /// The path of each property's first discovery, by property index.
    paths: Mutex<Vec<(usize, Vec<M::Action>)>>,
    stop: AtomicBool,
    timed_out: AtomicBool,
    max_depth: AtomicUsize,
    threads: usize,
    deadline: Option<Instant>,
}

struct Frame<S, A> {
    state: S,
    actions: Vec<A>,
    next: usize,
    depth: usize,
    /// The path from an initial state to `state`, kept only when the frames below this one on
    /// the stack do not lead to it (a job's first frame, or the frame above a handed-over one).
    path: Option<Arc<Vec<A>>>,
}

/// The path to `stack[k]`: the nearest stored path at or below it, then the action each frame
/// above that one took towards the next (`actions[next - 1]`, the action being explored).
fn path_to<S, A: Clone>(stack: &[Frame<S, A>], k: usize) -> Vec<A> {
    let Some(base) = (0..=k).rev().find(|&j| stack[j].path.is_some()) else {
        // Every stack's first frame stores its path; an empty path is a safe fallback.
        return Vec::new();
    };
    let mut path: Vec<A> = stack[base].path.as_deref().cloned().unwrap_or_default();
    for f in &stack[base..k] {
        if let Some(a) = f.next.checked_sub(1).and_then(|i| f.actions.get(i)) {
            path.push(a.clone());
        }
    }
    path
}

fn fingerprint<T: Hash>(t: &T) -> u64 {
    crate::shared::digest_of(t)
}

/// Depth-first search of `model` on `threads` threads, stopping after `timeout`.
///
/// Every state is checked against every property of the model that is not decided yet; the
/// search stops early once every property has a discovery (as stateright's checker does).
pub fn search<M>(model: &M, threads: usize, timeout: Option<Duration>) -> Outcome<M::Action>
where
    M: Model + Sync,
    M::State: Hash + Send + Sync,
    M::Action: Send + Sync + Clone,
{
    let start = Instant::now();
    let threads = threads.max(1);
    let shared = Search {
        model,
        properties: model.properties(),
        visited: Visited::new(),
        queue: Mutex::new(Queue {
            jobs: Vec::new(),
            idle: 0,
            done: false,
        }),
        wake: Condvar::new(),
        idle: AtomicUsize::new(0),
        discovered: AtomicU64::new(0),
        paths: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
        max_depth: AtomicUsize::new(0),
        threads,
        deadline: timeout.and_then(|t| start.checked_add(t)),
    };
    let mut jobs = Vec::new();
    for s in model.init_states() {
        if shared.visited.insert(fingerprint(&s)) {
            for i in shared.check(&s) {
                lock(&shared.paths).push((i, Vec::new()));
            }
            let mut frame = shared.frame(s, 1);
            frame.path = Some(Arc::new(Vec::new()));
            jobs.push(frame);
        }
    }
    lock(&shared.queue).jobs = jobs;
    let finished = AtomicBool::new(false);
    std::thread::scope(|outer| {
        if std::io::stderr().is_terminal() {
            outer.spawn(|| shared.progress(&finished, start));
        }
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| shared.worker());
            }
        });
        finished.store(true, Ordering::Relaxed);
    });
    let bits = shared.discovered.load(Ordering::Relaxed);
    let discovered: Vec<&'static str> = shared
        .properties
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, p)| p.name)
        .collect();
    let all_decided = discovered.len() == shared.properties.len();
    let mut paths = std::mem::take(&mut *lock(&shared.paths));
    paths.sort_by_key(|(i, _)| *i);
    let paths = paths
        .into_iter()
        .map(|(i, p)| (shared.properties[i].name, p))
        .collect();
    Outcome {
        unique_states: shared.visited.len(),
        max_depth: shared.max_depth.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
        exhaustive: !shared.timed_out.load(Ordering::Relaxed) && !all_decided,
        discovered,
        paths,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked (which `scope` re-raises).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<M> Search<'_, M>
where
    M: Model + Sync,
    M::State: Hash + Send + Sync,
    M::Action: Send + Sync + Clone,
{
    /// A progress line on a terminal's stderr, once a second, until `finished`: states,
    /// states per second, deepest path, elapsed time (cleared at the end).
    fn progress(&self, finished: &AtomicBool, start: Instant) {
        let mut next = start + Duration::from_secs(1);
        while !finished.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let now = Instant::now();
            if now < next {
                continue;
            }
            next = now + Duration::from_secs(1);
            let states = self.visited.len();
            let secs = now.duration_since(start).as_secs_f64();
            eprint!(
                "\r\x1b[K{states} states, {:.0} k/s, depth {}, {secs:.0} s",
                states as f64 / secs.max(1e-9) / 1e3,
                self.max_depth.load(Ordering::Relaxed)
            );
        }
        eprint!("\r\x1b[K");
    }

    /// Checks the undecided properties on a new state and returns the indices of the ones it
    /// discovers first; stops the search once all are decided.
    fn check(&self, s: &M::State) -> Vec<usize> {
        let mut first = Vec::new();
        let bits = self.discovered.load(Ordering::Relaxed);
        for (i, p) in self.properties.iter().enumerate() {
            if bits & (1 << i) != 0 {
                continue;
            }
            let holds = (p.condition)(self.model, s);
            let discovered = match p.expectation {
                Expectation::Always | Expectation::Eventually => !holds,
                Expectation::Sometimes => holds,
            };
            if discovered {
                let before = self.discovered.fetch_or(1 << i, Ordering::Relaxed);
                if before & (1 << i) == 0 {
                    first.push(i);
                }
                let all = before | (1 << i);
                if all.count_ones() as usize == self.properties.len() {
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
        }
        first
    }

    fn frame(&self, state: M::State, depth: usize) -> Frame<M::State, M::Action> {
        let mut actions = Vec::new();
        self.model.actions(&state, &mut actions);
        Frame {
            state,
            actions,
            next: 0,
            depth,
            path: None,
        }
    }

    /// Takes a job, waiting while other threads may still hand one over; `None` when the search
    /// is over. The wait needs no timeout: it ends when a busy thread hands over work, when
    /// every thread is idle (nothing is left), or when a thread stops the search (deadline or
    /// every property decided), and each of these notifies the waiters.
    fn take_job(&self) -> Option<Frame<M::State, M::Action>> {
        let mut q = lock(&self.queue);
        loop {
            if q.done || self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(job) = q.jobs.pop() {
                return Some(job);
            }
            q.idle += 1;
            self.idle.fetch_add(1, Ordering::Relaxed);
            if q.idle == self.threads {
                // Everyone is idle and nothing is queued: done.
                q.done = true;
                self.wake.notify_all();
                return None;
            }
            q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            q.idle -= 1;
            self.idle.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn worker(&self) {
        let mut stack: Vec<Frame<M::State, M::Action>> = Vec::new();
        let mut max_depth = 0;
        let mut steps = 0u32;
        'work: while let Some(job) = self.take_job() {
            stack.push(job);
            while let Some(top) = stack.last_mut() {
                max_depth = max_depth.max(top.depth);
                steps = steps.wrapping_add(1);
                if steps.is_multiple_of(1024) {
                    if self.stop.load(Ordering::Relaxed) {
                        break 'work;
                    }
                    if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        self.timed_out.store(true, Ordering::Relaxed);
                        self.stop.store(true, Ordering::Relaxed);
                        self.wake.notify_all();
                        break 'work;
                    }
                }
                if steps.is_multiple_of(16) && self.idle.load(Ordering::Relaxed) > 0 {
                    self.hand_over(&mut stack);
                }
                let Some(top) = stack.last_mut() else {
                    break;
                };
                if top.next == top.actions.len() {
                    stack.pop();
                    continue;
                }
                let action = top.actions[top.next].clone();
                top.next += 1;
                let depth = top.depth + 1;
                let Some(next) = self.model.next_state(&top.state, action) else {
                    continue;
                };
                if !self.visited.insert(fingerprint(&next)) {
                    continue;
                }
                let first = self.check(&next);
                if !first.is_empty() {
                    // The path to `next`: the path to the top frame, then the action just taken
                    // (its `next - 1`).
                    let mut path = path_to(&stack, stack.len() - 1);
                    let top = &stack[stack.len() - 1];
                    if let Some(a) = top.next.checked_sub(1).and_then(|i| top.actions.get(i)) {
                        path.push(a.clone());
                    }
                    let mut paths = lock(&self.paths);
                    paths.extend(first.into_iter().map(|i| (i, path.clone())));
                }
                stack.push(self.frame(next, depth));
            }
        }
        self.max_depth.fetch_max(max_depth, Ordering::Relaxed);
        // Wake the idle threads so they see the end.
        self.wake.notify_all();
    }

    /// Gives idle threads the bottom frames that still have actions to try (the largest
    /// subtrees this thread has left): the receiver goes on where this thread would have.
    fn hand_over(&self, stack: &mut Vec<Frame<M::State, M::Action>>) {
        let want = self.idle.load(Ordering::Relaxed);
        let mut given = Vec::new();
        // Keep the top frame: this thread is working on it.
        let mut i = 0;
        while given.len() < want && i + 1 < stack.len() {
            if stack[i].next < stack[i].actions.len() {
                // Both frames lose their ancestors on this stack: store their paths first.
                if stack[i].path.is_none() {
                    stack[i].path = Some(Arc::new(path_to(stack, i)));
                }
                if stack[i + 1].path.is_none() {
                    stack[i + 1].path = Some(Arc::new(path_to(stack, i + 1)));
                }
                given.push(stack.remove(i));
            } else {
                i += 1;
            }
        }
        if !given.is_empty() {
            lock(&self.queue).jobs.extend(given);
            self.wake.notify_all();
        }
    }
}

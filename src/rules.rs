//! The protocol rules that decide what an incoming description does, each by name.
//!
//! [`classify`] is the single place where a remote description is judged against the local
//! view. [`connect_guard`] is the single place that decides when the agent may connect. Each
//! rule quotes where it comes from and why it deviates from the seeds where it does; the same
//! names are used in docs/PROTOCOL.md, in the tests and in the model checker's properties.

use crate::description::{Description, SessionRef};

/// Which restart rule the peer applies to descriptions of other remote sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RestartPolicy {
    /// The project's rule (EPOCH_ORDER + RESTART_ON_NEWER_CONFIRMED): descriptions are totally
    /// ordered by `(epoch, version)`; only a strictly newer remote session restarts, and only a
    /// session whose binding the remote confirmed.
    #[default]
    Epoch,
    /// Seed 001's rule, kept so the model checker and the simulator can show where it breaks:
    /// "restart if `last_recv.id` is set, `recv.id != last_recv.id` and `recv.version == 0`".
    /// Session ids are only compared for equality (seed 001's ids are random) and the
    /// acknowledgement is not needed to connect. Hidden from the docs: it is broken on purpose
    /// and not for use.
    #[doc(hidden)]
    Seed,
}

/// The local view a remote description is judged against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// The newest remote `(epoch, version)` ever applied, across local sessions.
    pub newest_applied: Option<SessionRef>,
    /// The remote session the current local session is bound to, and whether the remote has
    /// confirmed the binding by acknowledging our current epoch.
    pub bound: Option<(SessionRef, bool)>,
}

/// What a remote description does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Older than the newest applied: ignored, no reply (rule STALE_DESCRIPTION).
    Stale {
        /// The newest applied.
        newest: SessionRef,
    },
    /// Equal to the newest applied: only reply and acknowledgement are processed (rule
    /// DUPLICATE_DESCRIPTION).
    Duplicate,
    /// Seed policy: another session with version ≠ 0 is ignored.
    SeedNotVersionZero,
    /// The current local session has no remote yet: accept this remote session (rule BIND).
    Bind,
    /// A newer version of the bound remote session (rule UPDATE).
    Update,
    /// A newer remote session, and the current binding was never confirmed: re-bind without a
    /// restart (rule REBIND_UNCONFIRMED).
    Rebind,
    /// A newer remote session replacing a confirmed binding: the remote restarted, so the local
    /// session restarts exactly once and then binds this one (rule RESTART_ON_NEWER_CONFIRMED).
    RemoteRestart,
}

/// Judges a remote description, identified by its `(epoch, version)`, against the local view.
pub fn classify(policy: RestartPolicy, view: View, got: SessionRef) -> Verdict {
    match policy {
        RestartPolicy::Epoch => classify_epoch(view, got),
        RestartPolicy::Seed => classify_seed(view, got),
    }
}

fn classify_epoch(view: View, got: SessionRef) -> Verdict {
    // Rule EPOCH_ORDER. Seed 001's session ids are random, so a delayed description of an old
    // session cannot be told from a new session, and its restart rule ("a different id with
    // version 0 restarts") restarts on every late or replayed initial offer. Our epochs are
    // totally ordered per key (strictly increasing across restarts, and across process restarts
    // through the caller-supplied floor), so "older" is decidable: anything not newer than the
    // newest applied description is stale or a duplicate, whatever session it belongs to.
    if let Some(newest) = view.newest_applied {
        // Rule STALE_DESCRIPTION: late, duplicated or replayed older descriptions change
        // nothing and never restart (cunicu B1: a stale credential restarts the receiver).
        if got < newest {
            return Verdict::Stale { newest };
        }
        // Rule DUPLICATE_DESCRIPTION: a second copy (the MultiBackend sends one per backend)
        // changes nothing, but a requested reply is still sent (cunicu B2).
        if got == newest {
            return Verdict::Duplicate;
        }
    }
    match view.bound {
        None => Verdict::Bind,
        Some((bound, _)) if got.epoch == bound.epoch => Verdict::Update,
        // `got` is newer than everything applied, so its epoch is newer than the bound one.
        // Rule RESTART_ON_NEWER_CONFIRMED: the remote acknowledged our session, so it had
        // accepted it; a newer remote session means the remote restarted (RFC 8445 §9), and
        // our agent holds remote credentials that no longer exist.
        Some((_, true)) => Verdict::RemoteRestart,
        // Rule REBIND_UNCONFIRMED: the remote never acknowledged our session, so no agent work
        // depends on the binding yet (the connect guard waits for confirmation). Re-binding to
        // the remote's newest session costs nothing; restarting here would turn every crossed
        // pair of first messages into a restart and both sides restarting into a storm.
        Some((_, false)) => Verdict::Rebind,
    }
}

fn classify_seed(view: View, got: SessionRef) -> Verdict {
    match view.bound {
        Some((bound, _)) if got.epoch == bound.epoch => match got.version.cmp(&bound.version) {
            std::cmp::Ordering::Less => Verdict::Stale { newest: bound },
            std::cmp::Ordering::Equal => Verdict::Duplicate,
            std::cmp::Ordering::Greater => Verdict::Update,
        },
        // Seed 001: "if last_recv.id has been set, recv.id != last_recv.id, recv.version == 0
        // then restart". Nothing orders ids, so an old session's version 0 qualifies too.
        Some(_) if got.version == 0 => Verdict::RemoteRestart,
        Some(_) => Verdict::SeedNotVersionZero,
        None => Verdict::Bind,
    }
}

/// Rule EPOCH_CATCH_UP: the evidence in `d` that our epoch floor went back, if any.
///
/// `current` is our current session (the newest `(epoch, version)` this process sent, since
/// epochs and versions only grow), `current_ufrag` its ufrag. The remote applied only what we sent, so if
/// it names a session newer than `current`, or `current`'s epoch with another ufrag, an earlier
/// process of ours sent it: the caller-supplied floor was not above the epochs used before (a
/// clock stepped back, a board booted at 1970, a snapshot was restored, a constant was passed).
/// Without this rule the remote treats all our descriptions as stale or duplicate forever.
///
/// Returns the session to move above. A replayed description can never trigger this unless the
/// floor really went back: what it names was sent by us, and our epoch only moves up, so after
/// one catch-up nothing it names is newer (checked by the model checker).
pub fn regressed(current: SessionRef, current_ufrag: &str, d: &Description) -> Option<SessionRef> {
    let ack = d.ack.filter(|&a| a > current);
    let seen = d
        .seen
        .as_ref()
        .filter(|s| {
            s.session > current || (s.session.epoch == current.epoch && s.ufrag != current_ufrag)
        })
        .map(|s| s.session);
    ack.max(seen)
}

/// Rule CONNECT_GUARD: the agent is told to connect only when the remote session is bound and
/// confirmed (both sides hold each other's current credentials), at least one local and at
/// least one remote candidate of the same sessions exist. Seed 000 connects "on remote
/// candidate"; cunicu learned the hard way that connecting before both sides have candidates
/// fails (commit 4cdbc89a), and connecting before confirmation uses credentials the remote may
/// already have replaced (cunicu B1).
pub fn connect_guard(confirmed: bool, local_candidates: usize, remote_candidates: usize) -> bool {
    confirmed && local_candidates > 0 && remote_candidates > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(epoch: u64, version: u32) -> SessionRef {
        SessionRef { epoch, version }
    }

    fn view(newest: Option<SessionRef>, bound: Option<(SessionRef, bool)>) -> View {
        View {
            newest_applied: newest,
            bound,
        }
    }

    #[test]
    fn epoch_rules() {
        let p = RestartPolicy::Epoch;
        let b = s(5, 3);
        assert_eq!(classify(p, view(None, None), s(1, 0)), Verdict::Bind);
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), s(5, 2)),
            Verdict::Stale { newest: b }
        );
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), s(4, 9)),
            Verdict::Stale { newest: b }
        );
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), b),
            Verdict::Duplicate
        );
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), s(5, 4)),
            Verdict::Update
        );
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), s(6, 0)),
            Verdict::RemoteRestart
        );
        assert_eq!(
            classify(p, view(Some(b), Some((b, false))), s(6, 0)),
            Verdict::Rebind
        );
        // After a local restart the new session is unbound, but the floor stays.
        assert_eq!(
            classify(p, view(Some(b), None), s(5, 1)),
            Verdict::Stale { newest: b }
        );
        assert_eq!(classify(p, view(Some(b), None), s(5, 4)), Verdict::Bind);
    }

    #[test]
    fn seed_rule_restarts_on_any_other_version_zero() {
        let p = RestartPolicy::Seed;
        let b = s(5, 3);
        // An OLD session's initial offer restarts under the seed rule.
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), s(4, 0)),
            Verdict::RemoteRestart
        );
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), s(4, 1)),
            Verdict::SeedNotVersionZero
        );
        assert_eq!(
            classify(p, view(Some(b), Some((b, true))), s(5, 4)),
            Verdict::Update
        );
    }

    #[test]
    fn connect_guard_needs_all_three() {
        assert!(connect_guard(true, 1, 1));
        assert!(!connect_guard(false, 1, 1));
        assert!(!connect_guard(true, 0, 1));
        assert!(!connect_guard(true, 1, 0));
    }
}

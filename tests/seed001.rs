//! Seed 001's exact offer sequence (versions 0..3, end-of-candidates on the last) is accepted,
//! and every one of its 24 delivery orders ends in the same state.

mod harness;

use harness::{candidate_of, Pair};
use icepact::{Config, ConnectionState, Description, Disposition, IgnoreReason, SessionRef};

/// A's four offers of seed 001: `id=SID_Pa, version=0..3`, cumulative candidates, eoc on v3.
fn seed_sequence(p: &Pair) -> Vec<Description> {
    let base = p.a.peer.description().unwrap();
    let epoch = base.session.epoch;
    let (c1, c2) = (candidate_of(epoch, 1), candidate_of(epoch, 2));
    let lists = [
        vec![],
        vec![c1.clone()],
        vec![c1.clone(), c2.clone()],
        vec![c1, c2],
    ];
    lists
        .into_iter()
        .enumerate()
        .map(|(v, candidates)| Description {
            session: SessionRef {
                epoch,
                version: v as u32,
            },
            ack: None,
            need_reply: true,
            end_of_candidates: v == 3,
            seen: None,
            candidates,
            ..base.clone()
        })
        .collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn seed_001_sequence_in_order_is_applied_version_by_version() {
    let mut p = Pair::new(Config::default());
    p.b.inbox.clear();
    let now = p.now;
    for d in seed_sequence(&p) {
        assert_eq!(
            p.b.peer.handle_description(now, &d).unwrap(),
            Disposition::Applied
        );
        assert_eq!(p.b.peer.remote_session(), Some(d.session));
    }
    assert_eq!(p.b.peer.state(), ConnectionState::New);
}

#[test]
fn every_permutation_of_seed_001_ends_in_the_same_state() {
    let reference = {
        let mut p = Pair::new(Config::default());
        p.b.inbox.clear();
        let now = p.now;
        for d in seed_sequence(&p) {
            let _ = p.b.peer.handle_description(now, &d).unwrap();
        }
        while p.b.peer.poll_output().is_some() {}
        settle(&mut p.b.peer, now);
        p.b.peer
    };
    let orders = permutations(4);
    assert_eq!(orders.len(), 24);
    for order in orders {
        let mut p = Pair::new(Config::default());
        p.b.inbox.clear();
        let now = p.now;
        let seq = seed_sequence(&p);
        let mut newest = None;
        for &i in &order {
            let got = p.b.peer.handle_description(now, &seq[i]).unwrap();
            let expected = if newest.is_some_and(|n| seq[i].session < n) {
                Disposition::Ignored(IgnoreReason::Stale {
                    got: seq[i].session,
                    newest: newest.unwrap(),
                })
            } else {
                Disposition::Applied
            };
            assert_eq!(got, expected, "order {order:?}");
            newest = newest.max(Some(seq[i].session));
        }
        while p.b.peer.poll_output().is_some() {}
        settle(&mut p.b.peer, now);
        assert_eq!(p.b.peer, reference, "order {order:?}");
    }
}

/// A stale description that asked for a reply was answered (rule EPOCH_CATCH_UP) and left a
/// rate limit that lasts one initial back-off interval; past it, equal histories give equal
/// peers.
fn settle(peer: &mut icepact::Peer, now: std::time::Instant) {
    let later = now + Config::default().backoff.initial;
    peer.handle_timeout(later).unwrap();
    while peer.poll_output().is_some() {}
}

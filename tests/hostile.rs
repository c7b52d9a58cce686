//! proptest: a single peer fed arbitrary schedules (descriptions that are stale, contradictory or
//! from the future, agent events out of place, time jumps with and without `handle_timeout`,
//! restarts) never panics; an input that fails changes nothing but the timers that were due at
//! its `now` (it equals a copy that was only given `handle_timeout(now)`); every state change is
//! a table edge; `poll_timeout` is always in the future; the newest applied remote version never
//! goes back.

use std::time::Instant;

use icepact::state::is_edge;
use icepact::strategies::{schedule, Step};
use icepact::{AgentId, Config, Event, Output, Peer, PeerSetup, PublicKey, Seed};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_schedules_never_break_the_peer(steps in schedule(40), local_smaller in any::<bool>()) {
        let (l, r) = if local_smaller { ([1; 32], [2; 32]) } else { ([2; 32], [1; 32]) };
        let mut now = Instant::now();
        let mut peer = Peer::new(Config::default(), PeerSetup { local: PublicKey(l), remote: PublicKey(r), epoch_floor: 3, seed: Seed::insecure_from_u64(5) }, now).unwrap();
        let mut given = now;
        for step in steps {
            let before = peer.clone();
            let silent = matches!(&step, Step::Wait(d) if d.as_millis() % 2 == 1);
            let result = match step {
                Step::Description(d) => peer.handle_description(now, &d).map(|_| ()),
                Step::AgentEvent(e) => {
                    // While a restart is deferred (FAILURE_BACKOFF) there is no live agent: the
                    // event then comes from the closed one.
                    let agent = peer.agent().unwrap_or(AgentId(0));
                    peer.handle_agent_event(now, agent, e).map(|_| ())
                }
                Step::Wait(d) => {
                    now += d;
                    // Half of the waits let time pass silently: the next input then also has
                    // to fire the timers that came due.
                    if d.as_millis() % 2 == 0 {
                        peer.handle_timeout(now)
                    } else {
                        Ok(())
                    }
                }
                Step::Restart => peer.restart(now),
            };
            if result.is_err() {
                let mut only_time = before.clone();
                let _ = only_time.handle_timeout(now);
                prop_assert_eq!(&peer, &only_time, "an error changed the peer: {:?}", result);
            }
            prop_assert!(peer.newest_applied() >= before.newest_applied());
            if !silent {
                given = now;
            }
            while let Some(out) = peer.poll_output() {
                if let Output::Event(Event::StateChanged { from, to, .. }) = out {
                    prop_assert!(is_edge(from, to), "{} -> {}", from, to);
                }
            }
            if let Some(t) = peer.poll_timeout() {
                prop_assert!(t > given, "poll_timeout at or before the latest now given");
            }
        }
    }
}

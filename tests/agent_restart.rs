//! Rule AGENT_RESTART: with `AgentRestart::InPlace` a session restart restarts the live agent
//! (one `Restart` command, no `Close`/`Create`), an agent that reported Closed is created
//! again, and two peers reconnect either way.

mod harness;

use harness::{Pair, A_KEY, B_KEY};
use icepact::reference_agent::AgentKind;
use icepact::{
    AgentCommand, AgentEvent, AgentId, AgentRestart, Config, Output, Peer, PeerSetup, Seed,
};

fn config(mode: AgentRestart) -> Config {
    let mut config = Config::default();
    config.agent_restart = mode;
    config
}

fn commands(peer: &mut Peer) -> Vec<AgentCommand> {
    std::iter::from_fn(|| peer.poll_output())
        .filter_map(|o| match o {
            Output::Agent(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn an_in_place_restart_renames_the_live_agent_and_reconnects() {
    for kind in AgentKind::ALL {
        let mut p = Pair::with_agents(config(AgentRestart::InPlace), 1, 2, kind);
        assert!(p.run_until_connected(1_000), "{kind:?}: first connect");
        let old = p.a.agent_id().unwrap();
        let now = p.now;
        p.a.peer.restart(now).unwrap();
        p.drain(true);
        let live = p.a.agent.live().unwrap();
        assert!(
            live.id > old,
            "{kind:?}: the agent carries the new session's name"
        );
        assert_eq!(Some(live.id), p.a.peer.agent(), "{kind:?}");
        assert!(p.run_until_connected(1_000), "{kind:?}: reconnect");
        // One agent per side for the whole run: A's restart and B's answer went in place.
        assert_eq!(
            (p.a.agent.created(), p.a.agent.closed()),
            (1, 0),
            "{kind:?}"
        );
        assert_eq!(
            (p.b.agent.created(), p.b.agent.closed()),
            (1, 0),
            "{kind:?}"
        );
        assert_eq!(p.a.agent.restarted(), 1, "{kind:?}");
        assert!(p.b.agent.restarted() >= 1, "{kind:?}");
    }
}

#[test]
fn the_default_mode_closes_and_creates() {
    let mut p = Pair::new(config(AgentRestart::Recreate));
    assert!(p.run_until_connected(1_000));
    let now = p.now;
    p.a.peer.restart(now).unwrap();
    assert!(p.run_until_connected(1_000));
    assert_eq!((p.a.agent.created(), p.a.agent.closed()), (2, 1));
    assert_eq!(p.a.agent.restarted(), 0);
}

#[test]
fn an_agent_that_reported_closed_is_created_again() {
    let now = harness::base();
    let mut peer = Peer::new(
        config(AgentRestart::InPlace),
        PeerSetup {
            local: A_KEY,
            remote: B_KEY,
            epoch_floor: 100,
            seed: Seed::insecure_from_u64(1),
        },
        now,
    )
    .unwrap();
    let first = commands(&mut peer);
    assert!(matches!(
        first.as_slice(),
        [AgentCommand::Create {
            agent: AgentId(100),
            ..
        }]
    ));
    let applied = peer
        .handle_agent_event(now, AgentId(100), AgentEvent::Closed)
        .unwrap();
    assert_eq!(applied, icepact::Disposition::Applied);
    assert_eq!(peer.restarts(), 1);
    let next = commands(&mut peer);
    assert!(
        matches!(
            next.as_slice(),
            [
                AgentCommand::Close {
                    agent: AgentId(100)
                },
                AgentCommand::Create {
                    agent: AgentId(101),
                    ..
                }
            ]
        ),
        "{next:?}"
    );
    // Any other cause restarts the live agent in place.
    peer.restart(now).unwrap();
    let next = commands(&mut peer);
    assert!(
        matches!(
            next.as_slice(),
            [AgentCommand::Restart {
                agent: AgentId(101),
                new: AgentId(102),
                ..
            }]
        ),
        "{next:?}"
    );
}

//! Garbage, wrong-key, replayed, stale and misaddressed envelopes injected on a node's Redis
//! channel change no session state and increment the right counters.

mod runtime_common;

use std::time::Duration;

use futures_util::StreamExt;
use icepact::wire::{Channel, Nonce};
use icepact::{Credentials, Description, SessionRef};
use icepact_tokio::{channel_name, Node, RedisBackend};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use runtime_common::*;

async fn inject(conn: &mut redis::aio::MultiplexedConnection, channel: &str, bytes: &[u8]) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(bytes)
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn hostile_envelopes_change_nothing_and_are_counted() {
    let Some(url) = redis_or_skip("hostile_envelopes_change_nothing_and_are_counted").await else {
        return;
    };
    init_tracing();
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let client = redis::Client::open(url.as_str()).unwrap();
    let a_channel = channel_name(&ka);

    // Record what B sends A, as an eavesdropper on the backend would.
    let mut tap = client.get_async_pubsub().await.unwrap();
    tap.subscribe(&a_channel).await.unwrap();
    let mut tap = tap.into_on_message();

    // A remembers only B's latest nonce, so a replay of any earlier envelope gets past the
    // nonce cache and must be stopped by the core's ordering (counted as stale).
    let mut config_a = quick_config();
    config_a.limits.replay_window = 1;
    let mut a = Node::start(
        RedisBackend::new(&url).unwrap(),
        sa.clone(),
        &[kb],
        config_a,
    )
    .await
    .unwrap();
    let mut b = Node::start(RedisBackend::new(&url).unwrap(), sb, &[ka], quick_config())
        .await
        .unwrap();
    a.wait_connected(kb, CONNECT_TIMEOUT)
        .await
        .expect("A connects");
    b.wait_connected(ka, CONNECT_TIMEOUT)
        .await
        .expect("B connects");
    // Let the acknowledgements settle, then take what the tap saw.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut recorded = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), tap.next()).await {
        recorded.push(msg.get_payload_bytes().to_vec());
    }
    // B's first description (its session, before A's answer) and at least one later one.
    assert!(
        recorded.len() >= 2,
        "B sent A {} descriptions",
        recorded.len()
    );
    let before = a.status();
    let pa = before.peers[&kb].clone();

    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Garbage: not an envelope.
    inject(
        &mut conn,
        &a_channel,
        b"\xff\x00garbage that is no protobuf",
    )
    .await;
    // Wrong key: sealed by a stranger C, with B's key written as the cleartext sender.
    let c = secret();
    let d = Description {
        session: SessionRef {
            epoch: u64::MAX,
            version: 0,
        },
        ack: pa.local_session,
        need_reply: true,
        credentials: Credentials {
            ufrag: "forgedufrag".into(),
            pwd: "forged-password-22-chars".into(),
        },
        candidates: vec![],
        end_of_candidates: false,
        seen: None,
    };
    let mut forged = Channel::new(&c, ka)
        .unwrap()
        .seal(&d, Nonce::random(&mut ChaCha20Rng::from_os_rng()))
        .unwrap();
    assert_eq!(&forged[..2], &[0x0a, 0x20], "sender is the first field");
    forged[2..34].copy_from_slice(&kb.0);
    inject(&mut conn, &a_channel, &forged).await;
    // Unknown sender: C's envelope as it is.
    let from_c = Channel::new(&c, ka)
        .unwrap()
        .seal(&d, Nonce::random(&mut ChaCha20Rng::from_os_rng()))
        .unwrap();
    inject(&mut conn, &a_channel, &from_c).await;
    // Replayed: B's latest envelope (its nonce is in A's cache).
    inject(&mut conn, &a_channel, recorded.last().unwrap()).await;
    // Stale: B's first envelope (too old for the cache, older than what A applied).
    inject(&mut conn, &a_channel, &recorded[0]).await;

    let after = a
        .wait_for(Duration::from_secs(5), |s| {
            let p = &s.peers[&kb].stats;
            s.unrouted.garbage >= 1
                && s.unrouted.misrouted >= 1
                && p.wrong_key >= 1
                && p.replayed >= 1
                && p.stale >= 1
        })
        .await
        .unwrap_or_else(|e| panic!("counters ({e}): {:?}", a.status()));
    let qa = &after.peers[&kb];
    assert_eq!(after.unrouted.garbage, before.unrouted.garbage + 1);
    assert_eq!(after.unrouted.misrouted, before.unrouted.misrouted + 1);
    assert_eq!(qa.stats.wrong_key, pa.stats.wrong_key + 1);
    assert_eq!(qa.stats.replayed, pa.stats.replayed + 1);
    assert_eq!(qa.stats.stale, pa.stats.stale + 1);
    assert_eq!(
        qa.stats.applied, pa.stats.applied,
        "nothing hostile was applied"
    );
    assert_eq!(qa.stats.rejected, 0);
    // No session state changed.
    assert_eq!(
        (
            qa.state,
            qa.restarts,
            qa.local_session,
            qa.remote_session,
            qa.selected
        ),
        (
            pa.state,
            pa.restarts,
            pa.local_session,
            pa.remote_session,
            pa.selected
        )
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn flood_from_a_peer_is_rate_limited_and_oversized_envelopes_refused() {
    let Some(url) =
        redis_or_skip("flood_from_a_peer_is_rate_limited_and_oversized_envelopes_refused").await
    else {
        return;
    };
    let (sa, sb) = two_secrets();
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let mut config = quick_config();
    config.limits.burst = 5;
    config.limits.per_second = 1;
    config.limits.max_envelope_len = 2048;
    let mut a = Node::start(RedisBackend::new(&url).unwrap(), sa, &[kb], config)
        .await
        .unwrap();
    a.wait_for(Duration::from_secs(5), |s| s.subscribed)
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = Channel::new(&sb, ka).unwrap();
    let mut rng = ChaCha20Rng::from_os_rng();
    let d = Description {
        session: SessionRef {
            epoch: 1,
            version: 0,
        },
        ack: None,
        need_reply: false,
        credentials: Credentials {
            ufrag: "ufragufrag".into(),
            pwd: "a-password-of-22-chars".into(),
        },
        candidates: vec![],
        end_of_candidates: false,
        seen: None,
    };
    for _ in 0..20 {
        inject(
            &mut conn,
            &channel_name(&ka),
            &channel.seal(&d, Nonce::random(&mut rng)).unwrap(),
        )
        .await;
    }
    // Over 2048 bytes but under the wire limit: attributed to B, refused before opening.
    let mut big = channel.seal(&d, Nonce::random(&mut rng)).unwrap();
    big.extend_from_slice(&[0x7a, 0x80, 0x20]); // unknown field 15, 4096 bytes
    big.extend(std::iter::repeat_n(0u8, 4096));
    inject(&mut conn, &channel_name(&ka), &big).await;
    let s = a
        .wait_for(Duration::from_secs(5), |s| {
            let p = &s.peers[&kb].stats;
            p.rate_limited >= 14 && p.oversized == 1
        })
        .await
        .unwrap_or_else(|e| panic!("counters ({e}): {:?}", a.status()));
    let p = &s.peers[&kb].stats;
    assert!(
        p.applied + p.duplicate + p.replayed + p.stale + p.rejected <= 6,
        "{p:?}"
    );
    a.shutdown().await;
}

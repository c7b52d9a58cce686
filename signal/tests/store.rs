//! One conformance suite for both stores: seats counted atomically under concurrent joins,
//! leases and tokens, rooms that deliver to subscribers of their call only, and the health
//! check. The Redis store runs it against `ICEPACT_REDIS_URL` (default 127.0.0.1:6379).

mod common;

use std::time::Duration;

use icepact_signal::seats::{SeatError, Token};
use icepact_signal::store::RoomMessage;
use icepact_signal::{MemoryStore, RedisStore, Store};

async fn conformance<S: Store + Clone>(store: S, name: &str) {
    // 64 concurrent joins for two seats: exactly two succeed.
    let mut joins = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        joins.push(tokio::spawn(async move {
            let token = Token::from_raw(&format!("t{i:02}"));
            store
                .update("race", move |s| s.join(1_000, 2, token.clone(), 5_000))
                .await
                .unwrap()
        }));
    }
    let mut ok = 0;
    for j in joins {
        match j.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, SeatError::Full, "{name}"),
        }
    }
    assert_eq!(ok, 2, "{name}: two seats, two joins");

    // Leases: renewed in time it stays; not renewed it frees the seat at expiry, not before.
    let (a, b, c) = (
        Token::from_raw("a"),
        Token::from_raw("b"),
        Token::from_raw("c"),
    );
    let join = |t: &Token, now| {
        let t = t.clone();
        let store = store.clone();
        async move {
            store
                .update("lease", move |s| s.join(now, 2, t.clone(), 100))
                .await
                .unwrap()
        }
    };
    assert_eq!(join(&a, 0).await, Ok(()));
    assert_eq!(join(&b, 0).await, Ok(()));
    let ra = a.clone();
    let renewed = store
        .update("lease", move |s| s.renew(90, &ra, 100))
        .await
        .unwrap();
    assert_eq!(renewed, Ok(()), "{name}");
    assert_eq!(
        join(&c, 99).await,
        Err(SeatError::Full),
        "{name}: b's lease lives until 100"
    );
    assert_eq!(
        join(&c, 100).await,
        Ok(()),
        "{name}: b's seat is free at 100"
    );
    let rb = b.clone();
    let expired = store
        .update("lease", move |s| s.renew(120, &rb, 100))
        .await
        .unwrap();
    assert_eq!(expired, Err(SeatError::NotMember), "{name}");
    let (ma, mb) = (a.clone(), b.clone());
    let members = store
        .update("lease", move |s| {
            (s.is_member(150, &ma), s.is_member(150, &mb))
        })
        .await
        .unwrap();
    assert_eq!(members, (true, false), "{name}");
    let other = store
        .update("elsewhere", move |s| s.is_member(150, &a))
        .await
        .unwrap();
    assert!(!other, "{name}: a token holds no seat in another call");

    // Rooms: a subscriber hears its call's messages, not another call's.
    let mut rx = store.subscribe("room").await.unwrap();
    let message = |call: &str, body: &str| RoomMessage {
        kind: "OFFER".into(),
        call: call.into(),
        body: Some(body.into()),
        from: Token::from_raw("x"),
    };
    store.publish(message("other-room", "no")).await.unwrap();
    store.publish(message("room", "yes")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("delivered")
        .unwrap();
    assert_eq!(got, message("room", "yes"), "{name}");
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_conforms() {
    let store = MemoryStore::new();
    conformance(store.clone(), "memory").await;
    // A call whose seats are all gone is forgotten.
    let t = Token::from_raw("gone");
    let tt = t.clone();
    store
        .update("empty", move |s| s.join(0, 1, tt.clone(), 10))
        .await
        .unwrap()
        .unwrap();
    store
        .update("empty", move |s| s.leave(5, &t))
        .await
        .unwrap();
    assert!(store.calls_held() >= 1);
    assert_eq!(store.update("empty", |s| s.holders(5)).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_conforms() {
    let Some((url, prefix)) = common::redis_or_skip("the_redis_store_conforms").await else {
        return;
    };
    conformance(RedisStore::new(&url, &prefix).unwrap(), "redis").await;
    // Two stores (two instances) on one server count the same seats.
    let one = RedisStore::new(&url, &prefix).unwrap();
    let two = RedisStore::new(&url, &prefix).unwrap();
    let (x, y) = (Token::from_raw("x"), Token::from_raw("y"));
    let r1 = one
        .update("shared", move |s| s.join(0, 1, x.clone(), 1_000))
        .await
        .unwrap();
    let r2 = two
        .update("shared", move |s| s.join(0, 1, y.clone(), 1_000))
        .await
        .unwrap();
    assert_eq!((r1, r2), (Ok(()), Err(SeatError::Full)));
    assert!(RedisStore::new("redis://127.0.0.1:1", &prefix)
        .unwrap()
        .ping()
        .await
        .is_err());
}

//! Two service instances on one Redis behave as one service: seats are counted across them,
//! members joined through different instances hear each other, and when one instance stops,
//! its members reconnect to the other with their tokens and keep their seats.

mod common;

use std::time::Duration;

use common::*;
use icepact_signal::{Config, RedisStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_are_one_service() {
    let Some((url, prefix)) = redis_or_skip("two_instances_on_one_redis_are_one_service").await
    else {
        return;
    };
    let mut config = Config::local();
    config.ping_interval = Duration::from_millis(200);
    config.lease_timeout = Duration::from_secs(2);
    let one = service_on(config.clone(), RedisStore::new(&url, &prefix).unwrap()).await;
    let two = service_on(config, RedisStore::new(&url, &prefix).unwrap()).await;
    assert_eq!(http(one.healthz_addr, "GET", "/healthz", "").await.0, 200);

    let (_, a) = join(one.addr, "call").await;
    let a = a.unwrap();
    let (_, b) = join(two.addr, "call").await;
    let b = b.unwrap();
    assert_eq!(
        join(one.addr, "call").await.0,
        409,
        "seats counted across instances"
    );
    assert_eq!(join(two.addr, "call").await.0, 409);

    let mut wa = handshake(one.addr, &a).await;
    assert_eq!(next(&mut wa).await.kind, "WELCOME");
    let mut wb = handshake(two.addr, &b).await;
    assert_eq!(next(&mut wb).await.kind, "WELCOME");
    assert_eq!(
        next(&mut wa).await.kind,
        "AVAILABLE",
        "B arrived on the other instance"
    );
    let (sa, sb) = (a.session.clone().unwrap(), b.session.clone().unwrap());
    assert_eq!(post(two.addr, "OFFER", "call", &sb, "offer").await, 200);
    assert_eq!(
        next(&mut wa).await.body.as_deref(),
        Some(sdp("OFFER", "offer").as_str())
    );
    assert_eq!(post(one.addr, "ANSWER", "call", &sa, "answer").await, 200);
    assert_eq!(
        next(&mut wb).await.body.as_deref(),
        Some(sdp("ANSWER", "answer").as_str())
    );

    // Instance one stops and A's client drops its connection to it; A rejoins its seat
    // through instance two.
    one.shutdown().await;
    drop(wa);
    let mut wa = handshake(two.addr, &a).await;
    assert_eq!(
        next(&mut wa).await.kind,
        "WELCOME",
        "rejoined with the token"
    );
    assert_eq!(join(two.addr, "call").await.0, 409, "A kept its seat");
    assert_eq!(post(two.addr, "OFFER", "call", &sb, "again").await, 200);
    let m = next(&mut wa).await;
    let m = if m.kind == "AVAILABLE" {
        next(&mut wa).await
    } else {
        m
    };
    assert_eq!(m.body.as_deref(), Some(sdp("OFFER", "again").as_str()));
    two.shutdown().await;
}

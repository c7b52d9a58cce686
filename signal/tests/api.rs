//! The service's API against a running instance (127.0.0.1, any port), once on the embedded
//! store and once on Redis: every endpoint, every error status and close code, seats and their
//! leases.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use icepact_signal::{Config, Envelope};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn two_members_join_hear_each_other_and_a_third_finds_no_seat(backing: Backing) {
    let s = backing.start(Config::local()).await;
    let (status, a) = join(s.addr, "room-1").await;
    let a = a.unwrap();
    assert_eq!(
        (status, a.kind.as_str(), a.call.as_str()),
        (200, "JOIN", "room-1")
    );
    let session = a.session.clone().unwrap();
    assert_eq!(session.len(), 32, "128-bit token in hex");
    let (_, b) = join(s.addr, "room-1").await;
    let b = b.unwrap();
    assert_eq!(join(s.addr, "room-1").await.0, 409, "two seats by default");
    assert_eq!(
        join(s.addr, "room-2").await.0,
        200,
        "another call has its own seats"
    );

    let mut wa = handshake(s.addr, &a).await;
    assert_eq!(next(&mut wa).await.kind, "WELCOME");
    let mut wb = handshake(s.addr, &b).await;
    assert_eq!(next(&mut wb).await.kind, "WELCOME");
    let available = next(&mut wa).await;
    assert_eq!(
        (available.kind.as_str(), available.session),
        ("AVAILABLE", None)
    );

    let sb = b.session.clone().unwrap();
    assert_eq!(post(s.addr, "OFFER", "room-1", &sb, "v=0 offer").await, 200);
    let offer = next(&mut wa).await;
    assert_eq!(
        offer,
        Envelope {
            kind: "OFFER".into(),
            call: "room-1".into(),
            session: None,
            body: Some(sdp("OFFER", "v=0 offer"))
        },
        "relayed without the sender's token"
    );
    assert_eq!(
        post(s.addr, "ANSWER", "room-1", &session, "v=0 answer").await,
        200
    );
    let answer = next(&mut wb).await;
    assert_eq!(
        (answer.kind.as_str(), answer.body.as_deref()),
        ("ANSWER", Some(sdp("ANSWER", "v=0 answer").as_str()))
    );
    // Neither got its own message back, and messages the client sends are ignored.
    wa.send(Message::text("{\"kind\":\"OFFER\"}"))
        .await
        .unwrap();
    stay(&mut wa, Duration::from_millis(300)).await;
    stay(&mut wb, Duration::from_millis(100)).await;
    s.shutdown().await;
}

async fn bad_requests_get_their_status_and_change_nothing(backing: Backing) {
    let mut config = Config::local();
    config.max_body = 1024;
    let s = backing.start(config).await;
    let (_, a) = join(s.addr, "c").await;
    let session = a.unwrap().session.unwrap();
    let addr = s.addr;
    assert_eq!(http(addr, "POST", "/signal", "{not json").await.0, 400);
    assert_eq!(
        http(addr, "POST", "/signal", "{\"kind\":\"OFFER\"}")
            .await
            .0,
        400
    );
    assert_eq!(
        post(addr, "HELLO", "c", &session, "x").await,
        400,
        "unknown kind"
    );
    // Rule CALL_NAMESPACE: each call holds one kind of member, and its messages fit it.
    let raw = |kind: &str, call: &str, body: &str| {
        let m = serde_json::json!({"kind": kind, "call": call, "session": session, "body": body});
        m.to_string()
    };
    let status = |m: String| async move { http(addr, "POST", "/signal", &m).await.0 };
    assert_eq!(
        status(raw("OFFER", "c", "AAEC")).await,
        400,
        "an envelope in a browser call"
    );
    assert_eq!(
        status(raw("OFFER", "ip-c", &sdp("OFFER", "v=0"))).await,
        400,
        "SDP in a node call"
    );
    assert_eq!(
        status(raw("ANSWER", "c", &sdp("OFFER", "v=0"))).await,
        400,
        "kind and type differ"
    );
    let end = r#"{"from":"x","candidate":null}"#;
    assert_eq!(status(raw("CANDIDATE", "c", end)).await, 200, "trickle ICE");
    assert_eq!(status(raw("CANDIDATE", "ip-c", end)).await, 400);
    assert_eq!(post(addr, "OFFER", "c", "not-a-token", "x").await, 400);
    let foreign = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        post(addr, "OFFER", "c", foreign, "x").await,
        409,
        "not a member"
    );
    assert_eq!(
        post(addr, "OFFER", "other", &session, "x").await,
        409,
        "another call's token"
    );
    let big = "x".repeat(2048);
    assert_eq!(post(addr, "OFFER", "c", &session, &big).await, 413);
    assert_eq!(join(addr, "bad%20name").await.0, 400);
    assert_eq!(join(addr, &"n".repeat(129)).await.0, 400);
    assert_eq!(http(addr, "GET", "/nowhere", "").await.0, 404);
    // The member's seat is untouched: it still publishes.
    assert_eq!(post(addr, "OFFER", "c", &session, "x").await, 200);
    s.shutdown().await;
}

async fn handshakes_that_are_late_malformed_or_expired_are_closed_with_their_code(
    backing: Backing,
) {
    let mut config = Config::local();
    config.handshake_timeout = Duration::from_millis(300);
    let s = backing.start(config).await;
    let mut silent = ws(s.addr).await;
    assert_eq!(
        closed_with(&mut silent).await,
        Some(CloseCode::Library(4008))
    );

    let mut garbage = ws(s.addr).await;
    garbage
        .send(Message::text("{\"kind\":\"JOIN\""))
        .await
        .unwrap();
    assert_eq!(
        closed_with(&mut garbage).await,
        Some(CloseCode::Library(4000))
    );

    let never_joined = Envelope {
        kind: "JOIN".into(),
        call: "c".into(),
        session: Some("0123456789abcdef0123456789abcdef".into()),
        body: None,
    };
    let mut stranger = handshake(s.addr, &never_joined).await;
    assert_eq!(
        closed_with(&mut stranger).await,
        Some(CloseCode::Library(4001))
    );
    s.shutdown().await;
}

async fn pongs_keep_a_seat_a_silent_client_loses_it_after_the_lease_and_a_token_rejoins(
    backing: Backing,
) {
    let mut config = Config::local();
    config.ping_interval = Duration::from_millis(100);
    config.lease_timeout = Duration::from_millis(500);
    let s = backing.start(config).await;
    let (_, a) = join(s.addr, "c").await;
    let a = a.unwrap();
    let (_, b) = join(s.addr, "c").await;
    let b = b.unwrap();
    // A answers pings for three leases: its seat stays, so a newcomer finds none...
    let mut wa = handshake(s.addr, &a).await;
    assert_eq!(next(&mut wa).await.kind, "WELCOME");
    // ...and A's connection drops and comes back with its token while the lease lives.
    drop(wa);
    let mut wa = handshake(s.addr, &a).await;
    assert_eq!(
        next(&mut wa).await.kind,
        "WELCOME",
        "rejoined with the token"
    );
    stay(&mut wa, Duration::from_millis(1_500)).await;
    // B never opened a WebSocket: its lease ran out, and only now is there a seat.
    let (status, c) = join(s.addr, "c").await;
    assert_eq!(status, 200, "B's seat is free after its lease");
    assert_eq!(join(s.addr, "c").await.0, 409, "A still holds its seat");
    let sb = b.session.clone().unwrap();
    assert_eq!(
        post(s.addr, "OFFER", "c", &sb, "x").await,
        409,
        "B's token expired"
    );
    let mut wb = handshake(s.addr, &b).await;
    assert_eq!(closed_with(&mut wb).await, Some(CloseCode::Library(4001)));
    assert!(c.unwrap().session.is_some());
    s.shutdown().await;
}

async fn floods_are_rate_limited_and_connections_are_bounded(backing: Backing) {
    let mut config = Config::local();
    config.ip_rate = 5;
    config.max_connections = 1;
    let s = backing.start(config).await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(join(s.addr, &format!("flood-{i}")).await.0);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let _first = ws(s.addr).await;
    let second = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.addr)).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    s.shutdown().await;
}

async fn health_and_metrics(backing: Backing) {
    let s = backing.start(Config::local()).await;
    assert_eq!(http(s.healthz_addr, "GET", "/healthz", "").await.0, 200);
    join(s.addr, "c").await;
    let (status, metrics) = http(s.healthz_addr, "GET", "/debug", "").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE signal_joins_total counter"),
        "{metrics}"
    );
    assert!(metrics.contains("signal_joins_total 1"), "{metrics}");
    s.shutdown().await;
}

/// Each test on both stores: `<test>::memory` and `<test>::redis` (Redis skipped, with a
/// message, when it is unreachable and `CI` is not set).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(Backing::Memory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if let Some((url, prefix)) = redis_or_skip(stringify!($name)).await {
                    super::$name(Backing::Redis(url, prefix)).await;
                }
            }
        }
    )*};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_and_the_client_table_are_served() {
    let s = Backing::Memory.start(Config::local()).await;
    let (status, page) = http(s.addr, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/app.js\">"), "{page}");
    let (status, script) = http(s.addr, "GET", "/app.js", "").await;
    assert_eq!(status, 200);
    assert!(script.contains("RTCPeerConnection"));
    let (status, table) = http(s.addr, "GET", "/client.json", "").await;
    assert_eq!(status, 200);
    let body = &table[table.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let t: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        t["states"].as_array().map(Vec::len),
        Some(icepact::room::ClientState::ALL.len())
    );
    assert_eq!(
        t["edges"].as_array().map(Vec::len),
        Some(icepact::room::edges().count())
    );
    s.shutdown().await;
}

on_both_stores!(
    two_members_join_hear_each_other_and_a_third_finds_no_seat,
    bad_requests_get_their_status_and_change_nothing,
    handshakes_that_are_late_malformed_or_expired_are_closed_with_their_code,
    pongs_keep_a_seat_a_silent_client_loses_it_after_the_lease_and_a_token_rejoins,
    floods_are_rate_limited_and_connections_are_bounded,
    health_and_metrics,
);

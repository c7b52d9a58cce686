//! Figures for docs/RUNTIME.md, against a Redis server on 127.0.0.1 (`ICEPACT_REDIS_URL`):
//! start→Connected over the real ICE agent (median of 20 runs) and the envelopes per second the
//! Redis backend carries between two keys. Bounded in count and time.
//!
//! `cargo bench -p icepact-tokio --features redis --bench runtime_redis`

use std::time::{Duration, Instant};

use icepact::wire::{Channel, Nonce, SecretKey};
use icepact::{Credentials, Description, SessionRef};
use icepact_tokio::{Backend, BackendEvent, Node, NodeConfig, RedisBackend};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const RUNS: usize = 20;
const MESSAGES: usize = 20_000;

fn secret(rng: &mut ChaCha20Rng) -> SecretKey {
    let mut b = [0; 32];
    rng.fill_bytes(&mut b);
    SecretKey::from_bytes(b)
}

async fn time_to_connected(url: &str, rng: &mut ChaCha20Rng) -> Duration {
    let (sa, sb) = (secret(rng), secret(rng));
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let start = Instant::now();
    let mut a = Node::start(
        RedisBackend::new(url).unwrap(),
        sa,
        &[kb],
        NodeConfig::default(),
    )
    .await
    .unwrap();
    let mut b = Node::start(
        RedisBackend::new(url).unwrap(),
        sb,
        &[ka],
        NodeConfig::default(),
    )
    .await
    .unwrap();
    let timeout = Duration::from_secs(30);
    a.wait_connected(kb, timeout).await.expect("A connects");
    b.wait_connected(ka, timeout).await.expect("B connects");
    let elapsed = start.elapsed();
    a.shutdown().await;
    b.shutdown().await;
    elapsed
}

async fn throughput(url: &str, rng: &mut ChaCha20Rng) -> (usize, Duration) {
    let (sa, sb) = (secret(rng), secret(rng));
    let kb = sb.public_key();
    let sender = RedisBackend::new(url).unwrap();
    let receiver = RedisBackend::new(url).unwrap();
    let mut sub = receiver.subscribe(kb).await.unwrap();
    assert_eq!(sub.recv().await, Some(BackendEvent::Subscribed));
    let d = Description {
        session: SessionRef {
            epoch: 1,
            version: 0,
        },
        ack: None,
        need_reply: true,
        credentials: Credentials {
            ufrag: "ufragufragufrag1".into(),
            pwd: "p".repeat(32).into(),
        },
        candidates: vec![icepact::Candidate::host("127.0.0.1:40000".parse().unwrap())],
        end_of_candidates: true,
        seen: None,
    };
    let channel = Channel::new(&sa, kb).unwrap();
    let envelopes: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|_| channel.seal(&d, Nonce::random(rng)).unwrap())
        .collect();
    let start = Instant::now();
    let publish = async {
        for e in envelopes {
            sender.publish(kb, e).await.unwrap();
        }
    };
    let receive = async {
        let mut got = 0;
        let deadline = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(deadline);
        while got < MESSAGES {
            tokio::select! {
                ev = sub.recv() => if let Some(BackendEvent::Envelope(_)) = ev { got += 1 },
                () = &mut deadline => break,
            }
        }
        got
    };
    let ((), got) = tokio::join!(publish, receive);
    (got, start.elapsed())
}

fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let url =
        std::env::var("ICEPACT_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = ChaCha20Rng::from_os_rng();
    rt.block_on(async {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            times.push(time_to_connected(&url, &mut rng).await);
        }
        times.sort();
        println!(
            "start->Connected over Redis + ICE on loopback, {RUNS} runs: median {:?}, min {:?}, max {:?}",
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        );
        let (got, elapsed) = throughput(&url, &mut rng).await;
        println!(
            "Redis backend, one publisher to one subscriber: {got}/{MESSAGES} envelopes in {elapsed:?} = {:.0} msg/s",
            got as f64 / elapsed.as_secs_f64()
        );
    });
}

//! Full meshes through the tokio runtime, as a user would run them: N nodes in one process on
//! loopback, every node a peer of every other, default `NodeConfig`, the built-in ICE agent.
//! Prints, per N: time until every session is Connected (p50/p99/max over sessions), restarts,
//! envelopes sent per session, CPU seconds and peak RSS. Figures for docs/RUNTIME.md.
//!
//! ```sh
//! cargo bench -p icepact-tokio --bench mesh -- 24 48 96 128            # in-process backend
//! cargo bench -p icepact-tokio --features redis --bench mesh -- --redis 24 48
//! cargo bench -p icepact-tokio --bench mesh -- --threads 2 128         # multi-threaded tokio
//! cargo bench -p icepact-tokio --bench mesh -- --admission 0 128       # rule ADMISSION off
//! ```
//!
//! Each mesh gets `--deadline` seconds (120 by default) to come all up; one that does not is
//! reported with how many sessions were up, not hidden.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use icepact::wire::SecretKey;
use icepact::{ConnectionState, PublicKey};
use icepact_tokio::{Backend, MemoryBackend, Node, NodeConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

struct Options {
    sizes: Vec<usize>,
    redis: bool,
    threads: usize,
    deadline: Duration,
    admission: usize,
}

fn options() -> Options {
    let mut o = Options {
        sizes: Vec::new(),
        redis: false,
        threads: 1,
        deadline: Duration::from_secs(120),
        admission: icepact::DEFAULT_MAX_ESTABLISHING,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--redis" => o.redis = true,
            "--threads" => o.threads = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            // Rule ADMISSION's bound (0: no limit).
            "--admission" => {
                o.admission = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(icepact::DEFAULT_MAX_ESTABLISHING)
            }
            "--deadline" => {
                o.deadline =
                    Duration::from_secs(args.next().and_then(|v| v.parse().ok()).unwrap_or(120))
            }
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            n => {
                if let Ok(n) = n.parse() {
                    o.sizes.push(n);
                }
            }
        }
    }
    if o.sizes.is_empty() {
        o.sizes = vec![24, 48];
    }
    o
}

/// User and system CPU seconds of this process, and its peak RSS in MB (Linux `/proc`).
fn cpu_and_peak_rss() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime is the 14th field.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // 100 ticks per second on Linux (sysconf(_SC_CLK_TCK)).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, rss_kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn mesh<B: Backend + Clone>(
    backend: B,
    n: usize,
    deadline: Duration,
    admission: usize,
    seed: u64,
) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let secrets: Vec<SecretKey> = (0..n)
        .map(|_| {
            let mut b = [0; 32];
            rng.fill_bytes(&mut b);
            SecretKey::from_bytes(b)
        })
        .collect();
    let keys: Vec<PublicKey> = secrets.iter().map(SecretKey::public_key).collect();
    let (cpu0, _) = cpu_and_peak_rss();
    let start = Instant::now();
    let mut nodes = Vec::new();
    for (i, secret) in secrets.into_iter().enumerate() {
        let remotes: Vec<PublicKey> = keys
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, k)| *k)
            .collect();
        nodes.push(
            Node::start(backend.clone(), secret, &remotes, {
                let mut c = NodeConfig::default();
                c.max_establishing = admission;
                c
            })
            .await
            .expect("node starts"),
        );
    }
    let sessions = n * (n - 1) / 2;
    // When each (node, remote) end was first seen Connected; a session is up when both ends are.
    let mut up_at: BTreeMap<(usize, PublicKey), Duration> = BTreeMap::new();
    let end = start + deadline;
    loop {
        let now = start.elapsed();
        for (i, node) in nodes.iter().enumerate() {
            for (remote, status) in node.status().peers {
                if matches!(
                    status.state,
                    ConnectionState::Connected | ConnectionState::Completed
                ) {
                    up_at.entry((i, remote)).or_insert(now);
                }
            }
        }
        if up_at.len() == 2 * sessions || Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut session_up: Vec<Duration> = Vec::new();
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            let j = keys.iter().position(|k| k == b).expect("a key of the mesh");
            if let (Some(x), Some(y)) = (up_at.get(&(i, *b)), up_at.get(&(j, *a))) {
                session_up.push((*x).max(*y));
            }
        }
    }
    session_up.sort();
    let (mut restarts, mut sent, mut dropped) = (0u64, 0u64, 0u64);
    for node in &nodes {
        let status = node.status();
        dropped += status.events_dropped + status.publish_dropped;
        for p in status.peers.values() {
            restarts += u64::from(p.restarts);
            sent += p.stats.sent;
        }
    }
    let (cpu1, rss) = cpu_and_peak_rss();
    let up = session_up.len();
    println!(
        "N={n:<4} sessions={sessions:<6} up={up:<6} {verdict:<9} p50={:>7.2}s p99={:>7.2}s max={:>7.2}s \
         restarts={restarts:<6} envelopes/session={:>5.1} cpu={:>6.1}s peak_rss={rss:.0}MB dropped={dropped}",
        percentile(&session_up, 0.5).as_secs_f64(),
        percentile(&session_up, 0.99).as_secs_f64(),
        session_up.last().copied().unwrap_or_default().as_secs_f64(),
        sent as f64 / sessions as f64,
        cpu1 - cpu0,
        verdict = if up == sessions { "all up" } else { "NOT all up" },
    );
    for node in nodes {
        node.shutdown().await;
    }
}

fn main() {
    let o = options();
    let rt = if o.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    }
    .expect("a tokio runtime");
    println!(
        "full meshes, {} backend, tokio {} thread(s), admission {}, deadline {} s",
        if o.redis { "Redis" } else { "in-process" },
        o.threads,
        o.admission,
        o.deadline.as_secs()
    );
    rt.block_on(async {
        for (seed, &n) in o.sizes.iter().enumerate() {
            if o.redis {
                redis_mesh(n, o.deadline, o.admission, seed as u64).await;
            } else {
                mesh(
                    MemoryBackend::new(),
                    n,
                    o.deadline,
                    o.admission,
                    seed as u64,
                )
                .await;
            }
        }
    });
}

#[cfg(feature = "redis")]
async fn redis_mesh(n: usize, deadline: Duration, admission: usize, seed: u64) {
    let url =
        std::env::var("ICEPACT_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let backend = icepact_tokio::RedisBackend::new(&url).expect("a Redis URL");
    mesh(backend, n, deadline, admission, seed).await;
}

#[cfg(not(feature = "redis"))]
async fn redis_mesh(_: usize, _: Duration, _: usize, _: u64) {
    eprintln!("--redis needs --features redis");
}

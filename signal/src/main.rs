//! `icepact-signal`: runs the room signaling service (see `--help`) with the embedded store, or
//! on a shared Redis with `--redis`, until Ctrl-C or SIGTERM.

use clap::Parser;
use icepact_signal::{start, Config, MemoryStore, RedisStore};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("icepact-signal: {e}");
        return std::process::ExitCode::from(2);
    }
    let started = match config.redis.clone() {
        Some(url) => match RedisStore::new(&url, &config.redis_prefix) {
            Ok(store) => start(config, store, shutdown()).await,
            Err(e) => {
                eprintln!("icepact-signal: --redis {url}: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        None => start(config, MemoryStore::new(), shutdown()).await,
    };
    match started {
        Ok(running) => {
            println!(
                "icepact-signal: API on {}, /healthz and /debug on {}",
                running.addr, running.healthz_addr
            );
            running.wait().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("icepact-signal: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

//! The service's knobs: each a command-line flag with an environment variable beside it, in
//! seed 004's style (`--addr` / `SIGNALS_ADDR`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;

/// Room signaling service: calls with a fixed number of leased seats, WebSocket presence, and
/// OFFER/ANSWER relay of opaque bodies.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address of the API (HTTP/1.1 and WebSocket). `:8080` means every interface.
    #[arg(long, env = "SIGNALS_ADDR", default_value = ":8080", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Address of `/healthz` and `/debug`.
    #[arg(long, env = "SIGNALS_HEALTHZ_ADDR", default_value = ":8090", value_parser = parse_addr)]
    pub healthz_addr: SocketAddr,
    /// Seats per call.
    #[arg(long, env = "SIGNALS_SEATS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub seats: u32,
    /// How long a new WebSocket may take to send its handshake.
    #[arg(long, env = "SIGNALS_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Interval of the server's WebSocket PINGs; each PONG renews the seat.
    #[arg(long, env = "SIGNALS_PING_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Lease of a seat: a seat not renewed for this long is free for a newcomer (longer than
    /// the ping interval).
    #[arg(long, env = "SIGNALS_LEASE_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub lease_timeout: Duration,
    /// Largest request body, in bytes (413 above).
    #[arg(long, env = "SIGNALS_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body: usize,
    /// Requests per second per session to `POST /signal` (429 above), with a burst of twice as
    /// many.
    #[arg(long, env = "SIGNALS_SESSION_RATE", default_value_t = 20)]
    pub session_rate: u32,
    /// Requests per second per client IP address, all endpoints (429 above), with a burst of
    /// twice as many.
    #[arg(long, env = "SIGNALS_IP_RATE", default_value_t = 100)]
    pub ip_rate: u32,
    /// Open WebSocket connections per instance (503 above).
    #[arg(long, env = "SIGNALS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Redis server shared by several instances (`redis://host:port`); without it the service
    /// keeps its state in memory (one instance).
    #[arg(long, env = "SIGNALS_REDIS")]
    pub redis: Option<String>,
    /// Prefix of the service's Redis keys and channels.
    #[arg(long, env = "SIGNALS_REDIS_PREFIX", default_value = "icepact-signal:")]
    pub redis_prefix: String,
}

impl Config {
    /// Checks what the flags cannot: the lease must outlive a ping interval.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_timeout <= self.ping_interval {
            return Err(format!(
                "--lease-timeout ({:?}) must be longer than --ping-interval ({:?})",
                self.lease_timeout, self.ping_interval
            ));
        }
        if self.handshake_timeout.is_zero() || self.ping_interval.is_zero() {
            return Err("timeouts and intervals must be positive".into());
        }
        Ok(())
    }

    /// The defaults, with both addresses on 127.0.0.1 and any port (tests, examples).
    pub fn local() -> Config {
        let mut c = Config::parse_from(["icepact-signal"]);
        c.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c.healthz_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c
    }
}

/// `:8080` (every interface), `127.0.0.1:8080`, `[::1]:8080` or `host:port`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

/// `500ms`, `2s`, `1m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{s}: not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s}: too long")),
        _ => Err(format!("{s}: unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_addresses() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("2h").is_err() && parse_duration("s").is_err());
        assert_eq!(
            parse_addr(":8080"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 8080)))
        );
        assert!(parse_addr("nonsense").is_err());
        let c = Config::parse_from(["x"]);
        assert_eq!(
            (c.seats, c.addr.port(), c.healthz_addr.port()),
            (2, 8080, 8090)
        );
        assert!(c.validate().is_ok());
        let bad = Config::parse_from(["x", "--lease-timeout", "1s"]);
        assert!(bad.validate().is_err());
    }
}

//! Exponential back-off with jitter and a cap, for re-sending unacknowledged descriptions.

use std::time::Duration;

use crate::rng::SessionRng;

/// Back-off parameters. The defaults are cunicu's (`pkg/config/defaults.go`): 500 ms initial
/// interval, ×1.5, ±50 % jitter, 60 s cap, never giving up. Start from [`Backoff::default`]
/// and set the fields you need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Backoff {
    /// The first nominal interval.
    pub initial: Duration,
    /// Growth per attempt, in per mille (1500 = ×1.5). Integer so the config stays `Eq + Hash`.
    pub multiplier_permille: u32,
    /// Jitter as a fraction in per mille: each interval is drawn uniformly from
    /// `[g·(1−j), g·(1+j)]` around the nominal interval `g` (500 = ±50 %).
    pub jitter_permille: u32,
    /// The largest nominal interval.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            multiplier_permille: 1500,
            jitter_permille: 500,
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The nominal (jitter-free) interval before attempt `k` (0-based):
    /// `min(initial · multiplier^k, max)`.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let mut g = self.initial;
        for _ in 0..attempt {
            if g >= self.max {
                break;
            }
            g = scale(g, f64::from(self.multiplier_permille) / 1000.0);
        }
        g.min(self.max)
    }

    /// The bounds `[lo, hi]` an interval for attempt `k` is drawn from.
    pub fn bounds(&self, attempt: u32) -> (Duration, Duration) {
        let g = self.nominal(attempt);
        let j = f64::from(self.jitter_permille.min(1000)) / 1000.0;
        (scale(g, 1.0 - j), scale(g, 1.0 + j))
    }

    /// A jittered interval for attempt `k`, drawn from the session RNG. Never zero, so a timer
    /// armed with it always lies strictly in the future.
    pub(crate) fn interval(&self, attempt: u32, rng: &mut SessionRng) -> Duration {
        let (lo, hi) = self.bounds(attempt);
        let d = lo.saturating_add(scale(hi.saturating_sub(lo), rng.unit()));
        d.max(Duration::from_millis(1))
    }
}

/// `d · factor`, saturating at `Duration::MAX` (a configuration with a huge interval or
/// multiplier must not panic: `Duration::mul_f64` does on overflow).
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(if factor > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cunicu_nominal_sequence() {
        let b = Backoff::default();
        let ms: Vec<u128> = (0..14).map(|k| b.nominal(k).as_millis()).collect();
        assert_eq!(
            ms,
            [
                500, 750, 1125, 1687, 2531, 3796, 5695, 8542, 12814, 19221, 28832, 43248, 60000,
                60000
            ]
        );
    }

    #[test]
    fn cunicu_backoff_test_vector() {
        // pkg/backoff/backoff_test.go: initial 100 ms, ×3, cap 10 s.
        let b = Backoff {
            initial: Duration::from_millis(100),
            multiplier_permille: 3000,
            jitter_permille: 100,
            max: Duration::from_secs(10),
        };
        let ms: Vec<u128> = (0..6).map(|k| b.nominal(k).as_millis()).collect();
        assert_eq!(ms, [100, 300, 900, 2700, 8100, 10000]);
    }

    #[test]
    fn extreme_configurations_saturate_instead_of_panicking() {
        let b = Backoff {
            initial: Duration::MAX,
            multiplier_permille: u32::MAX,
            jitter_permille: u32::MAX,
            max: Duration::MAX,
        };
        let mut rng = SessionRng::from_seed(crate::Seed::insecure_from_u64(1));
        for k in [0, 1, 2, u32::MAX] {
            let (lo, hi) = b.bounds(k);
            assert!(lo <= hi);
            let _ = b.interval(k, &mut rng);
        }
    }

    #[test]
    fn jittered_intervals_stay_in_bounds() {
        let b = Backoff::default();
        let mut rng = SessionRng::from_seed(crate::Seed::insecure_from_u64(7));
        for k in 0..20 {
            let (lo, hi) = b.bounds(k);
            for _ in 0..50 {
                let d = b.interval(k, &mut rng);
                assert!(
                    d >= lo && d <= hi,
                    "attempt {k}: {d:?} not in [{lo:?}, {hi:?}]"
                );
            }
        }
    }
}

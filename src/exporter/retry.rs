//! `retry_on_failure`: exponential backoff with jitter (Collector option names
//! and defaults), honouring a server's retry hint.
//!
//! A server hint (gRPC `RetryInfo`, HTTP `Retry-After`) lengthens a wait, as
//! in the Collector's exporterhelper (the wait is `max(backoff, hint)`), but
//! never beyond [`RetrySettings::hint_cap`]: `max_interval`, or
//! [`HINT_CEILING`] (30 s, the Collector's default `max_interval`) when that
//! is larger. Hints up to that are honoured in full, so an agent backs off as
//! long as an overloaded gateway asks; a broken or hostile backend cannot
//! park a batch for longer. All arithmetic saturates: any config value or
//! hint, up to `u64::MAX` seconds, is a valid input.

use std::time::Duration;

use crate::clock;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrySettings {
    pub enabled: bool,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// Zero = retry forever.
    pub max_elapsed_time: Duration,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

/// Server hints are honoured up to this, or up to `max_interval` if larger.
pub const HINT_CEILING: Duration = Duration::from_secs(30);

impl RetrySettings {
    /// The longest wait a server's retry hint may ask for.
    pub fn hint_cap(&self) -> Duration {
        self.max_interval.max(self.initial_interval).max(HINT_CEILING)
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

/// The backoff state of one export.
#[derive(Debug)]
pub struct Backoff {
    settings: RetrySettings,
    current: Duration,
    elapsed: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(settings: RetrySettings, seed: u64) -> Self {
        Backoff {
            settings,
            current: settings.initial_interval,
            elapsed: Duration::ZERO,
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> f64 {
        // xorshift64*: cheap, good enough for jitter.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The wait before the next attempt, or `None` when retries are exhausted.
    /// `hint` is the server's RetryInfo / Retry-After delay, used when longer
    /// than the backoff, capped at [`RetrySettings::hint_cap`].
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Option<Duration> {
        if !self.settings.enabled {
            return None;
        }
        let f = self.settings.randomization_factor;
        let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
        let base = self.current.as_secs_f64();
        let jittered = base * (1.0 - f + 2.0 * f * self.next_random());
        let mut delay = clock::from_secs_f64(jittered);
        if let Some(h) = hint {
            delay = delay.max(h.min(self.settings.hint_cap()));
        }
        let max_elapsed = self.settings.max_elapsed_time;
        if !max_elapsed.is_zero() && self.elapsed.saturating_add(delay) > max_elapsed {
            return None;
        }
        self.elapsed = self.elapsed.saturating_add(delay);
        let next = base * self.settings.multiplier.max(1.0);
        self.current = clock::from_secs_f64(next).min(self.settings.max_interval);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_and_caps() {
        let s = RetrySettings {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            max_elapsed_time: Duration::from_secs(3),
            multiplier: 2.0,
            randomization_factor: 0.5,
            ..Default::default()
        };
        let mut b = Backoff::new(s, 42);
        let mut base = 100.0f64;
        let mut total = Duration::ZERO;
        while let Some(d) = b.next_delay(None) {
            let ms = d.as_secs_f64() * 1000.0;
            assert!(ms >= base * 0.5 - 1e-6 && ms <= base * 1.5 + 1e-6, "{ms} vs {base}");
            base = (base * 2.0).min(400.0);
            total += d;
        }
        assert!(total <= Duration::from_secs(3));
        assert!(total >= Duration::from_millis(2000), "{total:?}");
    }

    #[test]
    fn hint_and_disabled_and_forever() {
        let mut b = Backoff::new(
            RetrySettings {
                initial_interval: Duration::from_millis(10),
                ..Default::default()
            },
            7,
        );
        assert!(b.next_delay(Some(Duration::from_secs(2))).unwrap() >= Duration::from_secs(2));
        let mut off = Backoff::new(
            RetrySettings {
                enabled: false,
                ..Default::default()
            },
            1,
        );
        assert_eq!(off.next_delay(None), None);
        let mut forever = Backoff::new(
            RetrySettings {
                max_elapsed_time: Duration::ZERO,
                initial_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            3,
        );
        for _ in 0..100 {
            assert!(forever.next_delay(None).is_some());
        }
    }

    #[test]
    fn absurd_hints_and_settings_saturate() {
        // The README's agent config: retry forever.
        let forever = RetrySettings {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            max_elapsed_time: Duration::ZERO,
            ..Default::default()
        };
        let mut b = Backoff::new(forever, 11);
        for _ in 0..1000 {
            let d = b.next_delay(Some(Duration::MAX)).unwrap();
            assert_eq!(d, HINT_CEILING, "the hint is capped");
        }
        // A hint longer than max_interval but under the ceiling is honoured.
        assert_eq!(b.next_delay(Some(Duration::from_secs(7))), Some(Duration::from_secs(7)));
        // With a larger max_interval, that is the cap.
        let mut b = Backoff::new(
            RetrySettings {
                max_interval: Duration::from_secs(90),
                ..forever
            },
            3,
        );
        assert_eq!(b.next_delay(Some(Duration::MAX)), Some(Duration::from_secs(90)));
        // Defaults: a huge hint is capped at 30 s, so retries go on until
        // max_elapsed_time (300 s) instead of overflowing or giving up at once.
        let mut b = Backoff::new(RetrySettings::default(), 5);
        let mut n = 0;
        while let Some(d) = b.next_delay(Some(Duration::new(u64::MAX, 999_999_999))) {
            // max(backoff with jitter (up to 1.5 × 30 s), hint capped at 30 s).
            assert!(d >= Duration::from_secs(30) && d <= Duration::from_secs(45), "{d:?}");
            n += 1;
        }
        assert!((6..=10).contains(&n), "{n} retries in 300 s");
        // Absurd settings: nothing panics.
        let huge = RetrySettings {
            initial_interval: Duration::MAX,
            max_interval: Duration::MAX,
            max_elapsed_time: Duration::ZERO,
            multiplier: f64::INFINITY,
            randomization_factor: f64::NAN,
            enabled: true,
        };
        let mut b = Backoff::new(huge, 1);
        for _ in 0..10 {
            assert!(b.next_delay(Some(Duration::MAX)).is_some());
        }
        let mut b = Backoff::new(
            RetrySettings {
                max_elapsed_time: Duration::MAX,
                ..huge
            },
            1,
        );
        for _ in 0..10 {
            assert!(b.next_delay(None).is_some());
        }
    }
}

//! The per-shard circuit breaker of one exporter connection: closed → open
//! after `failure_threshold` consecutive failed attempts; while open nothing is
//! sent; after `recovery_timeout` exactly one probe goes out (half-open), whose
//! success closes the breaker and whose failure opens it again. A plain state
//! machine over `Instant`s: the shard owns it, no locks.

use std::time::{Duration, Instant};

use crate::config::CircuitBreakerConfig;

/// The breaker's state; the discriminant is the metric value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// What the caller may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Send normally.
    Go,
    /// Send the single half-open probe; report its outcome.
    Probe,
    /// Do not send; ask again after this long.
    Wait(Duration),
}

/// How long a caller waits while another caller's probe is in flight.
const PROBE_POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: CircuitBreakerConfig,
    state: State,
    failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(cfg: CircuitBreakerConfig) -> Self {
        CircuitBreaker {
            cfg,
            state: State::Closed,
            failures: 0,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether new work should be taken from the queue now (false while open
    /// and the recovery timeout has not passed, or while a probe is out).
    pub fn admits(&self, now: Instant) -> bool {
        self.wait_time(now).is_none()
    }

    /// How long until an attempt could be allowed, `None` if one may go now.
    pub fn wait_time(&self, now: Instant) -> Option<Duration> {
        if !self.cfg.enabled {
            return None;
        }
        match self.state {
            State::Closed => None,
            State::Open => {
                let until = crate::clock::after(self.opened_at.unwrap_or(now), self.cfg.recovery_timeout);
                (until > now).then(|| until - now)
            }
            State::HalfOpen => self.probe_in_flight.then_some(PROBE_POLL),
        }
    }

    /// Asks to send one attempt.
    pub fn acquire(&mut self, now: Instant) -> Permit {
        if !self.cfg.enabled {
            return Permit::Go;
        }
        if let Some(d) = self.wait_time(now) {
            return Permit::Wait(d);
        }
        match self.state {
            State::Closed => Permit::Go,
            State::Open | State::HalfOpen => {
                self.state = State::HalfOpen;
                self.probe_in_flight = true;
                Permit::Probe
            }
        }
    }

    /// The backend answered (accepted, or refused for a reason that is not its
    /// health, such as a permanent error): the connection works.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.probe_in_flight = false;
        self.state = State::Closed;
        self.opened_at = None;
    }

    /// An attempt failed in a way that says the backend is unhealthy.
    pub fn on_failure(&mut self, now: Instant) {
        if !self.cfg.enabled {
            return;
        }
        match self.state {
            State::HalfOpen => {
                self.probe_in_flight = false;
                self.open(now);
            }
            State::Open => {}
            State::Closed => {
                self.failures += 1;
                if self.failures >= self.cfg.failure_threshold.max(1) {
                    self.open(now);
                }
            }
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = State::Open;
        self.opened_at = Some(now);
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(threshold: u32, ms: u64) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            enabled: true,
            failure_threshold: threshold,
            recovery_timeout: Duration::from_millis(ms),
        }
    }

    #[test]
    fn opens_after_threshold_probes_once_and_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(3, 1000));
        for _ in 0..2 {
            assert_eq!(b.acquire(t0), Permit::Go);
            b.on_failure(t0);
            assert_eq!(b.state(), State::Closed);
        }
        b.on_failure(t0);
        assert_eq!(b.state(), State::Open);
        assert!(!b.admits(t0 + Duration::from_millis(999)));
        assert_eq!(
            b.acquire(t0 + Duration::from_millis(400)),
            Permit::Wait(Duration::from_millis(600))
        );
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(b.acquire(t1), Permit::Probe);
        assert_eq!(b.state(), State::HalfOpen);
        // Only one probe at a time.
        assert!(matches!(b.acquire(t1), Permit::Wait(_)));
        b.on_success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.acquire(t1), Permit::Go);
    }

    #[test]
    fn failed_probe_reopens_and_success_resets_count() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(2, 100));
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        assert_eq!(b.state(), State::Closed, "success resets the consecutive count");
        b.on_failure(t0);
        assert_eq!(b.state(), State::Open);
        let t1 = t0 + Duration::from_millis(150);
        assert_eq!(b.acquire(t1), Permit::Probe);
        b.on_failure(t1);
        assert_eq!(b.state(), State::Open);
        assert!(matches!(b.acquire(t1 + Duration::from_millis(50)), Permit::Wait(_)));
        assert_eq!(b.acquire(t1 + Duration::from_millis(100)), Permit::Probe);
    }

    #[test]
    fn disabled_never_blocks() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(CircuitBreakerConfig::default());
        for _ in 0..100 {
            b.on_failure(t0);
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.acquire(t0), Permit::Go);
    }
}

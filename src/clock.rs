//! Saturating time arithmetic for every wait whose length comes from outside.
//!
//! Wait lengths come from the config (`timeout`, `max_interval`,
//! `recovery_timeout`, `shutdown_timeout`, `check_interval`, up to
//! `u64::MAX` seconds after parsing) or from a backend (`Retry-After`, gRPC
//! `RetryInfo`). `Instant + Duration` and
//! glommio's `Timer::new` panic on overflow, so waits go through these
//! helpers: instants saturate at [`FAR`] from now, sleeps are taken in
//! bounded steps, and float seconds saturate instead of panicking.

use std::time::{Duration, Instant};

/// The farthest future instant computed: about 100 years. A wait this long is
/// "never" for a running process, and `Instant::now() + FAR` cannot overflow.
pub const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The longest single timer armed; longer sleeps are taken in steps, so no
/// timer ever computes an instant past the clock's range.
const STEP: Duration = Duration::from_secs(24 * 3600);

/// `now + d`, saturating at `now + FAR`.
pub fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// `secs` seconds as a `Duration`: NaN and negative give zero, too large
/// gives `Duration::MAX` (never a panic, unlike `Duration::from_secs_f64`).
pub fn from_secs_f64(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Sleeps `d` (any length, even `Duration::MAX`) on the glommio executor.
pub async fn sleep(d: Duration) {
    let mut left = d;
    while !left.is_zero() {
        let step = left.min(STEP);
        glommio::timer::sleep(step).await;
        left -= step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + FAR);
        assert_eq!(after(now, Duration::from_secs(3)), now + Duration::from_secs(3));
        assert_eq!(from_secs_f64(f64::NAN), Duration::ZERO);
        assert_eq!(from_secs_f64(-1.0), Duration::ZERO);
        assert_eq!(from_secs_f64(f64::INFINITY), Duration::MAX);
        assert_eq!(from_secs_f64(1e300), Duration::MAX);
        assert_eq!(from_secs_f64(1.5), Duration::from_millis(1500));
    }
}

//! Admission of new connections on a shard: the per-shard connection limit
//! (`tuning.max_connections`; connections over it are closed at once and
//! counted), and what the accept loop does when `accept` fails (out of file
//! descriptors, typically): back off, doubling up to a second, and log one
//! line per second with a count instead of one per failure.

use std::{
    cell::Cell,
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{net::conn_watch::CloseReason, telemetry::Stats};

/// The open-files reserve kept for everything but client connections
/// (listeners, exporter connections, spool and log files, io_uring, eventfds).
pub const FD_RESERVE: u64 = 256;

/// The default `max_connections` per shard: the open-files limit less the
/// reserve, shared by the shards (at least 16 each).
pub fn default_max_connections(nofile: u64, shards: usize) -> u64 {
    (nofile.saturating_sub(FD_RESERVE) / shards.max(1) as u64).max(16)
}

/// One shard's open connections, shared by its listeners.
#[derive(Debug)]
pub struct ShardConns {
    open: Cell<u64>,
    max: u64,
    /// Where to count (`None` for listeners sluice serves itself: metrics, health).
    stats: Option<(Stats, usize)>,
    refused_since_log: Cell<u64>,
    last_refusal_log: Cell<Option<Instant>>,
}

impl ShardConns {
    pub fn new(max: u64, stats: Option<(Stats, usize)>) -> Rc<Self> {
        Rc::new(ShardConns {
            open: Cell::new(0),
            max,
            stats,
            refused_since_log: Cell::new(0),
            last_refusal_log: Cell::new(None),
        })
    }

    fn with_stats(&self, f: impl FnOnce(&crate::telemetry::ConnStats)) {
        if let Some((s, shard)) = &self.stats {
            f(&s.shards[*shard].conns);
        }
    }

    /// Admits a new connection, or counts it refused (the caller closes it).
    pub fn admit(self: &Rc<Self>) -> Option<Slot> {
        let open = self.open.get();
        if open >= self.max {
            self.with_stats(|c| c.refused.add(1));
            let n = self.refused_since_log.get() + 1;
            self.refused_since_log.set(n);
            let now = Instant::now();
            if self
                .last_refusal_log
                .get()
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                tracing::warn!(
                    refused = n,
                    max_connections = self.max,
                    "connection limit reached: closing new connections at once"
                );
                self.last_refusal_log.set(Some(now));
                self.refused_since_log.set(0);
            }
            return None;
        }
        self.open.set(open + 1);
        self.with_stats(|c| c.open.set(open + 1));
        Some(Slot(self.clone()))
    }

    /// Counts a connection closed by its watchdog.
    pub fn closed(&self, reason: CloseReason) {
        self.with_stats(|c| c.closed[reason as usize].add(1));
    }

    pub fn open(&self) -> u64 {
        self.open.get()
    }
}

/// An admitted connection's place; freed when dropped.
#[derive(Debug)]
pub struct Slot(Rc<ShardConns>);

impl Drop for Slot {
    fn drop(&mut self) {
        let n = self.0.open.get().saturating_sub(1);
        self.0.open.set(n);
        self.0.with_stats(|c| c.open.set(n));
    }
}

/// First and longest pause after a failed accept.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// An accept loop's failures: backoff and a rate-limited log.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    backoff: Duration,
    since_log: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    /// Records a failure; returns how long to pause before accepting again.
    pub fn failed(&mut self, e: &std::io::Error, conns: &ShardConns) -> Duration {
        conns.with_stats(|c| c.accept_errors.add(1));
        self.since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                error = %e,
                failures = self.since_log,
                open_connections = conns.open(),
                "accept failed; backing off (one line per second at most)"
            );
            self.last_log = Some(now);
            self.since_log = 0;
        }
        self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.backoff
    }

    /// An accept succeeded: the next failure starts the backoff afresh.
    pub fn succeeded(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limit_shares_the_open_files_limit() {
        assert_eq!(default_max_connections(1024, 2), 384);
        assert_eq!(default_max_connections(1024, 1), 768);
        assert_eq!(default_max_connections(100, 4), 16);
    }

    #[test]
    fn slots_are_counted_and_refused_over_the_limit() {
        let c = ShardConns::new(2, None);
        let a = c.admit().unwrap();
        let _b = c.admit().unwrap();
        assert!(c.admit().is_none());
        drop(a);
        assert_eq!(c.open(), 1);
        assert!(c.admit().is_some());
    }

    #[test]
    fn backoff_doubles_up_to_a_second_and_resets() {
        let c = ShardConns::new(1, None);
        let mut e = AcceptErrors::default();
        let err = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(e.failed(&err, &c), BACKOFF_MIN);
        assert_eq!(e.failed(&err, &c), BACKOFF_MIN * 2);
        for _ in 0..20 {
            e.failed(&err, &c);
        }
        assert_eq!(e.failed(&err, &c), BACKOFF_MAX);
        e.succeeded();
        assert_eq!(e.failed(&err, &c), BACKOFF_MIN);
    }
}

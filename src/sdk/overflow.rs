//! What recording does when a thread's ring cannot take more (`overflow`).
//!
//! The ring is the collector's buffer: the shard moves records out of it only
//! while its sending queue has room, so a stalled backend fills the queue,
//! then the rings, and then this policy decides:
//!
//! - `DropNew`: the new record is refused, counted, and handed back to a
//!   native caller.
//! - `DropOldest`: the newest data wins. The producer cannot take from its own
//!   SPSC ring without a lock, so the shard trims from its side instead: with
//!   this policy it keeps draining the rings while the sending queue is full
//!   and evicts the oldest queued batch for each new one (counted as
//!   `dropped_oldest`). A producer that finds its ring full meanwhile wakes
//!   the shard and yields until the shard made room (bounded by
//!   `backpressure_wait`, at least 100 ms); only past that bound is the new
//!   record dropped (counted as `dropped_new`).
//! - `Sample(pct)`: while the ring holds at least the high-water mark, only
//!   `pct` percent of new records are kept, decided by trace id with the same
//!   hash as `sending_queue.overflow: sample` (a trace is kept or dropped
//!   whole, across threads). A full ring refuses like `DropNew`.
//! - `Backpressure`: the record is handed back with `Rejected::Backpressure`
//!   so the caller can slow down or retry; before that the producer spins and
//!   yields for at most `backpressure_wait` (zero by default).

use std::time::Duration;

/// The overflow policy of the rings.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Overflow {
    #[default]
    DropNew,
    DropOldest,
    /// Percentage (0..=100) kept above the high-water mark.
    Sample(f64),
    Backpressure,
}

/// Why a record was not recorded; the record comes back with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The ring was full (`DropNew`, `Sample`, or `DropOldest` past its bound).
    Dropped,
    /// The ring was full under `Backpressure`: slow down or retry.
    Backpressure,
    /// The collector is shut down.
    Closed,
}

/// A refused record, given back to the caller.
#[derive(Debug)]
pub struct Rejected<T> {
    pub reason: RejectReason,
    pub record: T,
}

/// The least a `DropOldest` producer waits for the shard to make room.
pub const DROP_OLDEST_MIN_WAIT: Duration = Duration::from_millis(100);

/// The ring occupancy (records) from which `Sample` samples and the shard is
/// woken early, for a ring of `capacity` and a percentage of it.
pub fn high_water(capacity: usize, percentage: f64) -> usize {
    ((capacity as f64 * percentage.clamp(0.0, 100.0) / 100.0).ceil() as usize).clamp(1, capacity.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_water_marks() {
        assert_eq!(high_water(100, 50.0), 50);
        assert_eq!(high_water(3, 50.0), 2);
        assert_eq!(high_water(10, 0.0), 1);
        assert_eq!(high_water(10, 250.0), 10);
    }
}

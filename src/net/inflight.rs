//! The per-shard in-flight byte budget. Request bodies being received are
//! charged to it (in full as soon as their size is known: a Content-Length or
//! a gRPC length prefix; otherwise frame by frame) until the request is handed
//! to the pipelines or refused. When it is spent, body reads stop polling, which
//! keeps HTTP/2 flow-control windows closed and HTTP/1.1 sockets unread, instead
//! of buffering more. Shard-local (`Cell`s, no atomics): one per shard.
//!
//! Fairness: a request larger than 1/16 of the budget draws from at most 3/4 of
//! it and small requests always have a quarter of their own, so stalled large
//! uploads cannot starve small requests. One large request is admitted even
//! when it does not fit (so a budget below `max_recv_msg_size` still serves the
//! largest message): a shard holds at most its budget plus one message. A
//! request whose size is known reserves all of it before reading on, so
//! readers never deadlock holding parts of the budget.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

/// Default budget per shard without a memory limiter or `tuning.inflight_budget_mib`.
pub const DEFAULT_BUDGET: usize = 64 << 20;
/// The smallest budget: a few 16 KiB frames for each of a handful of streams.
pub const MIN_BUDGET: usize = 1 << 20;
/// Freed memory is returned to the OS (malloc_trim) after a peak of at least this.
const TRIM_PEAK: usize = 8 << 20;
/// ... at most this often.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// The budget of one shard, bytes: `tuning.inflight_budget_mib` if set, else
/// a quarter of the memory limiter's soft limit divided among shards (the rest
/// is for batches, queues and per-connection buffers), else `DEFAULT_BUDGET`.
pub fn budget_bytes(configured_mib: Option<u64>, limiter_soft: Option<u64>, shards: usize) -> usize {
    let b = match (configured_mib, limiter_soft) {
        (Some(mib), _) => mib.saturating_mul(1 << 20),
        (None, Some(soft)) => soft / 4 / shards.max(1) as u64,
        (None, None) => DEFAULT_BUDGET as u64,
    };
    usize::try_from(b).unwrap_or(usize::MAX).max(MIN_BUDGET)
}

thread_local! {
    static LAST_TRIM: Cell<Option<Instant>> = const { Cell::new(None) };
    static TRIM_SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

/// Returns freed heap memory to the OS (malloc_trim), at most once per
/// `TRIM_EVERY` on this shard: now if the last trim is old enough, else once
/// that interval has passed. Called when a burst of request bytes was released
/// and when a connection closes: without it glibc keeps the freed memory of
/// stalled uploads and of the streams of closed connections.
pub fn trim_soon() {
    let now = Instant::now();
    let last = LAST_TRIM.with(|t| t.get());
    match last {
        Some(l) if now.duration_since(l) < TRIM_EVERY => {
            if !TRIM_SCHEDULED.with(|s| s.replace(true)) {
                let wait = TRIM_EVERY - now.duration_since(l);
                glommio::spawn_local(async move {
                    glommio::timer::sleep(wait).await;
                    TRIM_SCHEDULED.with(|s| s.set(false));
                    LAST_TRIM.with(|t| t.set(Some(Instant::now())));
                    crate::processor::memory_limiter::trim();
                })
                .detach();
            }
        }
        _ => {
            LAST_TRIM.with(|t| t.set(Some(now)));
            crate::processor::memory_limiter::trim();
        }
    }
}

/// Waiting for the budget took longer than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetTimeout;

#[derive(Debug)]
pub struct InflightBudget {
    cap: usize,
    used: Cell<usize>,
    /// The part of `used` held by large reservations.
    large_used: Cell<usize>,
    /// The part of `used` held by requests waiting for a large reservation
    /// (the first frame that told their size): not counted against small ones.
    parked: Cell<usize>,
    /// Reads waiting for room, in arrival order.
    waiters: RefCell<VecDeque<Waiter>>,
    peak: Cell<usize>,
}

impl InflightBudget {
    pub fn new(cap: usize) -> Rc<Self> {
        Rc::new(InflightBudget {
            cap: cap.max(1),
            used: Cell::new(0),
            large_used: Cell::new(0),
            parked: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
            peak: Cell::new(0),
        })
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    fn large_threshold(&self) -> usize {
        self.cap / 16
    }

    /// Whether a reservation of `n` bytes fits now.
    fn fits(&self, n: usize) -> bool {
        self.fits_with(n, 0)
    }

    /// Whether `n` bytes would fit with `promised` more bytes charged.
    fn fits_with(&self, n: usize, promised: usize) -> bool {
        let used = self.used.get() + promised;
        let large = self.large_used.get();
        if n <= self.large_threshold() {
            // Small requests may always use a quarter of their own.
            let small = used.saturating_sub(large + self.parked.get());
            used + n <= self.cap || small + n <= self.cap / 4 || used == 0
        } else {
            // Large ones at most 3/4 of it; one alone may exceed that.
            large == 0 || (used + n <= self.cap && large + n <= self.cap / 4 * 3)
        }
    }

    /// Wakes, in order, the waiters whose reservation fits in what was freed.
    fn wake_fitting(&self) {
        let mut ws = self.waiters.borrow_mut();
        let mut promised = 0usize;
        let mut i = 0;
        while i < ws.len() {
            if ws[i].done.get() {
                ws.remove(i); // gave up waiting
            } else if self.fits_with(ws[i].n, promised) {
                let w = ws.remove(i).expect("index in range");
                promised += w.n;
                w.done.set(true);
                w.waker.wake();
            } else {
                i += 1;
            }
        }
    }

    fn charge(&self, n: usize, large: bool) {
        let u = self.used.get() + n;
        self.used.set(u);
        if large {
            self.large_used.set(self.large_used.get() + n);
        }
        if u > self.peak.get() {
            self.peak.set(u);
        }
    }

    fn release(&self, n: usize, large: bool) {
        if n == 0 {
            return;
        }
        let u = self.used.get().saturating_sub(n);
        self.used.set(u);
        if large {
            self.large_used.set(self.large_used.get().saturating_sub(n));
        }
        if !self.waiters.borrow().is_empty() {
            self.wake_fitting();
        }
        if u <= self.cap / 8 && self.peak.get() >= TRIM_PEAK {
            self.peak.set(u);
            trim_soon();
        }
    }

    /// An empty holding on this budget; what it is charged is given back when it drops.
    pub fn hold(self: &Rc<Self>) -> Held {
        Held {
            budget: self.clone(),
            small: 0,
            large: 0,
            parked: 0,
        }
    }

    /// Waits (until `deadline`) for room to reserve `n` bytes, then charges them to `held`.
    pub async fn reserve(&self, held: &mut Held, n: usize, deadline: Instant) -> Result<(), BudgetTimeout> {
        loop {
            if self.fits(n) {
                held.charge(n, n > self.large_threshold());
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BudgetTimeout);
            }
            let woken = Woken {
                budget: self,
                n,
                done: None,
            };
            let _ = glommio::timer::timeout(deadline - now, async {
                woken.await;
                Ok(())
            })
            .await;
        }
    }
}

/// A read waiting for `n` bytes of room; `done` is set when it is woken or
/// gives up (then the entry is dropped at the next wake-up pass).
#[derive(Debug)]
struct Waiter {
    n: usize,
    done: Rc<Cell<bool>>,
    waker: Waker,
}

/// Resolves once the budget woke this waiter (room for `n` was freed).
struct Woken<'a> {
    budget: &'a InflightBudget,
    n: usize,
    done: Option<Rc<Cell<bool>>>,
}

impl Future for Woken<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.done {
            Some(d) if d.get() => Poll::Ready(()),
            // Polled again without a wake-up: the waker of a task does not change.
            Some(_) => Poll::Pending,
            None => {
                let done = Rc::new(Cell::new(false));
                self.budget.waiters.borrow_mut().push_back(Waiter {
                    n: self.n,
                    done: done.clone(),
                    waker: cx.waker().clone(),
                });
                self.done = Some(done);
                Poll::Pending
            }
        }
    }
}

impl Drop for Woken<'_> {
    fn drop(&mut self) {
        if let Some(d) = &self.done {
            d.set(true);
        }
    }
}

/// Bytes charged to a budget for one request; given back on drop.
#[derive(Debug)]
pub struct Held {
    budget: Rc<InflightBudget>,
    small: usize,
    large: usize,
    parked: usize,
}

impl Held {
    fn charge(&mut self, n: usize, large: bool) {
        self.budget.charge(n, large);
        if large {
            self.large += n;
        } else {
            self.small += n;
        }
    }

    /// Charges `n` bytes that are already in memory, whether or not they fit.
    pub fn force(&mut self, n: usize) {
        self.charge(n, false);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.small + self.large + self.parked
    }

    /// Marks what is held as parked while the request waits for a large
    /// reservation, so waiting large requests do not use up the room kept
    /// for small ones (the bytes stay charged).
    pub fn park(&mut self) {
        self.budget.parked.set(self.budget.parked.get() + self.small);
        self.parked += self.small;
        self.small = 0;
    }

    pub fn budget(&self) -> &Rc<InflightBudget> {
        &self.budget
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // One release (one wake-up of the waiters) for all parts.
        if self.large > 0 {
            self.budget
                .large_used
                .set(self.budget.large_used.get().saturating_sub(self.large));
        }
        if self.parked > 0 {
            self.budget
                .parked
                .set(self.budget.parked.get().saturating_sub(self.parked));
        }
        self.budget.release(self.small + self.large + self.parked, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_from_config() {
        assert_eq!(budget_bytes(Some(10), Some(1 << 30), 4), 10 << 20);
        assert_eq!(budget_bytes(None, Some(160 << 20), 2), 20 << 20);
        assert_eq!(budget_bytes(None, None, 2), DEFAULT_BUDGET);
        assert_eq!(budget_bytes(None, Some(1 << 20), 8), MIN_BUDGET);
        assert_eq!(budget_bytes(Some(u64::MAX), None, 1), usize::MAX);
    }

    #[test]
    fn small_requests_keep_a_quarter_that_large_ones_cannot_take() {
        let b = InflightBudget::new(16 << 20);
        let mut big = b.hold();
        assert!(b.fits(10 << 20));
        big.charge(10 << 20, true);
        // Large: would pass 3/4 of the budget.
        assert!(!b.fits(3 << 20));
        // Small ones still fit up to the whole budget.
        assert!(b.fits(1 << 20));
        let mut small = b.hold();
        small.force(6 << 20);
        assert_eq!(b.used(), 16 << 20);
        assert!(!b.fits(1));
        assert!(!b.fits(2 << 20));
        drop(big);
        assert_eq!(b.used(), 6 << 20);
        assert_eq!(b.large_used.get(), 0);
        assert!(b.fits(6 << 20));
        drop(small);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn one_oversized_request_is_admitted_alone() {
        let b = InflightBudget::new(4 << 20);
        assert!(b.fits(20 << 20));
        let mut h = b.hold();
        h.charge(20 << 20, true);
        assert!(!b.fits(20 << 20));
        assert!(!b.fits(2 << 20));
        // Small requests keep their quarter.
        assert!(b.fits(64 << 10));
        let mut s = b.hold();
        s.force(1 << 20);
        assert!(!b.fits(64 << 10));
        drop(h);
        assert!(b.fits(20 << 20));
    }

    #[test]
    fn parked_bytes_do_not_count_against_small_requests() {
        let b = InflightBudget::new(4 << 20);
        let mut big = b.hold();
        big.charge(20 << 20, true);
        let mut waiting = b.hold();
        waiting.force(2 << 20);
        assert!(!b.fits(64 << 10));
        waiting.park();
        assert!(b.fits(64 << 10));
        assert_eq!(b.used(), 22 << 20);
        drop(waiting);
        drop(big);
        assert_eq!((b.used(), b.parked.get(), b.large_used.get()), (0, 0, 0));
    }
}

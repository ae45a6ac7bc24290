//! Per-thread rings: each application thread that records into a collector
//! gets its own rtrb SPSC ring per kind of record it makes (native records
//! as cells, `cells`; OTel SDK records in slots of their size; the `Slot`
//! types `record::{Native, Otel}`), created on its first
//! record of that kind and handed to the shard once (through
//! `Hub::new_rings`, a mutex taken only at registration, never while
//! recording). Recording is then a thread-local lookup and a ring
//! push: no lock, no allocation (the slot array is allocated at creation), no
//! syscall, and no shared counter is touched while the ring has room.
//!
//! The shard learns about new data by polling the rings on a short timer; a
//! producer wakes it early (a foreign glommio waker wake, at most one per
//! shard cycle across all producers) only when its ring reaches the high-water
//! mark or is full. When a thread ends, its thread-local is dropped, the
//! producer end goes away, and the shard drains what is left before retiring
//! the ring: nothing recorded is lost.
//!
//! Overflow counters live per ring (`RingCounters`), written only by the
//! owning thread with a plain load + store, and summed by `Collector::stats`.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::Waker,
    thread::LocalKey,
    time::{Duration, Instant},
};

use crate::{processor::sampling, telemetry::counters::Counter};

use super::{
    cells,
    overflow::{Overflow, RejectReason, DROP_OLDEST_MIN_WAIT},
    record::{Entry, Native, Otel},
};

/// Overflow counts of one ring; each has one writer, the ring's thread.
#[derive(Debug, Default)]
pub struct RingCounters {
    pub dropped_new: Counter,
    pub sampled_out: Counter,
    pub backpressure: Counter,
    pub after_shutdown: Counter,
}

/// What a ring holds: one kind of record, and how its ring stores it.
pub trait Slot: Sized + Send + 'static {
    /// The application thread's end of a ring of this kind.
    type Producer: Send;
    /// This thread's producer ends of rings of this kind, one per hub.
    fn local() -> &'static LocalKey<RefCell<Vec<LocalRing<Self>>>>;
    /// A new ring with room for `capacity` records: both ends.
    fn ring(capacity: usize) -> (Self::Producer, Ring);
    /// Pushes the record `make` builds, or hands it back when the ring is full.
    fn push_with(ring: &mut Self::Producer, make: impl FnOnce() -> Self) -> Result<(), Self>;
    /// Records in the ring, of `capacity`.
    fn used(ring: &Self::Producer, capacity: usize) -> usize;
    /// The trace id the `sample` overflow policy decides on.
    fn trace_id(&self) -> [u8; 16];
}

thread_local! {
    static NATIVE: RefCell<Vec<LocalRing<Native>>> = const { RefCell::new(Vec::new()) };
    static OTEL: RefCell<Vec<LocalRing<Otel>>> = const { RefCell::new(Vec::new()) };
}

impl Slot for Native {
    type Producer = cells::Producer;
    fn local() -> &'static LocalKey<RefCell<Vec<LocalRing<Self>>>> {
        &NATIVE
    }
    fn ring(capacity: usize) -> (cells::Producer, Ring) {
        let (p, c) = cells::ring(capacity);
        (p, Ring::Native(c))
    }
    #[inline(always)]
    fn push_with(ring: &mut cells::Producer, make: impl FnOnce() -> Self) -> Result<(), Self> {
        ring.push_with(make)
    }
    fn used(ring: &cells::Producer, _capacity: usize) -> usize {
        ring.used()
    }
    fn trace_id(&self) -> [u8; 16] {
        Native::trace_id(self)
    }
}

impl Slot for Otel {
    type Producer = rtrb::Producer<Otel>;
    fn local() -> &'static LocalKey<RefCell<Vec<LocalRing<Self>>>> {
        &OTEL
    }
    fn ring(capacity: usize) -> (rtrb::Producer<Otel>, Ring) {
        let (p, c) = rtrb::RingBuffer::new(capacity);
        (p, Ring::Otel(c))
    }
    /// Built straight into its slot: a slot is a few hundred bytes, and
    /// building the entry on the stack first and then pushing it copies all
    /// of them once more per record.
    #[inline(always)]
    fn push_with(ring: &mut rtrb::Producer<Otel>, make: impl FnOnce() -> Self) -> Result<(), Self> {
        let Ok(mut chunk) = ring.write_chunk_uninit(1) else {
            return Err(make());
        };
        chunk.as_mut_slices().0[0].write(make());
        // SAFETY: the chunk has one slot (the first slice is never empty for
        // a chunk of one), and it was initialised on the line above.
        unsafe { chunk.commit_all() };
        Ok(())
    }
    fn used(ring: &rtrb::Producer<Otel>, capacity: usize) -> usize {
        capacity - ring.slots()
    }
    fn trace_id(&self) -> [u8; 16] {
        Otel::trace_id(self)
    }
}

/// The shard's end of one ring, of either kind.
pub enum Ring {
    Native(cells::Consumer),
    Otel(rtrb::Consumer<Otel>),
}

impl Ring {
    /// The oldest record, if any.
    pub fn pop(&mut self) -> Option<Entry> {
        match self {
            Ring::Native(r) => r.pop().map(Entry::from),
            Ring::Otel(r) => r.pop().ok().map(Entry::from),
        }
    }

    /// Records waiting.
    pub fn slots(&self) -> usize {
        match self {
            Ring::Native(r) => r.slots(),
            Ring::Otel(r) => r.slots(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots() == 0
    }

    /// The producer's thread is gone: nothing more will arrive.
    pub fn is_abandoned(&self) -> bool {
        match self {
            Ring::Native(r) => r.is_abandoned(),
            Ring::Otel(r) => r.is_abandoned(),
        }
    }
}

/// The shard's end of one thread's ring.
pub struct RingConsumer {
    pub ring: Ring,
    pub counters: Arc<RingCounters>,
}

/// What the application threads and the shard share.
pub struct Hub {
    pub overflow: Overflow,
    pub capacity: usize,
    pub high_water: usize,
    pub backpressure_wait: Duration,
    /// `trace_threshold` of the `Sample` percentage.
    sample_threshold: u64,
    /// Set by `shutdown`: new records are refused.
    pub closed: AtomicBool,
    /// Rings created since the shard last looked.
    pub new_rings: Mutex<Vec<RingConsumer>>,
    pub has_new_rings: AtomicBool,
    /// Counters of every ring ever created (summed by `Collector::stats`).
    pub counters: Mutex<Vec<Arc<RingCounters>>>,
    /// The shard's waker while it waits, and whether a wake is pending.
    pub waker: Mutex<Option<Waker>>,
    pub wake_pending: AtomicBool,
    /// Records refused because the thread-local was already torn down.
    pub lost_in_teardown: AtomicU64,
}

impl Hub {
    pub fn new(overflow: Overflow, capacity: usize, high_water: usize, backpressure_wait: Duration) -> Hub {
        let pct = match overflow {
            Overflow::Sample(p) => p,
            _ => 100.0,
        };
        Hub {
            overflow,
            capacity: capacity.max(1),
            high_water,
            backpressure_wait,
            sample_threshold: sampling::trace_threshold(pct),
            closed: AtomicBool::new(false),
            new_rings: Mutex::new(Vec::new()),
            has_new_rings: AtomicBool::new(false),
            counters: Mutex::new(Vec::new()),
            waker: Mutex::new(None),
            wake_pending: AtomicBool::new(false),
            lost_in_teardown: AtomicU64::new(0),
        }
    }

    /// Wakes the shard early; at most one wake per shard cycle.
    pub fn wake(&self) {
        // A plain load first: a full ring calls this per refused record, and
        // a read of an already-set flag does not take the cache line away
        // from the other producers.
        if self.wake_pending.load(Ordering::Relaxed) {
            return;
        }
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let w = self.waker.lock().ok().and_then(|mut w| w.take());
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    /// Records the entry `make` builds through this thread's ring for this
    /// hub; a refused entry is dropped (the caller still has its record).
    ///
    /// The entry is built only where it is pushed, directly into the ring's
    /// slot when there is room (`LocalRing::push`): a slot is a few hundred
    /// bytes, and moving the entry through the thread-local lookup and the
    /// overflow checks by value cost a dozen such copies, most of a native
    /// record's time. (Whether the compiler builds it in place is not
    /// guaranteed; `benches/sdk.rs` shows that it does.)
    #[inline]
    pub fn push<T: Slot>(self: &Arc<Hub>, make: impl FnOnce() -> T) -> Result<(), RejectReason> {
        let r = T::local().try_with(|local| {
            let Ok(mut local) = local.try_borrow_mut() else {
                // Re-entered from inside a push (a drop in the ring); refuse.
                return Err(RejectReason::Dropped);
            };
            let i = match local.iter().position(|r| Arc::ptr_eq(&r.hub, self)) {
                Some(i) => i,
                None => {
                    if self.closed.load(Ordering::Relaxed) {
                        return Err(RejectReason::Closed);
                    }
                    // First record of this thread: create and register its ring.
                    local.retain(|r| !r.hub.closed.load(Ordering::Relaxed));
                    local.push(LocalRing::register(self));
                    local.len() - 1
                }
            };
            local[i].push(make)
        });
        r.unwrap_or_else(|_| {
            // The thread-local is gone: this thread is being torn down (a
            // record made from another thread-local's destructor).
            self.lost_in_teardown.fetch_add(1, Ordering::Relaxed);
            Err(RejectReason::Dropped)
        })
    }
}

/// The application thread's end of its ring of `T` for one hub.
pub struct LocalRing<T: Slot> {
    hub: Arc<Hub>,
    ring: T::Producer,
    counters: Arc<RingCounters>,
    /// Pushes since the occupancy was last compared with the high-water mark.
    since_check: usize,
    check_every: usize,
}

impl<T: Slot> LocalRing<T> {
    fn register(hub: &Arc<Hub>) -> LocalRing<T> {
        let (p, c) = T::ring(hub.capacity);
        let counters = Arc::new(RingCounters::default());
        if let Ok(mut all) = hub.counters.lock() {
            all.push(counters.clone());
        }
        if let Ok(mut new) = hub.new_rings.lock() {
            new.push(RingConsumer {
                ring: c,
                counters: counters.clone(),
            });
        }
        hub.has_new_rings.store(true, Ordering::Release);
        LocalRing {
            hub: hub.clone(),
            ring: p,
            counters,
            since_check: 0,
            check_every: (hub.high_water / 4).max(1),
        }
    }

    /// Occupancy of the ring (reads the consumer's position).
    fn used(&self) -> usize {
        T::used(&self.ring, self.hub.capacity)
    }

    /// Pushes the entry `make` builds.
    #[inline]
    fn push(&mut self, make: impl FnOnce() -> T) -> Result<(), RejectReason> {
        let hub = &*self.hub;
        if hub.closed.load(Ordering::Relaxed) {
            self.counters.after_shutdown.add(1);
            return Err(RejectReason::Closed);
        }
        if let Overflow::Sample(_) = hub.overflow {
            if self.used() >= hub.high_water {
                let entry = make();
                if !sampling::keep_trace(&entry.trace_id(), hub.sample_threshold) {
                    self.counters.sampled_out.add(1);
                    hub.wake();
                    // Sampled out by design: not an error for the caller.
                    return Ok(());
                }
                return self.push_built(entry);
            }
        }
        match T::push_with(&mut self.ring, make) {
            Ok(()) => {
                self.pushed();
                Ok(())
            }
            Err(entry) => self.full(entry),
        }
    }

    /// The same four lines as `push`'s own tail, on purpose: `push` and
    /// this calling one shared helper measured slower (12-04, back to back:
    /// native p50 +10 ns, the 4-thread ratio 14.2x -> 11.7x), most likely
    /// because `push` then no longer inlines into `Hub::push`.
    #[inline(always)]
    fn push_built(&mut self, entry: T) -> Result<(), RejectReason> {
        match T::push_with(&mut self.ring, || entry) {
            Ok(()) => {
                self.pushed();
                Ok(())
            }
            Err(entry) => self.full(entry),
        }
    }

    /// After a push: every `check_every` pushes, wake the shard if the ring
    /// has reached the high-water mark.
    #[inline(always)]
    fn pushed(&mut self) {
        self.since_check += 1;
        if self.since_check >= self.check_every {
            self.since_check = 0;
            if self.used() >= self.hub.high_water {
                self.hub.wake();
            }
        }
    }

    /// The ring was full: wait as the overflow policy says, then refuse.
    #[cold]
    fn full(&mut self, entry: T) -> Result<(), RejectReason> {
        let hub = &*self.hub;
        let overflow = hub.overflow;
        hub.wake();
        let wait = match overflow {
            Overflow::DropOldest => hub.backpressure_wait.max(DROP_OLDEST_MIN_WAIT),
            Overflow::Backpressure => hub.backpressure_wait,
            _ => Duration::ZERO,
        };
        if self.wait_for_room(entry, wait) {
            return Ok(());
        }
        if overflow == Overflow::Backpressure {
            self.counters.backpressure.add(1);
            Err(RejectReason::Backpressure)
        } else {
            self.counters.dropped_new.add(1);
            Err(RejectReason::Dropped)
        }
    }

    /// Spins, then yields, retrying the push until `wait` has passed;
    /// true when the entry went in (it is dropped otherwise).
    fn wait_for_room(&mut self, mut entry: T, wait: Duration) -> bool {
        if wait.is_zero() {
            return false;
        }
        let until = Instant::now() + wait;
        let mut spins = 0u32;
        loop {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
                self.hub.wake();
            }
            match T::push_with(&mut self.ring, || entry) {
                Ok(()) => return true,
                Err(e) => entry = e,
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }
}

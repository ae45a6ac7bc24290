//! The sending queue: a bounded rtrb SPSC ring of batches between a shard's
//! pipeline (producer) and one exporter's consumers, plus a shard-local wakeup.
//! Producer and consumer live on the same shard; the ring keeps that boundary
//! explicit. Because both ends are on one thread, the producer side can also
//! take the oldest batch out (`pop_oldest`, for `overflow: drop_oldest` and
//! memory-limit shedding): the ring's consumer end is shared by both handles
//! through an `Rc<RefCell<..>>`, never borrowed across an await. The queue
//! counts batches (its capacity is in batches) and tracks the bytes it holds.
//!
//! Requests waiting for room (`overflow: signal`, see `receiver`) wait here
//! in line: each batch taken out wakes the first of them that is still
//! waiting (`RoomWait`), which re-checks, goes ahead, and once it has put
//! its batch in passes the turn on while room is left (`pass_room`); a
//! request that finds the queue full again waits at the front, and one that
//! is dropped after being woken passes its wake-up on. They used to poll with a backing-off timer:
//! with a slow backend and a thousand requests in flight that was tens of
//! thousands of timer wake-ups and re-checks a second, about a tenth of a
//! forwarding shard's CPU, spent while nothing could move.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::poll_fn,
    rc::{Rc, Weak},
    task::{Poll, Waker},
};

use crate::{config::OverflowPolicy, payload::Payload, signal::Signal};

/// What the pipeline does when this queue is full (`sending_queue.overflow`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overflow {
    pub policy: OverflowPolicy,
    /// `sample`: percent of new data kept at or above the high-water mark.
    pub sample_percentage: f64,
    /// `sample`: queue length (batches) from which new data is sampled.
    pub high_water: usize,
}

impl Default for Overflow {
    fn default() -> Self {
        Overflow {
            policy: OverflowPolicy::Signal,
            sample_percentage: 100.0,
            high_water: usize::MAX,
        }
    }
}

impl Overflow {
    /// From the config, for a queue of `capacity` batches.
    pub fn new(policy: OverflowPolicy, sample_percentage: f64, high_water_percentage: f64, capacity: usize) -> Self {
        let hw = (capacity as f64 * high_water_percentage.clamp(0.0, 100.0) / 100.0).ceil() as usize;
        Overflow {
            policy,
            sample_percentage,
            high_water: hw.min(capacity),
        }
    }

    /// Whether a full queue refuses the request (`signal`) rather than
    /// discarding data.
    pub fn refuses(&self) -> bool {
        self.policy == OverflowPolicy::Signal
    }
}

/// One queued batch.
#[derive(Debug)]
pub struct Item {
    pub signal: Signal,
    pub payload: Payload,
}

struct Shared {
    ring: RefCell<rtrb::Consumer<Item>>,
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
    /// Encoded bytes of the queued batches.
    bytes: Cell<u64>,
    /// Requests waiting for room, first come first woken (dead entries are
    /// waits given up, skipped when met and swept when they are most of it).
    room: RefCell<VecDeque<Weak<RoomTurn>>>,
    /// Waits given up without being woken, still in `room`.
    gone: Cell<usize>,
}

/// One request's place in the line for room.
#[derive(Default)]
struct RoomTurn {
    waker: RefCell<Option<Waker>>,
    woken: Cell<bool>,
}

impl Shared {
    fn take(&self) -> Option<Item> {
        let item = self.ring.borrow_mut().pop().ok()?;
        self.bytes.set(self.bytes.get().saturating_sub(item.payload.len as u64));
        self.wake_room();
        Some(item)
    }

    /// Wakes the first request still waiting for room.
    fn wake_room(&self) {
        loop {
            let Some(next) = self.room.borrow_mut().pop_front() else {
                return;
            };
            let Some(turn) = next.upgrade() else {
                self.gone.set(self.gone.get().saturating_sub(1));
                continue;
            };
            turn.woken.set(true);
            let waker = turn.waker.borrow_mut().take();
            if let Some(w) = waker {
                w.wake();
            }
            return;
        }
    }

    /// Puts a wait in line (at the front for one that was woken already and
    /// found no room), sweeping given-up places when they are most of it
    /// (a stalled exporter takes nothing, so nothing else removes them).
    fn enter(&self, turn: &Rc<RoomTurn>, front: bool) {
        let mut line = self.room.borrow_mut();
        if self.gone.get() > 64 && self.gone.get() * 2 > line.len() {
            line.retain(|w| w.strong_count() > 0);
            self.gone.set(0);
        }
        if front {
            line.push_front(Rc::downgrade(turn));
        } else {
            line.push_back(Rc::downgrade(turn));
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

pub struct QueueProducer {
    ring: rtrb::Producer<Item>,
    shared: Rc<Shared>,
}

pub struct QueueConsumer {
    shared: Rc<Shared>,
}

/// A queue holding at most `capacity` batches.
pub fn queue(capacity: usize) -> (QueueProducer, QueueConsumer) {
    let (p, c) = rtrb::RingBuffer::new(capacity.max(1));
    let shared = Rc::new(Shared {
        ring: RefCell::new(c),
        waker: RefCell::new(None),
        closed: Cell::new(false),
        bytes: Cell::new(0),
        room: RefCell::new(VecDeque::new()),
        gone: Cell::new(0),
    });
    (
        QueueProducer {
            ring: p,
            shared: shared.clone(),
        },
        QueueConsumer { shared },
    )
}

impl QueueProducer {
    /// Enqueues, or gives the item back when the queue is full.
    pub fn push(&mut self, item: Item) -> Result<(), Item> {
        let len = item.payload.len as u64;
        match self.ring.push(item) {
            Ok(()) => {
                self.shared.bytes.set(self.shared.bytes.get() + len);
                self.shared.wake();
                Ok(())
            }
            Err(rtrb::PushError::Full(item)) => Err(item),
        }
    }

    pub fn free(&self) -> usize {
        self.ring.slots()
    }

    pub fn capacity(&self) -> usize {
        self.ring.buffer().capacity()
    }

    /// Batches waiting in the queue.
    pub fn len(&self) -> usize {
        self.capacity() - self.ring.slots()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the batches waiting in the queue.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.get()
    }

    /// Takes the oldest waiting batch out of the queue (evicting it).
    pub fn pop_oldest(&mut self) -> Option<Item> {
        self.shared.take()
    }

    /// Resolves when a batch leaves the queue and this wait is first in line
    /// (never, if none leaves: callers race it with their deadline). `front`:
    /// this request was woken already and found no room (it keeps its place).
    /// Dropping the wait gives up the place, and passes the wake-up on if it
    /// had one it did not use.
    pub fn room(&self, front: bool) -> RoomWait {
        RoomWait {
            shared: self.shared.clone(),
            turn: None,
            front,
            done: false,
        }
    }

    /// A request that was woken and went ahead passes the turn on, once its
    /// batch is in, while room is left, so a free slot does not wait for the
    /// next batch taken to wake someone.
    pub fn pass_room(&self) {
        if self.free() > 0 {
            self.shared.wake_room();
        }
    }

    /// Requests waiting for room (including given-up places not yet skipped).
    #[cfg(test)]
    fn room_line(&self) -> usize {
        self.shared.room.borrow().len()
    }

    /// No more items will come; consumers drain what is left and stop.
    pub fn close(&self) {
        self.shared.closed.set(true);
        self.shared.wake();
    }
}

/// A request's wait for room in one queue (see `QueueProducer::room`).
pub struct RoomWait {
    shared: Rc<Shared>,
    turn: Option<Rc<RoomTurn>>,
    front: bool,
    done: bool,
}

impl std::future::Future for RoomWait {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let turn = match &this.turn {
            Some(t) => t.clone(),
            None => {
                let t = Rc::new(RoomTurn::default());
                this.shared.enter(&t, this.front);
                this.turn = Some(t.clone());
                t
            }
        };
        if turn.woken.get() {
            this.done = true;
            return Poll::Ready(());
        }
        *turn.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for RoomWait {
    fn drop(&mut self) {
        let Some(turn) = &self.turn else { return };
        if turn.woken.get() {
            if !self.done {
                // Woken, then dropped before it could use the room.
                self.shared.wake_room();
            }
        } else {
            self.shared.gone.set(self.shared.gone.get() + 1);
        }
    }
}

impl QueueConsumer {
    /// Next batch; `None` once the queue is closed and empty.
    pub async fn pop(&mut self) -> Option<Item> {
        poll_fn(|cx| match self.shared.take() {
            Some(item) => Poll::Ready(Some(item)),
            None if self.shared.closed.get() => Poll::Ready(None),
            None => {
                *self.shared.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Takes a batch if one is ready, without waiting.
    pub fn try_pop(&mut self) -> Option<Item> {
        self.shared.take()
    }

    pub fn len(&self) -> usize {
        self.shared.ring.borrow().slots()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.ring.borrow().is_empty()
    }

    /// Bytes of the batches waiting in the queue.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_executor(f: impl std::future::Future<Output = ()>) {
        let ex = glommio::LocalExecutorBuilder::default()
            .io_memory(256 * 1024)
            .make()
            .unwrap();
        ex.run(f);
    }

    /// A queued batch of `n` items (no body).
    fn item(n: u64) -> Item {
        Item {
            signal: Signal::Traces,
            payload: Payload {
                items: n,
                ..Default::default()
            },
        }
    }

    #[test]
    fn bounded_fifo_and_close() {
        on_executor(async {
            let (mut p, mut c) = queue(2);
            assert!(p.push(item(1)).is_ok());
            assert!(p.push(item(2)).is_ok());
            assert_eq!(p.push(item(3)).unwrap_err().payload.items, 3);
            let waiter = glommio::spawn_local(async move {
                let mut got = Vec::new();
                while let Some(i) = c.pop().await {
                    got.push(i.payload.items);
                }
                got
            });
            glommio::yield_if_needed().await;
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert!(p.push(item(4)).is_ok());
            p.close();
            assert_eq!(waiter.await, vec![1, 2, 4]);
        });
    }

    #[test]
    fn pop_oldest_from_the_producer_side_and_bytes() {
        let (mut p, mut c) = queue(3);
        let item = |n: u64| Item {
            signal: Signal::Logs,
            payload: Payload::from_body(bytes::Bytes::from(vec![0u8; n as usize]), n),
        };
        for n in 1..=3 {
            assert!(p.push(item(n)).is_ok());
        }
        assert_eq!((p.len(), p.bytes()), (3, 6));
        assert!(p.push(item(4)).is_err());
        assert_eq!(p.pop_oldest().unwrap().payload.items, 1);
        assert!(p.push(item(4)).is_ok());
        assert_eq!((p.len(), c.len(), p.bytes()), (3, 3, 9));
        assert_eq!(c.try_pop().unwrap().payload.items, 2);
        assert_eq!(p.bytes(), 7);
        assert_eq!(p.pop_oldest().unwrap().payload.items, 3);
        assert_eq!(c.try_pop().unwrap().payload.items, 4);
        assert!(p.is_empty() && c.is_empty());
        assert_eq!(p.bytes(), 0);
    }

    /// Requests waiting for room are woken one per batch taken, first come
    /// first; a wait given up is skipped; `pass_room` wakes the next while
    /// room is left.
    #[test]
    fn room_is_handed_out_in_line_one_per_batch_taken() {
        on_executor(async {
            let (mut p, mut c) = queue(2);
            // Tasks woken before this one run before it continues (they are
            // queued ahead of it; no timer involved).
            let settle = || async {
                for _ in 0..3 {
                    futures_lite::future::yield_now().await;
                }
            };
            assert!(p.push(item(1)).is_ok() && p.push(item(2)).is_ok());
            let woken = Rc::new(RefCell::new(Vec::new()));
            let mut waits = Vec::new();
            for n in 0..4 {
                let room = p.room(false);
                let woken = woken.clone();
                waits.push(glommio::spawn_local(async move {
                    room.await;
                    woken.borrow_mut().push(n);
                }));
            }
            // Let every wait take its place in line.
            settle().await;
            assert_eq!(p.room_line(), 4);
            // The second gives up its place.
            drop(waits.remove(1));
            assert!(woken.borrow().is_empty(), "no batch taken, nobody woken");
            assert_eq!(c.try_pop().unwrap().payload.items, 1);
            settle().await;
            assert_eq!(*woken.borrow(), vec![0], "one batch taken: the first in line");
            // The first went ahead without using the slot: it passes the turn,
            // skipping the given-up place.
            p.pass_room();
            settle().await;
            assert_eq!(*woken.borrow(), vec![0, 2]);
            // No room left: passing wakes nobody.
            assert!(p.push(item(3)).is_ok());
            p.pass_room();
            settle().await;
            assert_eq!(*woken.borrow(), vec![0, 2]);
            assert_eq!(c.try_pop().unwrap().payload.items, 2);
            settle().await;
            assert_eq!(*woken.borrow(), vec![0, 2, 3]);
            assert_eq!(p.room_line(), 0);
        });
    }

    /// A wait woken and then dropped before it ran passes its wake-up on; a
    /// wait that found no room again goes back to the front; given-up places
    /// are swept when they are most of the line.
    #[test]
    fn room_wake_ups_are_not_lost_and_the_line_does_not_grow() {
        on_executor(async {
            let (mut p, mut c) = queue(1);
            assert!(p.push(item(1)).is_ok());
            let settle = || async {
                for _ in 0..3 {
                    futures_lite::future::yield_now().await;
                }
            };
            // A woken wait dropped unpolled: the next in line is woken instead.
            let mut first = Box::pin(p.room(false));
            assert!(futures_lite::future::poll_once(first.as_mut()).await.is_none());
            let woken = Rc::new(Cell::new(false));
            let second = {
                let room = p.room(false);
                let woken = woken.clone();
                glommio::spawn_local(async move {
                    room.await;
                    woken.set(true);
                })
            };
            settle().await;
            assert_eq!(p.room_line(), 2);
            assert_eq!(c.try_pop().unwrap().payload.items, 1);
            drop(first);
            settle().await;
            assert!(woken.get(), "the dropped wait's wake-up went to the next");
            second.await;
            // Woken but no room after all: back in line at the front.
            let back = p.room(false);
            let mut front = Box::pin(p.room(true));
            let mut back = Box::pin(back);
            assert!(futures_lite::future::poll_once(back.as_mut()).await.is_none());
            assert!(futures_lite::future::poll_once(front.as_mut()).await.is_none());
            assert!(p.push(item(2)).is_ok());
            assert_eq!(c.try_pop().unwrap().payload.items, 2);
            assert!(futures_lite::future::poll_once(front.as_mut()).await.is_some());
            assert!(futures_lite::future::poll_once(back.as_mut()).await.is_none());
            drop(back);
            // Waits given up while nothing is taken (a stalled exporter) are swept.
            for _ in 0..1000 {
                let mut w = Box::pin(p.room(false));
                assert!(futures_lite::future::poll_once(w.as_mut()).await.is_none());
            }
            assert!(p.room_line() < 200, "line {}", p.room_line());
        });
    }
}

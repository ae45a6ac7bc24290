//! Shard-local lifecycle: whether the shard is draining, the deadline for the
//! final flush, and how many requests are still being handled.

use std::{
    cell::Cell,
    future::poll_fn,
    rc::Rc,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: Cell<bool>,
    deadline: Cell<Option<Instant>>,
    inflight: Cell<usize>,
    waiters: std::cell::RefCell<Vec<Waker>>,
}

impl Lifecycle {
    pub fn new() -> Rc<Self> {
        Rc::new(Lifecycle::default())
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining: new requests are refused as unavailable; everything
    /// accepted must be flushed before `timeout` passes.
    pub fn start_draining(&self, timeout: Duration) {
        if !self.draining.replace(true) {
            self.deadline.set(Some(Instant::now() + timeout));
        }
        self.wake_all();
    }

    /// The shutdown deadline, once draining.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get()
    }

    /// True once draining and the deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= d)
    }

    /// Marks a request as being handled until the guard drops.
    pub fn enter(self: &Rc<Self>) -> InflightGuard {
        self.inflight.set(self.inflight.get() + 1);
        InflightGuard(self.clone())
    }

    pub fn inflight(&self) -> usize {
        self.inflight.get()
    }

    fn wake_all(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once draining has started.
    pub async fn drained_signal(&self) {
        poll_fn(|cx| {
            if self.draining.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once no request is in flight.
    pub async fn idle(&self) {
        poll_fn(|cx| {
            if self.inflight.get() == 0 {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

pub struct InflightGuard(Rc<Lifecycle>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let n = self.0.inflight.get() - 1;
        self.0.inflight.set(n);
        if n == 0 {
            self.0.wake_all();
        }
    }
}

//! Shard-local lifecycle: whether the shard is draining, the deadline for the
//! final flush, and how many requests are still being handled.
//!
//! Tasks wait for "draining started" or "no request in flight" by leaving
//! their waker in one list per event, and only that event wakes them. This
//! matters: an accept loop waits for draining beside a pending `accept`, and
//! glommio's pending I/O sources keep one more waker clone each time their
//! task is polled again. Waking accept loops whenever the last request of a
//! moment ended (as this module once did) made that clone list grow with
//! traffic until the task's 16-bit waker count overflowed and glommio aborted
//! the process (~34,000 requests while no new connection arrived). A task that
//! waits again replaces its earlier waker instead of adding another, so each
//! list holds at most one waker per waiting task.

use std::{
    cell::{Cell, RefCell},
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
    /// Tasks waiting for draining to start (accept loops, backoff sleeps).
    drain_waiters: WaitList,
    /// Tasks waiting for the last in-flight request to end (shutdown).
    idle_waiters: WaitList,
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
            self.deadline.set(Some(crate::clock::after(Instant::now(), timeout)));
        }
        self.drain_waiters.wake_all();
        self.idle_waiters.wake_all();
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

    /// How many wakers are waiting (for tests).
    pub fn waiting(&self) -> usize {
        self.drain_waiters.len() + self.idle_waiters.len()
    }

    /// Resolves once draining has started.
    pub async fn drained_signal(&self) {
        poll_fn(|cx| {
            if self.draining.get() {
                Poll::Ready(())
            } else {
                self.drain_waiters.register(cx.waker());
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
                self.idle_waiters.register(cx.waker());
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
            self.0.idle_waiters.wake_all();
        }
    }
}

/// Wakers of the tasks waiting for one event, at most one per task.
#[derive(Debug, Default)]
struct WaitList(RefCell<Vec<Waker>>);

impl WaitList {
    /// Leaves `waker` to be woken by the next `wake_all`, once per task.
    fn register(&self, waker: &Waker) {
        let mut waiters = self.0.borrow_mut();
        // Compared by the task the waker points at, not `will_wake`: glommio
        // builds its waker vtable from a constant, whose address can differ
        // between codegen units, so `will_wake` can say "different" for the
        // same task. A stored waker keeps its task alive, so the address is
        // not reused while it is here.
        if !waiters.iter().any(|w| w.data() == waker.data()) {
            waiters.push(waker.clone());
        }
    }

    fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.0.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that waits for draining again and again (as the accept loop does
    /// per connection) leaves one waker, not one per wait.
    #[test]
    fn repeated_waits_leave_one_waker() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let lc = Lifecycle::new();
                for _ in 0..100_000 {
                    let ready = futures_lite::future::or(async { true }, async {
                        lc.drained_signal().await;
                        false
                    });
                    // `or` polls the first future first; make the drain signal
                    // register by polling it on its own once, too.
                    assert!(ready.await);
                    let mut f = std::pin::pin!(lc.drained_signal());
                    let pending = futures_lite::future::poll_once(f.as_mut()).await;
                    assert!(pending.is_none());
                }
                assert_eq!(lc.waiting(), 1);
                // The end of the last request wakes the shutdown's idle wait,
                // never the tasks waiting for draining.
                let guard = lc.enter();
                let mut idle = std::pin::pin!(lc.idle());
                assert!(futures_lite::future::poll_once(idle.as_mut()).await.is_none());
                assert_eq!(lc.waiting(), 2);
                drop(guard);
                assert_eq!(lc.waiting(), 1, "only the idle waiter was woken");
                lc.start_draining(Duration::from_secs(1));
                lc.drained_signal().await;
                lc.idle().await;
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

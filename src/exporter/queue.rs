//! The sending queue: a bounded rtrb SPSC ring of batches between a shard's
//! pipeline (producer) and one exporter's consumers, plus a shard-local wakeup.
//! Producer and consumer live on the same shard today; the ring keeps that
//! boundary explicit and lock-free should an exporter move to its own core.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    rc::Rc,
    task::{Poll, Waker},
};

use crate::{payload::Payload, signal::Signal};

/// One queued batch.
#[derive(Debug)]
pub struct Item {
    pub signal: Signal,
    pub payload: Payload,
}

#[derive(Default)]
struct Shared {
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
}

impl Shared {
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
    ring: rtrb::Consumer<Item>,
    shared: Rc<Shared>,
}

/// A queue holding at most `capacity` batches.
pub fn queue(capacity: usize) -> (QueueProducer, QueueConsumer) {
    let (p, c) = rtrb::RingBuffer::new(capacity.max(1));
    let shared = Rc::new(Shared::default());
    (
        QueueProducer {
            ring: p,
            shared: shared.clone(),
        },
        QueueConsumer { ring: c, shared },
    )
}

impl QueueProducer {
    /// Enqueues, or gives the item back when the queue is full.
    pub fn push(&mut self, item: Item) -> Result<(), Item> {
        match self.ring.push(item) {
            Ok(()) => {
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

    /// No more items will come; consumers drain what is left and stop.
    pub fn close(&self) {
        self.shared.closed.set(true);
        self.shared.wake();
    }
}

impl QueueConsumer {
    /// Next batch; `None` once the queue is closed and empty.
    pub async fn pop(&mut self) -> Option<Item> {
        poll_fn(|cx| match self.ring.pop() {
            Ok(item) => Poll::Ready(Some(item)),
            Err(_) if self.shared.closed.get() => Poll::Ready(None),
            Err(_) => {
                *self.shared.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Takes a batch if one is ready, without waiting.
    pub fn try_pop(&mut self) -> Option<Item> {
        self.ring.pop().ok()
    }

    pub fn len(&self) -> usize {
        self.ring.slots()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_and_close() {
        let ex = glommio::LocalExecutorBuilder::default()
            .io_memory(256 * 1024)
            .make()
            .unwrap();
        ex.run(async {
            let (mut p, mut c) = queue(2);
            let item = |n| Item {
                signal: Signal::Traces,
                payload: Payload {
                    items: n,
                    ..Default::default()
                },
            };
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
}

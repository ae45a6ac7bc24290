//! hyper's `Timer` on glommio timers (keep-alive and header-read timeouts).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// A hyper timer backed by `glommio::timer::Timer`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioTimer;

struct Sleep(glommio::timer::Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// hyper requires `Sleep: Send + Sync`; glommio timers are shard-local.
struct SendSleep(Sleep);

// SAFETY: hyper only polls and drops the sleep on the connection task that
// created it, which glommio runs on the creating shard's thread; the value is
// never actually sent to or shared with another thread.
unsafe impl Send for SendSleep {}
// SAFETY: as above; no shared access happens across threads.
unsafe impl Sync for SendSleep {}

impl Future for SendSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: structural pinning of the only field.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
    }
}

impl hyper::rt::Sleep for SendSleep {}

impl hyper::rt::Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(SendSleep(Sleep(glommio::timer::Timer::new(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

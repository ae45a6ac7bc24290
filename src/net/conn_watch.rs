//! Per-connection timeouts: what a connection is doing (requests in flight,
//! when it went idle, when the first byte of a new HTTP/1.1 request head
//! came) and the watchdog that decides when it has been quiet too long. A
//! connection that never sends a request, never finishes a request head, stays
//! idle or grows old is shut down gracefully (GOAWAY / `Connection: close`),
//! then dropped if it has not finished after a grace period.
//!
//! All of it is shard-local plain `Cell`s, updated once per request (and once
//! per idle period on reads). The watchdog is polled by the connection's own
//! task beside the connection and dropped with it (a task of its own outlived
//! short connections until its timer fired, holding their memory: 20,000
//! connections reset before a byte cost 20-50 MB); a wake of the connection
//! costs it a few `Cell` reads and, while a deadline stands, a timer poll.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

/// When connections are closed for inactivity. `None`: no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnRules {
    /// From accept to the first request head.
    pub first_request: Option<Duration>,
    /// HTTP/1.1: from the first byte of a later request head to the whole head.
    pub read_header: Option<Duration>,
    /// No request in flight for this long.
    pub idle: Option<Duration>,
    /// Connections older than this are asked to go away ...
    pub max_age: Option<Duration>,
    /// ... and dropped this long after that (`None`: when their requests end).
    pub age_grace: Option<Duration>,
}

impl Default for ConnRules {
    fn default() -> Self {
        ConnRules {
            first_request: Some(Duration::from_secs(10)),
            read_header: Some(Duration::from_secs(10)),
            idle: Some(Duration::from_secs(60)),
            max_age: None,
            age_grace: None,
        }
    }
}

/// How long a connection asked to go away for inactivity gets to finish
/// (an HTTP/2 GOAWAY waits for the client's PING acknowledgement).
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why the watchdog closed a connection (label `reason` of
/// `sluice_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No request head within the first-request (handshake) timeout.
    Handshake,
    /// An HTTP/1.1 request head not complete within `read_header_timeout`.
    Header,
    /// No request in flight for the idle timeout.
    Idle,
    /// Older than `max_connection_age`.
    Age,
}

impl CloseReason {
    pub const ALL: [CloseReason; 4] = [
        CloseReason::Handshake,
        CloseReason::Header,
        CloseReason::Idle,
        CloseReason::Age,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            CloseReason::Handshake => "handshake",
            CloseReason::Header => "header",
            CloseReason::Idle => "idle",
            CloseReason::Age => "age",
        }
    }

    /// How long the connection may take to close after being asked to.
    pub fn grace(self, rules: &ConnRules) -> Option<Duration> {
        match self {
            CloseReason::Age => rules.age_grace,
            _ => Some(CLOSE_GRACE),
        }
    }
}

/// What one connection is doing, shared by its requests, its I/O and its watchdog.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    /// Requests whose handler runs or whose response is not yet sent.
    active: Cell<u32>,
    /// Requests seen so far.
    requests: Cell<u64>,
    /// When `active` last dropped to 0.
    idle_since: Cell<Instant>,
    /// HTTP/1.1 only: when the first byte arrived while idle (a new head).
    head_started: Cell<Option<Instant>>,
    /// The connection speaks HTTP/2 (idle streams of control frames are not heads).
    h2: Cell<bool>,
    /// The watchdog, to re-arm when a deadline moves earlier.
    watcher: RefCell<Option<Waker>>,
}

impl Activity {
    pub fn new() -> Rc<Self> {
        let now = Instant::now();
        Rc::new(Activity {
            accepted: now,
            active: Cell::new(0),
            requests: Cell::new(0),
            idle_since: Cell::new(now),
            head_started: Cell::new(None),
            h2: Cell::new(false),
            watcher: RefCell::new(None),
        })
    }

    /// A request arrived: the connection is busy until the guard drops.
    pub fn begin(self: &Rc<Self>, h2: bool) -> Busy {
        self.active.set(self.active.get() + 1);
        self.requests.set(self.requests.get() + 1);
        self.head_started.set(None);
        self.h2.set(h2);
        Busy(self.clone())
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.active.get() == 0 && !self.h2.get() && self.head_started.get().is_none() && self.requests.get() > 0 {
            self.head_started.set(Some(Instant::now()));
            self.wake_watcher();
        }
    }

    fn wake_watcher(&self) {
        if let Some(w) = self.watcher.borrow_mut().take() {
            w.wake();
        }
    }

    /// The next deadline and what passing it means; `None` while requests run
    /// and no age limit applies.
    fn deadline(&self, rules: &ConnRules) -> Option<(Instant, CloseReason)> {
        let after = crate::clock::after;
        let age = rules.max_age.map(|a| (after(self.accepted, a), CloseReason::Age));
        let quiet = if self.requests.get() == 0 {
            rules
                .first_request
                .map(|d| (after(self.accepted, d), CloseReason::Handshake))
        } else if self.active.get() > 0 {
            None
        } else {
            let idle = rules.idle.map(|d| (after(self.idle_since.get(), d), CloseReason::Idle));
            let head = self
                .head_started
                .get()
                .zip(rules.read_header)
                .map(|(t, d)| (after(t, d), CloseReason::Header));
            earliest(idle, head)
        };
        earliest(quiet, age)
    }
}

fn earliest(a: Option<(Instant, CloseReason)>, b: Option<(Instant, CloseReason)>) -> Option<(Instant, CloseReason)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A request in flight on its connection; dropping it may make the connection idle.
#[derive(Debug)]
pub struct Busy(Rc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let n = a.active.get().saturating_sub(1);
        a.active.set(n);
        if n == 0 {
            a.idle_since.set(Instant::now());
            a.wake_watcher();
        }
    }
}

/// Resolves when the connection has passed one of its deadlines. Polled by
/// the connection's own task beside the connection (no task of its own: a
/// separate task outlived short connections until its timer fired, holding
/// their memory), and dropped with it.
pub struct Watchdog {
    activity: Rc<Activity>,
    rules: ConnRules,
    armed: Option<(Instant, glommio::timer::Timer)>,
}

impl Watchdog {
    pub fn new(activity: Rc<Activity>, rules: ConnRules) -> Self {
        Watchdog {
            activity,
            rules,
            armed: None,
        }
    }
}

impl Future for Watchdog {
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let this = &mut *self;
        {
            let mut w = this.activity.watcher.borrow_mut();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        loop {
            let Some((at, reason)) = this.activity.deadline(&this.rules) else {
                this.armed = None;
                return Poll::Pending;
            };
            if this.armed.as_ref().is_none_or(|(armed_at, _)| *armed_at != at) {
                let now = Instant::now();
                if at <= now {
                    return Poll::Ready(reason);
                }
                // A far deadline is reached in steps (the timer fires, nothing
                // has passed, a new one is armed).
                let step = (at - now).min(Duration::from_secs(24 * 3600));
                this.armed = Some((at, glommio::timer::Timer::new(step)));
            }
            let (_, timer) = this.armed.as_mut().expect("armed above");
            match Pin::new(timer).poll(cx) {
                // The deadline may have moved while the timer ran: look again.
                Poll::Ready(_) => this.armed = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// An I/O stream that reports reads to its connection's `Activity`.
pub struct Watched<T> {
    inner: T,
    activity: Rc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Rc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // SAFETY: the inner reader sees the cursor's unfilled memory through a
        // fresh `ReadBuf`, which only counts as filled what the reader wrote;
        // exactly that many bytes are then advanced on the outer cursor.
        let (r, n) = unsafe {
            let mut inner = hyper::rt::ReadBuf::uninit(buf.as_mut());
            let r = Pin::new(&mut this.inner).poll_read(cx, inner.unfilled());
            (r, inner.filled().len())
        };
        if n > 0 {
            // SAFETY: see above; `n` bytes were initialised by the reader.
            unsafe { buf.advance(n) };
            this.activity.on_read();
        }
        r
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

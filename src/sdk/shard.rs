//! The collector's shard: one glommio thread (pinned to a CPU or not) that
//! drains every producer ring, builds batches of `max_batch_size` records or
//! of whatever arrived within `flush_interval`, encodes them as OTLP protobuf,
//! and hands them to the same exporter `sluice run` uses on its shards
//! (`exporter::run`: sending queue, OTLP gRPC/HTTP client, compression, retry
//! with backoff, circuit breaker, counters in an `ExporterStats`).
//!
//! The shard moves records out of the rings only while the sending queue has
//! room, so a stalled backend fills the queue and then the rings, where the
//! producers' overflow policy applies. With `DropOldest` it drains anyway and
//! evicts the oldest queued batch for each new one (the newest data wins).
//!
//! It runs a poll cycle every `poll` (a quarter of `flush_interval`, 1..50
//! ms), earlier when a producer wakes it, and serves `force_flush` and
//! `shutdown` requests (`Control`) between cycles.

use std::{
    sync::{atomic::Ordering, mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    exporter::{
        self,
        queue::{Item, QueueProducer},
        ExportContext, ExporterPlan,
    },
    proto::resource::v1::Resource,
    shutdown::Lifecycle,
    signal::Signal,
    telemetry::{counters::DropReason, ExporterStats, Stats},
};

use super::{
    encode,
    overflow::Overflow,
    record::now_unix_nanos,
    ring::{Hub, RingConsumer},
    self_metrics::{self, SdkStats},
};

/// What a flush or shutdown achieved: records exported (confirmed by the
/// backend) during the call, and what it could not do by the deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Records the backend confirmed during the call.
    pub exported: u64,
    /// Records recorded before the call but not confirmed by the deadline.
    pub pending: u64,
    /// Records whose export failed for good during the call.
    pub failed: u64,
}

pub enum Command {
    Flush {
        deadline: Instant,
        reply: mpsc::Sender<FlushReport>,
    },
    Shutdown {
        deadline: Instant,
        reply: mpsc::Sender<FlushReport>,
    },
}

/// Requests from the application side to the shard.
#[derive(Default)]
pub struct Control {
    pub commands: Mutex<Vec<Command>>,
    /// Set when the shard has stopped (after serving `Shutdown`).
    pub stopped: std::sync::atomic::AtomicBool,
}

/// The shard's settings.
pub struct ShardSettings {
    /// Builds the exporter on the shard thread (its connections are `!Send`).
    pub plan: Box<dyn FnOnce() -> ExporterPlan + Send>,
    pub max_batch: usize,
    pub flush_interval: Duration,
    pub resource: Resource,
    /// Export the collector's own counters this often (and once at shutdown).
    pub self_metrics: Option<Duration>,
}

impl ShardSettings {
    fn poll(&self) -> Duration {
        (self.flush_interval / 4).clamp(Duration::from_millis(1), Duration::from_millis(50))
    }
}

struct State {
    hub: Arc<Hub>,
    rings: Vec<RingConsumer>,
    /// Records drained and encoded, waiting for their batch to be sent:
    /// [traces, logs].
    pending: [encode::Batch; 2],
    started: [Option<Instant>; 2],
    producer: QueueProducer,
    stats: Stats,
    max_batch: usize,
    flush_interval: Duration,
    resource: Resource,
    /// `resource`, encoded once.
    resource_bytes: Vec<u8>,
    /// Records taken out of the rings so far.
    drained: u64,
    /// In a flush or shutdown: wait for room instead of evicting, so what
    /// the caller asked to export is not thrown away by the flush itself.
    flushing: bool,
}

const SIGNALS: [Signal; 2] = [Signal::Traces, Signal::Logs];

impl State {
    fn st(&self) -> &ExporterStats {
        &self.stats.shards[0].exporters[0]
    }

    fn adopt(&mut self) {
        if self.hub.has_new_rings.swap(false, Ordering::AcqRel) {
            if let Ok(mut new) = self.hub.new_rings.lock() {
                self.rings.append(&mut new);
            }
        }
    }

    /// Records in the rings right now.
    fn in_rings(&self) -> u64 {
        self.rings.iter().map(|r| r.ring.slots() as u64).sum()
    }

    fn pending_len(&self) -> u64 {
        self.pending.iter().map(|p| p.len() as u64).sum()
    }

    fn evicts(&self) -> bool {
        self.hub.overflow == Overflow::DropOldest && !self.flushing
    }

    fn may_drain(&self) -> bool {
        self.evicts() || self.producer.free() > 0
    }

    /// Encodes and queues signal `k`'s pending records; false when the
    /// queue has no room (nothing changes then).
    fn emit(&mut self, k: usize) -> bool {
        if self.pending[k].is_empty() {
            return true;
        }
        if self.producer.free() == 0 {
            if !self.evicts() {
                return false;
            }
            if let Some(old) = self.producer.pop_oldest() {
                let st = &self.stats.shards[0].exporters[0];
                st.evicted.add(old.signal, old.payload.items);
                st.drop_items(DropReason::DropOldest, old.signal, old.payload.items);
            }
        }
        let payload = self.pending[k].take(&self.resource_bytes);
        self.started[k] = None;
        let signal = SIGNALS[k];
        let items = payload.items;
        match self.producer.push(Item { signal, payload }) {
            Ok(()) => {
                self.st().enqueued.add(signal, items);
                self.st().queue_size.set(self.producer.len() as u64);
                true
            }
            Err(_) => {
                // Cannot happen: room was made above. Count rather than lose silently.
                self.st().enqueue_failed.add(signal, items);
                true
            }
        }
    }

    /// One cycle: drain the rings (while there is room), emit full batches
    /// and, when `force` or their interval passed, partial ones.
    fn pass(&mut self, force: bool) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.rings.len() {
            // Read `abandoned` before draining: once it is set nothing more
            // can arrive, so an empty ring after the drain is finished.
            let abandoned = self.rings[i].ring.is_abandoned();
            while self.may_drain() {
                let Some(e) = self.rings[i].ring.pop() else { break };
                self.drained += 1;
                let k = usize::from(!e.is_trace());
                if self.pending[k].is_empty() {
                    self.started[k] = Some(now);
                }
                self.pending[k].add(&self.resource_bytes, e);
                if self.pending[k].len() >= self.max_batch && !self.emit(k) {
                    break;
                }
            }
            if abandoned && self.rings[i].ring.is_empty() {
                self.rings.swap_remove(i);
            } else {
                i += 1;
            }
        }
        for k in 0..2 {
            let due = self.started[k].is_some_and(|t| now.duration_since(t) >= self.flush_interval);
            if force || due {
                self.emit(k);
            }
        }
    }

    fn total(&self, f: impl Fn(&ExporterStats, Signal) -> u64) -> u64 {
        SIGNALS.iter().map(|&s| f(self.st(), s)).sum()
    }

    fn sent(&self) -> u64 {
        self.total(|st, s| st.sent.get(s))
    }

    fn failed(&self) -> u64 {
        self.total(|st, s| st.send_failed.get(s) + st.evicted.get(s))
    }

    fn enqueued(&self) -> u64 {
        self.total(|st, s| st.enqueued.get(s) + st.enqueue_failed.get(s))
    }

    /// Queues the collector's counters as an OTLP metrics batch (skipped
    /// when the sending queue is full: they are cumulative, the next one
    /// carries the news).
    fn emit_self_metrics(&mut self, start_unix_nanos: u64) {
        if self.producer.free() == 0 {
            return;
        }
        let s = SdkStats::read(&self.hub, &self.stats);
        let payload = self_metrics::encode(&self.resource, &s, start_unix_nanos, now_unix_nanos());
        let items = payload.items;
        if self
            .producer
            .push(Item {
                signal: Signal::Metrics,
                payload,
            })
            .is_ok()
        {
            self.st().enqueued.add(Signal::Metrics, items);
        }
    }

    /// Exports everything recorded before the call, waiting at most until
    /// `deadline`.
    async fn flush(&mut self, deadline: Instant) -> FlushReport {
        let (sent0, failed0) = (self.sent(), self.failed());
        self.flushing = true;
        self.adopt();
        let target = self.drained + self.in_rings();
        loop {
            self.adopt();
            self.pass(true);
            if self.drained >= target && self.pending_len() == 0 {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        self.flushing = false;
        let left_behind = target.saturating_sub(self.drained) + self.pending_len();
        let goal = self.enqueued();
        while self.sent() + self.failed() < goal && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        FlushReport {
            exported: self.sent() - sent0,
            pending: left_behind + goal.saturating_sub(self.sent() + self.failed()),
            failed: self.failed() - failed0,
        }
    }
}

/// Runs the shard until a `Shutdown` command has been served.
pub async fn run(hub: Arc<Hub>, control: Arc<Control>, settings: ShardSettings, stats: Stats) {
    let poll = settings.poll();
    let lifecycle = Lifecycle::new();
    let ctx = ExportContext {
        stats: stats.clone(),
        shard: 0,
        index: 0,
        lifecycle: lifecycle.clone(),
    };
    let plan = (settings.plan)();
    let (producer, consumer) = exporter::make_queue(&plan);
    let exporter_task = glommio::spawn_local(exporter::run(plan, consumer, ctx));
    let mut state = State {
        hub: hub.clone(),
        rings: Vec::new(),
        pending: [encode::Batch::new(Signal::Traces), encode::Batch::new(Signal::Logs)],
        started: [None, None],
        producer,
        stats,
        max_batch: settings.max_batch.max(1),
        flush_interval: settings.flush_interval,
        resource_bytes: prost::Message::encode_to_vec(&settings.resource),
        resource: settings.resource,
        drained: 0,
        flushing: false,
    };
    let started_unix_nanos = now_unix_nanos();
    let mut next_metrics = settings.self_metrics.map(|d| (Instant::now() + d, d));
    loop {
        state.adopt();
        let commands = control
            .commands
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for cmd in commands {
            match cmd {
                Command::Flush { deadline, reply } => {
                    let r = state.flush(deadline).await;
                    let _ = reply.send(r);
                }
                Command::Shutdown { deadline, reply } => {
                    hub.closed.store(true, Ordering::SeqCst);
                    let mut r = state.flush(deadline).await;
                    if next_metrics.is_some() {
                        state.emit_self_metrics(started_unix_nanos);
                    }
                    // Give the exporter what is left of the deadline: its
                    // retries give up then and count what they abandon.
                    lifecycle.start_draining(deadline.saturating_duration_since(Instant::now()));
                    state.producer.close();
                    let sent0 = state.sent();
                    let failed0 = state.failed();
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1));
                    let _ = glommio::timer::timeout(left, async {
                        exporter_task.await;
                        Ok(())
                    })
                    .await;
                    r.exported += state.sent() - sent0;
                    r.failed += state.failed() - failed0;
                    r.pending = state.enqueued().saturating_sub(state.sent() + state.failed())
                        + state.pending_len()
                        + state.in_rings();
                    control.stopped.store(true, Ordering::SeqCst);
                    let _ = reply.send(r);
                    return;
                }
            }
        }
        state.pass(false);
        if let Some((at, every)) = next_metrics {
            if Instant::now() >= at {
                state.emit_self_metrics(started_unix_nanos);
                next_metrics = Some((Instant::now() + every, every));
            }
        }
        wait(&hub, poll).await;
    }
}

/// Sleeps `poll`, or less when a producer wakes the shard.
async fn wait(hub: &Arc<Hub>, poll: Duration) {
    let woken = std::future::poll_fn(|cx| {
        if hub.wake_pending.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        if let Ok(mut w) = hub.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        // A wake between the check and storing the waker found no waker;
        // look again so it is not missed (the timer bounds it anyway).
        if hub.wake_pending.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    });
    futures_lite::future::or(woken, glommio::timer::sleep(poll)).await;
    // Leave no waker behind for producers to wake needlessly.
    if let Ok(mut w) = hub.waker.lock() {
        w.take();
    }
}

/// Starts the shard thread.
pub fn spawn(
    hub: Arc<Hub>,
    control: Arc<Control>,
    settings: ShardSettings,
    stats: Stats,
    cpu: Option<usize>,
) -> Result<glommio::ExecutorJoinHandle<()>, glommio::GlommioError<()>> {
    let placement = match cpu {
        Some(c) => glommio::Placement::Fixed(c),
        None => glommio::Placement::Unbound,
    };
    glommio::LocalExecutorBuilder::new(placement)
        .name("sluice-sdk")
        .io_memory(512 << 10)
        .spawn(move || run(hub, control, settings, stats))
}

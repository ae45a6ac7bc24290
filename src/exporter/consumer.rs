//! The per-shard exporter instance and its consumer loop: pops batches from
//! the sending queue, sends them through the backend (OTLP gRPC/HTTP client,
//! local store, debug log, nop), retries with backoff, and counts outcomes.

use std::{
    cell::RefCell,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use glommio::sync::Semaphore;

use crate::{
    config::{CircuitBreakerConfig, ExporterConfig},
    exporter::{
        circuit_breaker::{CircuitBreaker, Permit},
        client::{ClientSettings, ExportError, ExportOk},
        debug, file,
        otlp_grpc::GrpcExporter,
        otlp_http::HttpExporter,
        queue::{Overflow, QueueConsumer, QueueProducer},
        retry::{Backoff, RetrySettings},
    },
    payload::Payload,
    shutdown::Lifecycle,
    signal::Signal,
    spool::Spool,
    telemetry::{counters::LATENCY_BOUNDS_US, Stats},
};

/// How one exporter sends, on one shard.
pub enum Backend {
    Grpc(GrpcExporter),
    Http(HttpExporter),
    Kafka(Box<crate::kafka::KafkaExporter>),
    File {
        dir: PathBuf,
        segment_size: u64,
        fsync: bool,
    },
    Debug(debug::DebugSettings),
    Nop,
    /// Per-gateway `otlp` exporters behind a router (`loadbalancing`).
    LoadBalancing(Box<crate::config::LoadBalancingConfig>),
}

/// An exporter's per-shard settings, derived from its config.
pub struct ExporterPlan {
    pub id: String,
    pub backend: Backend,
    pub queue_size: usize,
    pub num_consumers: usize,
    pub retry: RetrySettings,
    pub overflow: Overflow,
    pub breaker: CircuitBreakerConfig,
}

impl ExporterPlan {
    pub fn from_config(id: String, cfg: &ExporterConfig) -> ExporterPlan {
        let plain = |backend, queue_size: usize| ExporterPlan {
            id: id.clone(),
            backend,
            queue_size,
            num_consumers: 1,
            retry: RetrySettings {
                enabled: false,
                ..Default::default()
            },
            overflow: Overflow::default(),
            breaker: CircuitBreakerConfig::default(),
        };
        match cfg {
            ExporterConfig::Otlp(o) | ExporterConfig::OtlpHttp(o) => {
                let grpc = matches!(cfg, ExporterConfig::Otlp(_));
                let settings = ClientSettings {
                    // otlp (gRPC): the config normalises the endpoint to host:port.
                    addr: o.endpoint.clone(),
                    // otlphttp connects to each URL's own host and port.
                    urls: std::array::from_fn(|i| o.signal_url(Signal::ALL[i])),
                    compression: o.compression,
                    headers: o.headers.clone(),
                    token_file: o.token_file.clone(),
                    timeout: o.timeout,
                    max_conns: o.sending_queue.num_consumers.max(1),
                    tls: o.tls.as_ref().map(|t| {
                        let alpn = if grpc {
                            crate::tls::client::ALPN_H2
                        } else {
                            crate::tls::client::ALPN_HTTP1
                        };
                        crate::tls::client::Connector::new(t, alpn).map_err(|e| {
                            tracing::error!(exporter = %id, error = %e, "cannot load the exporter's TLS settings");
                            e.to_string()
                        })
                    }),
                };
                let q = &o.sending_queue;
                let queue_size = if q.enabled { q.queue_size.max(1) } else { 1 };
                ExporterPlan {
                    id,
                    backend: if grpc {
                        Backend::Grpc(GrpcExporter::new(settings))
                    } else {
                        Backend::Http(HttpExporter::new(settings))
                    },
                    queue_size,
                    overflow: Overflow::new(q.overflow, q.sample_percentage, q.high_water_percentage, queue_size),
                    num_consumers: if q.enabled { q.num_consumers.max(1) } else { 1 },
                    retry: RetrySettings {
                        enabled: o.retry_on_failure.enabled,
                        initial_interval: o.retry_on_failure.initial_interval,
                        max_interval: o.retry_on_failure.max_interval,
                        max_elapsed_time: o.retry_on_failure.max_elapsed_time,
                        multiplier: o.retry_on_failure.multiplier,
                        randomization_factor: o.retry_on_failure.randomization_factor,
                    },
                    breaker: o.circuit_breaker.clone(),
                }
            }
            ExporterConfig::Kafka(k) => {
                let q = &k.sending_queue;
                let queue_size = if q.enabled { q.queue_size.max(1) } else { 1 };
                let r = &k.retry_on_failure;
                ExporterPlan {
                    id,
                    backend: Backend::Kafka(Box::new(crate::kafka::KafkaExporter::new(k))),
                    queue_size,
                    overflow: Overflow::new(q.overflow, q.sample_percentage, q.high_water_percentage, queue_size),
                    num_consumers: if q.enabled { q.num_consumers.max(1) } else { 1 },
                    retry: RetrySettings {
                        enabled: r.enabled,
                        initial_interval: r.initial_interval,
                        max_interval: r.max_interval,
                        max_elapsed_time: r.max_elapsed_time,
                        multiplier: r.multiplier,
                        randomization_factor: r.randomization_factor,
                    },
                    breaker: CircuitBreakerConfig::default(),
                }
            }
            ExporterConfig::File(f) => plain(
                Backend::File {
                    dir: f.path.clone(),
                    segment_size: f.segment_size_mib.max(1) * 1024 * 1024,
                    fsync: f.fsync,
                },
                1024,
            ),
            ExporterConfig::Debug(d) => plain(Backend::Debug(debug::DebugSettings::from_config(d)), 1024),
            ExporterConfig::Nop => plain(Backend::Nop, 1024),
            ExporterConfig::LoadBalancing(lb) => {
                // The router's own queue: sized and admitted like the gateways'.
                let q = &lb.otlp.sending_queue;
                let queue_size = if q.enabled { q.queue_size.max(1) } else { 1 };
                ExporterPlan {
                    overflow: Overflow::new(q.overflow, q.sample_percentage, q.high_water_percentage, queue_size),
                    ..plain(Backend::LoadBalancing(Box::new(lb.clone())), queue_size)
                }
            }
        }
    }
}

/// The pipeline's end of a running exporter.
pub struct ExporterHandle {
    pub id: String,
    pub index: usize,
    pub producer: RefCell<QueueProducer>,
    pub overflow: Overflow,
    /// Used with `overflow: sample`.
    pub sampler: crate::processor::sampling::Sampler,
    /// The persistent queue, when `sending_queue.storage` is set: the pipeline
    /// appends to it instead of pushing to `producer`.
    pub spool: Option<Rc<Spool>>,
}

/// Where a consumer reports: the shard's stats and lifecycle.
#[derive(Clone)]
pub struct ExportContext {
    pub stats: Stats,
    pub shard: usize,
    pub index: usize,
    pub lifecycle: Rc<Lifecycle>,
}

impl ExportContext {
    pub(crate) fn stats(&self) -> &crate::telemetry::ExporterStats {
        &self.stats.shards[self.shard].exporters[self.index]
    }
}

/// Runs one exporter's consumers until its queue is closed and drained (or the
/// shutdown deadline passes; what is left then is counted and logged).
pub async fn run(plan: ExporterPlan, mut consumer: QueueConsumer, ctx: ExportContext) {
    let st = ctx.stats();
    st.queue_capacity.set(plan.queue_size as u64);
    match plan.backend {
        Backend::File {
            dir,
            segment_size,
            fsync,
        } => file::run(&plan.id, &dir, segment_size, fsync, &mut consumer, &ctx).await,
        Backend::Nop => {
            while let Some(item) = consumer.pop().await {
                ctx.stats().sent.add(item.signal, item.payload.items);
                ctx.stats().queue_size.set(consumer.len() as u64);
                ctx.stats().queue_bytes.set(consumer.bytes());
            }
        }
        Backend::Debug(settings) => {
            let mut seen = 0u64;
            while let Some(item) = consumer.pop().await {
                debug::log(&plan.id, &settings, item.signal, &item.payload, &mut seen);
                ctx.stats().sent.add(item.signal, item.payload.items);
                ctx.stats().queue_size.set(consumer.len() as u64);
                ctx.stats().queue_bytes.set(consumer.bytes());
            }
        }
        Backend::LoadBalancing(lb) => {
            crate::exporter::loadbalancing::run(plan.id, *lb, consumer, ctx).await;
        }
        Backend::Grpc(_) | Backend::Http(_) | Backend::Kafka(_) => run_sender(plan, consumer, ctx).await,
    }
}

/// The consumer loop of an `otlp` / `otlphttp` exporter (also one gateway of
/// a `loadbalancing` exporter): up to `num_consumers` batches in flight.
pub async fn run_sender(plan: ExporterPlan, mut consumer: QueueConsumer, ctx: ExportContext) {
    let sender = Sender::new(&plan.id, plan.backend, plan.retry, plan.breaker, &ctx);
    let permits = Rc::new(Semaphore::new(plan.num_consumers as u64));
    loop {
        // While the breaker is open, batches wait in the queue.
        sender.wait_admitted().await;
        // Take a send slot first, so a batch leaves the queue only when
        // it can go out: the queue holds exactly `queue_size` batches.
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            break;
        };
        let Some(item) = consumer.pop().await else {
            break;
        };
        ctx.stats().queue_size.set(consumer.len() as u64);
        ctx.stats().queue_bytes.set(consumer.bytes());
        let sender = sender.clone();
        glommio::spawn_local(async move {
            sender.send(item.signal, &item.payload, false).await;
            drop(permit);
        })
        .detach();
    }
    // Wait for in-flight exports to finish.
    let _ = permits.acquire(plan.num_consumers as u64).await;
}

/// How one batch's export ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the backend (possibly with some items rejected, counted).
    Sent,
    /// Failed for good (permanent error or retries exhausted); counted.
    Failed,
    /// Given up at the shutdown deadline. For a spooled batch nothing is
    /// counted: it stays in the spool and is sent after the restart.
    Abandoned,
}

/// Everything the concurrent exports of one exporter on one shard share: the
/// backend connection(s), retry settings and the circuit breaker.
#[derive(Clone)]
pub struct Sender {
    backend: Rc<Backend>,
    id: Rc<str>,
    retry: RetrySettings,
    breaker: Rc<RefCell<CircuitBreaker>>,
    seed: Rc<std::cell::Cell<u64>>,
    ctx: ExportContext,
}

impl Sender {
    pub fn new(
        id: &str,
        backend: Backend,
        retry: RetrySettings,
        breaker: CircuitBreakerConfig,
        ctx: &ExportContext,
    ) -> Sender {
        Sender {
            backend: Rc::new(backend),
            id: id.into(),
            retry,
            breaker: Rc::new(RefCell::new(CircuitBreaker::new(breaker))),
            seed: Rc::new(std::cell::Cell::new(
                0x9e37_79b9_7f4a_7c15u64 ^ ((ctx.shard as u64) << 32) ^ ctx.index as u64,
            )),
            ctx: ctx.clone(),
        }
    }

    /// Returns once the breaker admits new work (or the shutdown deadline passed).
    pub async fn wait_admitted(&self) {
        loop {
            let wait = self.breaker.borrow().wait_time(Instant::now());
            let Some(d) = wait else { return };
            if self.ctx.lifecycle.past_deadline() {
                return;
            }
            sleep_until_or_deadline(d, self.ctx.lifecycle.deadline(), &self.ctx.lifecycle).await;
        }
    }

    fn publish_state(&self) {
        let s = self.breaker.borrow().state();
        self.ctx.stats().circuit_state.set(s as u64);
    }

    /// Sends one batch, retrying retryable failures with backoff until they
    /// succeed, retries run out, or the shutdown deadline passes. No attempt
    /// is made while the circuit breaker is open. `durable`: the batch is in
    /// the spool, so giving up at the deadline loses nothing.
    pub async fn send(&self, signal: Signal, payload: &Payload, durable: bool) -> Outcome {
        let seed = self
            .seed
            .get()
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed.set(seed);
        let ctx = &self.ctx;
        let id: &str = &self.id;
        let backend = &*self.backend;
        let mut backoff = Backoff::new(self.retry, seed);
        let abandon = |e: &dyn std::fmt::Display| {
            if durable {
                tracing::info!(exporter = id, %signal, items = payload.items, error = %e, "shutdown deadline passed; batch stays in the spool");
            } else {
                ctx.stats().send_failed.add(signal, payload.items);
                ctx.stats.shards[ctx.shard].shutdown_dropped.add(signal, payload.items);
                tracing::error!(exporter = id, %signal, items = payload.items, error = %e, "shutdown deadline passed; batch not delivered");
            }
            Outcome::Abandoned
        };
        loop {
            // The breaker decides whether this attempt may go out at all.
            loop {
                let permit = self.breaker.borrow_mut().acquire(Instant::now());
                self.publish_state();
                match permit {
                    Permit::Go | Permit::Probe => break,
                    Permit::Wait(d) => {
                        if ctx.lifecycle.past_deadline() {
                            return abandon(&"circuit breaker open");
                        }
                        sleep_until_or_deadline(d, ctx.lifecycle.deadline(), &ctx.lifecycle).await;
                    }
                }
            }
            let before = connects(backend);
            let started = Instant::now();
            let result = export_once(backend, signal, payload).await;
            let st = ctx.stats();
            let us = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
            st.latency.observe(&LATENCY_BOUNDS_US, us);
            st.connects.add(connects(backend).saturating_sub(before));
            match &result {
                Ok(_) => self.breaker.borrow_mut().on_success(),
                Err(e) if e.is_retryable() => self.breaker.borrow_mut().on_failure(Instant::now()),
                // The backend answered: it is up, only this batch is bad.
                Err(ExportError::Grpc { .. } | ExportError::Http { .. }) => self.breaker.borrow_mut().on_success(),
                Err(_) => {}
            }
            self.publish_state();
            match result {
                Ok(ok) => {
                    let rejected = ok.rejected_items.min(payload.items);
                    st.sent.add(signal, payload.items - rejected);
                    if rejected > 0 {
                        st.send_failed.add(signal, rejected);
                        tracing::warn!(exporter = id, %signal, rejected, message = ?ok.message, "backend rejected part of a batch");
                    }
                    return Outcome::Sent;
                }
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next_delay(e.retry_after());
                    let deadline = ctx.lifecycle.deadline();
                    match delay {
                        Some(d) if !ctx.lifecycle.past_deadline() => {
                            st.retries.add(1);
                            tracing::debug!(exporter = id, %signal, error = %e, delay = ?d, "export failed; retrying");
                            sleep_until_or_deadline(d, deadline, &ctx.lifecycle).await;
                            if ctx.lifecycle.past_deadline() {
                                return abandon(&e);
                            }
                        }
                        Some(_) => return abandon(&e),
                        None => {
                            st.send_failed.add(signal, payload.items);
                            tracing::error!(exporter = id, %signal, items = payload.items, error = %e, "export failed; no more retries");
                            return Outcome::Failed;
                        }
                    }
                }
                Err(e) => {
                    st.send_failed.add(signal, payload.items);
                    st.permanent_errors.add(1);
                    tracing::error!(exporter = id, %signal, items = payload.items, error = %e, kind = e.kind(), "export failed permanently; dropping batch");
                    return Outcome::Failed;
                }
            }
        }
    }
}

/// Runs an exporter whose sending queue is the spool: reads batches back from
/// it, sends them with the same retry and breaker machinery, and settles each
/// batch in the spool (cursor, segment deletion) once it is sent or failed
/// for good. What is not sent by the shutdown deadline stays in the spool.
pub async fn run_spooled(plan: ExporterPlan, consumer: QueueConsumer, spool: Rc<Spool>, ctx: ExportContext) {
    drop(consumer);
    ctx.stats().queue_capacity.set(plan.queue_size as u64);
    if !matches!(plan.backend, Backend::Grpc(_) | Backend::Http(_) | Backend::Kafka(_)) {
        tracing::error!(exporter = %plan.id, "a persistent queue needs an otlp, otlphttp or kafka exporter");
        return;
    }
    let sender = Sender::new(&plan.id, plan.backend, plan.retry, plan.breaker, &ctx);
    let permits = Rc::new(Semaphore::new(plan.num_consumers as u64));
    let done = Rc::new(std::cell::Cell::new(false));
    let cursor_task = {
        let (spool, done) = (spool.clone(), done.clone());
        glommio::spawn_local(async move {
            while !done.get() {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                if let Err(e) = spool.persist_cursor().await {
                    tracing::warn!(exporter = %spool.exporter, error = %e, "cannot persist the spool cursor");
                }
            }
        })
    };
    loop {
        sender.wait_admitted().await;
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            break;
        };
        let Some(batch) = spool.next_batch(&ctx.lifecycle).await else {
            break;
        };
        let (sender, spool) = (sender.clone(), spool.clone());
        glommio::spawn_local(async move {
            let outcome = sender.send(batch.signal, &batch.payload, true).await;
            if outcome != Outcome::Abandoned {
                spool.complete(batch.id);
            }
            drop(permit);
        })
        .detach();
    }
    let _ = permits.acquire(plan.num_consumers as u64).await;
    done.set(true);
    cursor_task.await;
    spool.close_writer().await;
    if let Err(e) = spool.persist_cursor().await {
        tracing::warn!(exporter = %spool.exporter, error = %e, "cannot persist the spool cursor");
    }
    if spool.records() > 0 {
        tracing::info!(exporter = %spool.exporter, records = spool.records(), "records left in the spool; they are sent after the restart");
    }
}

async fn export_once(backend: &Backend, signal: Signal, payload: &Payload) -> Result<ExportOk, ExportError> {
    match backend {
        Backend::Grpc(g) => g.export(signal, payload).await,
        Backend::Http(h) => h.export(signal, payload).await,
        Backend::Kafka(k) => k.export(signal, payload).await,
        _ => Ok(ExportOk {
            rejected_items: 0,
            message: None,
        }),
    }
}

fn connects(backend: &Backend) -> u64 {
    match backend {
        Backend::Grpc(g) => g.connects(),
        Backend::Http(h) => h.connects(),
        _ => 0,
    }
}

/// Sleeps `d` (any length: it may come from a server's retry hint), waking
/// early when draining starts so the deadline can be honoured.
pub(crate) async fn sleep_until_or_deadline(d: Duration, deadline: Option<Instant>, lifecycle: &Lifecycle) {
    let until = crate::clock::after(Instant::now(), d);
    let until = deadline.map_or(until, |dl| until.min(dl));
    futures_lite::future::or(
        async {
            crate::clock::sleep(until.saturating_duration_since(Instant::now())).await;
        },
        async {
            if deadline.is_none() {
                lifecycle.drained_signal().await;
                // Now draining: keep sleeping, but not past the new deadline.
                if let Some(dl) = lifecycle.deadline() {
                    crate::clock::sleep(until.min(dl).saturating_duration_since(Instant::now())).await;
                }
            } else {
                futures_lite::future::pending::<()>().await;
            }
        },
    )
    .await
}

/// Creates the queue pair for a plan.
pub fn make_queue(plan: &ExporterPlan) -> (QueueProducer, QueueConsumer) {
    crate::exporter::queue::queue(plan.queue_size)
}

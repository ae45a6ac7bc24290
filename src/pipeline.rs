//! A shard's pipelines: which receiver feeds which pipelines per signal, each
//! pipeline's batch processor, and the hand-off of finished batches to the
//! exporters' sending queues. Everything here is owned by one shard.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::Instant,
};

use thiserror::Error;

use crate::{
    config::{Config, OverflowPolicy, ProcessorConfig},
    exporter::{queue::Item, ExporterHandle},
    payload::Payload,
    processor::{
        attributes::Attributes,
        batch::{BatchSettings, Batcher},
        filter::Filter,
        memory_limiter::{self, ShardGate},
        probabilistic_sampler::ProbabilisticSampler,
        resource::Resource,
        resourcedetection,
        tail_sampling::{mesh::Links, TailSampler},
    },
    signal::Signal,
    telemetry::{counters::BATCH_SIZE_BOUNDS, DropReason, Stats},
};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SubmitError {
    #[error("no {0} pipeline takes data from this receiver")]
    NoPipeline(Signal),
    #[error("sending queue of exporter {0} is full")]
    QueueFull(String),
    #[error("shutting down")]
    ShuttingDown,
    #[error("memory limit reached; retry later")]
    MemoryLimited,
    #[error("persistent queue of exporter {0} is full")]
    SpoolFull(String),
    #[error("persistent queue of exporter {0} cannot store the request: {1}")]
    Spool(String, String),
    /// A processor refused the request (a filter with `error_mode: propagate`).
    #[error("{0}")]
    Processor(String),
    /// A tail sampler's ring to another shard is full (retryable).
    #[error("{0}")]
    RingFull(String),
}

/// A processor that changes data, with the index of its counters in
/// `ShardStats::filters` / `ShardStats::samplers` (the attribute processors
/// have none, as in the Collector).
enum Step {
    Filter(Filter, usize),
    Sample(ProbabilisticSampler, usize),
    Attributes(Box<Attributes>),
    /// `resource`, and `resourcedetection` (its detected attributes as actions).
    Resource(Resource),
    /// `tail_sampling`: takes the spans; kept traces come back on its tick.
    Tail(Box<TailSampler>),
}

struct Pipeline {
    signal: Signal,
    /// The processors that change data, in the pipeline's order.
    steps: Vec<Step>,
    batcher: Option<RefCell<Batcher>>,
    /// Index of the batch processor in `ShardStats::batches`.
    batch_stats: Option<usize>,
    /// Indices into `ShardPipelines::exporters` (in-memory sending queues).
    exporters: Vec<usize>,
    /// Indices of exporters with a persistent queue (spool).
    spooled: Vec<usize>,
    /// Whether the pipeline has a memory_limiter processor.
    limited: bool,
    /// Bytes waiting in the batcher (approximate after splits; reset when empty).
    batched: Cell<u64>,
}

/// The pipelines of one shard.
pub struct ShardPipelines {
    pub shard: usize,
    pipelines: Vec<Pipeline>,
    /// Receiver index (position in `receiver_ids`) → signal → pipeline indices.
    routes: Vec<[Vec<usize>; 3]>,
    pub receiver_ids: Vec<String>,
    pub exporters: Vec<ExporterHandle>,
    stats: Stats,
    /// The memory limiter's per-shard gate, when a pipeline has one.
    pub memory: Option<ShardGate>,
}

impl ShardPipelines {
    /// Builds the routing for one shard. `exporters` must hold one handle per
    /// exporter id used in any pipeline (in `exporter_ids` order).
    pub fn new(shard: usize, config: &Config, exporters: Vec<ExporterHandle>, stats: Stats) -> Self {
        let receiver_ids: Vec<String> = config.receivers.keys().map(|k| k.to_string()).collect();
        let mut routes = vec![[Vec::new(), Vec::new(), Vec::new()]; receiver_ids.len()];
        let mut pipelines = Vec::new();
        let soft_limit = memory_limiter::config_of(config)
            .and_then(|c| memory_limiter::Limits::from_config(&c, memory_limiter::total_memory()).ok())
            .map(|l| l.soft);
        for p in &config.service.pipelines {
            let batch = p.processors.iter().find_map(|id| match config.processors.get(id) {
                Some(ProcessorConfig::Batch(b)) => Some(BatchSettings {
                    send_batch_size: b.send_batch_size.max(1),
                    send_batch_max_size: b.send_batch_max_size,
                    timeout: b.timeout,
                }),
                _ => None,
            });
            let batch_stats = p.processors.iter().find_map(|id| match config.processors.get(id) {
                Some(ProcessorConfig::Batch(_)) => {
                    let id = id.to_string();
                    stats.shards[shard].batches.iter().position(|b| b.processor == id)
                }
                _ => None,
            });
            let sh = &stats.shards[shard];
            let steps: Vec<Step> = p
                .processors
                .iter()
                .filter_map(|cid| {
                    let id = cid.to_string();
                    match config.processors.get(cid) {
                        Some(ProcessorConfig::Filter(f)) => {
                            let at = sh.filters.iter().position(|s| s.processor == id)?;
                            let filter = Filter::new(&id, f);
                            filter.touches(p.signal).then_some(Step::Filter(filter, at))
                        }
                        Some(ProcessorConfig::ProbabilisticSampler(c)) => {
                            let at = sh.samplers.iter().position(|s| s.processor == id)?;
                            let sampler = ProbabilisticSampler::new(&id, c, shard);
                            sampler.touches(p.signal).then_some(Step::Sample(sampler, at))
                        }
                        Some(ProcessorConfig::Attributes(c)) => {
                            Some(Step::Attributes(Box::new(Attributes::new(&id, c))))
                        }
                        Some(ProcessorConfig::Resource(c)) => Some(Step::Resource(Resource::new(&id, c))),
                        Some(ProcessorConfig::ResourceDetection(c)) => {
                            let r = resourcedetection::runtime(&id, c);
                            (!r.is_empty()).then_some(Step::Resource(r))
                        }
                        Some(ProcessorConfig::TailSampling(c)) if p.signal == Signal::Traces => {
                            let at = sh.tail.iter().position(|s| s.processor == id)?;
                            let shards = stats.shards.len();
                            Some(Step::Tail(Box::new(TailSampler::new(
                                &id, c, shard, shards, at, soft_limit,
                            ))))
                        }
                        _ => None,
                    }
                })
                .collect();
            let idx = pipelines.len();
            let all: Vec<usize> = p
                .exporters
                .iter()
                .filter_map(|e| exporters.iter().position(|h| h.id == e.to_string()))
                .collect();
            let (spooled, in_memory): (Vec<usize>, Vec<usize>) =
                all.into_iter().partition(|&i| exporters[i].spool.is_some());
            // Spooled exporters batch on the read side; a batcher only serves
            // in-memory queues.
            let batch = batch.filter(|_| !in_memory.is_empty());
            pipelines.push(Pipeline {
                signal: p.signal,
                steps,
                batcher: batch.map(|b| RefCell::new(Batcher::new(p.signal, b))),
                batch_stats: batch_stats.filter(|_| batch.is_some()),
                exporters: in_memory,
                spooled,
                limited: memory_limiter::pipeline_limited(config, &p.processors),
                batched: Cell::new(0),
            });
            for r in &p.receivers {
                if let Some(ri) = receiver_ids.iter().position(|x| *x == r.to_string()) {
                    routes[ri][p.signal.index()].push(idx);
                }
            }
        }
        ShardPipelines {
            shard,
            pipelines,
            routes,
            receiver_ids,
            exporters,
            stats,
            memory: None,
        }
    }

    /// Bytes this shard holds: batches being built plus the fullest sending
    /// queue (queues of one pipeline share the same buffers).
    pub fn held_bytes(&self) -> u64 {
        let batched: u64 = self.pipelines.iter().map(|p| p.batched.get()).sum::<u64>()
            + self.tails().map(|(_, _, t)| t.buffered_bytes()).sum::<u64>();
        let queued = self
            .exporters
            .iter()
            .map(|e| e.producer.borrow().bytes())
            .max()
            .unwrap_or(0);
        batched + queued
    }

    /// Above the memory limiter's hard limit: drops every batch held in
    /// memory (being built or queued), counted with reason `memory_limit`.
    /// Returns the bytes shed.
    pub fn shed(&self) -> u64 {
        let st = &self.stats.shards[self.shard];
        let mut bytes = 0u64;
        for p in &self.pipelines {
            if let Some(b) = &p.batcher {
                b.borrow_mut().flush(&mut |batch| {
                    bytes += batch.len as u64;
                    for &ei in &p.exporters {
                        st.exporters[self.exporters[ei].index].drop_items(
                            DropReason::MemoryLimit,
                            p.signal,
                            batch.items,
                        );
                    }
                });
                p.batched.set(0);
            }
        }
        for e in &self.exporters {
            let es = &st.exporters[e.index];
            let mut q = e.producer.borrow_mut();
            while let Some(old) = q.pop_oldest() {
                bytes += old.payload.len as u64;
                es.evicted.add(old.signal, old.payload.items);
                es.drop_items(DropReason::MemoryLimit, old.signal, old.payload.items);
            }
            es.queue_size.set(q.len() as u64);
            es.queue_bytes.set(q.bytes());
        }
        bytes
    }

    fn settle_batched(&self, p: &Pipeline) {
        if let Some(b) = &p.batcher {
            if b.borrow().pending_items() == 0 {
                p.batched.set(0);
            }
        }
    }

    pub fn receiver_index(&self, id: &str) -> Option<usize> {
        self.receiver_ids.iter().position(|r| r == id)
    }

    /// Whether `receiver` feeds any pipeline of `signal`.
    pub fn accepts(&self, receiver: usize, signal: Signal) -> bool {
        self.routes.get(receiver).is_some_and(|r| !r[signal.index()].is_empty())
    }

    /// The first `overflow: signal` sending queue among `targets` that could
    /// not take the batches this request would make the pipelines emit now.
    /// Exact: splits at `send_batch_max_size` are counted with a dry run, and
    /// the demand of several pipelines on one exporter is added up.
    fn full_queue(&self, targets: &[usize], payload: &Payload) -> Option<&ExporterHandle> {
        let mut need: Vec<(usize, usize)> = Vec::new();
        for &pi in targets {
            let p = &self.pipelines[pi];
            let parts = match &p.batcher {
                Some(b) => b.borrow().parts_if_pushed(payload),
                None => 1,
            };
            if parts == 0 {
                continue;
            }
            for &ei in &p.exporters {
                // Only `overflow: signal` refuses; the other policies make room
                // by discarding (counted by reason) when the batch is enqueued.
                if !self.exporters[ei].overflow.refuses() {
                    continue;
                }
                match need.iter_mut().find(|(e, _)| *e == ei) {
                    Some((_, n)) => *n += parts,
                    None => need.push((ei, parts)),
                }
            }
        }
        need.into_iter()
            .find(|&(ei, n)| self.exporters[ei].producer.borrow().free() < n)
            .map(|(ei, _)| &self.exporters[ei])
    }

    /// Whether a pipeline's pending batch can be flushed now without
    /// overflowing a `signal` queue.
    fn has_room_to_flush(&self, p: &Pipeline) -> bool {
        let parts = p.batcher.as_ref().map_or(1, |b| b.borrow().parts_on_flush());
        p.exporters.iter().all(|&ei| {
            let e = &self.exporters[ei];
            !e.overflow.refuses() || e.producer.borrow().free() >= parts
        })
    }

    /// The `overflow: signal` sending queue that would now refuse `payload`
    /// from `receiver` because it is full, if any (no side effects).
    pub fn queue_full_for(&self, receiver: usize, signal: Signal, payload: &Payload) -> Option<&ExporterHandle> {
        self.routes
            .get(receiver)
            .and_then(|r| self.full_queue(&r[signal.index()], payload))
    }

    /// Hands an accepted request to every pipeline `receiver` feeds for `signal`.
    /// On `Ok` the data is owned by the shard (batched or queued) and the
    /// request may be acknowledged.
    pub fn submit(&self, receiver: usize, signal: Signal, payload: Payload) -> Result<(), SubmitError> {
        let Some(targets) = self.routes.get(receiver).map(|r| &r[signal.index()]) else {
            return Err(SubmitError::NoPipeline(signal));
        };
        if targets.is_empty() {
            return Err(SubmitError::NoPipeline(signal));
        }
        self.admit(targets, signal, &payload)?;
        let processed = self.process(targets, payload)?;
        self.hand_over(targets, processed);
        Ok(())
    }

    /// The checks before anything of a request is taken: the memory limiter,
    /// and room in every `overflow: signal` queue for what it may produce.
    fn admit(&self, targets: &[usize], signal: Signal, payload: &Payload) -> Result<(), SubmitError> {
        if let Some(g) = &self.memory {
            if targets.iter().any(|&pi| self.pipelines[pi].limited) && g.refusing(self.held_bytes()) {
                return Err(SubmitError::MemoryLimited);
            }
        }
        // Refuse before accepting anything when a queue could not take what this
        // request may produce, so acknowledged data always has a place to go.
        if let Some(e) = self.full_queue(targets, payload) {
            let st = &self.stats.shards[self.shard].exporters[e.index];
            st.enqueue_failed.add(signal, payload.items);
            return Err(SubmitError::QueueFull(e.id.clone()));
        }
        Ok(())
    }

    /// Runs each target pipeline's processors over `payload`: one payload per
    /// target, in order. Nothing is handed over yet, so a processor that
    /// refuses the request leaves no part of it accepted.
    fn process(&self, targets: &[usize], payload: Payload) -> Result<Vec<Payload>, SubmitError> {
        let mut out = Vec::with_capacity(targets.len());
        let last = targets.len().saturating_sub(1);
        // Processors walk chunk by chunk, each as whole entries: regroup a
        // request held as its frames once, for every target.
        let payload = if targets.iter().any(|&pi| !self.pipelines[pi].steps.is_empty()) {
            crate::wire::rope::align(payload)
        } else {
            payload
        };
        let mut payload = Some(payload);
        for (i, &pi) in targets.iter().enumerate() {
            let data = if i == last {
                payload.take().unwrap_or_default()
            } else {
                payload.clone().unwrap_or_default()
            };
            out.push(self.run_steps(pi, 0, data)?);
        }
        Ok(out)
    }

    /// Runs the processors of pipeline `pi` from step `from` on over `data`.
    /// `data`'s chunks hold whole entries: `process` aligned a received
    /// request, and tail sampling's kept slices are whole requests.
    fn run_steps(&self, pi: usize, from: usize, mut data: Payload) -> Result<Payload, SubmitError> {
        let p = &self.pipelines[pi];
        let st = &self.stats.shards[self.shard];
        for step in p.steps.iter().skip(from) {
            // What the step changed, if anything: the new chunks and the
            // items it dropped.
            let changed: Option<(Vec<bytes::Bytes>, u64)> = match step {
                Step::Filter(filter, at) => {
                    let f = filter
                        .apply(p.signal, &data.chunks)
                        .map_err(|e| SubmitError::Processor(e.to_string()))?;
                    st.filters[*at].filtered.add(p.signal, f.dropped);
                    (f.dropped > 0).then_some((f.chunks, f.dropped))
                }
                Step::Sample(sampler, at) => {
                    let r = sampler
                        .apply(p.signal, &data.chunks)
                        .map_err(|e| SubmitError::Processor(format!("{}: {e}", sampler.id)))?;
                    st.samplers[*at].record(p.signal, &r.decisions);
                    (r.dropped > 0).then_some((r.chunks, r.dropped))
                }
                Step::Attributes(a) => a
                    .apply(p.signal, &data.chunks)
                    .map_err(|e| SubmitError::Processor(format!("{}: {e}", a.id)))?
                    .map(|chunks| (chunks, 0)),
                Step::Resource(r) => r
                    .apply(p.signal, &data.chunks)
                    .map_err(|e| SubmitError::Processor(format!("{}: {e}", r.id)))?
                    .map(|chunks| (chunks, 0)),
                Step::Tail(t) => {
                    if data.is_empty() {
                        continue;
                    }
                    let taken = t
                        .take(&data.chunks, &st.tail[t.stats_at], Instant::now())
                        .map_err(|e| match e {
                            crate::processor::tail_sampling::TailError::RingFull { .. } => {
                                SubmitError::RingFull(e.to_string())
                            }
                            other => SubmitError::Processor(other.to_string()),
                        })?;
                    Some((taken.chunks, data.items.saturating_sub(taken.spans)))
                }
            };
            if let Some((chunks, dropped)) = changed {
                data = rechunked(chunks, data.items.saturating_sub(dropped));
            }
        }
        Ok(data)
    }

    /// Hands this shard its ends of the tail samplers' rings, one `Links`
    /// per sampler in `tail_sampling::instances` order.
    pub fn set_tail_links(&self, links: Vec<Links>) {
        let mut links = links.into_iter();
        for p in &self.pipelines {
            for s in &p.steps {
                if let Step::Tail(t) = s {
                    if let Some(l) = links.next() {
                        t.set_links(l);
                    }
                }
            }
        }
    }

    /// How often the tail samplers need their tick (`None`: no sampler).
    pub fn tail_tick(&self) -> Option<std::time::Duration> {
        self.tails().map(|(_, _, t)| t.tick()).min()
    }

    fn tails(&self) -> impl Iterator<Item = (usize, usize, &TailSampler)> {
        self.pipelines.iter().enumerate().flat_map(|(pi, p)| {
            p.steps.iter().enumerate().filter_map(move |(si, s)| match s {
                Step::Tail(t) => Some((pi, si, &**t)),
                _ => None,
            })
        })
    }

    /// The tail samplers' periodic work: drain the rings from other shards,
    /// decide the traces whose wait has passed (all of them when `all`), and
    /// hand the kept spans to the rest of their pipeline. Kept spans that
    /// find an `overflow: signal` queue full wait for the next tick.
    pub fn run_tail(&self, now: Instant, all: bool) {
        let st = &self.stats.shards[self.shard];
        for (pi, si, t) in self.tails() {
            for d in t.take_deferred() {
                self.release(pi, t, d);
            }
            let taken = match t.run(&st.tail[t.stats_at], now, all) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(processor = %t.id, error = %e, "tail sampler failed on buffered spans");
                    continue;
                }
            };
            if taken.chunks.is_empty() {
                continue;
            }
            match self.run_steps(pi, si + 1, rechunked(taken.chunks, taken.spans)) {
                Ok(data) => self.release(pi, t, data),
                Err(e) => {
                    tracing::warn!(processor = %t.id, error = %e, "a processor after tail_sampling refused kept spans")
                }
            }
        }
    }

    fn release(&self, pi: usize, t: &TailSampler, data: Payload) {
        if data.is_empty() {
            return;
        }
        if self.full_queue(&[pi], &data).is_some() {
            t.defer(data);
        } else {
            self.hand_over(&[pi], vec![data]);
        }
    }

    /// Hands each target pipeline its processed payload (batcher or queues).
    fn hand_over(&self, targets: &[usize], processed: Vec<Payload>) {
        for (&pi, data) in targets.iter().zip(processed) {
            let p = &self.pipelines[pi];
            if !p.steps.is_empty() && data.is_empty() {
                continue; // everything was filtered out
            }
            match &p.batcher {
                Some(b) => {
                    p.batched.set(p.batched.get() + data.len as u64);
                    b.borrow_mut().push(data, &mut |batch| self.enqueue(p, batch));
                    self.settle_batched(p);
                }
                None => self.enqueue(p, data),
            }
        }
    }

    /// Whether a request from `receiver` for `signal` goes to a persistent
    /// queue (and must be acknowledged only once it is stored).
    pub fn needs_spool(&self, receiver: usize, signal: Signal) -> bool {
        self.routes.get(receiver).is_some_and(|r| {
            r[signal.index()]
                .iter()
                .any(|&pi| !self.pipelines[pi].spooled.is_empty())
        })
    }

    /// `submit` for requests that reach a persistent queue: hands the data to
    /// the in-memory pipelines, appends it to every spool, and returns once it
    /// is durable there (group commit with the shard's concurrent requests).
    pub async fn submit_durable(&self, receiver: usize, signal: Signal, payload: Payload) -> Result<(), SubmitError> {
        let Some(targets) = self.routes.get(receiver).map(|r| &r[signal.index()]) else {
            return Err(SubmitError::NoPipeline(signal));
        };
        if targets.is_empty() {
            return Err(SubmitError::NoPipeline(signal));
        }
        let spools: Vec<&ExporterHandle> = targets
            .iter()
            .flat_map(|&pi| self.pipelines[pi].spooled.iter())
            .map(|&ei| &self.exporters[ei])
            .collect();
        for e in &spools {
            if let Some(sp) = &e.spool {
                if !sp.has_room(payload.len) {
                    let st = &self.stats.shards[self.shard].exporters[e.index];
                    st.enqueue_failed.add(signal, payload.items);
                    return Err(SubmitError::SpoolFull(e.id.clone()));
                }
            }
        }
        self.admit(targets, signal, &payload)?;
        let processed = self.process(targets, payload)?;
        self.hand_over(targets, processed.clone());
        // One append per spooled exporter and distinct data: pipelines without
        // processors share the request as received.
        let mut seen: Vec<(usize, Option<usize>)> = Vec::new();
        for (&pi, data) in targets.iter().zip(&processed) {
            let p = &self.pipelines[pi];
            for &ei in &p.spooled {
                let e = &self.exporters[ei];
                let key = (e.index, (!p.steps.is_empty()).then_some(pi));
                if seen.contains(&key) || data.is_empty() {
                    continue;
                }
                seen.push(key);
                let Some(sp) = &e.spool else { continue };
                let st = &self.stats.shards[self.shard].exporters[e.index];
                match sp.append(signal, data).await {
                    Ok(()) => {}
                    Err(crate::spool::SpoolError::Full(_)) => {
                        st.enqueue_failed.add(signal, data.items);
                        return Err(SubmitError::SpoolFull(e.id.clone()));
                    }
                    Err(err) => {
                        st.enqueue_failed.add(signal, data.items);
                        return Err(SubmitError::Spool(e.id.clone(), err.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    fn enqueue(&self, p: &Pipeline, batch: Payload) {
        if p.batcher.is_some() {
            p.batched.set(p.batched.get().saturating_sub(batch.len as u64));
        }
        if let Some(b) = p.batch_stats {
            self.stats.shards[self.shard].batches[b]
                .send_size
                .observe(&BATCH_SIZE_BOUNDS, batch.items);
        }
        let last = p.exporters.len().saturating_sub(1);
        let mut batch = Some(batch);
        for (i, &ei) in p.exporters.iter().enumerate() {
            let data = if i == last {
                batch.take().unwrap_or_default()
            } else {
                batch.clone().unwrap_or_default()
            };
            self.enqueue_one(&self.exporters[ei], p.signal, data);
        }
    }

    /// Puts one batch into one exporter's queue, applying its overflow policy.
    fn enqueue_one(&self, e: &ExporterHandle, signal: Signal, data: Payload) {
        let st = &self.stats.shards[self.shard].exporters[e.index];
        let mut q = e.producer.borrow_mut();
        let data = if e.overflow.policy == OverflowPolicy::Sample && q.len() >= e.overflow.high_water {
            let (kept, dropped) = e.sampler.sample(signal, data);
            st.drop_items(DropReason::Sample, signal, dropped);
            match kept {
                Some(k) => k,
                None => return,
            }
        } else {
            data
        };
        if q.free() == 0 {
            match e.overflow.policy {
                OverflowPolicy::DropOldest => {
                    while q.free() == 0 {
                        let Some(old) = q.pop_oldest() else { break };
                        st.evicted.add(old.signal, old.payload.items);
                        st.drop_items(DropReason::DropOldest, old.signal, old.payload.items);
                    }
                }
                OverflowPolicy::DropNew | OverflowPolicy::Sample => {
                    st.drop_items(DropReason::DropNew, signal, data.items);
                    return;
                }
                OverflowPolicy::Signal => {}
            }
        }
        let items = data.items;
        match q.push(Item { signal, payload: data }) {
            Ok(()) => st.enqueued.add(signal, items),
            Err(item) => {
                // Capacity was checked before accepting; this is a bug if reached.
                st.enqueue_failed.add(signal, items);
                tracing::error!(exporter = %e.id, %signal, items = item.payload.items, "sending queue full after admission; batch dropped");
            }
        }
        st.queue_size.set(q.len() as u64);
        st.queue_bytes.set(q.bytes());
    }

    /// Sends batches whose timeout has passed, if their queues have room.
    pub fn flush_expired(&self, now: Instant) {
        for p in &self.pipelines {
            if let Some(b) = &p.batcher {
                if b.borrow().expired(now) && self.has_room_to_flush(p) {
                    b.borrow_mut().flush(&mut |batch| self.enqueue(p, batch));
                    self.settle_batched(p);
                }
            }
        }
    }

    /// Whether a batch of `p` can be handed over now: every exporter either
    /// has room or discards by its overflow policy.
    /// The earliest batch deadline, for the flush timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pipelines
            .iter()
            .filter_map(|p| p.batcher.as_ref().and_then(|b| b.borrow().deadline()))
            .min()
    }

    /// Flushes every batch (shutdown). Returns items that found no room.
    pub fn flush_all(&self) -> u64 {
        self.run_tail(Instant::now(), true);
        let mut stuck: u64 = self.tails().map(|(_, _, t)| t.buffered_spans()).sum();
        for p in &self.pipelines {
            if let Some(b) = &p.batcher {
                if self.has_room_to_flush(p) {
                    b.borrow_mut().flush(&mut |batch| self.enqueue(p, batch));
                    self.settle_batched(p);
                } else {
                    stuck += b.borrow().pending_items();
                }
            }
        }
        stuck
    }

    /// Items still waiting in batchers, per signal.
    pub fn pending_by_signal(&self) -> [u64; 3] {
        let mut out = [0; 3];
        for p in &self.pipelines {
            if let Some(b) = &p.batcher {
                out[p.signal.index()] += b.borrow().pending_items();
            }
        }
        for (pi, _, t) in self.tails() {
            out[self.pipelines[pi].signal.index()] += t.buffered_spans();
        }
        out
    }

    /// Closes every sending queue: consumers drain what is left and stop.
    pub fn close(&self) {
        for e in &self.exporters {
            e.producer.borrow().close();
        }
    }
}

/// A payload of `chunks` holding `items` items (after a processor edit).
fn rechunked(chunks: Vec<bytes::Bytes>, items: u64) -> Payload {
    let mut next = Payload::new();
    for c in chunks {
        next.push(c, 0);
    }
    next.items = items;
    next
}

/// Shared per-shard handle used by receivers.
pub type SharedPipelines = Rc<ShardPipelines>;

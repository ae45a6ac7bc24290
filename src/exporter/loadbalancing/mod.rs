//! The `loadbalancing` exporter: sends each item to the gateway that owns its
//! routing key, so that every span of a trace reaches one gateway.
//!
//! On each shard a router pops the exporter's batches, splits each one on
//! the wire by gateway (`wire::partition::by_key`, keyed by the ring owner of
//! each item's routing identifier: the spans of one trace stay together) and
//! pushes every part into that gateway's own sending queue. Each gateway has
//! its own queue, consumer(s), retry, circuit breaker and connection on every
//! shard (an `otlp` exporter built from `protocol.otlp`), so a slow or dead
//! gateway only fills its own queue. The router never waits on a gateway: a
//! part whose gateway queue is full is dropped and counted as failed.
//!
//! The resolver runs beside the router (DNS: every `interval`); a changed
//! answer rebuilds the ring at the next batch. A gateway that left the answer
//! gets no new parts; what its queue already holds is still sent to it
//! (with retry) before its consumer ends.

pub mod dns;
pub mod resolver;
pub mod ring;
pub mod route_key;

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::{Duration, Instant},
};

use glommio::Task;

use crate::{
    config::{ExporterConfig, LoadBalancingConfig, ResolverConfig},
    exporter::{
        consumer::{make_queue, run_sender, sleep_until_or_deadline, ExportContext, ExporterPlan},
        queue::{Item, QueueConsumer, QueueProducer},
    },
    payload::Payload,
    signal::Signal,
    wire::{
        partition::{by_key, Layout},
        scan,
        view::Kind,
    },
};

use ring::Ring;

/// One gateway's exporter on this shard.
struct Gateway {
    /// The resolver's string for it (what the ring hashes).
    name: String,
    producer: QueueProducer,
    task: Task<()>,
}

/// Logs at most once per second per kind of trouble.
#[derive(Default)]
struct Throttle(Cell<Option<Instant>>);

impl Throttle {
    fn ready(&self) -> bool {
        let now = Instant::now();
        match self.0.get() {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => false,
            _ => {
                self.0.set(Some(now));
                true
            }
        }
    }
}

struct Router {
    id: String,
    cfg: LoadBalancingConfig,
    ctx: ExportContext,
    ring: Ring,
    gateways: Vec<Gateway>,
    /// Gateways removed from the answer, finishing what they hold.
    leaving: Vec<Task<()>>,
    full_log: Throttle,
}

impl Router {
    /// Rebuilds the ring for `endpoints` (sorted), keeping the gateways that
    /// stay and starting the new ones.
    fn apply(&mut self, endpoints: &[String]) {
        if endpoints == self.ring.endpoints() {
            return;
        }
        let mut old: Vec<Gateway> = std::mem::take(&mut self.gateways);
        for name in endpoints {
            match old.iter().position(|g| &g.name == name) {
                Some(i) => self.gateways.push(old.swap_remove(i)),
                None => self.gateways.push(self.start_gateway(name)),
            }
        }
        for g in old {
            tracing::info!(exporter = %self.id, gateway = %g.name, "gateway left the resolver's answer; sending what it holds, then closing");
            g.producer.close();
            self.leaving.push(g.task);
        }
        tracing::info!(exporter = %self.id, gateways = ?endpoints, "load-balancing ring updated");
        self.ring = Ring::new(endpoints);
    }

    fn start_gateway(&self, name: &str) -> Gateway {
        let mut o = self.cfg.otlp.clone();
        o.endpoint = resolver::endpoint_with_port(name);
        let plan = ExporterPlan::from_config(format!("{}/{}", self.id, name), &ExporterConfig::Otlp(o));
        let (producer, consumer) = make_queue(&plan);
        let task = glommio::spawn_local(run_sender(plan, consumer, self.ctx.clone()));
        Gateway {
            name: name.to_string(),
            producer,
            task,
        }
    }

    /// Splits one batch by gateway and queues each part.
    fn route(&mut self, item: Item) {
        let kind = match item.signal {
            Signal::Traces => Kind::Span,
            Signal::Metrics => Kind::Metric,
            Signal::Logs => Kind::LogRecord,
        };
        let key = route_key::effective(self.cfg.routing_key, kind);
        let body = item.payload.to_bytes();
        let ring = &self.ring;
        // Each gateway's part in its own buffer: a gateway that is down holds
        // only its own parts in its queue.
        let parts = by_key(&body, kind, Layout::Own, &mut |it| {
            ring.owner(&route_key::identifier(key, it)).unwrap_or(0) as u64
        });
        let parts = match parts {
            Ok(p) => p,
            Err(e) => {
                self.ctx.stats().send_failed.add(item.signal, item.payload.items);
                tracing::error!(exporter = %self.id, error = %e, "cannot split a batch by routing key; dropping it");
                return;
            }
        };
        let whole = parts.len() == 1;
        for p in parts {
            let items = match (whole, item.signal) {
                (true, _) => item.payload.items,
                (false, Signal::Metrics) => scan(Signal::Metrics, &p.body).map_or(0, |s| s.items),
                (false, _) => p.leaves,
            };
            let Some(g) = self.gateways.get_mut(p.key as usize) else {
                continue;
            };
            let part = Item {
                signal: item.signal,
                payload: Payload::from_body(p.body, items),
            };
            if g.producer.push(part).is_err() {
                self.ctx.stats().send_failed.add(item.signal, items);
                if self.full_log.ready() {
                    tracing::error!(exporter = %self.id, gateway = %g.name, signal = %item.signal, items, "gateway queue full; dropping its part of the batch");
                }
            }
        }
    }
}

/// Runs the exporter on one shard until its queue is closed and drained, then
/// closes every gateway queue and waits for them (within the shutdown deadline).
pub async fn run(id: String, cfg: LoadBalancingConfig, mut consumer: QueueConsumer, ctx: ExportContext) {
    let answer: Rc<RefCell<Option<Vec<String>>>> = Rc::new(RefCell::new(None));
    let done = Rc::new(Cell::new(false));
    let resolver_task = {
        let (answer, done, cfg, id, lifecycle) = (
            answer.clone(),
            done.clone(),
            cfg.resolver.clone(),
            id.clone(),
            ctx.lifecycle.clone(),
        );
        glommio::spawn_local(async move {
            let throttle = Throttle::default();
            while !done.get() {
                match resolver::resolve(&cfg).await {
                    Ok(list) if !list.is_empty() => *answer.borrow_mut() = Some(list),
                    Ok(_) => {
                        if throttle.ready() {
                            tracing::warn!(exporter = %id, "the resolver found no gateway; keeping the previous list");
                        }
                    }
                    Err(e) => {
                        if throttle.ready() {
                            tracing::warn!(exporter = %id, error = %e, "gateway resolution failed; keeping the previous list");
                        }
                    }
                }
                let interval = match &cfg {
                    ResolverConfig::Static { .. } => return,
                    ResolverConfig::Dns { interval, .. } => *interval,
                };
                // Until a first answer, retry sooner.
                let wait = if answer.borrow().is_none() {
                    interval.min(Duration::from_millis(200))
                } else {
                    interval
                };
                sleep_until_or_deadline(wait, lifecycle.deadline(), &lifecycle).await;
                if lifecycle.deadline().is_some() {
                    return;
                }
            }
        })
    };
    let mut router = Router {
        id,
        cfg,
        ctx: ctx.clone(),
        ring: Ring::default(),
        gateways: Vec::new(),
        leaving: Vec::new(),
        full_log: Throttle::default(),
    };
    ctx.stats()
        .queue_capacity
        .set(router.cfg.otlp.sending_queue.queue_size.max(1) as u64);
    while let Some(item) = consumer.pop().await {
        ctx.stats().queue_size.set(consumer.len() as u64);
        ctx.stats().queue_bytes.set(consumer.bytes());
        loop {
            if let Some(list) = answer.borrow_mut().take() {
                router.apply(&list);
            }
            if !router.ring.is_empty() {
                break;
            }
            if ctx.lifecycle.past_deadline() {
                break;
            }
            sleep_until_or_deadline(Duration::from_millis(20), ctx.lifecycle.deadline(), &ctx.lifecycle).await;
        }
        if router.ring.is_empty() {
            ctx.stats().send_failed.add(item.signal, item.payload.items);
            ctx.stats.shards[ctx.shard]
                .shutdown_dropped
                .add(item.signal, item.payload.items);
            tracing::error!(exporter = %router.id, items = item.payload.items, "no gateway resolved by the shutdown deadline; batch not delivered");
            continue;
        }
        router.route(item);
    }
    done.set(true);
    drop(resolver_task);
    let tasks: Vec<Task<()>> = router
        .gateways
        .drain(..)
        .map(|g| {
            g.producer.close();
            g.task
        })
        .chain(router.leaving.drain(..))
        .collect();
    for t in tasks {
        t.await;
    }
}

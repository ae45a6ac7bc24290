//! Shards: one glommio executor per core, each owning its listeners
//! (SO_REUSEPORT), pipelines, sending queues and exporter connections. This
//! module picks the cores, sizes io_uring memory to the memlock limit, starts
//! the shards, and runs the shutdown sequence when a signal arrives.

use std::{
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;

use crate::{
    config::{Config, ReceiverConfig},
    exporter::{self, ExportContext, ExporterHandle, ExporterPlan},
    net::{
        accept::{self, ShardConns},
        conn_watch::ConnRules,
        fd_limit,
        inflight::{self, InflightBudget},
        server::{self, ServerTuning},
    },
    pipeline::ShardPipelines,
    processor::{
        memory_limiter::{self, Limits, MemoryLimiterError, ShardGate, Verdict},
        tail_sampling,
    },
    receiver::{otlp_grpc, otlp_http, ReceiverCtx},
    shutdown::Lifecycle,
    signal::Signal,
    telemetry::{prometheus, ProcessStats, Stats},
};

/// Connections the metrics and health endpoints each take (apart from the
/// receivers' limit, so a flood of clients does not lock out monitoring).
const INTERNAL_MAX_CONNECTIONS: u64 = 64;

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("cannot start shard {shard} on CPU {cpu}: {source}. io_uring must be available (Linux 5.8+, not disabled by sysctl kernel.io_uring_disabled or a seccomp profile) and the locked-memory limit must cover {io_memory_kib} KiB per shard: raise it (`ulimit -l`, systemd LimitMEMLOCK=, docker --ulimit memlock=) or lower `tuning.io_memory_kib`")]
    Start {
        shard: usize,
        cpu: usize,
        io_memory_kib: u64,
        source: glommio::GlommioError<()>,
    },
    #[error("shard {shard}: cannot listen on {addr} ({what}): {source}")]
    Bind {
        shard: usize,
        addr: std::net::SocketAddr,
        what: String,
        source: std::io::Error,
    },
    #[error("shard {shard} failed: {reason}")]
    Failed { shard: usize, reason: String },
    #[error("shard {shard}: persistent queue of exporter {exporter}: {message}")]
    Spool {
        shard: usize,
        exporter: String,
        message: String,
    },
    #[error("{0}")]
    Tls(crate::config::ConfigError),
    #[error("no CPU available in this process's affinity mask")]
    NoCpu,
    #[error(transparent)]
    Memory(#[from] MemoryLimiterError),
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask struct that sched_getaffinity fills in;
    // it is zero-initialised and passed with its exact size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The soft RLIMIT_MEMLOCK in bytes (`None` = unlimited).
pub fn memlock_limit() -> Option<u64> {
    // SAFETY: getrlimit writes into the struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) != 0 || r.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        Some(r.rlim_cur)
    }
}

/// The shard layout: which CPU each shard runs on, and its io_uring memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub cpus: Vec<usize>,
    pub pin: bool,
    pub io_memory: usize,
}

/// Decides the shards from `tuning` and the process's affinity mask.
pub fn layout(config: &Config) -> Result<Layout, ShardError> {
    let t = &config.tuning;
    let allowed = allowed_cpus();
    let pool = t.cores.clone().unwrap_or_else(|| allowed.clone());
    if pool.is_empty() {
        return Err(ShardError::NoCpu);
    }
    let n = t.shards.unwrap_or(pool.len()).max(1);
    let cpus: Vec<usize> = (0..n).map(|i| pool[i % pool.len()]).collect();
    let io_memory = match t.io_memory_kib {
        Some(k) => (k * 1024) as usize,
        None => {
            // Leave half of the memlock budget to io_uring rings and others.
            let budget = memlock_limit().map_or(4 << 20, |l| (l / 2) as usize);
            (budget / n).clamp(64 << 10, 4 << 20) & !4095
        }
    };
    Ok(Layout {
        cpus,
        pin: t.pin,
        io_memory,
    })
}

/// What a finished run reports.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Items acknowledged but not delivered, per signal, when the shutdown
    /// deadline passed.
    pub undelivered: [u64; 3],
}

/// Ids of the processors used in any pipeline whose config `is`, each once.
fn processor_ids(config: &Config, is: fn(&crate::config::ProcessorConfig) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &config.service.pipelines {
        for id in &p.processors {
            if config.processors.get(id).is_some_and(is) {
                let id = id.to_string();
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    out
}

/// Ids of the filter processors used in any pipeline, each once.
pub fn filter_processors(config: &Config) -> Vec<String> {
    processor_ids(config, |p| matches!(p, crate::config::ProcessorConfig::Filter(_)))
}

/// Ids of the probabilistic samplers used in any pipeline, each once.
pub fn sampler_processors(config: &Config) -> Vec<String> {
    processor_ids(config, |p| {
        matches!(p, crate::config::ProcessorConfig::ProbabilisticSampler(_))
    })
}

/// Ids of the batch processors used in any pipeline, each once.
pub fn batch_processors(config: &Config) -> Vec<String> {
    processor_ids(config, |p| matches!(p, crate::config::ProcessorConfig::Batch(_)))
}

/// Receiver (id, transport) pairs and exporter ids, in stats order.
fn components(config: &Config) -> (Vec<(String, &'static str)>, Vec<String>) {
    let mut receivers = Vec::new();
    for (id, r) in &config.receivers {
        match r {
            ReceiverConfig::Otlp(o) => {
                if o.grpc.is_some() {
                    receivers.push((id.to_string(), "grpc"));
                }
                if o.http.is_some() {
                    receivers.push((id.to_string(), "http"));
                }
            }
            ReceiverConfig::Kafka(_) => receivers.push((id.to_string(), "kafka")),
        }
    }
    let mut exporters: Vec<String> = Vec::new();
    for p in &config.service.pipelines {
        for e in &p.exporters {
            let e = e.to_string();
            if !exporters.contains(&e) {
                exporters.push(e);
            }
        }
    }
    (receivers, exporters)
}

/// How long a shard waits for its spools' recovery before it reports ready
/// anyway (its listeners answer from the start).
const RECOVERY_GRACE: Duration = Duration::from_millis(500);

/// Runs all shards until `stop` is set, then drains them. Blocks.
pub fn run(config: Config, stop: Arc<AtomicBool>) -> Result<(RunReport, Stats), ShardError> {
    let lay = layout(&config)?;
    crate::tls::check(&config).map_err(ShardError::Tls)?;
    let (receivers, exporter_ids) = components(&config);
    let stats = Stats::build(lay.cpus.len(), &receivers, &exporter_ids, &batch_processors(&config))
        .with_processors(&filter_processors(&config), &sampler_processors(&config))
        .with_tail_samplers(&tail_sampling::stats_ids(&config));
    // One ring per ordered pair of shards and tail sampler.
    let mut meshes: Vec<Vec<tail_sampling::mesh::Links>> = tail_sampling::instances(&config)
        .iter()
        .map(|(_, c)| tail_sampling::mesh::mesh(lay.cpus.len(), c.ring_capacity))
        .collect();
    let memory_monitor = match memory_limiter::config_of(&config) {
        Some(c) => {
            let limits = Limits::from_config(&c, memory_limiter::total_memory())?;
            tracing::info!(
                soft_mib = limits.soft >> 20,
                hard_mib = limits.hard >> 20,
                check_interval = ?limits.check_interval,
                "memory limiter enabled"
            );
            Some(memory_limiter::spawn_monitor(limits, stats.clone(), stop.clone())?)
        }
        None => None,
    };
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, ShardError>>();
    let mut joins = Vec::new();
    tracing::info!(shards = lay.cpus.len(), cpus = ?lay.cpus, pin = lay.pin, io_memory_kib = lay.io_memory / 1024, "starting shards");
    for (shard, &cpu) in lay.cpus.iter().enumerate() {
        let placement = if lay.pin {
            Placement::Fixed(cpu)
        } else {
            Placement::Unbound
        };
        let (config, stats, shard_stop, ready) = (config.clone(), stats.clone(), stop.clone(), ready_tx.clone());
        let exporter_ids = exporter_ids.clone();
        let links: Vec<_> = meshes.iter_mut().map(|m| std::mem::take(&mut m[shard])).collect();
        let spawned = LocalExecutorBuilder::new(placement)
            .name(&format!("sluice-{shard}"))
            .io_memory(lay.io_memory)
            .spawn(
                move || async move { shard_main(shard, config, exporter_ids, stats, shard_stop, ready, links).await },
            );
        match spawned {
            Ok(j) => joins.push(j),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                return Err(ShardError::Start {
                    shard,
                    cpu,
                    io_memory_kib: (lay.io_memory / 1024) as u64,
                    source: map_glommio_err(e),
                });
            }
        }
    }
    drop(ready_tx);
    let mut first_error = None;
    for _ in 0..lay.cpus.len() {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
                stop.store(true, Ordering::SeqCst);
            }
            Err(_) => {
                // A shard thread ended without reporting; its join says why.
                stop.store(true, Ordering::SeqCst);
                break;
            }
        }
    }
    if first_error.is_none() {
        stats.process.phase.set(ProcessStats::RUNNING);
        tracing::info!("sluice is ready");
    }
    // The health endpoint reports `stopping` as soon as the stop flag is set.
    let watcher = {
        let (stop, stats) = (stop.clone(), stats.clone());
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        let t = std::thread::Builder::new()
            .name("sluice-phase".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                stats.process.phase.set(ProcessStats::STOPPING);
            })
            .ok();
        (finished, t)
    };
    let mut report = RunReport::default();
    for (i, j) in joins.into_iter().enumerate() {
        match j.join() {
            Ok(r) => {
                for s in Signal::ALL {
                    report.undelivered[s.index()] += r.undelivered[s.index()];
                }
            }
            Err(e) => {
                first_error.get_or_insert(ShardError::Failed {
                    shard: i,
                    reason: explain_failure(&e.to_string()),
                });
            }
        }
    }
    watcher.0.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::SeqCst);
    if let Some(t) = memory_monitor {
        let _ = t.join();
    }
    if let Some(t) = watcher.1 {
        let _ = t.join();
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((report, stats)),
    }
}

/// Turns glommio's startup failures into advice: the usual one on a stock
/// machine is the locked-memory limit io_uring needs.
fn explain_failure(raw: &str) -> String {
    if raw.contains("thread panicked") {
        // Not a start-up failure: the shard ran and panicked (its message and
        // backtrace were printed above). io_uring advice would mislead.
        return format!("{raw} (see the panic message above)");
    }
    let Some(at) = raw.find("MemLockLimit(") else {
        return format!(
            "{raw}. sluice needs io_uring: Linux 5.8 or later, sysctl kernel.io_uring_disabled=0, and a container seccomp profile that allows the io_uring syscalls"
        );
    };
    let nums: Vec<u64> = raw[at + "MemLockLimit(".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    let (have, need) = match nums[..] {
        [have, need] => (format!("{} KiB", have / 1024), format!("{} KiB", need / 1024)),
        _ => ("too little".to_string(), "more".to_string()),
    };
    format!(
        "io_uring could not lock memory: the locked-memory limit (RLIMIT_MEMLOCK) is {have}, io_uring needs at least {need} per shard. Raise it (`ulimit -l 8192`, systemd LimitMEMLOCK=, docker --ulimit memlock=-1) or run fewer shards (`tuning.shards`)"
    )
}

fn map_glommio_err<T>(e: glommio::GlommioError<T>) -> glommio::GlommioError<()> {
    match e {
        glommio::GlommioError::IoError(io) => glommio::GlommioError::IoError(io),
        other => glommio::GlommioError::IoError(std::io::Error::other(other.to_string())),
    }
}

async fn shard_main(
    shard: usize,
    config: Config,
    exporter_ids: Vec<String>,
    stats: Stats,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<usize, ShardError>>,
    tail_links: Vec<tail_sampling::mesh::Links>,
) -> RunReport {
    let lifecycle = Lifecycle::new();
    let timeout = config.tuning.shutdown_timeout;

    // Exporters, each behind its sending queue.
    let mut handles = Vec::new();
    let mut exporter_tasks = Vec::new();
    let mut spool_error = None;
    let mut spools = Vec::new();
    for (index, id) in exporter_ids.iter().enumerate() {
        let Some(cfg) = config
            .exporters
            .iter()
            .find(|(k, _)| k.to_string() == *id)
            .map(|(_, v)| v)
        else {
            continue;
        };
        let plan = ExporterPlan::from_config(id.clone(), cfg);
        let overflow = plan.overflow;
        let (producer, consumer) = exporter::make_queue(&plan);
        let ctx = ExportContext {
            stats: stats.clone(),
            shard,
            index,
            lifecycle: lifecycle.clone(),
        };
        // A persistent queue: opened now, recovered in the background. Until
        // the recovery is done it refuses appends with the retryable "full"
        // answer, so the listeners can start at once.
        let mut spool = None;
        if let Some(settings) = crate::spool::settings_for(&config, id, stats.shards.len()) {
            match crate::spool::recovery::start(settings, id, shard, stats.clone(), index).await {
                Ok(s) => {
                    let recovering = s.clone();
                    glommio::spawn_local(async move {
                        crate::spool::recovery::recover(&recovering).await;
                    })
                    .detach();
                    spools.push(s.clone());
                    spool = Some(s)
                }
                Err(e) => {
                    tracing::error!(exporter = %id, error = %e, "cannot open the persistent queue");
                    spool_error.get_or_insert(ShardError::Spool {
                        shard,
                        exporter: id.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        match &spool {
            Some(s) => exporter_tasks.push(glommio::spawn_local(exporter::run_spooled(
                plan,
                consumer,
                s.clone(),
                ctx,
            ))),
            None => exporter_tasks.push(glommio::spawn_local(exporter::run(plan, consumer, ctx))),
        }
        handles.push(ExporterHandle {
            id: id.clone(),
            index,
            producer: std::cell::RefCell::new(producer),
            overflow,
            sampler: crate::processor::sampling::Sampler::new(overflow.sample_percentage),
            spool,
        });
    }
    let mut pipelines = ShardPipelines::new(shard, &config, handles, stats.clone());
    let limits =
        memory_limiter::config_of(&config).and_then(|c| Limits::from_config(&c, memory_limiter::total_memory()).ok());
    if let Some(l) = limits {
        pipelines.memory = Some(ShardGate::new(l, stats.shards.len()));
    }
    pipelines.set_tail_links(tail_links);
    let pipelines = Rc::new(pipelines);

    // Listeners, sharing the shard's in-flight byte budget and connection limit.
    let tuning = ServerTuning {
        conn: ConnRules {
            first_request: Some(config.tuning.handshake_timeout),
            read_header: Some(config.tuning.handshake_timeout),
            ..ConnRules::default()
        },
        ..ServerTuning::default()
    };
    let max_connections = config
        .tuning
        .max_connections
        .unwrap_or_else(|| accept::default_max_connections(fd_limit::soft_limit(), stats.shards.len()));
    let conns = ShardConns::new(max_connections, Some((stats.clone(), shard)));
    let budget = InflightBudget::new(inflight::budget_bytes(
        config.tuning.inflight_budget_mib,
        limits.map(|l| l.soft),
        stats.shards.len(),
    ));
    let mut bind_error = spool_error;
    // One receiver endpoint's context on this shard.
    let receiver_ctx = |receiver, stats_index, max_message, auth| {
        Rc::new(ReceiverCtx {
            pipelines: pipelines.clone(),
            lifecycle: lifecycle.clone(),
            stats: stats.clone(),
            shard,
            receiver,
            stats_index,
            max_message,
            budget: budget.clone(),
            body_timeout: config.tuning.body_timeout,
            body_deadline: config.tuning.body_deadline,
            auth,
        })
    };
    for (id, r) in &config.receivers {
        let id = id.to_string();
        let Some(receiver) = pipelines.receiver_index(&id) else {
            continue;
        };
        let o = match r {
            ReceiverConfig::Otlp(o) => o,
            ReceiverConfig::Kafka(k) => {
                let stats_index = stats.shards[shard].receiver(&id, "kafka").unwrap_or(0);
                crate::kafka::spawn_receiver(id, k, receiver_ctx(receiver, stats_index, usize::MAX, None));
                continue;
            }
        };
        let transports = [
            o.grpc
                .as_ref()
                .map(|g| ("grpc", g.endpoint, (g.max_recv_msg_size_mib * 1024 * 1024) as usize)),
            o.http
                .as_ref()
                .map(|h| ("http", h.endpoint, h.max_request_body_size as usize)),
        ];
        for (transport, addr, max_message) in transports.into_iter().flatten() {
            let listener = match server::bind(addr) {
                Ok(l) => l,
                Err(source) => {
                    bind_error = Some(ShardError::Bind {
                        shard,
                        addr,
                        what: format!("receivers.{id}.protocols.{transport}"),
                        source,
                    });
                    break;
                }
            };
            let stats_index = stats.shards[shard].receiver(&id, transport).unwrap_or(0);
            let auth = crate::extension::authenticator::ServerAuth::new(
                &config,
                match transport {
                    "grpc" => o.grpc.as_ref().and_then(|g| g.auth.as_ref()),
                    _ => o.http.as_ref().and_then(|h| h.auth.as_ref()),
                },
            );
            let ctx = receiver_ctx(receiver, stats_index, max_message, auth);
            let mut t = tuning;
            if let Some(g) = &o.grpc {
                t.max_concurrent_streams = g.max_concurrent_streams.max(1);
            }
            let tls_settings = match transport {
                "grpc" => o.grpc.as_ref().and_then(|g| g.tls.clone()),
                _ => o.http.as_ref().and_then(|h| h.tls.clone()),
            };
            let tls = match tls_settings {
                None => None,
                Some(settings) => {
                    let counts = crate::tls::server::FailureCounts {
                        stats: stats.clone(),
                        shard,
                        index: stats_index,
                    };
                    match crate::tls::server::Acceptor::start(settings, counts) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            bind_error = Some(ShardError::Tls(e));
                            break;
                        }
                    }
                }
            };
            if transport == "grpc" {
                if let Some(g) = &o.grpc {
                    let k = g.keepalive;
                    t.conn.idle = k.max_connection_idle;
                    t.conn.max_age = k.max_connection_age;
                    t.conn.age_grace = k.max_connection_age_grace;
                    t.ping_interval = k.time.map(|d| d.min(crate::clock::FAR));
                    t.ping_timeout = k.timeout.min(crate::clock::FAR);
                }
                glommio::spawn_local(server::serve(
                    listener,
                    lifecycle.clone(),
                    t,
                    conns.clone(),
                    tls,
                    move |req| otlp_grpc::handle(ctx.clone(), req),
                ))
                .detach();
            } else {
                if let Some(h) = &o.http {
                    t.conn.first_request = h.read_header_timeout;
                    t.conn.read_header = h.read_header_timeout;
                    t.conn.idle = h.idle_timeout;
                }
                glommio::spawn_local(server::serve(
                    listener,
                    lifecycle.clone(),
                    t,
                    conns.clone(),
                    tls,
                    move |req| otlp_http::handle(ctx.clone(), req),
                ))
                .detach();
            }
        }
    }

    // The Prometheus endpoint lives on shard 0.
    if shard == 0 && bind_error.is_none() {
        if let Some(addr) = config.service.telemetry.metrics_address {
            match server::bind(addr) {
                Ok(l) => {
                    let stats = stats.clone();
                    let own = ShardConns::new(INTERNAL_MAX_CONNECTIONS, None);
                    glommio::spawn_local(server::serve(l, Lifecycle::new(), tuning, own, None, move |req| {
                        let stats = stats.clone();
                        async move { metrics_response(&stats, req.uri().path()) }
                    }))
                    .detach();
                }
                Err(source) => {
                    bind_error = Some(ShardError::Bind {
                        shard,
                        addr,
                        what: "service.telemetry.metrics.address".into(),
                        source,
                    })
                }
            }
        }
    }

    // The health_check extension, also on shard 0.
    if shard == 0 && bind_error.is_none() {
        if let Some(h) = crate::extension::health_check::settings(&config) {
            match server::bind(h.endpoint) {
                Ok(l) => {
                    let stats = stats.clone();
                    let own = ShardConns::new(INTERNAL_MAX_CONNECTIONS, None);
                    glommio::spawn_local(server::serve(l, Lifecycle::new(), tuning, own, None, move |req| {
                        let r =
                            crate::extension::health_check::respond(&stats, &h.path, req.method(), req.uri().path());
                        async move { r }
                    }))
                    .detach();
                }
                Err(source) => {
                    bind_error = Some(ShardError::Bind {
                        shard,
                        addr: h.endpoint,
                        what: "extensions.health_check.endpoint".into(),
                        source,
                    })
                }
            }
        }
    }

    if let Some(e) = bind_error {
        let _ = ready.send(Err(e));
        lifecycle.start_draining(Duration::ZERO);
        pipelines.close();
        return RunReport::default();
    }
    // Listeners are up. A spool that recovers quickly does so before the
    // shard reports ready; a large one goes on in the background while the
    // listeners refuse retryably.
    let grace_until = Instant::now() + RECOVERY_GRACE;
    while spools.iter().any(|s| s.recovering()) && Instant::now() < grace_until {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    for s in spools.iter().filter(|s| s.recovering()) {
        tracing::info!(shard, exporter = %s.exporter, "persistent queue still being recovered; requests are refused retryably until it is done");
    }
    drop(spools);
    let _ = ready.send(Ok(shard));

    // Batch timer: flush batches whose timeout passed.
    let timer = {
        let pipelines = pipelines.clone();
        let lifecycle = lifecycle.clone();
        glommio::spawn_local(async move {
            while !lifecycle.is_draining() {
                let now = Instant::now();
                let wait = pipelines
                    .next_deadline()
                    .map_or(Duration::from_millis(50), |d| d.saturating_duration_since(now))
                    .clamp(Duration::from_millis(1), Duration::from_millis(50));
                glommio::timer::sleep(wait).await;
                pipelines.flush_expired(Instant::now());
            }
        })
    };

    // Tail samplers: drain the rings from other shards and decide due traces.
    if let Some(tick) = pipelines.tail_tick() {
        let (pipelines, lifecycle) = (pipelines.clone(), lifecycle.clone());
        glommio::spawn_local(async move {
            while !lifecycle.is_draining() {
                glommio::timer::sleep(tick).await;
                pipelines.run_tail(Instant::now(), false);
            }
        })
        .detach();
    }

    // Memory limiter: at check_interval, publish held bytes, read the verdict,
    // and shed queued batches above the hard limit.
    if let Some(interval) = limits.map(|l| l.check_interval) {
        let (pipelines, lifecycle, stats) = (pipelines.clone(), lifecycle.clone(), stats.clone());
        glommio::spawn_local(async move {
            while !lifecycle.is_draining() {
                crate::clock::sleep(interval).await;
                let Some(g) = &pipelines.memory else { break };
                if g.tick(&stats, shard, pipelines.held_bytes()) == Verdict::Hard {
                    let shed = pipelines.shed();
                    g.tick(&stats, shard, pipelines.held_bytes());
                    if shed > 0 {
                        memory_limiter::trim();
                        tracing::warn!(
                            shard,
                            shed_bytes = shed,
                            "memory above the hard limit: shed queued batches"
                        );
                    }
                }
            }
        })
        .detach();
    }

    // Wait for the stop flag (set by the signal handler thread).
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }

    // Drain: refuse new requests, let in-flight ones finish, flush batches,
    // close queues and wait for exporters, all within the deadline.
    tracing::info!(shard, "shutting down");
    lifecycle.start_draining(timeout);
    let deadline = lifecycle.deadline().unwrap_or_else(Instant::now);
    let until_deadline = || deadline.saturating_duration_since(Instant::now());
    // Requests already being received get at most half the budget: a client
    // that stalls mid-body must not eat the time the flush and export need.
    let requests_by = crate::clock::after(Instant::now(), timeout / 2);
    let _ = glommio::timer::timeout(requests_by.saturating_duration_since(Instant::now()), async {
        lifecycle.idle().await;
        Ok(())
    })
    .await;
    timer.await;
    let mut stuck = pipelines.flush_all();
    // Batches that found no room in a full queue get retried until the deadline.
    while stuck > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
        stuck = pipelines.flush_all();
    }
    pipelines.close();
    for t in exporter_tasks {
        let left = until_deadline();
        let _ = glommio::timer::timeout(left.max(Duration::from_millis(1)), async {
            t.await;
            Ok(())
        })
        .await;
    }

    let mut report = RunReport::default();
    let sh = &stats.shards[shard];
    let in_batches = pipelines.pending_by_signal();
    for s in Signal::ALL {
        // Exporters count what they gave up at the deadline in `shutdown_dropped`;
        // what never left a queue or a batch is added here.
        let queued: u64 = sh.exporters.iter().map(|e| e.outstanding(s)).sum();
        let left = queued + in_batches[s.index()];
        sh.shutdown_dropped.add(s, left);
        let n = sh.shutdown_dropped.get(s);
        report.undelivered[s.index()] = n;
        if n > 0 {
            tracing::error!(shard, signal = %s, items = n, "acknowledged items undelivered (or not confirmed by the backend) at the shutdown deadline");
        }
    }
    tracing::info!(shard, "stopped");
    report
}

fn metrics_response(stats: &Stats, path: &str) -> http::Response<crate::net::body::ResponseBody> {
    use crate::net::body::ResponseBody;
    let mut r = match path {
        "/metrics" => {
            let mut r = http::Response::new(ResponseBody::data(prometheus::render(stats)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(prometheus::CONTENT_TYPE),
            );
            r
        }
        _ => {
            let mut r = http::Response::new(ResponseBody::data("not found\n"));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r
        }
    };
    r.headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

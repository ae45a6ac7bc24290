//! The load generator's engine: glommio executors pinned to the chosen CPUs,
//! each driving its share of the connections (HTTP/2 for gRPC, one HTTP/1.1
//! keep-alive connection per stream for OTLP/HTTP), every stream a loop of
//! request → checked response, with a latency histogram per executor.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use http::{header, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use thiserror::Error;

use crate::{
    exporter::{
        client::{connect_tcp, ChunkBody},
        otlp_grpc::{self, H2Sender},
    },
    grpc::{self, Code},
    net::{body::ResponseBody, hyper_io::HyperStream},
    signal::Signal,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

/// What to run (already validated by the CLI layer).
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub signal: Signal,
    pub connections: usize,
    pub streams: usize,
    pub items_per_request: u64,
    pub stop: StopAt,
    pub cpus: Vec<usize>,
    /// Pre-built request bodies (protobuf, unframed), used round-robin.
    pub bodies: Arc<Vec<Bytes>>,
    /// gRPC: the largest DATA frame sent (0: the whole request in one).
    pub frame_size: usize,
    /// Per body, where its trace ids start (`workload::trace_id_offsets`):
    /// when not empty, every gRPC request sent gets trace ids of its own.
    pub trace_id_offsets: Arc<Vec<Vec<usize>>>,
}

#[derive(Clone, Copy, Debug)]
pub enum StopAt {
    Duration(Duration),
    Requests(u64),
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot start a load executor on cpu {cpu:?}: {error}")]
    Executor { cpu: Option<usize>, error: String },
    #[error("no connection to {0} could be made: {1}")]
    Connect(SocketAddr, String),
}

/// Counters one executor publishes for the progress line (written by that executor only).
#[derive(Default)]
pub struct Progress {
    pub ok_requests: AtomicU64,
    pub ok_items: AtomicU64,
    pub failed: AtomicU64,
}

/// What one executor measured.
pub struct Outcome {
    pub latency_us: Histogram<u64>,
    pub ok_requests: u64,
    pub ok_items: u64,
    pub failures: BTreeMap<String, u64>,
    pub connect_errors: Vec<String>,
}

/// Runs the load on its executors; `progress` has one slot per executor and is
/// polled by the caller for the live line. Returns when the plan's stop condition is met.
pub fn run(plan: &LoadPlan, progress: &Arc<Vec<Progress>>, started: &AtomicBool) -> Result<Vec<Outcome>, LoadError> {
    let executors = plan.cpus.len().max(1);
    let budget = Arc::new(AtomicU64::new(match plan.stop {
        StopAt::Requests(n) => n,
        StopAt::Duration(_) => u64::MAX,
    }));
    let mut handles = Vec::new();
    for e in 0..executors {
        let cpu = plan.cpus.get(e).copied();
        let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
        // Connections are dealt round-robin to executors.
        let conns = (0..plan.connections).filter(|c| c % executors == e).count();
        let (plan, progress, budget) = (plan.clone(), progress.clone(), budget.clone());
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("sluice-bench-{e}"))
            .io_memory(256 << 10)
            .spawn(move || async move { executor_main(e, conns, plan, progress, budget).await })
            .map_err(|err| LoadError::Executor {
                cpu,
                error: err.to_string(),
            })?;
        handles.push((cpu, handle));
    }
    started.store(true, Ordering::Release);
    let mut outcomes = Vec::new();
    for (cpu, h) in handles {
        let out = h.join().map_err(|err| LoadError::Executor {
            cpu,
            error: err.to_string(),
        })?;
        outcomes.push(out);
    }
    if outcomes
        .iter()
        .all(|o| o.ok_requests == 0 && !o.connect_errors.is_empty())
    {
        let err = outcomes
            .iter()
            .flat_map(|o| o.connect_errors.first())
            .next()
            .cloned()
            .unwrap_or_default();
        return Err(LoadError::Connect(plan.addr, err));
    }
    Ok(outcomes)
}

struct Shared {
    slot: usize,
    plan: LoadPlan,
    progress: Arc<Vec<Progress>>,
    budget: Arc<AtomicU64>,
    deadline: Option<Instant>,
    hist: RefCell<Histogram<u64>>,
    failures: RefCell<BTreeMap<String, u64>>,
    connect_errors: RefCell<Vec<String>>,
    ok_requests: std::cell::Cell<u64>,
    ok_items: std::cell::Cell<u64>,
}

impl Shared {
    /// Claims the right to send one more request.
    fn take(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.plan.stop {
            StopAt::Duration(_) => true,
            StopAt::Requests(_) => self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok(),
        }
    }

    fn record(&self, started: Instant, result: Result<(), String>) {
        let p = &self.progress[self.slot];
        match result {
            Ok(()) => {
                let us = started.elapsed().as_micros() as u64;
                let _ = self.hist.borrow_mut().record(us.max(1));
                self.ok_requests.set(self.ok_requests.get() + 1);
                self.ok_items.set(self.ok_items.get() + self.plan.items_per_request);
                p.ok_requests.store(self.ok_requests.get(), Ordering::Relaxed);
                p.ok_items.store(self.ok_items.get(), Ordering::Relaxed);
            }
            Err(kind) => {
                *self.failures.borrow_mut().entry(kind).or_default() += 1;
                p.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn executor_main(
    slot: usize,
    conns: usize,
    plan: LoadPlan,
    progress: Arc<Vec<Progress>>,
    budget: Arc<AtomicU64>,
) -> Outcome {
    let deadline = match plan.stop {
        StopAt::Duration(d) => Some(Instant::now() + d),
        StopAt::Requests(_) => None,
    };
    let shared = Rc::new(Shared {
        slot,
        plan,
        progress,
        budget,
        deadline,
        hist: RefCell::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")),
        failures: RefCell::new(BTreeMap::new()),
        connect_errors: RefCell::new(Vec::new()),
        ok_requests: 0.into(),
        ok_items: 0.into(),
    });
    let mut tasks = Vec::new();
    for c in 0..conns {
        let shared = shared.clone();
        tasks.push(glommio::spawn_local(async move { connection(c, shared).await }).detach());
    }
    for t in tasks {
        t.await;
    }
    let s = Rc::try_unwrap(shared).ok().expect("all connection tasks finished");
    Outcome {
        latency_us: s.hist.into_inner(),
        ok_requests: s.ok_requests.get(),
        ok_items: s.ok_items.get(),
        failures: s.failures.into_inner(),
        connect_errors: s.connect_errors.into_inner(),
    }
}

async fn connection(conn: usize, shared: Rc<Shared>) {
    let plan = &shared.plan;
    match plan.protocol {
        Protocol::Grpc => {
            // Prefix and message in one buffer, built once, cut into chunks of
            // `frame_size`: each chunk goes out as one DATA frame, as gRPC
            // clients send (16 KiB frames whatever the server allows).
            let framed: Rc<Vec<Bytes>> = Rc::new(
                plan.bodies
                    .iter()
                    .map(|b| {
                        let mut framed = grpc::prefix(false, b.len()).to_vec();
                        framed.extend_from_slice(b);
                        Bytes::from(framed)
                    })
                    .collect(),
            );
            let bodies: Rc<Vec<Vec<Bytes>>> =
                Rc::new(framed.iter().map(|b| frames(b.clone(), plan.frame_size)).collect());
            let Some(send) = connect_h2(&shared).await else { return };
            let mut streams = Vec::new();
            for s in 0..plan.streams {
                let (shared, framed, bodies, mut send) = (shared.clone(), framed.clone(), bodies.clone(), send.clone());
                streams.push(
                    glommio::spawn_local(async move {
                        let mut i = conn * 7919 + s * 104_729;
                        let uri = format!("http://{}{}", shared.plan.addr, shared.plan.signal.grpc_path());
                        let fresh = !shared.plan.trace_id_offsets.is_empty();
                        // A number no other stream of this run uses, per request.
                        let stream_id = ((shared.slot as u64) << 56) ^ ((conn as u64) << 44) ^ ((s as u64) << 32);
                        let mut sent = 0u64;
                        while shared.take() {
                            i = i.wrapping_add(1);
                            let body = if fresh {
                                sent += 1;
                                let k = i % framed.len();
                                let offsets = &shared.plan.trace_id_offsets[k];
                                frames(
                                    with_trace_ids(&framed[k], offsets, stream_id ^ sent),
                                    shared.plan.frame_size,
                                )
                            } else {
                                bodies[i % bodies.len()].clone()
                            };
                            let req = Request::builder()
                                .method(Method::POST)
                                .uri(&uri)
                                .header(header::CONTENT_TYPE, "application/grpc")
                                .header(header::TE, "trailers")
                                .body(ChunkBody::new(None, body))
                                .expect("valid request");
                            let t0 = Instant::now();
                            let result = match send.send_request(req).await {
                                Ok(resp) => check_grpc(resp).await,
                                Err(e) => Err(transport_kind(&e)),
                            };
                            let closed = result.as_ref().is_err_and(|k| k == "transport");
                            shared.record(t0, result);
                            if closed && send.is_closed() {
                                break;
                            }
                        }
                    })
                    .detach(),
                );
            }
            for s in streams {
                s.await;
            }
        }
        Protocol::Http => {
            let mut streams = Vec::new();
            for s in 0..plan.streams {
                let shared = shared.clone();
                streams.push(
                    glommio::spawn_local(async move {
                        let Some(mut send) = connect_h1(&shared).await else {
                            return;
                        };
                        let mut i = conn * 7919 + s * 104_729;
                        let path = shared.plan.signal.http_path();
                        let host = shared.plan.addr.to_string();
                        while shared.take() {
                            i = i.wrapping_add(1);
                            let body = shared.plan.bodies[i % shared.plan.bodies.len()].clone();
                            let req = Request::builder()
                                .method(Method::POST)
                                .uri(path)
                                .header(header::HOST, &host)
                                .header(header::CONTENT_TYPE, "application/x-protobuf")
                                .body(ResponseBody::data(body))
                                .expect("valid request");
                            let t0 = Instant::now();
                            if send.ready().await.is_err() {
                                shared.record(t0, Err("transport".into()));
                                break;
                            }
                            let result = match send.send_request(req).await {
                                Ok(resp) => check_http(resp).await,
                                Err(e) => Err(transport_kind(&e)),
                            };
                            shared.record(t0, result);
                        }
                    })
                    .detach(),
                );
            }
            for s in streams {
                s.await;
            }
        }
    }
}

/// `body` cut into chunks of at most `frame_size` bytes (0: one chunk).
/// A copy of a gRPC-framed traces request whose trace ids (at `offsets` in the
/// message, after the 5-byte prefix) have their first 8 bytes XORed with `n`:
/// the spans of one trace still share an id, and no other request has it.
fn with_trace_ids(framed: &Bytes, offsets: &[usize], n: u64) -> Bytes {
    let mut b = framed.to_vec();
    for &off in offsets {
        let at = grpc::PREFIX_LEN + off;
        for (byte, x) in b[at..at + 8].iter_mut().zip(n.to_le_bytes()) {
            *byte ^= x;
        }
    }
    Bytes::from(b)
}

fn frames(body: Bytes, frame_size: usize) -> Vec<Bytes> {
    if frame_size == 0 || body.len() <= frame_size {
        return vec![body];
    }
    (0..body.len())
        .step_by(frame_size)
        .map(|s| body.slice(s..(s + frame_size).min(body.len())))
        .collect()
}

async fn tcp(shared: &Shared) -> Option<HyperStream> {
    match connect_tcp(&shared.plan.addr.to_string()).await {
        Ok(s) => Some(s),
        Err(e) => {
            shared.connect_errors.borrow_mut().push(e.to_string());
            *shared.failures.borrow_mut().entry("connect".into()).or_default() += 1;
            None
        }
    }
}

async fn connect_h2(shared: &Shared) -> Option<H2Sender> {
    match otlp_grpc::connect_h2(&shared.plan.addr.to_string(), None).await {
        Ok(send) => Some(send),
        Err(e) => {
            shared.connect_errors.borrow_mut().push(e.to_string());
            *shared.failures.borrow_mut().entry("connect".into()).or_default() += 1;
            None
        }
    }
}

async fn connect_h1(shared: &Shared) -> Option<hyper::client::conn::http1::SendRequest<ResponseBody>> {
    let io = tcp(shared).await?;
    match hyper::client::conn::http1::handshake(io).await {
        Ok((send, conn)) => {
            glommio::spawn_local(async move {
                let _ = conn.await;
            })
            .detach();
            Some(send)
        }
        Err(e) => {
            shared.connect_errors.borrow_mut().push(e.to_string());
            None
        }
    }
}

fn transport_kind(_e: &hyper::Error) -> String {
    "transport".into()
}

/// A gRPC response is OK only with `grpc-status: 0` (in trailers, or in the
/// headers of a trailers-only response; the exporter's reader).
async fn check_grpc(resp: Response<Incoming>) -> Result<(), String> {
    match otlp_grpc::read_grpc_response(resp).await {
        Ok(reply) if reply.code == Code::Ok => Ok(()),
        Ok(reply) => Err(code_name(reply.code)),
        Err(_) => Err("transport".into()),
    }
}

fn code_name(code: Code) -> String {
    format!("grpc_{code:?}")
}

async fn check_http(resp: Response<Incoming>) -> Result<(), String> {
    let status = resp.status();
    // Always read the body so the keep-alive connection can be reused.
    let _ = resp.into_body().collect().await.map_err(|_| "transport".to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("http_{}", status.as_u16()))
    }
}

//! `sluice bench`: a built-in OTLP load generator. It builds realistic request
//! bodies before the clock starts (`workload`), drives any OTLP/gRPC or
//! OTLP/HTTP endpoint from pinned glommio executors (`load`), checks every
//! response, prints a live progress line and a summary (events/s, latency
//! percentiles, failures by code).

pub mod load;
pub mod workload;

use std::{
    collections::BTreeMap,
    io::Write,
    net::{SocketAddr, ToSocketAddrs},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use thiserror::Error;

use crate::signal::Signal;
use load::{LoadPlan, Progress, Protocol, StopAt};

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Where to send: host:port (gRPC) or http://host:port (either protocol).
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub endpoint: String,
    /// grpc (OTLP/gRPC over h2c) or http (OTLP/HTTP protobuf over HTTP/1.1 keep-alive).
    #[arg(long, default_value = "grpc", value_parser = ["grpc", "http"])]
    pub protocol: String,
    /// traces, metrics or logs.
    #[arg(long, default_value = "traces", value_parser = ["traces", "metrics", "logs"])]
    pub signal: String,
    /// TCP connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Requests in flight per connection (gRPC: HTTP/2 streams; HTTP: one connection each).
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    /// Spans, data points or log records per request.
    #[arg(long, default_value_t = 100)]
    pub items_per_request: usize,
    /// How long to run, e.g. 10s (ignored when --requests is given).
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Send exactly this many requests instead of running for --duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// CPUs to pin the generator's executors to, e.g. 0 or 0,1 (one executor per CPU).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Distinct request bodies to cycle through.
    #[arg(long, default_value_t = 64)]
    pub bodies: usize,
    /// Largest HTTP/2 DATA frame the gRPC load sends, in bytes: 16384 (the
    /// HTTP/2 default, what grpc-go, grpc-java, tonic and the OTel SDKs send),
    /// or 0 for one frame per request (a path real clients never take).
    #[arg(long, default_value_t = 16384)]
    pub frame_size: usize,
    /// Traces over gRPC: give every request sent trace ids of its own (the
    /// workload's ids with a per-request number folded in), as live traffic
    /// has, instead of cycling through the same traces (tail sampling, load
    /// balancing). Costs the generator a copy of each request.
    #[arg(long)]
    pub fresh_trace_ids: bool,
    /// Write one gRPC-framed request of the workload to this file and exit
    /// (a body for another load generator, e.g. `h2load -d FILE`).
    #[arg(long)]
    pub write_request: Option<std::path::PathBuf>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("--endpoint {0}: {1}")]
    Endpoint(String, String),
    #[error("--duration {0}: expected a number with a unit, e.g. 10s or 500ms")]
    Duration(String),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--frame-size {0}: a DATA frame holds 1 to 16777215 bytes (0: one frame per request)")]
    FrameSize(usize),
    #[error("--write-request {0}: {1}")]
    Write(String, std::io::Error),
    #[error(transparent)]
    Load(#[from] load::LoadError),
}

/// Final figures of a run.
#[derive(Debug)]
pub struct Summary {
    pub elapsed: Duration,
    pub ok_requests: u64,
    pub ok_items: u64,
    pub failures: BTreeMap<String, u64>,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl Summary {
    pub fn items_per_sec(&self) -> f64 {
        self.ok_items as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn resolve(endpoint: &str) -> Result<SocketAddr, BenchError> {
    let hostport = endpoint
        .strip_prefix("http://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .map_err(|e| BenchError::Endpoint(endpoint.into(), e.to_string()))?
        .next()
        .ok_or_else(|| BenchError::Endpoint(endpoint.into(), "resolves to no address".into()))
}

/// Runs the benchmark described by `args`: a live progress line on stderr
/// (once a second), the summary to `out`.
pub fn run(args: &BenchArgs, out: &mut impl Write) -> Result<Summary, BenchError> {
    let addr = resolve(&args.endpoint)?;
    let signal = Signal::from_name(&args.signal).unwrap_or(Signal::Traces);
    for (v, name) in [
        (args.connections, "--connections"),
        (args.streams, "--streams"),
        (args.items_per_request, "--items-per-request"),
        (args.bodies, "--bodies"),
    ] {
        if v == 0 {
            return Err(BenchError::Zero(name));
        }
    }
    let stop = match args.requests {
        Some(n) => StopAt::Requests(n),
        None => {
            StopAt::Duration(parse_duration(&args.duration).ok_or_else(|| BenchError::Duration(args.duration.clone()))?)
        }
    };
    if args.frame_size > (1 << 24) - 1 {
        return Err(BenchError::FrameSize(args.frame_size));
    }
    let bodies = workload::requests(signal, args.items_per_request, args.bodies, 0x51u64);
    if let Some(path) = &args.write_request {
        let mut framed = crate::grpc::prefix(false, bodies[0].len()).to_vec();
        framed.extend_from_slice(&bodies[0]);
        std::fs::write(path, framed).map_err(|e| BenchError::Write(path.display().to_string(), e))?;
        return Ok(Summary {
            elapsed: Duration::ZERO,
            ok_requests: 0,
            ok_items: 0,
            failures: BTreeMap::new(),
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
        });
    }
    let plan = LoadPlan {
        addr,
        protocol: if args.protocol == "http" {
            Protocol::Http
        } else {
            Protocol::Grpc
        },
        signal,
        connections: args.connections,
        streams: args.streams,
        items_per_request: args.items_per_request as u64,
        stop,
        cpus: args.cpus.clone(),
        trace_id_offsets: Arc::new(if args.fresh_trace_ids && signal == Signal::Traces {
            bodies.iter().map(|b| workload::trace_id_offsets(b)).collect()
        } else {
            Vec::new()
        }),
        bodies: Arc::new(bodies),
        frame_size: args.frame_size,
    };
    let executors = plan.cpus.len().max(1);
    let progress: Arc<Vec<Progress>> = Arc::new((0..executors).map(|_| Progress::default()).collect());
    let started = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();

    // The live line, from a plain thread that only reads the executors' counters.
    let ticker = {
        let (progress, done) = (progress.clone(), done.clone());
        let item = signal.item_name().to_string();
        std::thread::spawn(move || {
            let mut last = (Instant::now(), 0u64);
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(200));
                if last.0.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let items: u64 = progress.iter().map(|p| p.ok_items.load(Ordering::Relaxed)).sum();
                let failed: u64 = progress.iter().map(|p| p.failed.load(Ordering::Relaxed)).sum();
                let rate = (items - last.1) as f64 / last.0.elapsed().as_secs_f64();
                eprintln!(
                    "{:>6.1}s  {:>12.0} {item}/s  {:>12} {item}  {failed} failed",
                    t0.elapsed().as_secs_f64(),
                    rate,
                    items
                );
                last = (Instant::now(), items);
            }
        })
    };
    let result = load::run(&plan, &progress, &started);
    let elapsed = t0.elapsed();
    done.store(true, Ordering::Release);
    let _ = ticker.join();
    let outcomes = result?;

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let mut failures = BTreeMap::new();
    let (mut ok_requests, mut ok_items) = (0, 0);
    for o in outcomes {
        let _ = hist.add(&o.latency_us);
        ok_requests += o.ok_requests;
        ok_items += o.ok_items;
        for (k, v) in o.failures {
            *failures.entry(k).or_insert(0) += v;
        }
    }
    let summary = Summary {
        elapsed,
        ok_requests,
        ok_items,
        failures,
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
    };
    print_summary(args, signal, &summary, out);
    Ok(summary)
}

fn print_summary(args: &BenchArgs, signal: Signal, s: &Summary, out: &mut impl Write) {
    let failed: u64 = s.failures.values().sum();
    if args.json {
        let failures: serde_json::Map<String, serde_json::Value> =
            s.failures.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
        let v = serde_json::json!({
            "signal": signal.name(),
            "protocol": args.protocol,
            "elapsed_s": s.elapsed.as_secs_f64(),
            "ok_requests": s.ok_requests,
            "ok_items": s.ok_items,
            "items_per_s": s.items_per_sec(),
            "p50_us": s.p50_us,
            "p99_us": s.p99_us,
            "p999_us": s.p999_us,
            "failed_requests": failed,
            "failures": failures,
        });
        let _ = writeln!(out, "{v}");
        return;
    }
    let item = signal.item_name();
    let _ = writeln!(
        out,
        "{} {} over {:.2}s: {} requests OK, {} {item}, {:.0} {item}/s",
        args.protocol,
        signal.name(),
        s.elapsed.as_secs_f64(),
        s.ok_requests,
        s.ok_items,
        s.items_per_sec()
    );
    let _ = writeln!(
        out,
        "latency p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms",
        s.p50_us as f64 / 1000.0,
        s.p99_us as f64 / 1000.0,
        s.p999_us as f64 / 1000.0
    );
    if failed == 0 {
        let _ = writeln!(out, "failures: none");
    } else {
        let list: Vec<String> = s.failures.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "failures: {failed} ({})", list.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("fast"), None);
    }
}

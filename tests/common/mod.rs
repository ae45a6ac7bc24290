//! Integration-test harness: runs the `sluice` binary as a child process, an
//! OTLP gRPC backend (tonic) and an OTLP/HTTP backend (hyper) that record what
//! sluice forwards, raw HTTP/1.1 and gRPC clients that keep one connection, a
//! Prometheus scraper, and builders of OTLP requests with known contents.
#![allow(dead_code)]

pub mod conn;
pub mod otlp_gen;
pub mod sdk_spans;
pub mod stalled;
pub mod tls;

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener as StdListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            logs_service_server::{LogsService, LogsServiceServer},
            ExportLogsServiceRequest, ExportLogsServiceResponse,
        },
        metrics::v1::{
            metrics_service_server::{MetricsService, MetricsServiceServer},
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        },
        trace::v1::{
            trace_service_server::{TraceService, TraceServiceServer},
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        },
    },
    common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        exponential_histogram_data_point, metric, number_data_point, summary_data_point, Exemplar,
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    },
    resource::v1::Resource,
    trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status},
};
use prost::Message;
use tonic::codec::CompressionEncoding;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

// ---------------------------------------------------------------------------
// ports and configs

/// A TCP port that was free a moment ago on 127.0.0.1, and not handed out
/// before in this test process. The kernel may give a just-released port
/// again, and sluice binds with SO_REUSEPORT, so two tests running side by
/// side could otherwise both listen on one port and answer each other's
/// requests (seen: a gRPC call answered 404 by another instance's HTTP
/// receiver).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The three ports a sluice instance listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub grpc: u16,
    pub http: u16,
    pub metrics: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            grpc: free_port(),
            http: free_port(),
            metrics: free_port(),
        }
    }
    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.grpc))
    }
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http))
    }
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics))
    }
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new()
    }
}

/// A complete sluice config: otlp receiver on `p`, batch processor, and the
/// given exporters (`exporters_yaml` is the indented body of `exporters:`),
/// all three pipelines sending to `exporter_names` (e.g. `[otlp]`).
/// `receiver_extra` is appended inside the grpc/http maps (e.g. `, max_request_body_size: 1000`).
pub fn config_yaml(
    p: &Ports,
    grpc_extra: &str,
    http_extra: &str,
    exporters_yaml: &str,
    exporter_names: &str,
    tuning: &str,
) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}{grpc_extra}}}
      http: {{endpoint: 127.0.0.1:{http}{http_extra}}}
processors:
  batch: {{send_batch_size: 8192, timeout: 200ms}}
exporters:
{exporters_yaml}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: {exporter_names}}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: {exporter_names}}}
    logs: {{receivers: [otlp], processors: [batch], exporters: {exporter_names}}}
tuning: {tuning}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
    )
}

/// Config forwarding everything over gRPC to a backend on `backend_port`.
pub fn forward_config(p: &Ports, backend_port: u16, tuning: &str) -> String {
    config_yaml(
        p,
        "",
        "",
        &format!("  otlp: {{endpoint: 127.0.0.1:{backend_port}, tls: {{insecure: true}}, compression: none}}"),
        "[otlp]",
        tuning,
    )
}

/// Config storing everything with a `file` exporter at `dir`.
pub fn file_config(p: &Ports, dir: &Path, tuning: &str) -> String {
    config_yaml(
        p,
        "",
        "",
        &format!("  file: {{path: {}}}", dir.display()),
        "[file]",
        tuning,
    )
}

// ---------------------------------------------------------------------------
// the sluice process

/// A running `sluice run` child process. Dropping it kills the process; if the
/// test is panicking, its stderr is printed.
pub struct Sluice {
    child: Child,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stderr_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Sluice {
    /// Writes `config_yaml` into a fresh tempdir and runs sluice there; waits
    /// until its receiver and metrics ports accept connections and it logged
    /// "sluice is ready".
    pub fn start(config_yaml: &str) -> Sluice {
        Self::start_with_env(config_yaml, &[])
    }

    pub fn start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Sluice {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = tmp.path().join("sluice.yaml");
        std::fs::write(&cfg, config_yaml).unwrap();
        let ports = listen_ports(config_yaml);
        assert!(!ports.is_empty(), "no receiver ports found in config:\n{config_yaml}");
        let dir = tmp.path().to_path_buf();
        let args = vec!["run".to_string(), "--config".to_string(), cfg.display().to_string()];
        Self::spawn(dir, Some(tmp), &args, &ports, env)
    }

    /// Runs sluice without `--config` (embedded default: ports 4317/4318/8888)
    /// in `dir`. Only one test in the whole suite may use this.
    pub fn start_default(dir: &Path) -> Sluice {
        Self::spawn(dir.to_path_buf(), None, &["run".to_string()], &[4317, 4318, 8888], &[])
    }

    fn spawn(
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        args: &[String],
        ports: &[u16],
        env: &[(&str, &str)],
    ) -> Sluice {
        let log_dir = tmp
            .as_ref()
            .map(|t| t.path().to_path_buf())
            .unwrap_or_else(|| dir.clone());
        let stderr_path = log_dir.join(format!("sluice-stderr-{}.log", free_port()));
        let stderr = File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        cmd.env("SLUICE_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn sluice");
        let mut s = Sluice {
            child,
            dir,
            _tmp: tmp,
            stderr_path,
            exited: None,
        };
        s.wait_ready(ports, Duration::from_secs(30));
        s
    }

    fn wait_ready(&mut self, ports: &[u16], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.exited = Some(st);
                panic!(
                    "sluice exited during startup with {st}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            let all_up = ports.iter().all(|p| {
                TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], *p)), Duration::from_millis(200)).is_ok()
            });
            if all_up && self.stderr_text().contains("sluice is ready") {
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "sluice not ready within {timeout:?} (ports {ports:?} up: {all_up}); stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: i32) {
        if self.exited.is_some() {
            return;
        }
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exited = Some(self.child.wait().unwrap());
    }

    /// Waits for the process to exit; panics (printing stderr) on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.exited {
            return st;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.exited = Some(st);
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "sluice did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM then wait; asserts exit status 0.
    pub fn stop(&mut self, timeout: Duration) {
        self.sigterm();
        let st = self.wait_exit(timeout);
        assert!(st.success(), "sluice exited with {st}; stderr:\n{}", self.stderr_text());
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- sluice stderr ({}) -----\n{}",
                self.stderr_path.display(),
                self.stderr_text()
            );
        }
    }
}

/// Ports the `receivers` section and `service.telemetry.metrics.address` name.
fn listen_ports(yaml: &str) -> Vec<u16> {
    let mut out = Vec::new();
    let mut section = "";
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && line.contains(':') {
            section = line.split(':').next().unwrap().trim();
        }
        let take =
            (section == "receivers" && line.contains("endpoint")) || (section == "service" && line.contains("address"));
        if !take {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("127.0.0.1:") {
            rest = &rest[i + "127.0.0.1:".len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(p) = digits.parse() {
                out.push(p);
            }
        }
    }
    out
}

/// Runs `sluice ARGS` to completion (for `validate` and `read`).
pub fn sluice_cmd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sluice")
}

/// The parsed output of `sluice read DIR --count`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    pub trace_requests: u64,
    pub spans: u64,
    pub metric_requests: u64,
    pub points: u64,
    pub log_requests: u64,
    pub logs: u64,
    pub corrupt: u64,
}

/// Runs `sluice read DIR --count`, asserts exit 0 and no panic, parses the four lines.
pub fn read_count(dir: &Path) -> StoreCounts {
    let out = sluice_cmd(&["read", dir.to_str().unwrap(), "--count"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "read --count exited {}; stdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "read --count panicked:\n{stderr}");
    parse_counts(&stdout).unwrap_or_else(|e| panic!("bad --count output ({e}):\n{stdout}"))
}

pub fn parse_counts(text: &str) -> Result<StoreCounts, String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 4 {
        return Err(format!("expected 4 lines, got {}", lines.len()));
    }
    let nums = |line: &str, prefix: &str, a: &str, b: &str| -> Result<(u64, u64), String> {
        let rest = line
            .strip_prefix(prefix)
            .ok_or(format!("line {line:?} lacks {prefix:?}"))?;
        let parts: Vec<&str> = rest.split(", ").collect();
        let n1 = parts
            .first()
            .and_then(|p| p.strip_suffix(a))
            .and_then(|n| n.trim().parse().ok())
            .ok_or(format!("line {line:?}"))?;
        let n2 = parts
            .get(1)
            .and_then(|p| p.strip_suffix(b))
            .and_then(|n| n.trim().parse().ok())
            .ok_or(format!("line {line:?}"))?;
        Ok((n1, n2))
    };
    let (trace_requests, spans) = nums(lines[0], "traces: ", " requests", " spans")?;
    let (metric_requests, points) = nums(lines[1], "metrics: ", " requests", " data points")?;
    let (log_requests, logs) = nums(lines[2], "logs: ", " requests", " log records")?;
    let corrupt = lines[3]
        .strip_prefix("corrupt: ")
        .and_then(|r| r.strip_suffix(" records skipped"))
        .and_then(|n| n.parse().ok())
        .ok_or(format!("line {:?}", lines[3]))?;
    Ok(StoreCounts {
        trace_requests,
        spans,
        metric_requests,
        points,
        log_requests,
        logs,
        corrupt,
    })
}

// ---------------------------------------------------------------------------
// Prometheus scraping

/// One sample: metric name, the raw label text (without braces), value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

pub fn scrape_samples(addr: SocketAddr) -> Vec<Sample> {
    let mut conn = HttpConn::connect(addr);
    let resp = conn.request("GET", "/metrics", &[], &[]);
    assert_eq!(
        resp.status,
        200,
        "GET /metrics: {}",
        String::from_utf8_lossy(&resp.body)
    );
    parse_prometheus(&String::from_utf8_lossy(&resp.body))
}

pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(i) => {
                let close = line.rfind('}').unwrap_or(line.len());
                (&line[..i], &line[i + 1..close], &line[(close + 1).min(line.len())..])
            }
            None => {
                let mut it = line.splitn(2, ' ');
                (it.next().unwrap(), "", it.next().unwrap_or(""))
            }
        };
        if let Some(v) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            out.push(Sample {
                name: name.to_string(),
                labels: labels.to_string(),
                value: v,
            });
        }
    }
    out
}

/// Scrapes `http://addr/metrics`, summing samples by metric name.
pub fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for s in scrape_samples(addr) {
        *m.entry(s.name).or_insert(0.0) += s.value;
    }
    m
}

/// Sum of samples named `name` whose label text contains every `labels` item
/// (e.g. `exporter="otlp"`).
pub fn labelled(samples: &[Sample], name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|l| s.labels.contains(l)))
        .map(|s| s.value)
        .sum()
}

pub fn metric(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

// ---------------------------------------------------------------------------
// backends

/// How a backend answers exports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Ok,
    Fail(tonic::Code),
    /// UNAVAILABLE with a google.rpc.RetryInfo detail (HTTP: 503 + Retry-After).
    FailWithRetryInfo(Duration),
    /// A slow backend: each export waits this long, then succeeds.
    Delay(Duration),
    /// Accepts (and records) every export but answers with a partial
    /// success: `rejected` items rejected, with `message`.
    PartialSuccess {
        rejected: i64,
        message: &'static str,
    },
}

impl Mode {
    /// The partial success to answer with, if any.
    fn partial(self) -> Option<(i64, String)> {
        match self {
            Mode::PartialSuccess { rejected, message } => Some((rejected, message.to_string())),
            _ => None,
        }
    }
}

/// What a backend received.
#[derive(Default)]
pub struct Recorded {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
}

struct BackendState {
    mode: Mutex<Mode>,
    rec: Mutex<Recorded>,
    attempts: AtomicU64,
}

impl BackendState {
    fn new() -> Arc<BackendState> {
        Arc::new(BackendState {
            mode: Mutex::new(Mode::Ok),
            rec: Mutex::new(Recorded::default()),
            attempts: AtomicU64::new(0),
        })
    }
}

/// A received span: trace id, span id, name, attributes.
pub type SpanRow = (Vec<u8>, Vec<u8>, String, Vec<KeyValue>);

macro_rules! recorder_methods {
    () => {
        pub fn set_mode(&self, m: Mode) {
            *self.st.mode.lock().unwrap() = m;
        }
        pub fn attempts(&self) -> u64 {
            self.st.attempts.load(Ordering::SeqCst)
        }
        pub fn with_recorded<R>(&self, f: impl FnOnce(&Recorded) -> R) -> R {
            f(&self.st.rec.lock().unwrap())
        }
        pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
            self.st.rec.lock().unwrap().traces.clone()
        }
        pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
            self.st.rec.lock().unwrap().metrics.clone()
        }
        pub fn logs(&self) -> Vec<ExportLogsServiceRequest> {
            self.st.rec.lock().unwrap().logs.clone()
        }
        pub fn spans(&self) -> Vec<SpanRow> {
            let rec = self.st.rec.lock().unwrap();
            let mut out = Vec::new();
            for r in &rec.traces {
                for rs in &r.resource_spans {
                    for ss in &rs.scope_spans {
                        for s in &ss.spans {
                            out.push((
                                s.trace_id.clone(),
                                s.span_id.clone(),
                                s.name.clone(),
                                s.attributes.clone(),
                            ));
                        }
                    }
                }
            }
            out
        }
        pub fn span_count(&self) -> u64 {
            self.st.rec.lock().unwrap().traces.iter().map(count_spans).sum()
        }
        pub fn metric_points(&self) -> u64 {
            self.st.rec.lock().unwrap().metrics.iter().map(count_points).sum()
        }
        pub fn log_records(&self) -> u64 {
            self.st.rec.lock().unwrap().logs.iter().map(count_logs).sum()
        }
        /// Polls `pred` every 20 ms until it holds or `timeout` passes; returns whether it held.
        pub async fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&Self) -> bool) -> bool {
            let deadline = Instant::now() + timeout;
            loop {
                if pred(self) {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        /// Waits until exactly these counts arrived (and stay for 300 ms); panics otherwise.
        pub async fn expect_counts(&self, spans: u64, points: u64, logs: u64, timeout: Duration) {
            let ok = self
                .wait_for(timeout, |b| {
                    b.span_count() >= spans && b.metric_points() >= points && b.log_records() >= logs
                })
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let got = (self.span_count(), self.metric_points(), self.log_records());
            assert!(
                ok && got == (spans, points, logs),
                "backend got (spans, points, logs) = {got:?}, expected {:?}",
                (spans, points, logs)
            );
        }
    };
}

/// An OTLP gRPC backend (traces, metrics, logs) on a fixed port.
pub struct Backend {
    pub port: u16,
    st: Arc<BackendState>,
    server: Mutex<Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

#[derive(Clone)]
struct GrpcSvc(Arc<BackendState>);

impl GrpcSvc {
    /// Waits when the backend is in `Mode::Delay`.
    async fn delay(&self) {
        let mode = *self.0.mode.lock().unwrap();
        if let Mode::Delay(d) = mode {
            tokio::time::sleep(d).await;
        }
    }

    fn mode(&self) -> Mode {
        *self.0.mode.lock().unwrap()
    }

    fn answer(&self) -> Result<(), tonic::Status> {
        self.0.attempts.fetch_add(1, Ordering::SeqCst);
        match *self.0.mode.lock().unwrap() {
            Mode::Ok | Mode::Delay(_) | Mode::PartialSuccess { .. } => Ok(()),
            Mode::Fail(code) => Err(tonic::Status::new(code, "test backend: told to fail")),
            Mode::FailWithRetryInfo(d) => Err(tonic::Status::with_details(
                tonic::Code::Unavailable,
                "test backend: retry later",
                Bytes::from(retry_info_status(tonic::Code::Unavailable as i32, d)),
            )),
        }
    }
}

/// The export responses a backend in `mode` answers with (empty unless
/// `Mode::PartialSuccess`).
pub fn trace_response(mode: Mode) -> ExportTraceServiceResponse {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
    ExportTraceServiceResponse {
        partial_success: mode
            .partial()
            .map(|(rejected_spans, error_message)| ExportTracePartialSuccess {
                rejected_spans,
                error_message,
            }),
    }
}

pub fn metrics_response(mode: Mode) -> ExportMetricsServiceResponse {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
    ExportMetricsServiceResponse {
        partial_success: mode
            .partial()
            .map(|(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message,
            }),
    }
}

pub fn logs_response(mode: Mode) -> ExportLogsServiceResponse {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
    ExportLogsServiceResponse {
        partial_success: mode
            .partial()
            .map(|(rejected_log_records, error_message)| ExportLogsPartialSuccess {
                rejected_log_records,
                error_message,
            }),
    }
}

#[tonic::async_trait]
impl TraceService for GrpcSvc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.delay().await;
        self.answer()?;
        self.0.rec.lock().unwrap().traces.push(req.into_inner());
        Ok(tonic::Response::new(trace_response(self.mode())))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSvc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.delay().await;
        self.answer()?;
        self.0.rec.lock().unwrap().metrics.push(req.into_inner());
        Ok(tonic::Response::new(metrics_response(self.mode())))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcSvc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.delay().await;
        self.answer()?;
        self.0.rec.lock().unwrap().logs.push(req.into_inner());
        Ok(tonic::Response::new(logs_response(self.mode())))
    }
}

async fn bind_retry(port: u16) -> tokio::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind backend port {port}: {e}"),
        }
    }
}

impl Backend {
    /// Starts a gRPC backend on a free port.
    pub async fn start_new() -> Backend {
        let b = Backend {
            port: free_port(),
            st: BackendState::new(),
            server: Mutex::new(None),
        };
        b.start().await;
        b
    }

    /// Starts a gRPC backend on a given port (e.g. one a `DeadPort` just freed).
    pub async fn start_on(port: u16) -> Backend {
        let b = Backend {
            port,
            st: BackendState::new(),
            server: Mutex::new(None),
        };
        b.start().await;
        b
    }

    /// (Re)starts serving on the same port.
    pub async fn start(&self) {
        let listener = bind_retry(self.port).await;
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let svc = GrpcSvc(self.st.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let big = 512 << 20;
        let router = tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(big),
            )
            .add_service(
                MetricsServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(big),
            )
            .add_service(
                LogsServiceServer::new(svc)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(big),
            );
        let h = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        *self.server.lock().unwrap() = Some((tx, h));
    }

    /// Stops serving: the port refuses connections until `start()`.
    pub async fn stop(&self) {
        let s = self.server.lock().unwrap().take();
        if let Some((tx, mut h)) = s {
            let _ = tx.send(());
            if tokio::time::timeout(Duration::from_secs(3), &mut h).await.is_err() {
                h.abort();
                let _ = h.await;
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    recorder_methods!();
}

/// An OTLP/HTTP (protobuf) backend for the `otlphttp` exporter.
pub struct HttpBackend {
    pub port: u16,
    st: Arc<BackendState>,
    server: Mutex<Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

impl HttpBackend {
    pub async fn start_new() -> HttpBackend {
        let b = HttpBackend {
            port: free_port(),
            st: BackendState::new(),
            server: Mutex::new(None),
        };
        b.start().await;
        b
    }

    pub async fn start(&self) {
        let listener = bind_retry(self.port).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let h = serve_http1(listener, rx, self.st.clone(), http_backend_handle);
        *self.server.lock().unwrap() = Some((tx, h));
    }

    pub async fn stop(&self) {
        let s = self.server.lock().unwrap().take();
        if let Some((tx, h)) = s {
            let _ = tx.send(());
            let _ = h.await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    recorder_methods!();
}

/// Serves HTTP/1.1 connections from `listener`, each request answered by
/// `handle` with `state`, until `stop` fires (open connections are dropped).
pub fn serve_http1<S, F>(
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    state: Arc<S>,
    handle: fn(Arc<S>, hyper::Request<hyper::body::Incoming>) -> F,
) -> tokio::task::JoinHandle<()>
where
    S: Send + Sync + 'static,
    F: std::future::Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                acc = listener.accept() => {
                    let Ok((stream, _)) = acc else { continue };
                    let st = state.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let fut = handle(st.clone(), req);
                            async move { Ok::<_, std::convert::Infallible>(fut.await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
        conns.abort_all();
    })
}

async fn http_backend_handle(
    st: Arc<BackendState>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, body: Vec<u8>| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let path = req.uri().path().to_string();
    let gz = req
        .headers()
        .get("content-encoding")
        .map(|v| v.as_bytes() == b"gzip")
        .unwrap_or(false);
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return reply(400, Vec::new()),
    };
    st.attempts.fetch_add(1, Ordering::SeqCst);
    let mode = *st.mode.lock().unwrap();
    match mode {
        Mode::Ok | Mode::PartialSuccess { .. } => {}
        Mode::Delay(d) => tokio::time::sleep(d).await,
        Mode::Fail(code) => {
            let status = match code {
                tonic::Code::Unavailable => 503,
                tonic::Code::ResourceExhausted => 429,
                tonic::Code::InvalidArgument => 400,
                _ => 500,
            };
            return reply(status, Vec::new());
        }
        Mode::FailWithRetryInfo(d) => {
            return hyper::Response::builder()
                .status(503)
                .header("retry-after", d.as_secs().max(1).to_string())
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
    }
    if !ct.starts_with("application/x-protobuf") {
        return reply(415, Vec::new());
    }
    let body = if gz { gunzip(&body) } else { body };
    let mut rec = st.rec.lock().unwrap();
    let ok = match path.as_str() {
        "/v1/traces" => ExportTraceServiceRequest::decode(&body[..])
            .map(|r| rec.traces.push(r))
            .is_ok()
            .then(|| trace_response(mode).encode_to_vec()),
        "/v1/metrics" => ExportMetricsServiceRequest::decode(&body[..])
            .map(|r| rec.metrics.push(r))
            .is_ok()
            .then(|| metrics_response(mode).encode_to_vec()),
        "/v1/logs" => ExportLogsServiceRequest::decode(&body[..])
            .map(|r| rec.logs.push(r))
            .is_ok()
            .then(|| logs_response(mode).encode_to_vec()),
        _ => return reply(404, Vec::new()),
    };
    if let Some(answer) = ok {
        reply(200, answer)
    } else {
        reply(400, Vec::new())
    }
}

// ---------------------------------------------------------------------------
// google.rpc.Status / RetryInfo (hand-declared prost messages)

#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// An encoded google.rpc.Status carrying a RetryInfo detail.
pub fn retry_info_status(code: i32, d: Duration) -> Vec<u8> {
    let ri = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code,
        message: "retry later".into(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: ri.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

// ---------------------------------------------------------------------------
// compression

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

// ---------------------------------------------------------------------------
// raw HTTP/1.1 client on one keep-alive connection

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body, decompressed if the response is gzip-encoded.
    pub fn decoded_body(&self) -> Vec<u8> {
        if self.header("content-encoding") == Some("gzip") {
            gunzip(&self.body)
        } else {
            self.body.clone()
        }
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.decoded_body()).to_string()
    }
}

pub struct HttpConn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.set_nodelay(true).unwrap();
        HttpConn {
            addr,
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// POSTs `body` on this connection (keep-alive).
    pub fn post(
        &mut self,
        path: &str,
        content_type: &str,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> HttpResponse {
        let mut headers = vec![("Content-Type", content_type)];
        if let Some(ce) = content_encoding {
            headers.push(("Content-Encoding", ce));
        }
        self.request("POST", path, &headers, body)
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        self.request_body_after(method, path, headers, body, None)
    }

    /// Like `request`, but the body follows the head only after `pause` (or
    /// as soon as a reply has come back): a server that refuses a request
    /// from its head alone must still read the body it was promised, or close
    /// the connection saying so, for the next request to go through.
    pub fn request_body_after(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        pause: Option<Duration>,
    ) -> HttpResponse {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        self.writer.write_all(head.as_bytes()).expect("write request head");
        if let Some(pause) = pause {
            // Waits for an early reply (a timeout is the expected outcome).
            self.reader.get_ref().set_read_timeout(Some(pause)).unwrap();
            let _ = self.reader.fill_buf();
            self.reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
        }
        // The server may answer (e.g. 413) before reading the whole body; a
        // write error then is not a test failure in itself.
        let _ = self.writer.write_all(body);
        self.read_response(method == "HEAD")
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read response line");
        assert!(n > 0, "connection closed by server while reading the response");
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    fn read_response(&mut self, head_only: bool) -> HttpResponse {
        let status_line = self.read_line();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.read_line();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let find = |n: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        } else if let Some(cl) = find("content-length") {
            let n: usize = cl.parse().expect("content-length");
            body.resize(n, 0);
            self.reader.read_exact(&mut body).expect("read body");
        } else if find("transfer-encoding")
            .map(|t| t.eq_ignore_ascii_case("chunked"))
            .unwrap_or(false)
        {
            loop {
                let size_line = self.read_line();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).expect("chunk size");
                if size == 0 {
                    // trailers until blank line
                    while !self.read_line().is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..]).expect("read chunk");
                let _ = self.read_line();
            }
        } else {
            self.reader.read_to_end(&mut body).expect("read body to end");
        }
        HttpResponse { status, headers, body }
    }
}

// ---------------------------------------------------------------------------
// raw gRPC client on one HTTP/2 connection

pub struct GrpcReply {
    /// grpc-status (from trailers, or headers for trailers-only replies).
    pub code: i32,
    pub message: String,
    pub http_status: u16,
    /// Concatenated response messages (gRPC frames stripped).
    pub body: Vec<u8>,
}

pub struct GrpcConn {
    send: hyper::client::conn::http2::SendRequest<Frames>,
    authority: String,
}

/// The DATA frame size gRPC clients (grpc-go, grpc-java, tonic) send bodies in.
pub const CLIENT_FRAME: usize = 16 << 10;

/// A request body sent as these DATA frames, one `Bytes` each.
pub struct Frames(std::collections::VecDeque<Bytes>);

impl Frames {
    /// `body` cut into frames of `size` (> 0) bytes.
    pub fn cut(body: Vec<u8>, size: usize) -> Frames {
        let body = Bytes::from(body);
        Frames(
            (0..body.len())
                .step_by(size)
                .map(|i| body.slice(i..(i + size).min(body.len())))
                .collect(),
        )
    }
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

pub const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// A gRPC length-prefixed frame.
pub fn grpc_frame(msg: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(compressed as u8);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

impl GrpcConn {
    pub async fn connect(addr: SocketAddr) -> GrpcConn {
        Self::try_connect(addr)
            .await
            .unwrap_or_else(|e| panic!("gRPC connect {addr}: {e}"))
    }

    pub async fn try_connect(addr: SocketAddr) -> Result<GrpcConn, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).unwrap();
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(GrpcConn {
            send,
            authority: addr.to_string(),
        })
    }

    /// Sends `msg` as one gRPC message (gzip-compressed if `gzip`), in DATA
    /// frames of `CLIENT_FRAME` bytes.
    pub async fn call(&mut self, path: &str, msg: &[u8], gzip_it: bool) -> GrpcReply {
        let body = if gzip_it {
            grpc_frame(&gzip(msg), true)
        } else {
            grpc_frame(msg, false)
        };
        self.call_raw(path, body, gzip_it).await
    }

    /// Sends an already framed body; panics on HTTP/2-level failures.
    pub async fn call_raw(&mut self, path: &str, framed: Vec<u8>, gzip_header: bool) -> GrpcReply {
        self.try_call_raw(path, framed, gzip_header)
            .await
            .unwrap_or_else(|e| panic!("gRPC call to {path}: {e}"))
    }

    /// Like `call` but an HTTP/2-level refusal (GOAWAY, reset, closed
    /// connection) is returned as `Err` instead of panicking.
    pub async fn try_call(&mut self, path: &str, msg: &[u8]) -> Result<GrpcReply, String> {
        self.try_call_raw(path, grpc_frame(msg, false), false).await
    }

    pub async fn try_call_raw(&mut self, path: &str, framed: Vec<u8>, gzip_header: bool) -> Result<GrpcReply, String> {
        let mut b = hyper::Request::builder()
            .method("POST")
            .uri(format!("http://{}{}", self.authority, path))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if gzip_header {
            b = b.header("grpc-encoding", "gzip");
        }
        let req = b.body(Frames::cut(framed, CLIENT_FRAME)).unwrap();
        self.send
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(15), self.send.send_request(req))
            .await
            .map_err(|_| "gRPC call timed out".to_string())?
            .map_err(|e| format!("HTTP/2 error: {e}"))?;
        let http_status = resp.status().as_u16();
        let head_status = resp
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string());
        let head_msg = resp
            .headers()
            .get("grpc-message")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let collected = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the reply: {e}"))?;
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes().to_vec();
        let (code, message) = match (head_status, trailers) {
            (Some(s), _) => (s.parse().unwrap(), head_msg.unwrap_or_default()),
            (None, Some(t)) => (
                t.get("grpc-status")
                    .expect("no grpc-status trailer")
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
                t.get("grpc-message")
                    .map(|v| v.to_str().unwrap_or("").to_string())
                    .unwrap_or_default(),
            ),
            (None, None) => return Err(format!("gRPC reply without grpc-status (http {http_status})")),
        };
        let mut body = Vec::new();
        let mut rest = &data[..];
        while rest.len() >= 5 {
            let compressed = rest[0] == 1;
            let n = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            let m = &rest[5..5 + n];
            if compressed {
                body.extend_from_slice(&gunzip(m));
            } else {
                body.extend_from_slice(m);
            }
            rest = &rest[5 + n..];
        }
        Ok(GrpcReply {
            code,
            message,
            http_status,
            body,
        })
    }
}

// ---------------------------------------------------------------------------
// OTLP request builders

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

/// Attributes of every AnyValue type, varied by `n`.
pub fn all_type_attributes(n: u64) -> Vec<KeyValue> {
    use any_value::Value as V;
    vec![
        kv("str", V::StringValue(format!("value-{n}"))),
        kv("bool", V::BoolValue(n % 2 == 0)),
        kv("int", V::IntValue(-(n as i64) * 7)),
        kv("double", V::DoubleValue(n as f64 + 0.25)),
        kv("bytes", V::BytesValue(vec![0, 1, 2, (n % 256) as u8, 0xff])),
        kv(
            "array",
            V::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(V::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(V::IntValue(n as i64)),
                    },
                    AnyValue {
                        value: Some(V::DoubleValue(1.5)),
                    },
                ],
            }),
        ),
        kv(
            "kvlist",
            V::KvlistValue(KeyValueList {
                values: vec![
                    kv("inner", V::StringValue(format!("in-{n}"))),
                    kv("flag", V::BoolValue(true)),
                ],
            }),
        ),
        kv("empty", V::StringValue(String::new())),
    ]
}

pub fn trace_id(seed: u64, r: u64, s: u64) -> Vec<u8> {
    let mut id = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(1)
        .to_be_bytes()
        .to_vec();
    id.extend_from_slice(&(((r + 1) << 32) | (s + 1)).to_be_bytes());
    id
}

pub fn span_id(seed: u64, r: u64, s: u64) -> Vec<u8> {
    ((seed << 40) ^ (r << 24) ^ s ^ 0x8000_0000_0000_0000)
        .to_be_bytes()
        .to_vec()
}

fn resource(seed: u64, r: u64) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", any_value::Value::StringValue(format!("svc-{seed}-{r}"))),
            kv("resource.index", any_value::Value::IntValue(r as i64)),
        ],
        dropped_attributes_count: (r % 2) as u32,
        entity_refs: Vec::new(),
    })
}

/// Scope for resource `r`: odd resources get an empty (unset) scope.
fn scope(seed: u64, r: u64) -> Option<InstrumentationScope> {
    if r % 2 == 1 {
        None
    } else {
        Some(InstrumentationScope {
            name: format!("scope-{seed}"),
            version: "1.2.3".into(),
            attributes: vec![kv("scope.attr", any_value::Value::BoolValue(true))],
            dropped_attributes_count: 0,
        })
    }
}

/// `n_resources` ResourceSpans of `spans_per_resource` spans each, all ids distinct per seed.
pub fn traces_request(n_resources: u64, spans_per_resource: u64, seed: u64) -> ExportTraceServiceRequest {
    let base = 1_700_000_000_000_000_000u64 + seed * 1_000_000;
    let resource_spans = (0..n_resources)
        .map(|r| {
            let spans = (0..spans_per_resource)
                .map(|s| Span {
                    trace_id: trace_id(seed, r, s),
                    span_id: span_id(seed, r, s),
                    trace_state: if s % 3 == 0 { "k=v".into() } else { String::new() },
                    parent_span_id: if s > 0 { span_id(seed, r, 0) } else { Vec::new() },
                    flags: 1,
                    name: format!("span-{seed}-{r}-{s}"),
                    kind: (s % 6) as i32,
                    start_time_unix_nano: base + s,
                    end_time_unix_nano: base + s + 1000,
                    attributes: all_type_attributes(s),
                    dropped_attributes_count: 0,
                    events: vec![span::Event {
                        time_unix_nano: base + s + 10,
                        name: "event".into(),
                        attributes: vec![kv("event.n", any_value::Value::IntValue(s as i64))],
                        dropped_attributes_count: 0,
                    }],
                    dropped_events_count: 0,
                    links: vec![span::Link {
                        trace_id: trace_id(seed + 1_000_000, r, s),
                        span_id: span_id(seed + 1_000_000, r, s),
                        trace_state: String::new(),
                        attributes: vec![kv("link.n", any_value::Value::IntValue(s as i64))],
                        dropped_attributes_count: 0,
                        flags: 0,
                    }],
                    dropped_links_count: 0,
                    status: Some(Status {
                        message: if s % 2 == 1 { "boom".into() } else { String::new() },
                        code: (s % 3) as i32,
                    }),
                })
                .collect();
            ResourceSpans {
                resource: resource(seed, r),
                scope_spans: vec![ScopeSpans {
                    scope: scope(seed, r),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: if r % 3 == 0 {
                    "https://opentelemetry.io/schemas/1.21.0".into()
                } else {
                    String::new()
                },
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// Data points per "set" in `metrics_request`.
pub const POINTS_PER_SET: u64 = 7;

/// `n_resources` ResourceMetrics, each with `sets` groups of a gauge (2
/// points), a sum (2), a histogram (1), an exponential histogram (1) and a
/// summary (1): `POINTS_PER_SET` points per set.
pub fn metrics_request(n_resources: u64, sets: u64, seed: u64) -> ExportMetricsServiceRequest {
    let t = 1_700_000_000_000_000_000u64 + seed * 1_000_000;
    let resource_metrics = (0..n_resources)
        .map(|r| {
            let mut metrics = Vec::new();
            for k in 0..sets {
                let attrs = all_type_attributes(k);
                let num = |v: number_data_point::Value, i: u64| NumberDataPoint {
                    attributes: vec![kv("i", any_value::Value::IntValue(i as i64))],
                    start_time_unix_nano: t,
                    time_unix_nano: t + 1 + i,
                    exemplars: Vec::new(),
                    flags: 0,
                    value: Some(v),
                };
                metrics.push(Metric {
                    name: format!("gauge-{seed}-{r}-{k}"),
                    description: "a gauge".into(),
                    unit: "1".into(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![
                            num(number_data_point::Value::AsDouble(k as f64 * 1.5), 0),
                            num(number_data_point::Value::AsInt(k as i64 - 5), 1),
                        ],
                    })),
                });
                metrics.push(Metric {
                    name: format!("sum-{seed}-{r}-{k}"),
                    description: String::new(),
                    unit: "By".into(),
                    metadata: vec![kv("meta", any_value::Value::StringValue("m".into()))],
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![
                            num(number_data_point::Value::AsInt(100 + k as i64), 0),
                            NumberDataPoint {
                                exemplars: vec![Exemplar {
                                    filtered_attributes: vec![kv("ex", any_value::Value::BoolValue(true))],
                                    time_unix_nano: t + 5,
                                    span_id: span_id(seed, r, k),
                                    trace_id: trace_id(seed, r, k),
                                    value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(
                                        2.5,
                                    )),
                                }],
                                ..num(number_data_point::Value::AsDouble(0.5), 1)
                            },
                        ],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                });
                metrics.push(Metric {
                    name: format!("hist-{seed}-{r}-{k}"),
                    description: String::new(),
                    unit: "ms".into(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            attributes: attrs.clone(),
                            start_time_unix_nano: t,
                            time_unix_nano: t + 2,
                            count: 6,
                            sum: Some(21.0),
                            bucket_counts: vec![1, 2, 3],
                            explicit_bounds: vec![1.0, 5.0],
                            exemplars: Vec::new(),
                            flags: 0,
                            min: Some(0.5),
                            max: Some(9.0),
                        }],
                        aggregation_temporality: 1,
                    })),
                });
                metrics.push(Metric {
                    name: format!("exphist-{seed}-{r}-{k}"),
                    description: String::new(),
                    unit: String::new(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint {
                            attributes: vec![],
                            start_time_unix_nano: t,
                            time_unix_nano: t + 3,
                            count: 4,
                            sum: Some(10.0),
                            scale: 2,
                            zero_count: 1,
                            positive: Some(exponential_histogram_data_point::Buckets {
                                offset: -1,
                                bucket_counts: vec![1, 1],
                            }),
                            negative: Some(exponential_histogram_data_point::Buckets {
                                offset: 0,
                                bucket_counts: vec![1],
                            }),
                            flags: 0,
                            exemplars: Vec::new(),
                            min: Some(-1.0),
                            max: Some(5.0),
                            zero_threshold: 0.0,
                        }],
                        aggregation_temporality: 2,
                    })),
                });
                metrics.push(Metric {
                    name: format!("summary-{seed}-{r}-{k}"),
                    description: String::new(),
                    unit: String::new(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            attributes: vec![],
                            start_time_unix_nano: t,
                            time_unix_nano: t + 4,
                            count: 3,
                            sum: 6.0,
                            quantile_values: vec![
                                summary_data_point::ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 2.0,
                                },
                                summary_data_point::ValueAtQuantile {
                                    quantile: 0.99,
                                    value: 3.0,
                                },
                            ],
                            flags: 0,
                        }],
                    })),
                });
            }
            ResourceMetrics {
                resource: resource(seed, r),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(seed, r),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// `n_resources` ResourceLogs of `logs_per_resource` records each.
pub fn logs_request(n_resources: u64, logs_per_resource: u64, seed: u64) -> ExportLogsServiceRequest {
    use any_value::Value as V;
    let t = 1_700_000_000_000_000_000u64 + seed * 1_000_000;
    let resource_logs = (0..n_resources)
        .map(|r| {
            let log_records = (0..logs_per_resource)
                .map(|i| {
                    let body = match i % 4 {
                        0 => V::StringValue(format!("log line {seed}-{r}-{i}")),
                        1 => V::IntValue(i as i64),
                        2 => V::KvlistValue(KeyValueList {
                            values: all_type_attributes(i),
                        }),
                        _ => V::BytesValue(vec![1, 2, 3]),
                    };
                    LogRecord {
                        time_unix_nano: t + i,
                        observed_time_unix_nano: t + i + 1,
                        severity_number: (1 + i % 24) as i32,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue { value: Some(body) }),
                        attributes: all_type_attributes(i),
                        dropped_attributes_count: 0,
                        flags: 1,
                        trace_id: trace_id(seed, r, i),
                        span_id: span_id(seed, r, i),
                        event_name: if i % 2 == 0 {
                            format!("event-{i}")
                        } else {
                            String::new()
                        },
                    }
                })
                .collect();
            ResourceLogs {
                resource: resource(seed, r),
                scope_logs: vec![ScopeLogs {
                    scope: scope(seed, r),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

pub fn count_spans(r: &ExportTraceServiceRequest) -> u64 {
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

pub fn count_points(r: &ExportMetricsServiceRequest) -> u64 {
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len() as u64,
            Some(metric::Data::Sum(s)) => s.data_points.len() as u64,
            Some(metric::Data::Histogram(h)) => h.data_points.len() as u64,
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len() as u64,
            Some(metric::Data::Summary(s)) => s.data_points.len() as u64,
            None => 0,
        })
        .sum()
}

pub fn count_logs(r: &ExportLogsServiceRequest) -> u64 {
    r.resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len() as u64)
        .sum()
}

/// Sorted encodings of the ResourceSpans of all `reqs`: a multiset to compare.
pub fn resource_spans_multiset(reqs: &[ExportTraceServiceRequest]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = reqs
        .iter()
        .flat_map(|r| &r.resource_spans)
        .map(|x| x.encode_to_vec())
        .collect();
    v.sort();
    v
}

pub fn resource_metrics_multiset(reqs: &[ExportMetricsServiceRequest]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = reqs
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .map(|x| x.encode_to_vec())
        .collect();
    v.sort();
    v
}

pub fn resource_logs_multiset(reqs: &[ExportLogsServiceRequest]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = reqs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .map(|x| x.encode_to_vec())
        .collect();
    v.sort();
    v
}

/// Hex (lowercase) of an id.
pub fn hex_id(id: &[u8]) -> String {
    hex::encode(id)
}

/// The hex span ids of every span `b` received (duplicates collapse).
pub fn received_ids(b: &Backend) -> std::collections::BTreeSet<String> {
    b.spans().iter().map(|s| hex_id(&s.1)).collect()
}

/// `GET /` on a health_check endpoint: (status, body).
pub fn health(addr: SocketAddr) -> (u16, String) {
    let mut c = HttpConn::connect(addr);
    let r = c.request("GET", "/", &[], &[]);
    (r.status, r.text())
}

/// Tonic clients to sluice's gRPC receiver (one channel).
pub struct OtlpClients {
    pub traces: opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
        tonic::transport::Channel,
    >,
    pub metrics: opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient<
        tonic::transport::Channel,
    >,
    pub logs: opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient<
        tonic::transport::Channel,
    >,
}

impl OtlpClients {
    pub async fn connect(p: &Ports) -> OtlpClients {
        let ch = tonic::transport::Endpoint::from_shared(p.grpc_url())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .expect("connect to sluice gRPC");
        let big = 512 << 20;
        OtlpClients {
            traces: opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(
                ch.clone(),
            )
            .max_encoding_message_size(big),
            metrics:
                opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient::new(
                    ch.clone(),
                )
                .max_encoding_message_size(big),
            logs: opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::new(ch)
                .max_encoding_message_size(big),
        }
    }
}

// ---------------------------------------------------------------------------
// a backend that is down but whose connection attempts can be counted

/// A port that accepts TCP connections and closes each at once, recording
/// when it arrived: a backend that is down at the application level (every
/// export fails with a retryable transport error), used to count attempts.
pub struct DeadPort {
    pub port: u16,
    times: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DeadPort {
    pub async fn start(port: u16) -> DeadPort {
        let listener = bind_retry(port).await;
        let times = Arc::new(Mutex::new(Vec::new()));
        let t = times.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                t.lock().unwrap().push(Instant::now());
                drop(s);
            }
        });
        DeadPort { port, times, task }
    }

    /// When each connection arrived, in order.
    pub fn times(&self) -> Vec<Instant> {
        self.times.lock().unwrap().clone()
    }

    /// Stops listening: the port is free for a real backend.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The span ids of a traces request, hex-encoded.
pub fn request_span_ids(r: &ExportTraceServiceRequest) -> Vec<String> {
    r.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter())
        .map(|s| hex_id(&s.span_id))
        .collect()
}
pub mod capture;
pub mod files;
pub mod hint_backend;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lb;
pub mod netns;

//! sluice's configuration: the OpenTelemetry-Collector-style YAML file
//! (`receivers`, `processors`, `exporters`, `extensions`, `service`) plus the
//! sluice-specific `tuning` section, parsed into plain typed structs.
//!
//! Loading goes YAML text → line-aware node tree (`node`) → `${env:VAR}`
//! substitution in string values (`env`) → typed sections (`components`,
//! `service`, `tuning`) → cross-reference checks. Every error names the dotted
//! key path and the line it came from.

pub(crate) mod components;
mod conn;
mod env;
mod loadbalancing;
pub(crate) mod node;
pub(crate) mod section;
mod service;
mod tuning;
mod units;

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::signal::Signal;

pub use loadbalancing::{LoadBalancingConfig, ResolverConfig, RoutingKey};

/// The configuration used when no file is given (`sluice run` without `--config`).
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

/// Parses a config document. `${env:VAR}` / `${VAR}` references in values are
/// replaced from the process environment.
pub fn load_str(yaml: &str) -> Result<Config, ConfigError> {
    load_str_with(yaml, &|name| std::env::var(name).ok())
}

/// Reads and parses a config file; errors name the file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    load_str(&text).map_err(|e| e.in_file(path))
}

/// The built-in configuration (`DEFAULT_YAML`).
pub fn default_config() -> Config {
    load_str(DEFAULT_YAML).expect("the built-in default config is valid")
}

/// Reads a tuning file: either the tuning keys at the top level or a single
/// `tuning:` mapping.
pub fn load_tuning_file(path: &Path) -> Result<TuningConfig, ConfigError> {
    let text = read(path)?;
    load_tuning_str_with(&text, &|name| std::env::var(name).ok()).map_err(|e| e.in_file(path))
}

/// Looks up an environment variable (injected so tests need not touch the
/// process environment).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn load_str_with(yaml: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let mut root = node::parse(yaml).map_err(ConfigError::from_yaml)?;
    env::substitute(&mut root, env)?;
    components::config(&root).map_err(|e| e.locate(yaml))
}

pub(crate) fn load_tuning_str_with(yaml: &str, env: EnvLookup<'_>) -> Result<TuningConfig, ConfigError> {
    let mut root = node::parse(yaml).map_err(ConfigError::from_yaml)?;
    env::substitute(&mut root, env)?;
    tuning::file(&root)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        path: String::new(),
        message: format!("cannot read the file: {e}"),
        line: None,
        column: None,
        within: None,
    })
}

/// A configuration error: where (file, dotted key path, line) and what.
///
/// Displays as `file: path: message (line N)`, leaving out the parts that are
/// not known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file, for errors from `load_file` / `load_tuning_file`.
    pub file: Option<PathBuf>,
    /// Dotted key path, e.g. `exporters.otlp.retry_on_failure.multiplier`;
    /// empty for errors in the YAML syntax itself.
    pub path: String,
    pub message: String,
    /// 1-based line in the YAML text.
    pub line: Option<usize>,
    /// 1-based column, for errors in the YAML itself and in expressions
    /// written in it (an OTTL condition).
    pub column: Option<usize>,
    /// For an error inside a string value: the value's text and the
    /// (1-based, in characters) column within it; `load_str` finds the text
    /// on its line to report the column in the file.
    #[doc(hidden)]
    pub within: Option<Box<(String, usize)>>,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            path: path.into(),
            message: message.into(),
            line: (line > 0).then_some(line),
            column: None,
            within: None,
        }
    }

    /// An error at column `column` of the string value `text` (on `line`).
    pub(crate) fn within(
        path: impl Into<String>,
        line: usize,
        text: &str,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        let mut e = ConfigError::new(path, line, message);
        e.within = Some(Box::new((text.to_string(), column)));
        e
    }

    /// Turns a column within a string value into a column of the YAML text,
    /// where the value is written there as it is (no escapes, no `${env}`).
    fn locate(mut self, yaml: &str) -> Self {
        if let (Some(w), Some(line)) = (self.within.take(), self.line) {
            let (text, col) = *w;
            let src = yaml.lines().nth(line - 1).unwrap_or_default();
            match src.find(text.as_str()) {
                Some(at) => self.column = Some(src[..at].chars().count() + col),
                None => self.message = format!("{} (column {col} of the value)", self.message),
            }
        }
        self
    }

    fn from_yaml(e: serde_saphyr::Error) -> Self {
        let line = e.location().map(|l| l.line() as usize).filter(|&l| l > 0);
        let column = e.location().map(|l| l.column() as usize).filter(|&c| c > 0);
        let message = match &e {
            serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => format!("duplicate key `{k}`"),
            serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => "duplicate key".to_string(),
            _ => {
                let text = e.to_string();
                // An error inside an alias reads "<message> (defined at line L,
                // column C) (used at line L, column C)"; the place it was used
                // is the error's location.
                let (head, anchor) = match text.find(" (defined at line ") {
                    Some(i) => {
                        let defined = text[i + 2..].split(')').next().unwrap_or_default();
                        (&text[..i], format!(" (anchor {defined})"))
                    }
                    None => (text.as_str(), String::new()),
                };
                // saphyr appends "at line L, column C"; the location is reported separately.
                let head = match head.rfind(" at line ") {
                    Some(i) if line.is_some() => &head[..i],
                    _ => head,
                };
                format!("{head}{anchor}")
            }
        };
        ConfigError {
            file: None,
            path: String::new(),
            message: format!("invalid YAML: {message}"),
            line,
            column: column.filter(|_| line.is_some()),
            within: None,
        }
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    fn render(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.file {
            s.push_str(&f.display().to_string());
            s.push_str(": ");
        }
        if !self.path.is_empty() {
            s.push_str(&self.path);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        match (self.line, self.column) {
            (Some(l), Some(c)) => s.push_str(&format!(" (line {l}, column {c})")),
            (Some(l), None) => s.push_str(&format!(" (line {l})")),
            _ => {}
        }
        s
    }
}

/// A component id: `type` or `type/name` (`otlp`, `otlp/2`, `batch/small`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub kind: String,
    pub name: Option<String>,
}

impl ComponentId {
    /// An id with no name part.
    pub fn new(kind: &str) -> Self {
        ComponentId {
            kind: kind.to_string(),
            name: None,
        }
    }

    /// Parses `type` or `type/name` with the Collector's rules: the type is a
    /// letter followed by letters, digits or `_` (at most 63 characters); the
    /// name is non-empty, without `/`, whitespace or control characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let mut chars = kind.chars();
        let kind_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && kind.len() <= 63;
        if !kind_ok {
            return Err(format!(
                "invalid component id `{s}`: the type must be a letter followed by letters, digits or `_`"
            ));
        }
        if let Some(n) = name {
            if n.is_empty() {
                return Err(format!("invalid component id `{s}`: the name after `/` is empty"));
            }
            if n.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "invalid component id `{s}`: the name may not contain `/`, spaces or control characters"
                ));
            }
        }
        Ok(ComponentId {
            kind: kind.to_string(),
            name: name.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

impl std::str::FromStr for ComponentId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ComponentId::parse(s)
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    pub receivers: BTreeMap<ComponentId, ReceiverConfig>,
    pub processors: BTreeMap<ComponentId, ProcessorConfig>,
    pub exporters: BTreeMap<ComponentId, ExporterConfig>,
    pub extensions: BTreeMap<ComponentId, ExtensionConfig>,
    pub service: ServiceConfig,
    pub tuning: TuningConfig,
}

#[derive(Clone, Debug, PartialEq)]
// Read once at start; the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ReceiverConfig {
    Otlp(OtlpReceiverConfig),
    Kafka(Box<crate::kafka::config::KafkaReceiverConfig>),
}

/// `receivers.otlp.protocols`: a protocol is served when its key is present
/// (`grpc:` with no value means all defaults).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OtlpReceiverConfig {
    pub grpc: Option<GrpcServerConfig>,
    pub http: Option<HttpServerConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GrpcServerConfig {
    pub endpoint: SocketAddr,
    pub max_recv_msg_size_mib: u64,
    pub max_concurrent_streams: u32,
    /// `auth.authenticator`.
    pub auth: Option<AuthRef>,
    /// `tls`: serve TLS (absent: plaintext).
    pub tls: Option<crate::tls::config::TlsServerConfig>,
    /// `keepalive.server_parameters`, as the Collector's gRPC server.
    pub keepalive: GrpcKeepalive,
}

/// `keepalive.server_parameters` of a gRPC receiver (grpc-go's names). `None`:
/// no limit (`0s` in the config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrpcKeepalive {
    /// A connection without a request in flight for this long is sent GOAWAY.
    pub max_connection_idle: Option<Duration>,
    /// A connection older than this is sent GOAWAY.
    pub max_connection_age: Option<Duration>,
    /// After `max_connection_age`, requests still running get this long.
    pub max_connection_age_grace: Option<Duration>,
    /// Ping a connection quiet for this long (`time`) ...
    pub time: Option<Duration>,
    /// ... and close it if the ping is not answered within `timeout`.
    pub timeout: Duration,
}

impl Default for GrpcKeepalive {
    fn default() -> Self {
        GrpcKeepalive {
            max_connection_idle: Some(Duration::from_secs(300)),
            max_connection_age: None,
            max_connection_age_grace: None,
            time: None,
            timeout: Duration::from_secs(20),
        }
    }
}

impl Default for GrpcServerConfig {
    fn default() -> Self {
        GrpcServerConfig {
            endpoint: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4317)),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 1024,
            auth: None,
            tls: None,
            keepalive: GrpcKeepalive::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpServerConfig {
    pub endpoint: SocketAddr,
    /// Largest accepted request body, in bytes (after decompression).
    pub max_request_body_size: u64,
    /// `auth.authenticator`.
    pub auth: Option<AuthRef>,
    /// `tls`: serve TLS (absent: plaintext).
    pub tls: Option<crate::tls::config::TlsServerConfig>,
    /// From accept (or the first byte of a later request) to a complete
    /// request head; `None` (`0s`): no limit.
    pub read_header_timeout: Option<Duration>,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Option<Duration>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            endpoint: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4318)),
            max_request_body_size: 20 * 1024 * 1024,
            auth: None,
            tls: None,
            read_header_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProcessorConfig {
    Batch(BatchConfig),
    MemoryLimiter(MemoryLimiterConfig),
    Filter(crate::processor::filter::FilterConfig),
    ProbabilisticSampler(crate::processor::probabilistic_sampler::ProbabilisticSamplerConfig),
    Attributes(crate::processor::attributes::AttributesConfig),
    Resource(crate::processor::resource::ResourceConfig),
    ResourceDetection(crate::processor::resourcedetection::ResourceDetectionConfig),
    TailSampling(crate::processor::tail_sampling::TailSamplingConfig),
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchConfig {
    pub send_batch_size: u64,
    /// 0 = no upper limit.
    pub send_batch_max_size: u64,
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

/// `memory_limiter`: either `limit_mib` (absolute) or `limit_percentage` (of
/// total memory) is set; the spike limit is below it (20% of it by default).
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimiterConfig {
    pub check_interval: Duration,
    pub limit_mib: u64,
    pub spike_limit_mib: u64,
    pub limit_percentage: u32,
    pub spike_limit_percentage: u32,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: Duration::from_secs(1),
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExporterConfig {
    Otlp(OtlpExporterConfig),
    OtlpHttp(OtlpExporterConfig),
    File(FileExporterConfig),
    Debug(DebugExporterConfig),
    Nop,
    LoadBalancing(LoadBalancingConfig),
    Kafka(Box<crate::kafka::config::KafkaExporterConfig>),
}

/// `otlp` (gRPC) and `otlphttp` exporters.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpExporterConfig {
    /// `otlp`: `host:port`. `otlphttp`: base URL `http://host:port[/prefix]`
    /// without a trailing slash.
    pub endpoint: String,
    /// `otlphttp` per-signal URLs (`traces_endpoint`, ...), by `Signal::index()`.
    pub signal_endpoints: [Option<String>; 3],
    /// TLS settings when TLS is used: `otlp` connects with TLS exactly when
    /// this is set; `otlphttp` uses it for its `https://` URLs.
    pub tls: Option<crate::tls::config::TlsClientConfig>,
    pub compression: Compression,
    /// Static headers, with the `auth` extension's header (if any) last.
    pub headers: Vec<(String, String)>,
    /// `auth.authenticator` (client side).
    pub auth: Option<AuthRef>,
    /// A `bearertokenauth` authenticator reading its token from a file: the
    /// exporter follows the file.
    pub token_file: Option<crate::extension::bearertokenauth::BearerTokenConfig>,
    pub timeout: Duration,
    pub sending_queue: SendingQueueConfig,
    pub retry_on_failure: RetryConfig,
    pub circuit_breaker: CircuitBreakerConfig,
}

impl OtlpExporterConfig {
    /// The URL a signal is sent to by `otlphttp`: its own endpoint if set,
    /// else the base URL plus `/v1/<signal>`.
    pub fn signal_url(&self, signal: Signal) -> String {
        match &self.signal_endpoints[signal.index()] {
            Some(u) => u.clone(),
            None => format!("{}{}", self.endpoint, signal.http_path()),
        }
    }
}

pub use crate::compression::Compression;
pub use crate::extension::authenticator::AuthRef;

#[derive(Clone, Debug, PartialEq)]
pub struct SendingQueueConfig {
    pub enabled: bool,
    pub num_consumers: usize,
    /// Capacity in batches.
    pub queue_size: usize,
    /// A `file_storage` extension to persist the queue in.
    pub storage: Option<ComponentId>,
    pub overflow: OverflowPolicy,
    /// For `overflow: sample`: the share of new data kept while the queue is
    /// at or above the high-water mark.
    pub sample_percentage: f64,
    /// For `overflow: sample`: the queue fill level (percent of `queue_size`)
    /// from which new data is sampled. 0 = always sample.
    pub high_water_percentage: f64,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            storage: None,
            overflow: OverflowPolicy::Signal,
            sample_percentage: 50.0,
            high_water_percentage: 80.0,
        }
    }
}

/// What a full sending queue does with a new batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    DropNew,
    DropOldest,
    Sample,
    #[default]
    Signal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// 0 = retry forever.
    pub max_elapsed_time: Duration,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreakerConfig {
    pub enabled: bool,
    pub failure_threshold: u32,
    pub recovery_timeout: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enabled: false,
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(30),
        }
    }
}

/// sluice's `file` exporter: segment files under a directory.
#[derive(Clone, Debug, PartialEq)]
pub struct FileExporterConfig {
    pub path: PathBuf,
    pub segment_size_mib: u64,
    pub fsync: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DebugExporterConfig {
    pub verbosity: Verbosity,
    pub sampling_initial: u64,
    pub sampling_thereafter: u64,
}

impl Default for DebugExporterConfig {
    fn default() -> Self {
        DebugExporterConfig {
            verbosity: Verbosity::Basic,
            sampling_initial: 2,
            sampling_thereafter: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExtensionConfig {
    HealthCheck {
        endpoint: SocketAddr,
        path: String,
    },
    FileStorage {
        directory: PathBuf,
        fsync: bool,
        /// 0 = no limit.
        max_size_mib: u64,
    },
    BearerTokenAuth(crate::extension::bearertokenauth::BearerTokenConfig),
    BasicAuth(crate::extension::basicauth::BasicAuthConfig),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServiceConfig {
    pub extensions: Vec<ComponentId>,
    /// In file order.
    pub pipelines: Vec<PipelineConfig>,
    pub telemetry: TelemetryConfig,
}

/// `service.pipelines.<signal>[/<name>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub signal: Signal,
    pub name: Option<String>,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
    /// Line of the pipeline's key in the YAML.
    pub line: usize,
}

impl PipelineConfig {
    /// The pipeline's key: `traces` or `traces/name`.
    pub fn key(&self) -> String {
        match &self.name {
            Some(n) => format!("{}/{}", self.signal.name(), n),
            None => self.signal.name().to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    /// Prometheus endpoint for sluice's own metrics; `None` with `level: none`.
    pub metrics_address: Option<SocketAddr>,
    /// `debug`, `info`, `warn` or `error`.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics_address: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 8888))),
            log_level: "info".to_string(),
        }
    }
}

/// The `tuning` section (sluice-specific): how shards are laid out on cores.
#[derive(Clone, Debug, PartialEq)]
pub struct TuningConfig {
    /// Number of shards; default one per CPU in `cores` / the affinity mask.
    pub shards: Option<usize>,
    /// CPUs to place shards on; default the process's affinity mask.
    pub cores: Option<Vec<usize>>,
    pub pin: bool,
    pub shutdown_timeout: Duration,
    /// io_uring buffer memory per shard; default derived from the memlock limit.
    pub io_memory_kib: Option<u64>,
    /// Request bytes in flight (received, not yet handed to a pipeline) per
    /// shard; default a quarter of the memory limiter's soft limit divided
    /// among shards, else 64 MiB.
    pub inflight_budget_mib: Option<u64>,
    /// A request body that makes no progress for this long is refused
    /// (408 / DEADLINE_EXCEEDED) and its memory released.
    pub body_timeout: Duration,
    /// A request body not complete this long after its head arrived is
    /// refused the same way (a body trickled a byte at a time).
    pub body_deadline: Duration,
    /// A gRPC (or metrics / health) connection that has not sent a request
    /// head this long after it was accepted is closed.
    pub handshake_timeout: Duration,
    /// Open connections per shard over all its receivers; more are closed at
    /// once. Default: the open-files limit (less a reserve) shared by the shards.
    pub max_connections: Option<u64>,
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            shards: None,
            cores: None,
            pin: true,
            shutdown_timeout: Duration::from_secs(10),
            io_memory_kib: None,
            inflight_budget_mib: None,
            body_timeout: Duration::from_secs(30),
            body_deadline: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            max_connections: None,
        }
    }
}
